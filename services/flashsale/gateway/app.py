"""The FastAPI application: routes, error rendering, OpenAPI, and the lifespan that closes the clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import fastapi

from flashsale.common.settings import Settings
from flashsale.gateway import clients as gateway_clients
from flashsale.gateway import deps, errors, ratelimit
from flashsale.gateway.routes import catalog, health, notifications, shopping, users
from flashsale.gateway.settings import GatewaySettings

TITLE = "Flashsale API"


def create_app(settings: Settings, clients: gateway_clients.Clients, gateway: GatewaySettings) -> fastapi.FastAPI:
    """The gateway app over already-open clients, which it closes when its lifespan ends."""
    context = deps.Context(
        settings=settings,
        gateway=gateway,
        clients=clients,
        limiter=ratelimit.TokenBucketLimiter(
            settings.gateway_rate_limit_per_s, settings.gateway_rate_burst, max_keys=gateway.rate_limit_max_keys
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: fastapi.FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            context.stopping.set()
            await clients.close()

    app = fastapi.FastAPI(
        title=TITLE,
        version="1.0.0",
        description="REST/JSON entry point of the Flashsale platform. Errors are "
        '{"error": {"code": "<gRPC status name>", "message": "...", "field": "<name, when one is at fault>"}}.',
        lifespan=lifespan,
    )
    app.state.context = context
    errors.install(app)
    for module in (health, users, catalog, shopping, notifications):
        app.include_router(module.router())
    return app
