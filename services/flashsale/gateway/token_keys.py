"""The user service's public token keys as the gateway holds them: fetched on first use, fetched again when a token
names a key not held (keys rotated with the JWT secret), at most once per REFRESH_S. A token that checked out is
remembered until it expires (the last CACHED ones), so a shopper's repeated requests cost one signature check."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from typing import Any

from flashsale.common import access_tokens
from flashsale_api.v1 import user_pb2, user_pb2_grpc

REFRESH_S = 10.0
CACHED = 50_000


class TokenKeys:
    """Checks access tokens in the gateway with the keys of the user service's JWKS."""

    def __init__(self, users: user_pb2_grpc.UserServiceAsyncStub, timeout_s: float) -> None:
        self._users = users
        self._timeout_s = timeout_s
        self._jwks: dict[str, Any] = {"keys": []}
        self._verifier: access_tokens.TokenVerifier | None = None
        self._fetched_at = -REFRESH_S
        self._lock = asyncio.Lock()
        self._checked: collections.OrderedDict[str, access_tokens.Claims] = collections.OrderedDict()

    async def _fetch(self) -> access_tokens.TokenVerifier:
        async with self._lock:
            if self._verifier is None or time.monotonic() - self._fetched_at >= REFRESH_S:
                reply = await self._users.GetSigningKeys(user_pb2.GetSigningKeysRequest(), timeout=self._timeout_s)
                self._jwks = json.loads(reply.jwks_json)
                fetched = access_tokens.TokenVerifier(self._jwks)
                if self._verifier is not None and fetched.key_ids != self._verifier.key_ids:
                    self._checked.clear()  # a key withdrawn: what it signed is checked again
                self._verifier = fetched
                self._fetched_at = time.monotonic()
            return self._verifier

    async def jwks(self) -> dict[str, Any]:
        """The key set (fetched if it never was)."""
        if self._verifier is None:
            await self._fetch()
        return self._jwks

    async def check(self, token: str) -> access_tokens.Claims:
        """The claims of a valid token (errors.Unauthenticated otherwise); no call once the keys are held."""
        known = self._checked.get(token)
        if known is not None and known.expires_at_s > time.time():
            return known
        verifier = self._verifier or await self._fetch()
        try:
            claims = verifier.check(token)
        except access_tokens.UnknownSigningKey:
            if time.monotonic() - self._fetched_at < REFRESH_S:
                raise
            claims = (await self._fetch()).check(token)
        self._checked[token] = claims
        if len(self._checked) > CACHED:
            self._checked.popitem(last=False)
        return claims
