"""(h) purchases through the REST gateway of a running platform and (i) a bare FastAPI + uvicorn POST endpoint of the
same shape, driven by the same client (wrk) at the same concurrency; (h) also measures the gateway's
request→decision p99 at 1,000 purchases/s offered (open loop, vegeta, a 2,000-shopper crowd) and first come, first
served at the click (a crowd of 3,000 purchases over 2 s, evenly paced: SOLD_OUT requests sent more than 100 ms
before an accepted one, across every partition), and a closed loop on a sold-out sale (decisions with no order or
e-mail behind them).
Every closed loop of (h) reports the CPU each process of the platform spent per decision, and (h) the CPU each spends
idle (what a closed loop's per-decision figure holds besides the decisions: polls, heartbeats, the broker's upkeep)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from flashsale_tools.bench import bare_http_server, child_server, core, profiles, vegeta_client, wrk_client
from flashsale_tools.platform import mailcatcher, shoppers

IN_FLIGHT = (64, 400)
CLOSED_S = 6.0  # seconds measured per closed loop (after a warm-up)
WARMUP_S = 1.0
OPEN_RATE = 1_000  # purchases per second offered to the gateway
OPEN_COUNT = 5_000  # 5 s of it
CROWD = 3_000  # purchases of the fairness crowd
CROWD_S = 2.0
CROWD_STOCK = 1_000
SHOPPERS = 2_000
INVERSION_MS = 100
DECIDED = (201, 409)
MOST_UNDECIDED = 0.05  # a closed loop with more answers than this that are not decisions is refused
IDLE_S = 5.0  # seconds the platform's idle CPU is read over, nothing sent (after onboarding settled)


Answered = vegeta_client.Answer
Target = Callable[[int], vegeta_client.Request]
"""Purchase number n → (path, JSON body, headers)."""


@dataclasses.dataclass(frozen=True)
class ClosedLoop:
    """A closed loop's figures: decisions per second, p99, how many answers were not decisions, and the CPU each
    process of the platform spent per decision (µs)."""

    per_s: float
    p99_ms: float | None
    answered: int
    undecided: int
    cpu_us: Mapping[str, float] = dataclasses.field(default_factory=dict)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (every thread), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_cpu(pids: Mapping[str, int], seconds: float = IDLE_S) -> dict[str, float]:
    """The CPU each process in `pids` uses while nothing is sent, in % of one core over `seconds`."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    began = time.monotonic()
    await asyncio.sleep(seconds)
    took = time.monotonic() - began
    return {name: round((cpu_seconds(pid) - before[name]) / took * 100, 1) for name, pid in pids.items()}


async def closed_loop(
    url: str, path: str, tokens: Sequence[str], in_flight: int, pids: Mapping[str, int] | None = None
) -> ClosedLoop:
    """wrk with `in_flight` keep-alive connections, each sending the next purchase once the last is answered, for
    CLOSED_S seconds after a warm-up run; the CPU of the processes in `pids` is read around the measured run."""
    await wrk_client.run(url, path, tokens, in_flight, WARMUP_S)
    before = {name: cpu_seconds(pid) for name, pid in (pids or {}).items()}
    got = await wrk_client.run(url, path, tokens, in_flight, CLOSED_S)
    if got.other + got.socket_errors > MOST_UNDECIDED * got.requests:
        raise core.BenchError(
            f"{url}{path} at {in_flight} in flight: {got.other} answers not decisions and {got.socket_errors} socket "
            f"errors of {got.requests}: such a loop measures no purchases"
        )
    spent = {name: cpu_seconds(pid) - before[name] for name, pid in (pids or {}).items()}
    per = {name: round(cpu / got.decided * 1e6, 1) for name, cpu in spent.items()} if got.decided else {}
    return ClosedLoop(got.decided_per_s, got.p99_ms, got.requests, got.other + got.socket_errors, per)


async def open_loop(url: str, target: Target, count: int, rate_per_s: float) -> list[Answered]:
    """Purchases 0..count-1 sent at `rate_per_s` by vegeta (open loop: nothing waits for an answer); every answer."""
    return await vegeta_client.attack(url, [target(n) for n in range(count)], rate_per_s)


def sent_per_s(answers: Sequence[Answered]) -> float | None:
    """The rate the client actually sent at (it falls behind the schedule when the machine is saturated)."""
    if len(answers) < 2:
        return None
    span_s = (max(a.sent_ms for a in answers) - min(a.sent_ms for a in answers)) / 1000
    return round((len(answers) - 1) / span_s, 1) if span_s > 0 else None


def inversions(answers: Sequence[Answered], window_ms: float = INVERSION_MS) -> int:
    """SOLD_OUT answers whose request was sent more than `window_ms` before an accepted one was."""
    accepted = [a.sent_ms for a in answers if a.outcome == "ACCEPTED"]
    if not accepted:
        return 0
    last = max(accepted)
    return sum(1 for a in answers if a.outcome == "SOLD_OUT" and a.sent_ms < last - window_ms)


def _shape(sale_id: str, token: str, n: int) -> tuple[str, dict[str, Any], dict[str, str]]:
    body = {"quantity": 1, "request_id": f"b{n}-{uuid.uuid4().hex[:12]}"}
    return f"/v1/sales/{sale_id}/purchases", body, {"Authorization": f"Bearer {token}"}


async def run_bare(workload: core.Workload, env: core.BenchEnv) -> core.ModeResult:
    """(i): the bare endpoint at 64 and 400 in flight."""
    async with child_server.serving(bare_http_server.__name__) as port:
        url = f"http://127.0.0.1:{port}"
        loops = [await closed_loop(url, "/v1/sales/s1/purchases", ["t"], k) for k in IN_FLIGHT]
    return _closed_result(loops)


def _closed_result(loops: Sequence[ClosedLoop], oversold: int = 0, **notes: object) -> core.ModeResult:
    first = loops[0]
    figures: dict[str, object] = {}
    for k, loop in zip(IN_FLIGHT, loops, strict=True):
        figures[f"per_s_{k}"] = round(loop.per_s, 1)
        figures[f"p99_ms_{k}"] = None if loop.p99_ms is None else round(loop.p99_ms, 1)
        figures[f"undecided_{k}"] = loop.undecided
        if loop.cpu_us:
            figures[f"cpu_us_per_decision_{k}"] = dict(loop.cpu_us)
    return core.ModeResult(
        rate_per_s=first.per_s,
        p99_ms=first.p99_ms,
        oversold=oversold,
        attempts=sum(loop.answered for loop in loops),
        notes={**figures, **notes},
    )


def _iso(when: datetime.datetime) -> str:
    return when.isoformat()


async def _make_sale(client: httpx.AsyncClient, admin_key: str, stock: int, limit: int, partitions: int) -> str:
    admin = {"X-Admin-Key": admin_key}
    product = await client.post("/v1/products", json={"name": "Bench item", "base_price_cents": 1_000}, headers=admin)
    if product.status_code != 201:
        raise core.BenchError(f"cannot create a product: HTTP {product.status_code} {product.text[:200]}")
    now = datetime.datetime.now(datetime.UTC)
    sale = await client.post(
        "/v1/sales",
        json={
            "product_id": product.json()["product_id"],
            "price_cents": 500,
            "stock": stock,
            "per_user_limit": limit,
            "starts_at": _iso(now - datetime.timedelta(seconds=1)),
            "ends_at": _iso(now + datetime.timedelta(hours=1)),
            "partitions": partitions,
            "reserve": 0,
        },
        headers=admin,
    )
    if sale.status_code != 201:
        raise core.BenchError(f"cannot create a sale: HTTP {sale.status_code} {sale.text[:200]}")
    return str(sale.json()["sale_id"])


async def _sold(client: httpx.AsyncClient, sale_id: str) -> tuple[int, int]:
    """(stock, units reserved) of a sale once nothing is pending."""
    deadline = time.monotonic() + 120
    while True:
        stats = (await client.get(f"/v1/sales/{sale_id}/stats")).json()
        if stats["requests_pending"] == 0 or time.monotonic() > deadline:
            return int(stats["stock"]), int(stats["reserved"])
        await asyncio.sleep(0.2)


async def run_gateway(workload: core.Workload, env: core.BenchEnv) -> core.ModeResult:
    """(h): the platform of `flashsale up` (SQLite, per-address budget lifted: one client is every shopper),
    2,000 shoppers onboarded through the gateway, then the closed loops, the open loop and the crowd."""
    from flashsale_tools.platform import supervisor

    unlimited = (("FLASHSALE_GATEWAY_RATE_LIMIT_PER_S", "1000000"), ("FLASHSALE_GATEWAY_RATE_BURST", "1000000"))
    with tempfile.TemporaryDirectory(prefix="front-door-", dir=env.work_dir) as data:
        options = supervisor.PlatformOptions(
            data_dir=Path(data), extra_env=(("FLASHSALE_LOG_LEVEL", "WARNING"), *unlimited, *env.platform_env)
        )
        with supervisor.LocalPlatform(options) as platform:
            pids = platform.pids()
            return await _measure_gateway(platform.gateway_url, platform.admin_key, platform.mail, pids, env)


async def profile(
    url: str, path: str, tokens: Sequence[str], pids: Mapping[str, int], folder: Path
) -> tuple[ClosedLoop, Path]:
    """One more closed loop at IN_FLIGHT[0], every Python process of the platform sampled by py-spy meanwhile (not
    the measured run: sampling costs the processes some CPU); the summary file."""
    python = {name: pid for name, pid in pids.items() if name not in ("kafka", "postgres")}
    loop, recorded = await asyncio.gather(
        closed_loop(url, path, tokens, IN_FLIGHT[0], pids), profiles.record(python, WARMUP_S + CLOSED_S, folder)
    )
    written = folder / "summary.txt"
    written.write_text(profiles.summary(recorded, loop.cpu_us))
    return loop, written


async def _measure_gateway(
    url: str, admin_key: str, inbox: mailcatcher.Inbox, pids: Mapping[str, int], env: core.BenchEnv
) -> core.ModeResult:
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        names = [f"bench-{n:05d}" for n in range(SHOPPERS)]
        crowd = await shoppers.onboard_crowd(client, inbox, names)
        tokens = [crowd[name].access_token for name in names]
        await asyncio.sleep(IDLE_S)  # the onboarding's e-mails and events settle
        idle = await idle_cpu(pids)
        # first (no backlog of orders and e-mails yet), a sale sold out at once: decisions with nothing behind them
        gone = await _make_sale(client, admin_key, 1, 1, 8)
        sold_out = await closed_loop(url, f"/v1/sales/{gone}/purchases", tokens, IN_FLIGHT[0], pids)
        big = await _make_sale(client, admin_key, 10_000_000, 1_000, 8)
        loops = [await closed_loop(url, f"/v1/sales/{big}/purchases", tokens, k, pids) for k in IN_FLIGHT]
        profiled: dict[str, object] = {
            "idle_cpu_pct": idle,
            f"sold_out_per_s_{IN_FLIGHT[0]}": round(sold_out.per_s, 1),
            f"sold_out_cpu_us_per_decision_{IN_FLIGHT[0]}": dict(sold_out.cpu_us),
        }
        if env.profile_dir is not None:
            _, written = await profile(url, f"/v1/sales/{big}/purchases", tokens, pids, env.profile_dir / "gateway")
            profiled["profile"] = str(written)
        steady = await _make_sale(client, admin_key, 10_000_000, 1_000, 8)
        paced = await open_loop(url, lambda n: _shape(steady, tokens[n % SHOPPERS], n), OPEN_COUNT, OPEN_RATE)
        contested = await _make_sale(client, admin_key, CROWD_STOCK, 2, 8)
        clicks = await open_loop(url, lambda n: _shape(contested, tokens[n % SHOPPERS], n), CROWD, CROWD / CROWD_S)
        oversold = 0
        for sale_id in (big, gone, steady, contested):
            stock, reserved = await _sold(client, sale_id)
            oversold += max(0, reserved - stock)
    decided = [a.latency_ms for a in paced if a.status in DECIDED]
    accepted = sum(1 for a in clicks if a.outcome == "ACCEPTED")
    if accepted > CROWD_STOCK:
        oversold = max(oversold, accepted - CROWD_STOCK)
    p99 = core.percentile(decided, 99)
    return _closed_result(
        loops,
        oversold,
        p99_ms_at_1000=None if p99 is None else round(p99, 1),
        sent_per_s_at_1000=sent_per_s(paced),
        undecided_at_1000=len(paced) - len(decided),
        fairness_inversions=inversions(clicks),
        crowd_sent_per_s=sent_per_s(clicks),
        crowd_accepted=accepted,
        crowd_sold_out=sum(1 for a in clicks if a.outcome == "SOLD_OUT"),
        crowd_undecided=sum(1 for a in clicks if a.status not in DECIDED),
        **profiled,
    )
