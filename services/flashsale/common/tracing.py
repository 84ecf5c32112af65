"""OpenTelemetry traces, configured only by the standard OTEL_* variables.

Nothing is exported, and the hot paths skip every tracing step, unless an OTLP endpoint is set
(OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). The SDK itself reads OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_* and the exporter's OTEL_EXPORTER_OTLP_* options.

Across Kafka the W3C trace context travels in a `traceparent` header on every record, in the envelope's
`trace_context` for events (those built in a transaction and relayed from the outbox too), and per purchase in a
request record, so that the worker's round links every request it decided.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

log = logging.getLogger(__name__)

TRACER = "flashsale"
CLIENT, CONSUMER, PRODUCER, SERVER = (
    trace.SpanKind.CLIENT,
    trace.SpanKind.CONSUMER,
    trace.SpanKind.PRODUCER,
    trace.SpanKind.SERVER,
)
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class _State:
    """Whether this process exports traces (set once by `configure`, read on every hot path)."""

    on = False


def wanted(environ: MutableMapping[str, str] | None = None) -> bool:
    """True when the environment asks for traces: an OTLP endpoint is set and the SDK is not disabled."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in _ENDPOINTS)


def configure(service: str) -> Callable[[], None]:
    """Install the SDK's tracer provider with an OTLP exporter when `wanted()`; return what flushes and stops it
    at shutdown (a no-op otherwise). The service name defaults to flashsale-<service> unless OTEL_SERVICE_NAME
    says otherwise."""
    if not wanted():
        _State.on = False
        return lambda: None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    defaults = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"flashsale-{service}"}
    provider = TracerProvider(resource=Resource.create(defaults))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _State.on = True
    log.info("exporting traces", extra={"endpoint": next(os.environ[n] for n in _ENDPOINTS if os.environ.get(n))})

    def shutdown() -> None:
        provider.shutdown()  # exports what is buffered
        _State.on = False

    return shutdown


def active() -> bool:
    """True when this process exports traces: callers skip every tracing step otherwise."""
    return _State.on


def tracer() -> trace.Tracer:
    """The platform's tracer."""
    return trace.get_tracer(TRACER)


def span(name: str, **kwargs: Any) -> contextlib.AbstractContextManager[trace.Span]:
    """A span made current for a block, or nothing at all when traces are off."""
    if not _State.on:
        return contextlib.nullcontext(trace.INVALID_SPAN)
    return tracer().start_as_current_span(name, **kwargs)


def grpc_server_interceptors() -> list[Any]:
    """The OpenTelemetry server interceptor for a grpc.aio server (server spans, the caller's context as parent);
    none when traces are off."""
    if not _State.on:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]  # type: ignore[no-untyped-call]


def grpc_client_interceptors() -> list[Any]:
    """The OpenTelemetry client interceptors for a grpc.aio channel (client spans, the context sent in the
    metadata); none when traces are off."""
    if not _State.on:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]


def instrument_http(app: Any) -> None:
    """Server spans for every HTTP request of a FastAPI app, named by route template (when traces are on)."""
    if _State.on:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, exclude_spans=["receive", "send"])


def inject(carrier: MutableMapping[str, str]) -> None:
    """Write the current trace context (traceparent, tracestate) into a carrier, e.g. an envelope's trace_context."""
    if _State.on:
        propagate.inject(carrier)


def traceparent() -> str:
    """The current span's W3C traceparent ("" when there is none or traces are off)."""
    if not _State.on:
        return ""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


Headers = list[tuple[str, str | bytes | None]]


def headers(carrier: MutableMapping[str, str] | None = None) -> Headers | None:
    """Kafka record headers carrying a trace context (the carrier's, else the current one); None when none."""
    if not _State.on:
        return None
    if not carrier:
        carrier = {}
        propagate.inject(carrier)
    found: Headers = [(key, value.encode()) for key, value in carrier.items() if key in ("traceparent", "tracestate")]
    return found or None


def extracted(carrier: MutableMapping[str, str]) -> otel_context.Context:
    """The context a carrier (an envelope's trace_context, a record's headers) holds."""
    return propagate.extract(carrier)


def from_headers(raw: Headers | dict[str, str | bytes | None] | None) -> dict[str, str]:
    """A carrier made of a Kafka record's headers."""
    pairs = raw.items() if isinstance(raw, dict) else raw or ()
    return {key: value.decode(errors="replace") if isinstance(value, bytes) else value for key, value in pairs if value}


def links(traceparents: Iterable[str]) -> list[trace.Link]:
    """Span links to the valid contexts among these traceparents (each distinct one once)."""
    found: list[trace.Link] = []
    seen: set[str] = set()
    for value in traceparents:
        if not value or value in seen:
            continue
        seen.add(value)
        context = trace.get_current_span(propagate.extract({"traceparent": value})).get_span_context()
        if context.is_valid:
            found.append(trace.Link(context))
    return found


class TraceIds(logging.Filter):
    """Adds trace_id and span_id (hex) to every log record made while a span is current."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate the record; never drops it."""
        if _State.on:
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = format(context.trace_id, "032x")
                record.span_id = format(context.span_id, "016x")
        return True
