"""Liveness and readiness probes (not rate limited)."""

from __future__ import annotations

import asyncio

import fastapi
import grpc
from fastapi import responses
from grpc_health.v1 import health_pb2

from flashsale.gateway import deps, errors, schemas


async def _probe(ctx: deps.Context, backend: str) -> str:
    try:
        reply = await ctx.clients.health(backend).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=ctx.gateway.health_timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        return str(exc.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def router() -> fastapi.APIRouter:
    """The probe routes."""
    r = fastapi.APIRouter(tags=["health"])

    @r.get("/healthz")
    async def healthz() -> schemas.Health:
        """Liveness: the gateway process answers."""
        return schemas.Health(status="ok")

    @r.get("/readyz", responses={503: {"model": schemas.ErrorBody}})
    async def readyz(ctx: deps.Ctx) -> responses.JSONResponse:
        """Readiness: every backend's gRPC health service answers SERVING."""
        names = sorted(ctx.clients.channels)
        statuses = dict(zip(names, await asyncio.gather(*(_probe(ctx, n) for n in names)), strict=True))
        down = [name for name, status in statuses.items() if status != "SERVING"]
        if not down:
            return responses.JSONResponse(schemas.Health(status="ready", backends=statuses).model_dump())
        body = errors.error_body("UNAVAILABLE", "not ready: " + ", ".join(down))
        body["backends"] = statuses
        return responses.JSONResponse(body, status_code=503)

    return r
