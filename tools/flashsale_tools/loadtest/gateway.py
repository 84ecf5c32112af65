"""`flashsale loadtest --via gateway`: the schedule sent through the REST gateway the way shoppers' apps send it.
Every simulated shopper is registered, verified with the token of the e-mail the platform sent, and logged in;
every planned request is a `POST /v1/sales/{id}/purchases` with the shopper's bearer token and the request's id, at
its planned time (each one waits for its decision, as the gateway does). The sale is made with the admin key, or is
one that exists already (a FlashSale's, made by the operator), read from the public API; the load test waits on the
sale's public stats until every request is decided."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import httpx
from rich import console as rich_console

from flashsale.common import timeutil
from flashsale.common.settings import Settings
from flashsale_tools.loadtest import profile, runner, sender
from flashsale_tools.platform import mailcatcher, shoppers
from flashsale_tools.verify import rules

ONBOARDING = 32  # shoppers onboarded at once
CONNECTIONS = 400  # purchases in flight at once (keep-alive connections to the gateway)
TAKEN = (201, 202, 409)  # decided (accepted, rejected) or queued: the request reached the log


@dataclasses.dataclass(frozen=True)
class ExistingSale:
    """A sale made by somebody else (the operator, for a FlashSale): its id, the terms it was made with and when it
    opens."""

    sale_id: str
    terms: runner.SaleTerms
    opens_ms: int


@dataclasses.dataclass(frozen=True)
class GatewayTarget:
    """The gateway, its admin key, the inbox of the platform's e-mails, the checker's settings, and the id of the
    sale to load when it exists already (empty: the load test makes one)."""

    url: str
    admin_key: str
    inbox: mailcatcher.Inbox
    settings: Settings
    wait_orders: bool
    sale_id: str = ""


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat()


async def create_sale(client: httpx.AsyncClient, admin_key: str, terms: runner.SaleTerms) -> tuple[str, int]:
    """A product and a sale of it opening `lead_s` from now, through the admin API: (sale id, opening ms)."""
    admin = {"X-Admin-Key": admin_key}
    made = await client.post("/v1/products", json={"name": "Load test item", "base_price_cents": 19_900}, headers=admin)
    if made.status_code != 201:
        raise runner.LoadTestError(f"cannot create the product: HTTP {made.status_code} {made.text[:300]}")
    starts = timeutil.now_ms() + round(terms.lead_s * 1000)
    sale = await client.post(
        "/v1/sales",
        json={
            "product_id": made.json()["product_id"],
            "price_cents": terms.price_cents,
            "stock": terms.stock,
            "per_user_limit": terms.limit,
            "starts_at": _iso(starts),
            "ends_at": _iso(starts + round(terms.open_s * 1000)),
            "partitions": terms.partitions,
            "reserve": terms.reserve,
        },
        headers=admin,
    )
    if sale.status_code != 201:
        raise runner.LoadTestError(f"cannot create the sale: HTTP {sale.status_code} {sale.text[:300]}")
    return str(sale.json()["sale_id"]), starts


def _ms(rfc3339: str) -> int:
    return round(datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def existing_sale(url: str, sale_id: str) -> ExistingSale:
    """A sale that exists already, read from the gateway's public API; refused once it has ended."""
    with httpx.Client(base_url=url, timeout=30.0) as client:
        try:
            sale = client.get(f"/v1/sales/{sale_id}")
            stats = client.get(f"/v1/sales/{sale_id}/stats")
        except httpx.HTTPError as exc:
            raise runner.LoadTestError(f"cannot reach the gateway at {url}: {exc}") from exc
    for answer in (sale, stats):
        if answer.status_code != 200:
            raise runner.LoadTestError(f"cannot read sale {sale_id}: HTTP {answer.status_code} {answer.text[:300]}")
    made, counts = sale.json(), stats.json()
    opens, ends = _ms(made["starts_at"]), _ms(made["ends_at"])
    if ends <= timeutil.now_ms():
        raise runner.LoadTestError(f"sale {sale_id} ended at {made['ends_at']}: nothing can be bought")
    terms = runner.SaleTerms(
        stock=int(made["stock"]),
        limit=int(made["per_user_limit"]),
        partitions=max(1, len(counts["partitions"])),
        reserve=int(counts["reserve_remaining"]),
        price_cents=int(made["price_cents"]),
        lead_s=max(0.0, (opens - timeutil.now_ms()) / 1000),
        open_s=(ends - opens) / 1000,
    )
    return ExistingSale(sale_id, terms, opens)


async def onboard_all(
    client: httpx.AsyncClient, inbox: mailcatcher.Inbox, user_ids: Sequence[str], on_done: Callable[[int], None]
) -> dict[str, shoppers.Shopper]:
    """A verified, logged-in shopper for each of the plan's user ids."""
    try:
        return await shoppers.onboard_crowd(client, inbox, user_ids, on_done, ONBOARDING)
    except shoppers.ShopperError as exc:
        raise runner.LoadTestError(f"onboarding failed: {exc}") from exc
    except TimeoutError as exc:
        raise runner.LoadTestError("onboarding failed: a verification e-mail did not arrive in time") from exc


class HttpSender:
    """Sends a schedule through the gateway: one POST per planned request, open loop, at its planned time."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        sale_id: str,
        crowd: dict[str, shoppers.Shopper],
        *,
        tick_ms: int = 10,
        on_sent: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._session = session
        self._url = f"/v1/sales/{sale_id}/purchases"
        self._crowd = crowd
        self._tick_s = tick_ms / 1000.0
        self._on_sent = on_sent
        self.log = sender.SendLog()

    async def _purchase(self, item: profile.Planned, sent_at: int) -> None:
        began = time.perf_counter()
        body = {"quantity": item.quantity, "request_id": item.request_id}
        try:
            async with self._session.post(self._url, json=body, headers=self._crowd[item.user_id].headers) as resp:
                answer: dict[str, Any] = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.log.failed[item.request_id] = repr(exc)
            return
        if status not in TAKEN:
            self.log.failed[item.request_id] = f"HTTP {status}: {str(answer)[:200]}"
            return
        self.log.taken_sends += 1
        outcome = str(answer.get("outcome", "")).lower()
        self.log.unary.append(sender.Unary(item.request_id, sent_at, (time.perf_counter() - began) * 1000, outcome))

    async def _dispatch(self, due: Sequence[profile.Planned]) -> list[asyncio.Task[None]]:
        started = []
        for item in due:
            now = timeutil.now_ms()
            self.log.record(item.request_id, now)
            started.append(asyncio.create_task(self._purchase(item, now)))
        self._on_sent(len(due))
        return started

    async def run(self, plan: Sequence[profile.Planned]) -> sender.SendLog:
        """Send the schedule (its times counted from now); return once every purchase was answered."""
        await sender.follow(plan, self._tick_s, self.log, self._dispatch)
        return self.log


async def wait_decided(
    client: httpx.AsyncClient, sale_id: str, timeout_s: float, on_progress: Callable[[int], None]
) -> None:
    """Poll the sale's public stats until no request waits on its topic."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = await client.get(f"/v1/sales/{sale_id}/stats")
        if got.status_code != 200:
            raise runner.LoadTestError(f"cannot read the sale's stats: HTTP {got.status_code} {got.text[:300]}")
        stats = got.json()
        on_progress(sum(int(p["committed_offset"]) for p in stats["partitions"]))
        if stats["requests_pending"] == 0:
            return
        if time.monotonic() > deadline:
            raise runner.LoadTestError(f"{stats['requests_pending']} requests still pending after {timeout_s:.0f}s")
        await asyncio.sleep(runner.POLL_S)


async def drive(
    target: GatewayTarget,
    terms: runner.SaleTerms,
    spec: profile.LoadSpec,
    con: rich_console.Console,
    *,
    tick_ms: int,
    settle_timeout_s: float,
) -> tuple[str, runner.SaleTerms, tuple[profile.Planned, ...], sender.SendLog]:
    """Onboard the shoppers, create the sale (unless it exists), send the load once it opens and wait until every
    request is decided."""
    async with httpx.AsyncClient(base_url=target.url, timeout=60.0) as client:
        plan = profile.build(dataclasses.replace(spec, tag=f"lt{secrets.token_hex(5)}"))
        users = sorted({item.user_id for item in plan})
        con.print(f"{len(users)} shoppers onboard through the gateway at {target.url}")
        with runner.bar(con) as shown:
            task = shown.add_task("onboarding", total=len(users))
            crowd = await onboard_all(client, target.inbox, users, lambda n: shown.advance(task, n))
        if target.sale_id:  # read once the shoppers are in: by now the operator has partitioned it
            existing = await asyncio.to_thread(existing_sale, target.url, target.sale_id)
            sale_id, terms, opens = existing.sale_id, existing.terms, existing.opens_ms
        else:
            sale_id, opens = await create_sale(client, target.admin_key, terms)
        con.print(
            f"sale {sale_id}: stock {terms.stock}, limit {terms.limit}, {terms.partitions} partitions, reserve "
            f"{terms.reserve}; {len(plan)} requests ({spec.profile})"
        )
        await asyncio.sleep(max(0.0, (opens - timeutil.now_ms()) / 1000 + 0.2))
        session = shoppers.crowd_session(target.url, CONNECTIONS)
        async with session:
            with runner.bar(con) as shown:
                task = shown.add_task("sending", total=len(plan))
                send = HttpSender(session, sale_id, crowd, tick_ms=tick_ms, on_sent=lambda n: shown.advance(task, n))
                sent = await send.run(plan)
        with runner.bar(con) as shown:
            task = shown.add_task("deciding", total=sent.taken_sends)
            await wait_decided(
                client, sale_id, settle_timeout_s, lambda n: shown.update(task, completed=min(n, sent.taken_sends))
            )
        return sale_id, terms, plan, sent


def run(
    target: GatewayTarget,
    terms: runner.SaleTerms,
    spec: profile.LoadSpec,
    con: rich_console.Console,
    *,
    tick_ms: int = 10,
    settle_timeout_s: float = 300.0,
    fairness_tolerance_ms: int = rules.DEFAULT_FAIRNESS_TOLERANCE_MS,
) -> tuple[runner.Outcome, runner.SaleTerms]:
    """The whole load test through a running gateway, then the same checker as the pipeline's: its outcome and the
    terms of the sale it loaded."""
    sale_id, loaded, plan, sent = asyncio.run(
        drive(target, terms, spec, con, tick_ms=tick_ms, settle_timeout_s=settle_timeout_s)
    )
    outcome = runner.judge(
        target.settings, target.wait_orders, sale_id, plan, sent, con, settle_timeout_s, fairness_tolerance_ms
    )
    return outcome, loaded
