"""What the routes share: the gateway context, caller authentication, the admin key and rate limits."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
from typing import Annotated, cast

import fastapi
import grpc
from fastapi import security

from flashsale.common import errors as domain_errors
from flashsale.common.settings import Settings
from flashsale.gateway import clients as gateway_clients
from flashsale.gateway import errors, http_metrics, purchase_stream, ratelimit, token_keys
from flashsale.gateway.settings import GatewaySettings
from flashsale_api.v1 import user_pb2

_BAD_TOKEN_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT)


@dataclasses.dataclass(frozen=True)
class Caller:
    """The user a valid bearer token belongs to."""

    user_id: str
    email: str
    verified: bool


@dataclasses.dataclass
class Context:
    """Everything a request handler needs, stored on app.state.context."""

    settings: Settings
    gateway: GatewaySettings
    clients: gateway_clients.Clients
    limiter: ratelimit.TokenBucketLimiter
    telemetry: http_metrics.HttpMetrics
    keys: token_keys.TokenKeys
    purchases: purchase_stream.PurchaseStream
    stopping: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    @property
    def timeout(self) -> float:
        """Deadline of an ordinary gRPC call, in seconds."""
        return self.gateway.rpc_timeout_s

    def charge(self, key: str) -> None:
        """Take one token from key's bucket or refuse with 429 and Retry-After."""
        wait = self.limiter.acquire(key)
        if wait > 0:
            self.telemetry.rate_limited()
            raise errors.ApiError(
                429,
                "RESOURCE_EXHAUSTED",
                "too many requests; slow down",
                headers={"Retry-After": ratelimit.retry_after_header(wait)},
            )

    async def authenticate(self, request: fastapi.Request, token: str) -> Caller:
        """Check a bearer token with the user service's public keys and charge the user's bucket; a token issued
        before the e-mail was verified is asked about to the user service, which reads the flag now.

        A refused token charges the client address instead, so guessing tokens is rate limited too.
        """
        try:
            claims = await self.keys.check(token)
        except domain_errors.Unauthenticated:
            self.charge(client_key(request))
            raise errors.unauthenticated("the bearer token is invalid or expired") from None
        if claims.verified:
            self.charge(f"user:{claims.user_id}")
            return Caller(user_id=claims.user_id, email=claims.email, verified=True)
        try:
            reply = await self.clients.users.ValidateToken(
                user_pb2.ValidateTokenRequest(token=token), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _BAD_TOKEN_CODES:
                raise
            self.charge(client_key(request))
            raise errors.unauthenticated("the bearer token is invalid or expired") from None
        self.charge(f"user:{reply.user_id}")
        return Caller(user_id=reply.user_id, email=reply.email, verified=reply.verified)


# The dependencies are coroutines: FastAPI runs a plain `def` dependency in its thread pool, two thread hops per
# request on the purchase path.


async def get_context(request: fastapi.Request) -> Context:
    """The gateway context of the app serving this request."""
    return cast(Context, request.app.state.context)


Ctx = Annotated[Context, fastapi.Depends(get_context)]

bearer_scheme = security.HTTPBearer(
    auto_error=False, bearerFormat="JWT", description="Access token from POST /v1/auth/login."
)
admin_scheme = security.APIKeyHeader(
    name="X-Admin-Key", auto_error=False, description="The operator key (FLASHSALE_ADMIN_API_KEY)."
)


async def bearer_token(
    credentials: Annotated[security.HTTPAuthorizationCredentials | None, fastapi.Depends(bearer_scheme)],
) -> str:
    """The bearer token of the request, or 401 when there is none (checked before the body, no RPC)."""
    if credentials is None or not credentials.credentials.strip():
        raise errors.unauthenticated("an Authorization: Bearer <token> header is required")
    return credentials.credentials.strip()


Bearer = Annotated[str, fastapi.Depends(bearer_token)]


def client_key(request: fastapi.Request) -> str:
    """The rate-limit key of an anonymous client: its address."""
    host = request.client.host if request.client else "unknown"
    return f"ip:{host}"


async def limit_by_ip(request: fastapi.Request, ctx: Ctx) -> None:
    """Charge the client address's bucket (anonymous endpoints)."""
    ctx.charge(client_key(request))


async def require_admin(
    request: fastapi.Request, ctx: Ctx, key: Annotated[str | None, fastapi.Depends(admin_scheme)]
) -> None:
    """Refuse unless X-Admin-Key equals the configured admin key (401 missing, 403 wrong)."""
    ctx.charge(client_key(request))
    if not key:
        raise errors.ApiError(401, "UNAUTHENTICATED", "the X-Admin-Key header is required")
    expected = ctx.gateway.admin_api_key.get_secret_value()
    if not hmac.compare_digest(key.encode(), expected.encode()):
        raise errors.ApiError(403, "PERMISSION_DENIED", "the X-Admin-Key header is wrong")
