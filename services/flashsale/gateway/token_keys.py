"""The user service's public token keys as the gateway holds them: fetched on first use, fetched again when a token
names a key not held (keys rotated with the JWT secret), at most once per REFRESH_S."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from flashsale.common import access_tokens
from flashsale_api.v1 import user_pb2, user_pb2_grpc

REFRESH_S = 10.0


class TokenKeys:
    """Checks access tokens in the gateway with the keys of the user service's JWKS."""

    def __init__(self, users: user_pb2_grpc.UserServiceAsyncStub, timeout_s: float) -> None:
        self._users = users
        self._timeout_s = timeout_s
        self._jwks: dict[str, Any] = {"keys": []}
        self._verifier: access_tokens.TokenVerifier | None = None
        self._fetched_at = -REFRESH_S
        self._lock = asyncio.Lock()

    async def _fetch(self) -> access_tokens.TokenVerifier:
        async with self._lock:
            if self._verifier is None or time.monotonic() - self._fetched_at >= REFRESH_S:
                reply = await self._users.GetSigningKeys(user_pb2.GetSigningKeysRequest(), timeout=self._timeout_s)
                self._jwks = json.loads(reply.jwks_json)
                self._verifier = access_tokens.TokenVerifier(self._jwks)
                self._fetched_at = time.monotonic()
            return self._verifier

    async def jwks(self) -> dict[str, Any]:
        """The key set (fetched if it never was)."""
        if self._verifier is None:
            await self._fetch()
        return self._jwks

    async def check(self, token: str) -> access_tokens.Claims:
        """The claims of a valid token (errors.Unauthenticated otherwise); no call once the keys are held."""
        verifier = self._verifier or await self._fetch()
        try:
            return verifier.check(token)
        except access_tokens.UnknownSigningKey:
            if time.monotonic() - self._fetched_at < REFRESH_S:
                raise
        return (await self._fetch()).check(token)
