"""Accounts and tokens: /v1/users, /v1/auth/login, /v1/me, the token keys (/.well-known/jwks.json)."""

from __future__ import annotations

from typing import Any

import fastapi

from flashsale.gateway import deps, mappers, schemas
from flashsale_api.v1 import user_pb2

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": schemas.ErrorBody} for status in (400, 401, 404, 409, 429, 503, 504)
}


def router() -> fastapi.APIRouter:
    """Routes of the user service."""
    r = fastapi.APIRouter(tags=["users"], responses=_ERRORS)

    @r.post("/v1/users", status_code=201, dependencies=[fastapi.Depends(deps.limit_by_ip)])
    async def register(body: schemas.RegisterIn, ctx: deps.Ctx) -> schemas.User:
        """Create an unverified account; a verification token is e-mailed."""
        request = user_pb2.RegisterRequest(email=body.email, password=body.password, phone=body.phone or "")
        return mappers.user(await ctx.clients.users.Register(request, timeout=ctx.timeout))

    @r.post("/v1/users/verify", dependencies=[fastapi.Depends(deps.limit_by_ip)])
    async def verify(body: schemas.VerifyIn, ctx: deps.Ctx) -> schemas.User:
        """Mark the account of a verification token verified."""
        request = user_pb2.VerifyEmailRequest(token=body.token)
        return mappers.user(await ctx.clients.users.VerifyEmail(request, timeout=ctx.timeout))

    @r.post("/v1/auth/login", dependencies=[fastapi.Depends(deps.limit_by_ip)])
    async def login(body: schemas.LoginIn, ctx: deps.Ctx) -> schemas.Token:
        """Exchange e-mail and password for a bearer token."""
        request = user_pb2.LoginRequest(email=body.email, password=body.password)
        return mappers.token(await ctx.clients.users.Login(request, timeout=ctx.timeout))

    @r.get("/.well-known/jwks.json", dependencies=[fastapi.Depends(deps.limit_by_ip)])
    async def jwks(ctx: deps.Ctx) -> dict[str, Any]:
        """The public keys access tokens are signed with (a JSON Web Key Set of Ed25519 keys)."""
        return await ctx.keys.jwks()

    @r.get("/v1/me")
    async def me(request: fastapi.Request, token: deps.Bearer, ctx: deps.Ctx) -> schemas.User:
        """The caller's account."""
        caller = await ctx.authenticate(request, token)
        reply = await ctx.clients.users.GetUser(user_pb2.GetUserRequest(user_id=caller.user_id), timeout=ctx.timeout)
        return mappers.user(reply)

    return r
