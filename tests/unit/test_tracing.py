"""Tracing's pure parts with the real OpenTelemetry SDK: when traces are wanted, the trace context written and read
back (traceparents, links, Kafka headers, request records), and trace ids on log records."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from flashsale.common import tracing
from flashsale.sales import domain, partitioning, records


@pytest.fixture
def on() -> Iterator[TracerProvider]:
    """Traces on for one test, with a provider of its own (the global one is left alone)."""
    tracing._State.on = True
    try:
        yield TracerProvider()
    finally:
        tracing._State.on = False


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
    ],
)
def test_traces_are_wanted_only_with_an_endpoint(environ: dict[str, str], wanted: bool) -> None:
    assert tracing.wanted(environ) is wanted


def test_with_traces_off_nothing_is_written() -> None:
    carrier: dict[str, str] = {}
    tracing.inject(carrier)
    assert carrier == {}
    assert tracing.traceparent() == ""
    assert tracing.headers() is None
    assert tracing.grpc_server_interceptors() == [] and tracing.grpc_client_interceptors() == []


def test_the_current_context_travels_and_links_back(on: TracerProvider) -> None:
    with on.get_tracer("test").start_as_current_span("purchase") as span:
        context = span.get_span_context()
        parent = tracing.traceparent()
        headers = tracing.headers()
    assert parent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")  # sampled (and random id)
    assert headers == [("traceparent", parent.encode())]
    assert tracing.from_headers(headers) == {"traceparent": parent}
    (link,) = tracing.links([parent, "", parent, "not-a-traceparent"])  # each valid context once
    assert (link.context.trace_id, link.context.span_id) == (context.trace_id, context.span_id)


def test_a_request_record_carries_each_purchase_traceparent() -> None:
    requests = [domain.PurchaseRequest("sale", f"user{i}", 1, f"r{i}") for i in range(6)]
    traces = [f"00-{i:032x}-{i + 1:016x}-01" for i in range(1, 7)]
    grouped = records.group(2, requests, traces)
    carried: dict[str, str] = {}
    for partition, value in grouped:
        decoded = records.decode(value, 0, 0)
        assert len(records.traceparents(value)) == len(decoded)
        carried.update(zip((r.request_id for r in decoded), records.traceparents(value), strict=True))
        assert {partition} == {partitioning.partition_of(r.user_id, 2) for r in decoded}
    assert carried == {f"r{i}": traces[i] for i in range(6)}
    assert all(records.traceparents(value) == [] for _, value in records.group(2, requests))


def test_log_records_made_in_a_span_carry_its_ids(on: TracerProvider) -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "decided", None, None)
    assert tracing.TraceIds().filter(record) and not hasattr(record, "trace_id")
    with on.get_tracer("test").start_as_current_span("round") as span:
        inside = logging.LogRecord("t", logging.INFO, __file__, 1, "decided", None, None)
        assert tracing.TraceIds().filter(inside)
    context = span.get_span_context()
    assert inside.trace_id == f"{context.trace_id:032x}"  # type: ignore[attr-defined]
    assert inside.span_id == f"{context.span_id:016x}"  # type: ignore[attr-defined]
