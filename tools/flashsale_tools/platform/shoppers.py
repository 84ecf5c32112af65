"""Simulated shoppers talking to the REST gateway like a client app would (the demo, the gateway load test and
the end-to-end tests)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import httpx

from flashsale_tools.platform import mailcatcher

_TOKEN = re.compile(r"Verification token:\s*(\S+)")


class ShopperError(Exception):
    """A shopper's step failed (the message says which)."""


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One purchase attempt as the shopper saw it."""

    user: str
    request_id: str
    quantity: int
    outcome: str  # "ACCEPTED", "SOLD_OUT", "LIMIT_EXCEEDED", ... or "ERROR"
    latency_ms: float


@dataclasses.dataclass
class Shopper:
    """One simulated shopper and what it learned."""

    email: str
    password: str
    user_id: str = ""
    access_token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header for the gateway."""
        return {"Authorization": f"Bearer {self.access_token}"}


def _check(resp: httpx.Response, step: str, *ok: int) -> dict[str, Any]:
    if resp.status_code not in (ok or (200,)):
        raise ShopperError(f"{step}: HTTP {resp.status_code} {resp.text[:300]}")
    body: dict[str, Any] = resp.json()
    return body


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, str], attempts: int = 20) -> httpx.Response:
    """POST as a client app would: a 429 (the gateway's per-address budget) waits its Retry-After, then again."""
    for _ in range(attempts - 1):
        resp = await client.post(path, json=body)
        if resp.status_code != 429:
            return resp
        await asyncio.sleep(min(5.0, float(resp.headers.get("Retry-After", "1"))))
    return await client.post(path, json=body)


async def onboard(client: httpx.AsyncClient, mail: mailcatcher.Inbox, shopper: Shopper) -> None:
    """Register, read the verification token from the e-mail the SMTP server received, verify, log in (each step
    waiting out the gateway's rate limit like a client app)."""
    body = _check(
        await _post(client, "/v1/users", {"email": shopper.email, "password": shopper.password}), "register", 201
    )
    shopper.user_id = str(body["user_id"])
    message = await asyncio.to_thread(mail.wait_for, shopper.email, "Verify", 60.0)
    found = _TOKEN.search(message.body)
    if not found:
        raise ShopperError(f"no verification token in the e-mail to {shopper.email}")
    _check(await _post(client, "/v1/users/verify", {"token": found.group(1)}), "verify")
    login = _check(
        await _post(client, "/v1/auth/login", {"email": shopper.email, "password": shopper.password}), "login"
    )
    shopper.access_token = str(login["access_token"])


async def onboard_crowd(
    client: httpx.AsyncClient,
    mail: mailcatcher.Inbox,
    names: Sequence[str],
    on_done: Callable[[int], None] = lambda n: None,
    at_once: int = 32,
) -> dict[str, Shopper]:
    """A verified, logged-in shopper for each name (`at_once` onboarding at a time), keyed by name."""
    gate = asyncio.Semaphore(at_once)
    crowd = {name: Shopper(f"{name}@loadtest.flashsale.local", f"pw-{name}-load!") for name in names}

    async def one(shopper: Shopper) -> None:
        async with gate:
            await onboard(client, mail, shopper)
            on_done(1)

    await asyncio.gather(*(one(s) for s in crowd.values()))
    return crowd


async def buy(session: aiohttp.ClientSession, sale_id: str, shopper: Shopper, quantity: int = 1) -> Attempt:
    """One purchase attempt, timed from request to decision (aiohttp: a crowd costs the client little CPU)."""
    request_id = uuid.uuid4().hex
    started = time.perf_counter()
    try:
        async with session.post(
            f"/v1/sales/{sale_id}/purchases",
            json={"quantity": quantity, "request_id": request_id},
            headers=shopper.headers,
        ) as resp:
            body = await resp.json()
            outcome = str(body.get("outcome", "ERROR")) if resp.status in (201, 202, 409) else "ERROR"
        while outcome == "PENDING":  # taken, not decided within the gateway's wait: ask again
            await asyncio.sleep(0.1)
            async with session.get(f"/v1/purchases/{request_id}", headers=shopper.headers) as resp:
                body = await resp.json()
                outcome = str(body.get("outcome", "ERROR")) if resp.status == 200 else "ERROR"
    except (aiohttp.ClientError, TimeoutError, ValueError):
        outcome = "ERROR"
    latency = (time.perf_counter() - started) * 1000
    return Attempt(shopper.email, request_id, quantity, outcome, latency)


def crowd_session(base_url: str, connections: int = 500) -> aiohttp.ClientSession:
    """An HTTP session sized for a crowd arriving at once."""
    return aiohttp.ClientSession(
        base_url=base_url,
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def order_of(
    client: httpx.AsyncClient, shopper: Shopper, request_id: str, within_s: float = 30.0
) -> dict[str, Any]:
    """Wait until the order of an accepted purchase exists and return it."""
    deadline = time.monotonic() + within_s
    while True:
        body = _check(
            await client.get("/v1/orders", params={"request_id": request_id}, headers=shopper.headers), "list orders"
        )
        orders: list[dict[str, Any]] = body.get("orders", [])
        if orders:
            return orders[0]
        if time.monotonic() > deadline:
            raise ShopperError(f"no order for accepted request {request_id} within {within_s}s")
        await asyncio.sleep(0.2)


async def wait_for_status(
    client: httpx.AsyncClient, shopper: Shopper, order_id: str, status: str, within_s: float
) -> dict[str, Any]:
    """Poll an order until it reaches a status."""
    deadline = time.monotonic() + within_s
    while True:
        order = _check(await client.get(f"/v1/orders/{order_id}", headers=shopper.headers), "get order")
        if order.get("status") == status:
            return order
        if time.monotonic() > deadline:
            raise ShopperError(f"order {order_id} is {order.get('status')}, not {status}, after {within_s}s")
        await asyncio.sleep(0.25)
