"""The shopping of the observability tests: shoppers onboarded through the gateway, a small sale sold out with
one purchase traced by the test itself, an order paid, a bad request, and a crowd buying from an open sale."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from flashsale_tools.platform import shoppers, supervisor

WORKER = "sales-worker-1"  # the platform's only sales worker process
SHOPPERS = 8
OFFERED_PER_S = 40  # purchase requests the background crowd sends each second


@dataclasses.dataclass
class Shop:
    """What the module's shoppers did: the sales, the crowd, and one traced purchase."""

    platform: supervisor.LocalPlatform
    crowd: list[shoppers.Shopper]
    small_sale: str  # sold out by the crowd: accepted and sold-out decisions, orders, paid ones
    open_sale: str  # plenty of stock: the background crowd buys from it all along
    trace_id: str  # of the purchase sent with a traceparent of the test's own
    traced_request: str
    outcomes: dict[str, int]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


async def _open_sale(client: httpx.AsyncClient, admin: dict[str, str], product: str, stock: int, limit: int) -> str:
    starts = time.time() + 1.0
    body = shoppers._check(
        await client.post(
            "/v1/sales",
            json={
                "product_id": product,
                "price_cents": 900,
                "stock": stock,
                "per_user_limit": limit,
                "starts_at": _iso(starts),
                "ends_at": _iso(starts + 3600),
            },
            headers=admin,
        ),
        "create sale",
        201,
    )
    await asyncio.sleep(max(0.0, starts - time.time()) + 0.2)
    return str(body["sale_id"])


async def shop_once(platform: supervisor.LocalPlatform) -> Shop:
    """Onboard the shoppers, sell a small sale out (one purchase with the test's traceparent), pay an order, send
    a bad request, and open a sale with plenty of stock."""
    admin = {"X-Admin-Key": platform.admin_key}
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=60.0) as client:
        product = shoppers._check(
            await client.post("/v1/products", json={"name": "Observed drop", "base_price_cents": 1900}, headers=admin),
            "create product",
            201,
        )["product_id"]
        run = secrets.token_hex(3)
        crowd = [
            shoppers.Shopper(f"watcher{i}-{run}@observe.flashsale.local", f"pw-{i}-secret!") for i in range(SHOPPERS)
        ]
        await asyncio.gather(*(shoppers.onboard(client, platform.mail, s) for s in crowd))

        small = await _open_sale(client, admin, product, stock=3, limit=1)
        trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
        request_id = secrets.token_hex(16)
        first = await client.post(
            f"/v1/sales/{small}/purchases",
            json={"quantity": 1, "request_id": request_id},
            headers={**crowd[0].headers, "traceparent": f"00-{trace_id}-{parent}-01"},
        )
        assert first.status_code == 201 and first.json()["outcome"] == "ACCEPTED", first.text
        async with shoppers.crowd_session(platform.gateway_url) as session:
            attempts = await asyncio.gather(*(shoppers.buy(session, small, s) for s in crowd[1:]))
        outcomes: dict[str, int] = {}
        for attempt in attempts:
            outcomes[attempt.outcome] = outcomes.get(attempt.outcome, 0) + 1
        order = await shoppers.order_of(client, crowd[0], request_id)
        paid = await client.post(
            f"/v1/orders/{order['order_id']}/pay", json={"payment_token": "tok_visa"}, headers=crowd[0].headers
        )
        shoppers._check(paid, "pay")
        bad = await client.post(f"/v1/sales/{small}/purchases", json={"quantity": 0}, headers=crowd[1].headers)
        assert bad.status_code == 400, bad.text  # a 4xx series for the HTTP panels

        opened = await _open_sale(client, admin, product, stock=1_000_000, limit=1000)
    return Shop(platform, crowd, small, opened, trace_id, request_id, outcomes)


class Crowd:
    """Shoppers buying one unit each from a sale, OFFERED_PER_S requests a second, in a thread of their own,
    without waiting for decisions (the gateway answers 202 when a decision takes longer than its wait)."""

    def __init__(self, shop: Shop) -> None:
        self._shop = shop
        self._stop = threading.Event()
        self.sent = 0
        self.failed: list[str] = []
        self._thread = threading.Thread(target=self._run, name="observed-crowd", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        asyncio.run(self._buy())

    async def _buy(self) -> None:
        url = f"/v1/sales/{self._shop.open_sale}/purchases"
        pending: set[asyncio.Task[Any]] = set()
        async with httpx.AsyncClient(base_url=self._shop.platform.gateway_url, timeout=30.0) as client:

            async def one(shopper: shoppers.Shopper) -> None:
                body = {"quantity": 1, "request_id": secrets.token_hex(16)}
                try:
                    answer = await client.post(url, json=body, headers=shopper.headers)
                    if answer.status_code not in (201, 202, 409):
                        self.failed.append(f"{answer.status_code} {answer.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failed.append(repr(exc))

            tick = len(self._shop.crowd) / OFFERED_PER_S
            while not self._stop.is_set():
                for shopper in self._shop.crowd:
                    task = asyncio.ensure_future(one(shopper))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    self.sent += 1
                await asyncio.sleep(tick)
            if pending:
                await asyncio.wait(pending, timeout=20)
