"""The Grafana dashboards under observability/grafana/dashboards: valid JSON with a data source variable every panel
uses, unique ids, a query in every panel, the Flash sale dashboard filtered by its sale variable, and every metric
they read exported by the code (a renamed metric breaks this test)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import metric_names
import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "observability" / "grafana" / "dashboards"
FILES = ("flash-sale.json", "services.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# the series labelled by sale: a Flash sale query reading one must filter it by the sale variable
SALE_LABELLED = {
    "flashsale_requests_taken_total",
    "flashsale_decisions_total",
    "flashsale_sale_last_decision_timestamp_seconds",
    "flashsale_decision_latency_seconds_bucket",
    "flashsale_decision_latency_seconds_sum",
    "flashsale_decision_latency_seconds_count",
    "flashsale_refills_total",
    "flashsale_refilled_units_total",
    "flashsale_worker_partitions",
    "flashsale_sale_stock",
    "flashsale_sale_remaining",
    "flashsale_sale_sold",
    "flashsale_sale_oversold",
}
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.*),)?\s*(?P<label>\w+)\s*\)\s*$", re.DOTALL)


def _load(name: str) -> dict[str, Any]:
    board: dict[str, Any] = json.loads((DASHBOARDS / name).read_text())
    return board


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _queried(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The panels that show data (rows only group them)."""
    return (panel for panel in _panels(board) if panel["type"] != "row")


def _variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in board["templating"]["list"]}


def _variable_query(variable: dict[str, Any]) -> str:
    """A query variable's query: a string, or the object newer Grafana versions write."""
    query = variable["query"]
    return str(query["query"] if isinstance(query, dict) else query)


def _used_names(board: dict[str, Any]) -> Iterator[tuple[str, set[str]]]:
    """(where, metric names) of every panel query and every query variable."""
    for panel in _queried(board):
        for target in panel["targets"]:
            yield f"panel {panel['title']!r} {target['refId']}", metric_names.promql_metric_names(target["expr"])
    for variable in _variables(board).values():
        if variable["type"] == "query":
            found = _LABEL_VALUES.match(_variable_query(variable))
            assert found, f"variable {variable['name']}: not label_values(metric, label): {variable['query']!r}"
            selector = found.group("selector") or ""
            yield f"variable {variable['name']!r}", metric_names.promql_metric_names(selector)


@pytest.mark.parametrize("name", FILES)
def test_every_panel_and_query_reads_the_datasource_variable(name: str) -> None:
    board = _load(name)
    variable = _variables(board)["datasource"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    for panel in _panels(board):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == DATASOURCE, (panel["title"], target["refId"])
    for other in _variables(board).values():
        if other["type"] == "query":
            assert other["datasource"] == DATASOURCE, other["name"]


def test_the_dashboards_have_their_uids_and_unique_panel_ids() -> None:
    boards = {name: _load(name) for name in FILES}
    assert {name: board["uid"] for name, board in boards.items()} == {
        "flash-sale.json": "flashsale-sale",
        "services.json": "flashsale-services",
    }
    assert (boards["flash-sale.json"]["title"], boards["services.json"]["title"]) == ("Flash sale", "Services")
    for name, board in boards.items():
        ids = [panel["id"] for panel in _panels(board)]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeated: {sorted(ids)}"


@pytest.mark.parametrize("name", FILES)
def test_every_panel_has_a_query(name: str) -> None:
    for panel in _queried(_load(name)):
        targets = panel.get("targets", [])
        assert targets and all(target.get("expr", "").strip() for target in targets), panel["title"]
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), panel["title"]


def test_the_flash_sale_dashboard_filters_by_its_sale_variable() -> None:
    board = _load("flash-sale.json")
    sale = _variables(board)["sale"]
    assert _variable_query(sale) == "label_values(flashsale_sale_stock, sale)"
    assert sale["multi"] and sale["includeAll"]
    filtered = 0
    for panel in _queried(board):
        for target in panel["targets"]:
            expr = target["expr"]
            if metric_names.promql_metric_names(expr) & SALE_LABELLED:
                selectors = re.findall(r"\b(\w+)(\{[^}]*\})?", expr)
                unfiltered = [m for m, labels in selectors if m in SALE_LABELLED and 'sale=~"$sale"' not in labels]
                assert not unfiltered, f'{panel["title"]!r}: {unfiltered} not filtered by sale=~"$sale"'
                filtered += 1
    assert filtered >= 10
    lag = next(panel for panel in _queried(board) if "lag" in panel["title"].lower())
    assert all("$sale" in target["expr"] for target in lag["targets"])


def test_the_services_dashboard_has_a_job_variable_and_a_postgres_row_for_the_pool() -> None:
    board = _load("services.json")
    job = _variables(board)["job"]
    assert _variable_query(job) == "label_values(grpc_server_handled_total, job)"
    rows = [panel for panel in board["panels"] if panel["type"] == "row"]
    assert "Database pool (PostgreSQL)" in [row["title"] for row in rows]
    pool_metrics = {name for name in metric_names.exported_metric_names() if name.startswith("flashsale_db_pool_")}
    for name in FILES:
        for panel in _queried(_load(name)):
            if any(metric_names.promql_metric_names(t["expr"]) & pool_metrics for t in panel["targets"]):
                assert name == "services.json", f"{name}: {panel['title']!r} reads the PostgreSQL-only pool figures"
                assert "PostgreSQL" in panel["description"], panel["title"]


@pytest.mark.parametrize("name", FILES)
def test_every_metric_a_dashboard_reads_is_exported_by_the_code(name: str) -> None:
    exported = metric_names.exported_metric_names()
    unknown = {where: sorted(names - exported) for where, names in _used_names(_load(name)) if names - exported}
    assert not unknown, f"{name} reads metrics that services/flashsale does not export: {unknown}"


def test_every_query_reads_at_least_one_metric() -> None:
    for name in FILES:
        for where, names in _used_names(_load(name)):
            assert names, f"{name}: {where} reads no metric"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'histogram_quantile(0.99, sum by (le) (rate(flashsale_decision_latency_seconds_bucket{sale=~"$sale"}'
            "[$__rate_interval])))",
            {"flashsale_decision_latency_seconds_bucket"},
        ),
        ("sum(rate(grpc_server_handled_total[5m])) by (grpc_service, grpc_method)", {"grpc_server_handled_total"}),
        (
            'flashsale_sale_remaining{sale="1", job=~"flashsale_sale_stock|http_requests_total"} '
            "unless on (sale) flashsale_sale_oversold > bool 0",
            {"flashsale_sale_remaining", "flashsale_sale_oversold"},
        ),
        (
            "sum without (instance) (rate(a_total[1h30m] offset 5m)) / ignoring (code) group_left (x) b * 1.5e3",
            {"a_total", "b"},
        ),
        ('max_over_time({__name__="flashsale_orders", status="PAID"}[9m:1m]) or on () vector(1)', {"flashsale_orders"}),
        ("label_replace(up, 'dst', \"$1\", 'src', '(.*)') - time()", {"up"}),
    ],
)
def test_promql_metric_names_finds_the_metrics_of_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names.promql_metric_names(expr) == names


def test_exported_metric_names_are_the_series_prometheus_scrapes() -> None:
    exported = metric_names.exported_metric_names()
    assert {
        "flashsale_decisions_total",  # a Counter named with _total
        "flashsale_gateway_rate_limited_total",
        "grpc_server_handling_seconds_bucket",  # a Histogram's series
        "grpc_server_handling_seconds_count",
        "flashsale_decision_latency_seconds_bucket",  # a BulkHistogram, its name after the registry
        "flashsale_sale_oversold",  # a GaugeMetricFamily named from a table
        "flashsale_orders",
        "flashsale_db_pool_wait_seconds_total",  # a CounterMetricFamily named without _total
        "flashsale_kafka_consumer_lag",
    } <= exported
    assert not {"grpc_server_handling_seconds", "flashsale_db_pool_wait_seconds", "grpc_service"} & exported
