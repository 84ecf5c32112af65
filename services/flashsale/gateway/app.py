"""The FastAPI application: routes, error rendering, OpenAPI, and the lifespan that closes the clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import fastapi

from flashsale.common import metrics
from flashsale.common.settings import Settings
from flashsale.gateway import clients as gateway_clients
from flashsale.gateway import deps, errors, http_metrics, purchase_stream, ratelimit, token_keys
from flashsale.gateway.routes import catalog, health, notifications, shopping, users
from flashsale.gateway.settings import GatewaySettings

TITLE = "Flashsale API"


def create_app(
    settings: Settings,
    clients: gateway_clients.Clients,
    gateway: GatewaySettings,
    registry: metrics.Registry | None = None,
) -> fastapi.FastAPI:
    """The gateway app over already-open clients, which it closes when its lifespan ends; its metrics (HTTP and
    whatever else records into `registry`) are served on /metrics."""
    telemetry = http_metrics.HttpMetrics(registry if registry is not None else metrics.registry())
    context = deps.Context(
        settings=settings,
        gateway=gateway,
        clients=clients,
        limiter=ratelimit.TokenBucketLimiter(
            settings.gateway_rate_limit_per_s, settings.gateway_rate_burst, max_keys=gateway.rate_limit_max_keys
        ),
        telemetry=telemetry,
        keys=token_keys.TokenKeys(clients.users, gateway.rpc_timeout_s),
        purchases=purchase_stream.PurchaseStream(clients.sales),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: fastapi.FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            context.stopping.set()
            await context.purchases.close()
            await clients.close()

    app = fastapi.FastAPI(
        title=TITLE,
        version="1.0.0",
        description="REST/JSON entry point of the Flashsale platform. Errors are "
        '{"error": {"code": "<gRPC status name>", "message": "...", "field": "<name, when one is at fault>"}}.',
        lifespan=lifespan,
        # Traces come from OpenTelemetry's FastAPI instrumentation (common.tracing) and HTTP metrics from
        # http_metrics: FastAPI's own telemetry would make a second server span per request and looks up the
        # global providers (an os.environ read each while unconfigured) on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.context = context
    errors.install(app)
    # routes are matched in order, one regex each: the purchase, the route of a sale's crowd, is tried first
    for module in (shopping, health, users, catalog, notifications):
        app.include_router(module.router())

    @app.get("/metrics", include_in_schema=False)
    async def exposition() -> fastapi.Response:
        body, content_type = telemetry.exposition()
        return fastapi.Response(body, media_type=content_type)

    app.add_middleware(_Recorded, telemetry=telemetry)
    return app


class _Recorded:
    """Starlette middleware form of HttpMetrics.middleware."""

    def __init__(self, app: http_metrics.Asgi, telemetry: http_metrics.HttpMetrics) -> None:
        self._app = telemetry.middleware(app)

    async def __call__(self, scope: http_metrics.Scope, receive: http_metrics.Receive, send: http_metrics.Send) -> None:
        await self._app(scope, receive, send)
