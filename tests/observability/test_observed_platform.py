"""The platform observed for real: a Prometheus scraping every process while shoppers buy finds every metric family,
answers every dashboard query and evaluates every alert rule; Jaeger holds one purchase's trace from the gateway
through the sales service and the worker's round to the order and notification consumers; stopping the sales
worker mid-sale makes the stall alert fire."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from observed_shop import WORKER, Shop
from waiting import eventually_sync

from flashsale_tools.platform import observability_tools, observed

pytestmark = [pytest.mark.observability, pytest.mark.timeout(observability_tools.BUILD_TIMEOUT_S + 900)]

FAMILIES = (
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds_bucket",
    "grpc_client_started_total",
    "grpc_client_handled_total",
    "grpc_client_handling_seconds_bucket",
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "flashsale_gateway_rate_limited_total",
    "flashsale_kafka_records_produced_total",
    "flashsale_kafka_records_consumed_total",
    "flashsale_kafka_records_dead_lettered_total",
    "flashsale_kafka_consumer_lag",
    "flashsale_outbox_backlog",
    "flashsale_requests_taken_total",
    "flashsale_decisions_total",
    "flashsale_sale_last_decision_timestamp_seconds",
    "flashsale_decision_latency_seconds_bucket",
    "flashsale_round_duration_seconds_bucket",
    "flashsale_round_requests_bucket",
    "flashsale_refills_total",
    "flashsale_refilled_units_total",
    "flashsale_worker_partitions",
    "flashsale_sale_stock",
    "flashsale_sale_remaining",
    "flashsale_sale_sold",
    "flashsale_sale_oversold",
    "flashsale_orders",
    "flashsale_notification_deliveries_total",
    "flashsale_db_pool_connections",
    "flashsale_db_pool_requests_waiting",
    "flashsale_db_pool_requests_total",
    "flashsale_db_pool_wait_seconds_total",
)
DASHBOARDS = Path("observability") / "grafana" / "dashboards"
STALL = "FlashsaleDecisionsStalled"


def _targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, query) of every panel, rows' nested panels included."""
    found = []
    for panel in dashboard.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                if target.get("expr"):
                    found.append((str(inner.get("title")), str(target["expr"])))
    return found


def _substituted(expr: str, sale: str) -> str:
    """A Grafana query as Prometheus gets it: the template variables replaced."""
    for name, value in (("sale", sale), ("job", ".+"), ("__rate_interval", "1m"), ("__interval", "15s")):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr


def test_every_metric_family_is_scraped(observe: observed.Observed, shop: Shop) -> None:
    def missing() -> list[str]:
        return [name for name in FAMILIES if not observe.prometheus.query(f"count({{__name__={name!r}}})")]

    eventually_sync(missing, until=lambda left: not left, within_s=60, every_s=1, what="metric families")
    down = [t["labels"]["job"] for t in observe.prometheus.targets() if t["health"] != "up"]
    assert not down, f"targets not up: {down}"


def test_every_dashboard_query_returns_series(observe: observed.Observed, shop: Shop, repo: Path) -> None:
    queries = []
    for path in sorted((repo / DASHBOARDS).glob("*.json")):
        queries += [(path.name, title, expr) for title, expr in _targets(json.loads(path.read_text()))]
    assert len(queries) >= 20

    def empty() -> list[str]:
        return [
            f"{name} / {title}: {expr}"
            for name, title, expr in queries
            if not observe.prometheus.query(_substituted(expr, shop.open_sale))
        ]

    eventually_sync(empty, until=lambda left: not left, within_s=90, every_s=2, what="dashboard queries with data")


def test_every_alert_rule_evaluates_and_oversell_stays_silent(observe: observed.Observed, shop: Shop) -> None:
    rules = eventually_sync(observe.prometheus.rules, until=lambda r: len(r) >= 10, within_s=30)
    expressions = [rule["query"] for rule in rules]
    broken = [f"{r['name']}: {r['health']} {r['lastError']}" for r in rules if r["health"] != "ok" or r["lastError"]]
    assert not broken, broken
    for expr in expressions:  # and each expression evaluates on its own, too
        observe.prometheus.query(expr)
    firing = {a["labels"]["alertname"] for a in observe.prometheus.alerts() if a["state"] == "firing"}
    assert "FlashsaleOversellDetected" not in firing
    oversold = observe.prometheus.query("max by (sale) (flashsale_sale_oversold)")
    assert oversold and all(float(s["value"][1]) == 0 for s in oversold), oversold


def _spans(trace: dict[str, Any]) -> list[dict[str, Any]]:
    processes = trace["processes"]
    return [{**span, "service": processes[span["processID"]]["serviceName"]} for span in trace["spans"]]


def _describe(spans: list[dict[str, Any]], names: dict[str, str]) -> list[str]:
    lines = []
    for span in sorted(spans, key=lambda s: s["startTime"]):
        refs = [
            f"{'parent' if ref['refType'] == 'CHILD_OF' else 'link'} {names.get(ref['spanID'], ref['spanID'])}"
            for ref in span.get("references", [])
        ]
        lines.append(f"{span['service']:28} {span['operationName']:60} {', '.join(refs) or 'root'}")
    return lines


def test_one_purchase_is_one_story_in_jaeger(observe: observed.Observed, shop: Shop) -> None:
    jaeger = observe.jaeger

    def purchase() -> list[dict[str, Any]]:
        try:
            return _spans(jaeger.trace(shop.trace_id))
        except Exception:
            return []

    front = eventually_sync(
        purchase,
        until=lambda s: {"flashsale-gateway", "flashsale-sales"} <= {x["service"] for x in s},
        within_s=30,
        every_s=0.5,
        what="the purchase's gateway and sales spans",
    )
    ours = {span["spanID"] for span in front}
    began = min(span["startTime"] for span in front)  # µs: the round came within seconds (the crowd makes many)

    def round_trace() -> dict[str, Any] | None:
        rounds = jaeger.traces(
            f"flashsale-{WORKER}", limit=1000, operation="sales round", start_us=began, end_us=began + 30_000_000
        )
        for found in rounds:
            for span in found["spans"]:
                if span["operationName"] == "sales round" and any(
                    ref["traceID"] == shop.trace_id and ref["spanID"] in ours for ref in span.get("references", [])
                ):
                    whole = jaeger.trace(found["traceID"])
                    services = {s["service"] for s in _spans(whole)}
                    if {"flashsale-order", "flashsale-notification"} <= services:
                        return whole
        return None

    decided = eventually_sync(round_trace, within_s=60, every_s=1, what="the round that linked the purchase")
    back = _spans(decided)
    everything = front + back
    names = {s["spanID"]: f"{s['service']}:{s['operationName']}" for s in everything}
    story = [*_describe(front, names), "--- the round's trace (linked) ---", *_describe(back, names)]
    print("\n".join(story))
    services = {s["service"] for s in everything}
    assert {"flashsale-gateway", "flashsale-sales", f"flashsale-{WORKER}", "flashsale-order"} <= services, story
    gateway = [s for s in front if s["service"] == "flashsale-gateway" and s.get("references")]
    assert gateway and all(r["traceID"] == shop.trace_id for s in gateway for r in s["references"]), story
    rounds = [s for s in back if s["operationName"] == "sales round"]
    orders = [s for s in back if s["service"] == "flashsale-order" and s["operationName"].startswith("process ")]
    assert rounds and orders, story
    by_id = {s["spanID"]: s for s in back}

    def root_of(span: dict[str, Any]) -> dict[str, Any]:
        while parents := [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]:
            span = by_id[parents[0]["spanID"]]
        return span

    assert all(root_of(order)["operationName"] == "sales round" for order in orders), story


def _firing(observe: observed.Observed, name: str) -> list[dict[str, Any]]:
    return [a for a in observe.prometheus.alerts() if a["labels"]["alertname"] == name and a["state"] == "firing"]


def test_the_stall_alert_fires_when_the_worker_stops_mid_sale(
    observe: observed.Observed, shop: Shop, repo: Path
) -> None:
    rule = next(
        r
        for group in yaml.safe_load((repo / observed.RULES_DIR / "flashsale.rules.yaml").read_text())["groups"]
        for r in group["rules"]
        if r.get("alert") == STALL
    )
    window_s = max(int(w) * (60 if unit == "m" else 1) for w, unit in re.findall(r"\[(\d+)([sm])\]", rule["expr"]))
    for_s = int(rule["for"].rstrip("s")) if rule["for"].endswith("s") else int(rule["for"].rstrip("m")) * 60
    rate = f'sum(rate(flashsale_decisions_total{{sale="{shop.open_sale}"}}[30s]))'
    eventually_sync(  # the crowd's purchases are decided (and scraped) before the worker stops
        lambda: [float(s["value"][1]) for s in observe.prometheus.query(rate)],
        until=lambda found: bool(found) and found[0] > 0,
        within_s=60,
        every_s=1,
        what="decisions of the open sale",
    )
    assert not _firing(observe, STALL)

    stopped = time.monotonic()
    shop.platform.terminate(WORKER)
    alerts = eventually_sync(
        lambda: _firing(observe, STALL),
        within_s=window_s + for_s + 60,
        every_s=0.5,
        what=f"{STALL} firing after the worker stopped",
    )
    took = time.monotonic() - stopped
    print(f"{STALL} fired {took:.1f} s after the worker stopped (rate window {window_s} s, for {for_s} s)")
    assert alerts[0]["labels"]["sale"] == shop.open_sale
    assert took <= window_s + for_s + 2 * 1.0 + 5, took  # the window, `for`, an evaluation and a scrape, slack
