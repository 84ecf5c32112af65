"""The real observability backends: Prometheus scrapes, evaluates rules and reloads its targets; Jaeger v2 stores
OTLP spans with their parent links; neither listens beyond loopback."""

from __future__ import annotations

import ipaddress
import os
import pathlib
import re
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client import CollectorRegistry, Counter, start_http_server
from waiting import eventually_sync

from flashsale_tools.platform import cache, jaeger_server, observability_tools, prometheus_server

# A cold first build (Prometheus from apt, Jaeger's module download + compile) runs in the `tools` fixture.
pytestmark = [pytest.mark.observability, pytest.mark.timeout(observability_tools.BUILD_TIMEOUT_S + 300)]


@pytest.fixture(scope="module")
def tools() -> observability_tools.Paths:
    """The Prometheus, promtool and Jaeger binaries, installed and built when missing."""
    return observability_tools.ensure_built()


class Exporter:
    """A prometheus-client /metrics endpoint on loopback with one counter in its own registry."""

    def __init__(self, value: float) -> None:
        self.registry = CollectorRegistry()
        self.counter = Counter("flashsale_test_events", "Events counted by the test exporter.", registry=self.registry)
        self.counter.inc(value)
        self.port = cache.free_port()
        self._server, self._thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    served = Exporter(3)
    yield served
    served.close()


@pytest.fixture
def other_exporter() -> Iterator[Exporter]:
    served = Exporter(7)
    yield served
    served.close()


@pytest.fixture
def rule_file(tmp_path: pathlib.Path) -> pathlib.Path:
    """One group with a recording rule and an alert that always fires."""
    path = tmp_path / "rules.yml"
    rules = [
        {"record": "job:flashsale_test_events:sum", "expr": "sum by (job) (flashsale_test_events_total)"},
        {"alert": "AlwaysFiring", "expr": "vector(1) > 0", "labels": {"severity": "none"}},
    ]
    path.write_text(yaml.safe_dump({"groups": [{"name": "test", "rules": rules}]}))
    return path


@pytest.fixture
def prometheus(
    tmp_path: pathlib.Path, tools: observability_tools.Paths, exporter: Exporter, rule_file: pathlib.Path
) -> Iterator[prometheus_server.PrometheusServer]:
    with prometheus_server.PrometheusServer(
        tmp_path / "prometheus", {"app": [exporter.target]}, rule_files=[rule_file], binary=tools.prometheus
    ) as server:
        yield server


@pytest.fixture(scope="module")
def jaeger(
    tmp_path_factory: pytest.TempPathFactory, tools: observability_tools.Paths
) -> Iterator[jaeger_server.JaegerServer]:
    with jaeger_server.JaegerServer(tmp_path_factory.mktemp("jaeger"), binary=tools.jaeger) as server:
        yield server


def _value(series: list[dict[str, Any]]) -> float | None:
    return float(series[0]["value"][1]) if len(series) == 1 else None


def test_prometheus_scrapes_a_target_and_answers_queries(prometheus: prometheus_server.PrometheusServer) -> None:
    assert prometheus.url.startswith("http://127.0.0.1:")
    series = eventually_sync(
        lambda: prometheus.query('flashsale_test_events_total{job="app"}'),
        until=lambda found: _value(found) == 3.0,
        within_s=30,
        what="the test counter scraped",
    )
    assert series[0]["metric"]["instance"].startswith("127.0.0.1:")
    (target,) = prometheus.targets()
    assert (target["scrapePool"], target["health"], target["lastError"]) == ("app", "up", "")
    recorded = eventually_sync(
        lambda: prometheus.query('job:flashsale_test_events:sum{job="app"}'), until=lambda s: _value(s) == 3.0
    )
    assert recorded[0]["metric"] == {"__name__": "job:flashsale_test_events:sum", "job": "app"}
    now = time.time()
    (ranged,) = prometheus.query_range("vector(1)", now - 5, now, 1)
    assert [float(v) for _, v in ranged["values"]] == [1.0] * 6


def test_prometheus_query_errors_carry_the_message(prometheus: prometheus_server.PrometheusServer) -> None:
    with pytest.raises(prometheus_server.PrometheusApiError, match=r"bad_data.*parse error") as raised:
        prometheus.query("sum(")
    assert raised.value.error_type == "bad_data"


def test_an_always_firing_alert_fires(prometheus: prometheus_server.PrometheusServer) -> None:
    alerts = eventually_sync(
        prometheus.alerts,
        until=lambda found: any(a["labels"]["alertname"] == "AlwaysFiring" and a["state"] == "firing" for a in found),
        within_s=30,
        what="AlwaysFiring firing",
    )
    assert [a["labels"] for a in alerts] == [{"alertname": "AlwaysFiring", "severity": "none"}]
    rules = eventually_sync(prometheus.rules, until=lambda found: all(r["health"] == "ok" for r in found))
    assert sorted((r["name"], r["type"], r["group"], r["lastError"]) for r in rules) == [
        ("AlwaysFiring", "alerting", "test", ""),
        ("job:flashsale_test_events:sum", "recording", "test", ""),
    ]


def test_set_targets_reloads_the_scrape_jobs(
    prometheus: prometheus_server.PrometheusServer, exporter: Exporter, other_exporter: Exporter
) -> None:
    prometheus.set_targets({"app": [exporter.target], "other": [other_exporter.target]})
    eventually_sync(
        lambda: prometheus.query('flashsale_test_events_total{job="other"}'),
        until=lambda found: _value(found) == 7.0,
        within_s=30,
        what="the second job scraped after a reload",
    )

    prometheus.set_targets({"other": [other_exporter.target]})
    targets = eventually_sync(prometheus.targets, until=lambda found: {t["scrapePool"] for t in found} == {"other"})
    assert [t["scrapeUrl"] for t in targets] == [f"http://{other_exporter.target}/metrics"]
    assert yaml.safe_load(prometheus.config_file.read_text())["scrape_configs"] == [
        {"job_name": "other", "static_configs": [{"targets": [other_exporter.target]}]}
    ]


def test_a_bad_reload_is_refused_and_the_server_keeps_running(
    prometheus: prometheus_server.PrometheusServer, exporter: Exporter
) -> None:
    prometheus.config_file.write_text("scrape_configs: [{job_name: broken, static_configs: [{targets: 7}]}]\n")
    with pytest.raises(prometheus_server.PrometheusServerError, match="refused to reload"):
        prometheus.reload()
    assert prometheus.running
    prometheus.set_targets({"app": [exporter.target]})  # a good config is accepted again


def test_jaeger_stores_a_parent_and_its_child_sent_over_otlp_grpc(jaeger: jaeger_server.JaegerServer) -> None:
    service = f"flashsale-test-{uuid.uuid4().hex[:8]}"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=jaeger.otlp_grpc_endpoint, insecure=True))
    )
    tracer = provider.get_tracer("tests.observability")
    try:
        with tracer.start_as_current_span("purchase") as parent, tracer.start_as_current_span("decide") as child:
            child.set_attribute("sale.partition", 3)
    finally:
        provider.shutdown()
    trace_id = format(parent.get_span_context().trace_id, "032x")
    parent_id = format(parent.get_span_context().span_id, "016x")
    child_id = format(child.get_span_context().span_id, "016x")

    traces = eventually_sync(
        lambda: jaeger.traces(service),
        until=lambda found: len(found) == 1 and len(found[0]["spans"]) == 2,
        within_s=30,
        what=f"the trace of {service}",
    )
    assert service in jaeger.services()
    assert traces[0]["traceID"] == trace_id
    spans = {span["operationName"]: span for span in traces[0]["spans"]}
    assert spans["purchase"]["spanID"] == parent_id
    assert spans["purchase"]["references"] == []
    assert spans["decide"]["spanID"] == child_id
    assert spans["decide"]["references"] == [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent_id}]
    assert {"key": "sale.partition", "type": "int64", "value": 3} in spans["decide"]["tags"]
    assert {s["spanID"] for s in jaeger.trace(trace_id)["spans"]} == {parent_id, child_id}


def test_jaeger_accepts_otlp_http(jaeger: jaeger_server.JaegerServer) -> None:
    service = f"flashsale-http-{uuid.uuid4().hex[:8]}"
    trace_id, now_ns = uuid.uuid4().hex, time.time_ns()
    span = {
        "traceId": trace_id,
        "spanId": uuid.uuid4().hex[:16],
        "name": "notify",
        "kind": 1,
        "startTimeUnixNano": str(now_ns - 1_000_000),
        "endTimeUnixNano": str(now_ns),
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    response = httpx.post(f"{jaeger.otlp_http_endpoint}/v1/traces", json=body, timeout=10, trust_env=False)
    assert response.status_code == 200, response.text

    eventually_sync(lambda: jaeger.traces(service), until=lambda found: len(found) == 1, within_s=30)
    assert [s["operationName"] for s in jaeger.trace(trace_id)["spans"]] == ["notify"]


def test_jaeger_answers_an_unknown_trace_with_an_error(jaeger: jaeger_server.JaegerServer) -> None:
    with pytest.raises(jaeger_server.JaegerApiError):
        jaeger.trace(uuid.uuid4().hex)


def _listening(pid: int) -> set[tuple[str, int]]:
    """The (address, port) of every TCP socket in LISTEN state that process ``pid`` holds."""
    inodes = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        with_target = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd)) if fd.is_symlink() else None
        if with_target:
            inodes.add(with_target.group(1))
    found = set()
    for table in ("tcp", "tcp6"):
        for line in pathlib.Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: TCP_LISTEN
                address, port = local.split(":")
                words = [struct.pack("<I", int(address[i : i + 8], 16)) for i in range(0, len(address), 8)]
                found.add((str(ipaddress.ip_address(b"".join(words))), int(port, 16)))
    return found


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def test_jaeger_listens_on_loopback_only(jaeger: jaeger_server.JaegerServer) -> None:
    assert jaeger.pid is not None
    listening = _listening(jaeger.pid)
    beyond_loopback = {(address, port) for address, port in listening if not _loopback(address)}
    assert not beyond_loopback, f"jaeger listens beyond loopback: {sorted(beyond_loopback)}"
    expected = jaeger.ports
    assert {port for _, port in listening} == {
        expected.otlp_grpc,
        expected.otlp_http,
        expected.query_http,
        expected.query_grpc,
        expected.health_http,
        expected.metrics,
    }
    metrics = httpx.get(f"http://{jaeger.metrics_target}/metrics", timeout=10, trust_env=False)
    assert metrics.status_code == 200
    assert "otelcol_" in metrics.text


def test_prometheus_listens_on_loopback_only(prometheus: prometheus_server.PrometheusServer) -> None:
    assert prometheus.pid is not None
    assert _listening(prometheus.pid) == {("127.0.0.1", prometheus.port)}
