"""The gateway's token keys: fetched once, a checked token remembered only until it expires, a rotated key fetched
again (a stand-in for the user service's GetSigningKeys: pure logic around the real token code)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from flashsale.common import access_tokens, errors
from flashsale.gateway import token_keys
from flashsale.user import tokens
from flashsale_api.v1 import user_pb2


class _Users:
    def __init__(self, issuer: tokens.TokenIssuer) -> None:
        self.issuer = issuer
        self.calls = 0

    async def GetSigningKeys(self, request: user_pb2.GetSigningKeysRequest, **_: float) -> user_pb2.SigningKeys:
        self.calls += 1
        return user_pb2.SigningKeys(jwks_json=json.dumps(self.issuer.jwks))


def _keys(users: _Users) -> token_keys.TokenKeys:
    stub: Any = users
    return token_keys.TokenKeys(stub, 1.0)


async def test_keys_are_fetched_once_and_a_checked_token_is_refused_once_it_expires() -> None:
    issuer = tokens.TokenIssuer("k" * 40, ttl_s=1)
    users = _Users(issuer)
    keys = _keys(users)
    token, claims = issuer.issue("u1", "a@example.com", True, int(time.time()))
    assert await keys.check(token) == claims
    assert await keys.check(token) == claims
    assert users.calls == 1
    await asyncio.sleep(max(0.0, claims.expires_at_s - time.time()) + 0.05)
    with pytest.raises(errors.Unauthenticated):
        await keys.check(token)  # remembered, but expired


async def test_a_token_of_a_rotated_key_is_checked_against_the_keys_fetched_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users = _Users(tokens.TokenIssuer("old secret " * 4, ttl_s=600))
    keys = _keys(users)
    first, _ = users.issuer.issue("u1", "a@example.com", True, int(time.time()))
    await keys.check(first)
    users.issuer = tokens.TokenIssuer("new secret " * 4, ttl_s=600)
    rotated, claims = users.issuer.issue("u2", "b@example.com", True, int(time.time()))
    with pytest.raises(access_tokens.UnknownSigningKey):
        await keys.check(rotated)  # fetched a moment ago: not again yet
    monkeypatch.setattr(token_keys, "REFRESH_S", 0.0)
    assert await keys.check(rotated) == claims and users.calls == 2
    with pytest.raises(errors.Unauthenticated):
        await keys.check(first)  # the old key is gone, and so is what it signed
