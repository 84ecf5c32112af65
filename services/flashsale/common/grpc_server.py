"""Runs a grpc.aio server with health, reflection, domain-error mapping and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from flashsale.common import errors, metrics, tracing

log = logging.getLogger(__name__)

Registrar = Callable[[grpc.aio.Server], None]
ShutdownHook = Callable[[], Coroutine[Any, Any, None]]


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    """Answer a refused request with its status: the DomainError's own, or UNAVAILABLE for a temporary failure."""
    if isinstance(exc, errors.DomainError):
        await context.abort(grpc.StatusCode[exc.status], exc.detail(), trailing_metadata=(("field", exc.field),))
    await context.abort(grpc.StatusCode.UNAVAILABLE, f"temporarily unavailable, retry: {exc}")


def _wrap_unary_response(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap a unary-unary or stream-unary behaviour (one response)."""

    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except (errors.DomainError, errors.TemporaryError) as exc:
            await _abort(context, exc)

    return wrapper


def _wrap_stream_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a unary-stream or stream-stream behaviour (an async iterator of responses)."""

    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            async for item in behavior(request, context):
                yield item
        except (errors.DomainError, errors.TemporaryError) as exc:
            await _abort(context, exc)

    return wrapper


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Turns a DomainError raised by a servicer into its gRPC status (the field in the trailers), and a
    TemporaryError (database or broker unreachable) into UNAVAILABLE, for every kind of RPC."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(_wrap_unary_response(handler.unary_unary), **codec)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(_wrap_stream_response(handler.unary_stream), **codec)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(_wrap_unary_response(handler.stream_unary), **codec)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(_wrap_stream_response(handler.stream_stream), **codec)
        return handler


# gRPC core cancels calls that wait for the application beyond 1,000 pending (its default), which a crowd
# arriving in the same second exceeds while each call is cheap to serve: queue up to these bounds instead.
_SERVER_OPTIONS = (
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
)


class BackgroundTaskFailed(RuntimeError):
    """A background task of the server ended with an error; the process should end (and be restarted)."""


class GrpcService:
    """One process's gRPC server plus the background tasks and shutdown hooks around it."""

    def __init__(
        self,
        name: str,
        address: str,
        service_names: Sequence[str],
        registry: metrics.Registry | None = None,
        *,
        record: bool = True,
    ) -> None:
        self.name = name
        self.address = address
        self.service_names = list(service_names)
        self.registry = registry if registry is not None else metrics.Registry()
        # the metrics interceptor (when recording) outermost, then the server span, both around the errors' status
        interceptors: list[Any] = [metrics.GrpcServerMetrics(self.registry)] if record else []
        interceptors += [*tracing.grpc_server_interceptors(), DomainErrorInterceptor()]
        self.server = grpc.aio.server(interceptors=interceptors, options=_SERVER_OPTIONS)
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._shutdown: list[ShutdownHook] = []
        self.port = 0
        self._tasks: list[asyncio.Task[None]] = []

    def register(self, registrar: Registrar) -> None:
        """Add a servicer to the server."""
        registrar(self.server)

    def add_background(self, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a coroutine for the life of the server; it is cancelled at shutdown."""
        self._background.append(factory)

    def on_shutdown(self, hook: ShutdownHook, *, first: bool = False) -> None:
        """Run a hook after the server stopped taking requests (in registration order, or before the others)."""
        if first:
            self._shutdown.insert(0, hook)
        else:
            self._shutdown.append(hook)

    async def start(self) -> None:
        """Bind, start serving and mark every service SERVING."""
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self.server)
        self.port = self.server.add_insecure_port(self.address)
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC address {self.address}")
        await self.server.start()
        for name in ["", *self.service_names]:
            await _set_status(self.health, name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"address": self.address, "port": self.port})

    async def stop(self, grace: float = 5.0) -> None:
        """Mark NOT_SERVING, drain in-flight calls, then run the shutdown hooks."""
        for name in ["", *self.service_names]:
            await _set_status(self.health, name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
        for hook in self._shutdown:
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")
        log.info("stopped")

    async def start_all(self) -> None:
        """Start serving and launch the background tasks."""
        await self.start()
        self._tasks = [asyncio.create_task(factory()) for factory in self._background]

    async def stop_all(self) -> None:
        """Cancel the background tasks and shut down gracefully."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.stop()

    async def __aenter__(self) -> GrpcService:
        await self.start_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_all()

    async def run_until_signalled(self) -> None:
        """Serve until SIGTERM or SIGINT, then shut down gracefully; when a background task fails, shut down and
        exit with an error (so a supervisor restarts the process)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start_all()
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not waiter and not t.cancelled() and t.exception() is not None]
        for task in failed:
            log.error("background task failed", exc_info=task.exception())
        waiter.cancel()
        await self.stop_all()
        if failed:
            raise BackgroundTaskFailed(f"{self.name}: a background task failed: {failed[0].exception()}")


async def _set_status(servicer: Any, name: str, status: Any) -> None:
    result = servicer.set(name, status)
    if asyncio.iscoroutine(result):
        await result
