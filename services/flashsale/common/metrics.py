"""Prometheus metrics of a process: its registry, the HTTP endpoint that exposes it, and the gRPC server and client
metrics in the grpc-ecosystem convention (grpc_server_started_total, grpc_server_handled_total,
grpc_server_handling_seconds, and grpc_client_* likewise; labels grpc_service, grpc_method, grpc_type, grpc_code)
that the usual gRPC dashboards read.

Each process builds one registry in its bootstrap and passes it to what records metrics; nothing registers at
import time. Labels are bounded: services, methods, codes, topics, sales, outcomes; never a user, request or order id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import wsgiref.simple_server
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import numpy
import prometheus_client
import prometheus_client.core

Registry = prometheus_client.CollectorRegistry
# request latencies from a millisecond to tens of seconds
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_GRPC_LABELS = ("grpc_service", "grpc_method", "grpc_type")


def registry() -> Registry:
    """A process's registry, with the process and platform collectors of prometheus-client (and no `_created`
    series: a sample per counter and histogram that dashboards do not use)."""
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    reg = Registry()
    prometheus_client.ProcessCollector(registry=reg)
    prometheus_client.PlatformCollector(registry=reg)
    return reg


@dataclasses.dataclass
class Endpoint:
    """The HTTP server exposing a registry on /metrics."""

    server: wsgiref.simple_server.WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server.server_port)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve(reg: Registry, host: str, port: int) -> Endpoint:
    """Serve the registry on http://host:port/metrics in a thread (port 0: a free one)."""
    server, thread = prometheus_client.start_http_server(port, addr=host, registry=reg)
    return Endpoint(server, thread)


def _split(full_method: str) -> tuple[str, str]:
    """("pkg.Service", "Method") of "/pkg.Service/Method"."""
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


class GrpcServerMetrics(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Counts and times every RPC a server handles, by service, method, type and status code."""

    def __init__(self, reg: Registry) -> None:
        self._started = prometheus_client.Counter(
            "grpc_server_started_total", "RPCs started on the server.", _GRPC_LABELS, registry=reg
        )
        self._handled = prometheus_client.Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, whatever their status.",
            (*_GRPC_LABELS, "grpc_code"),
            registry=reg,
        )
        self._seconds = prometheus_client.Histogram(
            "grpc_server_handling_seconds",
            "Time the server took to complete an RPC.",
            _GRPC_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:  # built once per method: the hot path only increments
            wrapped = self._wrapped[method] = self._wrap(method, handler)
        return wrapped

    def _wrap(self, full_method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        service, method = _split(full_method)
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            labels = (service, method, "unary")
            return grpc.unary_unary_rpc_method_handler(self._one(handler.unary_unary, labels), **codec)
        if handler.unary_stream is not None:
            labels = (service, method, "server_stream")
            return grpc.unary_stream_rpc_method_handler(self._many(handler.unary_stream, labels), **codec)
        if handler.stream_unary is not None:
            labels = (service, method, "client_stream")
            return grpc.stream_unary_rpc_method_handler(self._one(handler.stream_unary, labels), **codec)
        if handler.stream_stream is not None:
            labels = (service, method, "bidi_stream")
            return grpc.stream_stream_rpc_method_handler(self._many(handler.stream_stream, labels), **codec)
        return handler

    def _one(self, behavior: Callable[..., Awaitable[Any]], labels: tuple[str, str, str]) -> Callable[..., Any]:
        started, seconds = self._started.labels(*labels), self._seconds.labels(*labels)
        handled = _Codes(self._handled, labels)

        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started.inc()
            began = time.perf_counter()
            code = "OK"
            try:
                return await behavior(request, context)
            except BaseException as exc:
                code = _server_code(context, exc)
                raise
            finally:
                handled.inc(code)
                seconds.observe(time.perf_counter() - began)

        return wrapper

    def _many(self, behavior: Callable[..., Any], labels: tuple[str, str, str]) -> Callable[..., Any]:
        started, seconds = self._started.labels(*labels), self._seconds.labels(*labels)
        handled = _Codes(self._handled, labels)

        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started.inc()
            began = time.perf_counter()
            code = "OK"
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                code = _server_code(context, exc)
                raise
            finally:
                handled.inc(code)
                seconds.observe(time.perf_counter() - began)

        return wrapper


class _Codes:
    """The handled counter of one method, its children by status code made once each."""

    def __init__(self, counter: prometheus_client.Counter, labels: tuple[str, ...]) -> None:
        self._counter = counter
        self._labels = labels
        self._children: dict[str, Any] = {}

    def inc(self, code: str) -> None:
        child = self._children.get(code)
        if child is None:
            child = self._children[code] = self._counter.labels(*self._labels, code)
        child.inc()


def _server_code(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> str:
    """The status an RPC ended with after an exception: the one it aborted with, else CANCELLED or UNKNOWN."""
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


class GrpcClientMetrics:
    """The client side: grpc_client_started_total, grpc_client_handled_total and grpc_client_handling_seconds,
    through one interceptor per kind of RPC (`interceptors()` for grpc.aio channels)."""

    def __init__(self, reg: Registry) -> None:
        self.started = prometheus_client.Counter(
            "grpc_client_started_total", "RPCs started by the client.", _GRPC_LABELS, registry=reg
        )
        self.handled = prometheus_client.Counter(
            "grpc_client_handled_total",
            "RPCs completed by the client, whatever their status.",
            (*_GRPC_LABELS, "grpc_code"),
            registry=reg,
        )
        self.seconds = prometheus_client.Histogram(
            "grpc_client_handling_seconds",
            "Time from the start of an RPC to its status, on the client.",
            _GRPC_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._recording: set[asyncio.Future[None]] = set()  # tasks reading the status of completed calls

    def interceptors(self) -> list[Any]:
        """Interceptors recording every kind of RPC of a channel."""
        return [
            _UnaryUnary(self, "unary"),
            _UnaryStream(self, "server_stream"),
            _StreamUnary(self, "client_stream"),
            _StreamStream(self, "bidi_stream"),
        ]

    def begin(self, details: grpc.aio.ClientCallDetails, kind: str) -> tuple[tuple[str, str, str], float]:
        """Count a started RPC; its labels and start time."""
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        labels = (*_split(method), kind)
        self.started.labels(*labels).inc()
        return labels, time.perf_counter()

    def end(self, labels: tuple[str, str, str], began: float, code: str) -> None:
        """Count a completed RPC and its time."""
        self.handled.labels(*labels, code).inc()
        self.seconds.labels(*labels).observe(time.perf_counter() - began)

    def when_done(self, call: grpc.aio.Call, labels: tuple[str, str, str], began: float) -> None:
        """Record the RPC once it completed (streams: when the stream ends)."""

        async def record() -> None:
            code = await call.code()
            self.end(labels, began, code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN")

        def done(_: Any) -> None:
            task = asyncio.ensure_future(record())
            self._recording.add(task)
            task.add_done_callback(self._recording.discard)

        call.add_done_callback(done)


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, metrics: GrpcClientMetrics, kind: str) -> None:
        self._metrics, self._kind = metrics, kind

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        labels, began = self._metrics.begin(client_call_details, self._kind)
        call = await continuation(client_call_details, request)
        self._metrics.when_done(call, labels, began)
        return call


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, metrics: GrpcClientMetrics, kind: str) -> None:
        self._metrics, self._kind = metrics, kind

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        labels, began = self._metrics.begin(client_call_details, self._kind)
        call = await continuation(client_call_details, request)
        self._metrics.when_done(call, labels, began)
        return call


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, metrics: GrpcClientMetrics, kind: str) -> None:
        self._metrics, self._kind = metrics, kind

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        labels, began = self._metrics.begin(client_call_details, self._kind)
        call = await continuation(client_call_details, request_iterator)
        self._metrics.when_done(call, labels, began)
        return call


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, metrics: GrpcClientMetrics, kind: str) -> None:
        self._metrics, self._kind = metrics, kind

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        labels, began = self._metrics.begin(client_call_details, self._kind)
        call = await continuation(client_call_details, request_iterator)
        self._metrics.when_done(call, labels, began)
        return call


class Callback:
    """A collector whose families are made at scrape time by `collect` (gauges read from a database or a pool)."""

    def __init__(self, reg: Registry, collect: Callable[[], list[prometheus_client.Metric]]) -> None:
        self._collect = collect
        reg.register(self)

    def collect(self) -> list[prometheus_client.Metric]:
        """The families, now."""
        return self._collect()


class BulkHistogram:
    """A histogram observed many values at a time (a round's request→decision latencies): the values are binned
    with one vectorised search, not one locked observe() each. Exposed like prometheus-client's histograms."""

    def __init__(
        self, reg: Registry, name: str, documentation: str, labelnames: tuple[str, ...], buckets: tuple[float, ...]
    ) -> None:
        self._name = name
        self._doc = documentation
        self._labelnames = labelnames
        self._bounds = numpy.asarray(buckets, dtype=float)
        self._series: dict[tuple[str, ...], tuple[numpy.ndarray[Any, Any], list[float]]] = {}
        self._lock = threading.Lock()
        Callback(reg, self._families)

    def observe_many(self, labels: tuple[str, ...], values: Any) -> None:
        """Observe every value (a sequence or an array of floats) under these label values."""
        found = numpy.asarray(values, dtype=float)
        if found.size == 0:
            return
        per_bucket = numpy.bincount(
            numpy.searchsorted(self._bounds, found, side="left"), minlength=len(self._bounds) + 1
        )
        total = float(found.sum())
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = (numpy.zeros(len(self._bounds) + 1, dtype=numpy.int64), [0.0])
            series[0][:] += per_bucket
            series[1][0] += total

    def _families(self) -> list[prometheus_client.Metric]:
        family = prometheus_client.core.HistogramMetricFamily(self._name, self._doc, labels=list(self._labelnames))
        with self._lock:
            snapshot = [(labels, counts.copy(), total[0]) for labels, (counts, total) in self._series.items()]
        for labels, counts, total in snapshot:
            cumulative = numpy.cumsum(counts)
            buckets = [(_le(bound), float(cumulative[i])) for i, bound in enumerate(self._bounds)]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric(list(labels), buckets, total)
        return [family]


def _le(bound: float) -> str:
    """A bucket bound as prometheus-client writes it (0.005, 1.0, 10.0)."""
    return repr(float(bound))
