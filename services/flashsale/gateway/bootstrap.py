"""Wiring of the gateway process: settings, gRPC clients, the app, and uvicorn with graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator

import fastapi
import uvicorn
import uvloop

from flashsale.common import logs, metrics, process, tracing
from flashsale.common import settings as common_settings
from flashsale.common.settings import Settings
from flashsale.gateway import app as gateway_app
from flashsale.gateway import clients as gateway_clients
from flashsale.gateway import deps
from flashsale.gateway import settings as gateway_settings

log = logging.getLogger(__name__)


KEEP_ALIVE_S = 30  # idle keep-alive connections live longer than common client pools keep them


class _Server(uvicorn.Server):
    """uvicorn, telling the app to end its streams before it waits for open connections."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None], handle_signals: bool) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown
        self._handle_signals = handle_signals

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield


def _server(app: fastapi.FastAPI, gateway: gateway_settings.GatewaySettings, *, in_process: bool) -> _Server:
    context: deps.Context = app.state.context
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=not in_process,
        timeout_graceful_shutdown=int(gateway.shutdown_grace_s) or None,
        timeout_keep_alive=KEEP_ALIVE_S,
        host=context.settings.gateway_host,
        port=context.settings.gateway_port,
        # the client's address from X-Forwarded-For only on a connection from a trusted proxy (uvicorn would
        # otherwise trust 127.0.0.1 by default)
        proxy_headers=bool(gateway.gateway_trusted_proxies),
        forwarded_allow_ips=[str(net) for net in gateway.gateway_trusted_proxies],
    )
    return _Server(config, context.stopping.set, handle_signals=not in_process)


class GatewayServer:
    """The gateway served by uvicorn in a task of the running loop, for tests and embedding.

    Use `async with build(settings, gateway) as server:` then talk to `server.url`.
    """

    def __init__(self, settings: Settings, gateway: gateway_settings.GatewaySettings, host: str, port: int) -> None:
        self.settings = settings
        self.gateway = gateway
        self.host = host
        self.port = port
        self.app: fastapi.FastAPI | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Base URL of the running gateway."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Open the clients, bind the port and serve until stop()."""
        self.app = assemble(self.settings, self.gateway)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = _server(self.app, self.gateway, in_process=True)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the gateway stopped during startup")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Shut down gracefully: end streams, finish open requests, close the clients."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server = self._task = None

    async def __aenter__(self) -> GatewayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def assemble(settings: Settings, gateway: gateway_settings.GatewaySettings) -> fastapi.FastAPI:
    """The gateway app with its clients open and its metrics (HTTP, and gRPC on its clients) in one registry."""
    registry = metrics.registry()
    interceptors = [*metrics.GrpcClientMetrics(registry).interceptors(), *tracing.grpc_client_interceptors()]
    clients = gateway_clients.open_clients(settings, interceptors)
    app = gateway_app.create_app(settings, clients, gateway, registry)
    tracing.instrument_http(app)
    return app


def build(
    settings: Settings,
    gateway: gateway_settings.GatewaySettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
) -> GatewayServer:
    """An in-process gateway on host:port (0 = a free port); gateway settings default to the environment."""
    return GatewayServer(settings, gateway or gateway_settings.load_gateway_settings(), host, port)


def _load() -> tuple[Settings, gateway_settings.GatewaySettings]:
    return common_settings.load_settings(), gateway_settings.load_gateway_settings()


async def _serve(config: tuple[Settings, gateway_settings.GatewaySettings]) -> None:
    settings, gateway = config
    logs.configure_logging("gateway", settings.log_level, settings.log_format)
    stop_tracing = tracing.configure("gateway")
    log.info("starting", extra={"host": settings.gateway_host, "port": settings.gateway_port})
    try:
        await serve(settings, gateway)
    finally:
        stop_tracing()


async def serve(settings: Settings, gateway: gateway_settings.GatewaySettings) -> None:
    """Serve on settings.gateway_host:gateway_port until SIGTERM/SIGINT, then shut down gracefully."""
    await _server(assemble(settings, gateway), gateway, in_process=False).serve()


def main() -> None:
    """Run the gateway until SIGTERM or SIGINT (exit 2 naming the variable on a bad setting)."""
    process.main("gateway", _load, _serve, run=uvloop.run)
