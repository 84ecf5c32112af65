"""A shopper's whole journey through the gateway, and a crowd buying at once, on the running platform."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import uuid
from typing import Any

import grpc
import httpx
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from waiting import eventually

from flashsale_tools.platform import shoppers, supervisor

pytestmark = pytest.mark.e2e


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC).isoformat().replace("+00:00", "Z")


async def _sale(client: httpx.AsyncClient, admin_key: str, stock: int, limit: int, starts_in: float) -> str:
    admin = {"X-Admin-Key": admin_key}
    product = await client.post("/v1/products", json={"name": "Drop", "base_price_cents": 5000}, headers=admin)
    assert product.status_code == 201, product.text
    starts = time.time() + starts_in
    sale = await client.post(
        "/v1/sales",
        json={
            "product_id": product.json()["product_id"],
            "price_cents": 2500,
            "stock": stock,
            "per_user_limit": limit,
            "starts_at": _iso(starts),
            "ends_at": _iso(starts + 300),
        },
        headers=admin,
    )
    assert sale.status_code == 201, sale.text
    await asyncio.sleep(max(0.0, starts - time.time()))
    return str(sale.json()["sale_id"])


async def _collect_sse(client: httpx.AsyncClient, token: str, into: list[dict[str, Any]], ready: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with client.stream("GET", "/v1/notifications/stream", headers=headers, timeout=None) as resp:
        assert resp.status_code == 200
        ready.set()
        event = ""
        async for line in resp.aiter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                into.append({"event": event, "data": json.loads(line.removeprefix("data:").strip())})


async def test_register_verify_login_buy_pay_and_get_notified(platform: supervisor.LocalPlatform) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as client:
        shopper = shoppers.Shopper(f"ann-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery")
        await shoppers.onboard(client, platform.mail, shopper)
        received: list[dict[str, Any]] = []
        ready = asyncio.Event()
        stream = asyncio.create_task(_collect_sse(client, shopper.access_token, received, ready))
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.sleep(1.0)  # the live consumer joins its group before the first event

        sale_id = await _sale(client, platform.admin_key, stock=5, limit=1, starts_in=0.5)
        async with shoppers.crowd_session(platform.gateway_url) as session:
            attempt = await shoppers.buy(session, sale_id, shopper)
        assert attempt.outcome == "ACCEPTED"
        order = await shoppers.order_of(client, shopper, attempt.request_id)
        assert order["status"] == "PENDING_PAYMENT"
        paid = await client.post(
            f"/v1/orders/{order['order_id']}/pay", json={"payment_token": "tok_visa"}, headers=shopper.headers
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["status"] == "PAID"

        # the notification service mails after it consumed order.paid: wait for that mail, not for any mail
        mail = await asyncio.to_thread(platform.mail.wait_for, shopper.email, "Payment received", 30.0)
        assert mail is not None
        await eventually(
            lambda: received,
            until=lambda got: any(e["event"] == "order.paid" for e in got),
            within_s=30,
            every_s=0.2,
            what="order.paid on the SSE stream",
        )
        stream.cancel()
        paid_mails = [
            m for m in platform.mail.messages if shopper.email in m.recipients and m.subject == "Payment received"
        ]
        assert paid_mails, [m.subject for m in platform.mail.messages if shopper.email in m.recipients]


async def test_crowd_buys_exactly_the_stock_and_every_acceptance_becomes_one_order(
    platform: supervisor.LocalPlatform,
) -> None:
    stock, crowd_size = 15, 60
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=60, limits=limits) as client:
        crowd = [
            shoppers.Shopper(f"c{i}-{uuid.uuid4().hex[:8]}@example.com", "long enough pw") for i in range(crowd_size)
        ]
        await asyncio.gather(*(shoppers.onboard(client, platform.mail, s) for s in crowd))
        sale_id = await _sale(client, platform.admin_key, stock=stock, limit=1, starts_in=1.0)
        # every shopper fires twice at once with different request ids, and retries one of them
        async with shoppers.crowd_session(platform.gateway_url) as session:
            first = [shoppers.buy(session, sale_id, s) for s in crowd]
            second = [shoppers.buy(session, sale_id, s) for s in crowd]
            attempts = await asyncio.gather(*first, *second)
        accepted = [a for a in attempts if a.outcome == "ACCEPTED"]
        assert len(accepted) == stock
        assert not [a for a in attempts if a.outcome == "ERROR"]
        owners = [a.user for a in accepted]
        assert len(set(owners)) == len(owners), "a shopper got more than the limit"
        by_email = {s.email: s for s in crowd}
        orders = [await shoppers.order_of(client, by_email[a.user], a.request_id) for a in accepted]
        assert len({o["order_id"] for o in orders}) == stock
        stats = (await client.get(f"/v1/sales/{sale_id}/stats")).json()
        # orders may expire meanwhile (short payment window): their stock is back, never more
        assert int(stats["reserved"]) + int(stats["released"]) == stock
        assert int(stats["remaining"]) == int(stats["released"])


def test_every_service_lists_itself_through_server_reflection(platform: supervisor.LocalPlatform) -> None:
    expected = {
        "user": "flashsale.v1.UserService",
        "product": "flashsale.v1.ProductService",
        "sales": "flashsale.v1.SalesService",
        "order": "flashsale.v1.OrderService",
        "notification": "flashsale.v1.NotificationService",
    }
    for name, service in expected.items():
        with grpc.insecure_channel(f"127.0.0.1:{platform.ports[name]}") as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            listed = {s.name for reply in replies for s in reply.list_services_response.service}
        assert service in listed, (name, listed)
        assert "grpc.health.v1.Health" in listed
