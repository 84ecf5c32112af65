"""(e) unary Purchase and (f) the batch ingress against a sales server in a child process, plus the latency
from request to decision at a fixed offered rate (open loop) that the report shows as p99_ms.

The child is `python -m flashsale_tools.cli run sales` on the bench's PostgreSQL and Kafka with its pipeline worker
on, like (d)'s echo server runs in a process of its own. Requests are serialized before the clock starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import time
import types
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import grpc

from flashsale_api.v1 import sales_pb2
from flashsale_tools.bench import batched_latency, core, sale_fixture, scraper
from flashsale_tools.platform import cache

_SERVICE = "/flashsale.v1.SalesService/"
PENDING = sales_pb2.PURCHASE_OUTCOME_PENDING
OFFERED_PER_S = 3_000.0
OPEN_LOOP_S = 5.0
WAIT_MS = 10_000
BATCH = 2_000
STREAMS = 4
DECIDE_TIMEOUT_S = 300.0


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


@dataclasses.dataclass(frozen=True)
class SalesProcess:
    """A running sales server in a child process."""

    address: str
    pid: int

    def cpu_s(self) -> float:
        """CPU seconds its live threads have run so far (nanosecond counts of /proc/<pid>/task/*/schedstat)."""
        total_ns = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that just ended
                total_ns += int((task / "schedstat").read_text().split()[0])
        return total_ns / 1e9


@contextlib.asynccontextmanager
async def sales_process(
    sale: sale_fixture.BenchSale, log_path: Path, timeout_s: float = 60.0, recording: bool = False
) -> AsyncIterator[SalesProcess]:
    """Start the sales service (with its worker) in a child process on the sale's database; yield it.
    `recording`: it serves and records its metrics, scraped every second meanwhile."""
    address = f"127.0.0.1:{cache.free_port()}"
    metrics_port = cache.free_port() if recording else 0
    env = {
        **os.environ,
        "FLASHSALE_DB_BACKEND": "postgres",
        "FLASHSALE_POSTGRES_DSN": sale.dsn,
        "FLASHSALE_KAFKA_BOOTSTRAP": sale.bootstrap,
        "FLASHSALE_KAFKA_PARTITIONS": str(sale.partitions),
        "FLASHSALE_SALES_ADDR": address,
        "FLASHSALE_PRODUCT_ADDR": f"127.0.0.1:{cache.free_port()}",  # not asked: the sale exists already
        "FLASHSALE_SALES_WORKER": "true",
        "FLASHSALE_LOG_LEVEL": "WARNING",
        "FLASHSALE_LOG_FORMAT": "text",
        "FLASHSALE_METRICS_PORT": str(metrics_port),
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "flashsale_tools.cli",
            "run",
            "sales",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    scraping: scraper.Scraper | None = None
    try:
        await _ready(proc, address, sale.sale_id, timeout_s, log_path)
        if recording:
            scraping = scraper.Scraper(url=f"http://127.0.0.1:{metrics_port}/metrics")
        yield SalesProcess(address, proc.pid)
        if scraping is not None and not scraping.scrapes:
            raise core.BenchError("with metrics on, the sales process was never scraped")
    finally:
        if scraping is not None:
            await asyncio.to_thread(scraping.stop)
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _ready(
    proc: asyncio.subprocess.Process, address: str, sale_id: str, timeout_s: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    request = sales_pb2.GetSaleRequest(sale_id=sale_id).SerializeToString()
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(_SERVICE + "GetSale", request_serializer=None, response_deserializer=None)
        while True:
            if proc.returncode is not None:
                raise core.BenchError(f"the sales server exited ({proc.returncode}):\n{_tail(log_path)}")
            try:
                await call(request, timeout=2)
                return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise core.BenchError(
                        f"the sales server did not answer in {timeout_s}s:\n{_tail(log_path)}"
                    ) from None
                await asyncio.sleep(0.2)


async def _warm_up(channel: grpc.aio.Channel, sale: sale_fixture.BenchSale, workload: core.Workload) -> int:
    """Purchase until one is decided within the wait (the worker holds the sale's partitions); requests sent."""
    call = channel.unary_unary(
        _SERVICE + "Purchase", request_serializer=None, response_deserializer=sales_pb2.PurchaseDecision.FromString
    )
    deadline = time.monotonic() + 60
    sent = 0
    while time.monotonic() < deadline:
        answer = await call(sale.request(workload, sent, wait_ms=2_000).SerializeToString(), timeout=10)
        sent += 1
        if answer.outcome != PENDING:
            return sent
    raise core.BenchError("the sales worker decided nothing in 60s")


@dataclasses.dataclass(frozen=True)
class Unary:
    """A closed-loop run of unary Purchase: elapsed seconds and latencies in ms."""

    elapsed_s: float
    latencies_ms: tuple[float, ...]


async def closed_loop(channel: grpc.aio.Channel, payloads: Sequence[bytes], in_flight: int) -> Unary:
    """Send unary Purchases (wait_ms=0) with `in_flight` outstanding; each must come back PENDING or decided."""
    call = channel.unary_unary(
        _SERVICE + "Purchase", request_serializer=None, response_deserializer=sales_pb2.PurchaseDecision.FromString
    )
    cursor = 0
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal cursor
        while cursor < len(payloads):
            payload = payloads[cursor]
            cursor += 1
            began = time.perf_counter()
            await call(payload, timeout=30)
            latencies.append((time.perf_counter() - began) * 1000.0)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(in_flight, len(payloads)))))
    return Unary(time.perf_counter() - began, tuple(latencies))


@dataclasses.dataclass(frozen=True)
class OpenLoop:
    """Request→decision latencies (ms, from the intended send time; a request not decided within WAIT_MS or
    refused counts as WAIT_MS at least) and how many were not decided."""

    latencies_ms: tuple[float, ...]
    undecided: int
    late_start_ms: float  # how far behind schedule the sender fell at worst
    refused: int = 0  # calls that failed (not taken, so never decided)
    refused_codes: Mapping[str, int] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))


MAX_IN_FLIGHT = 2_000


async def open_loop(channel: grpc.aio.Channel, payloads: Sequence[bytes], rate_per_s: float) -> OpenLoop:
    """Send Purchases with wait_ms at a fixed rate regardless of answers (no coordinated omission)."""
    call = channel.unary_unary(
        _SERVICE + "Purchase", request_serializer=None, response_deserializer=sales_pb2.PurchaseDecision.FromString
    )
    latencies: list[float] = []
    undecided = 0
    refused = 0
    codes: dict[str, int] = {}
    late = 0.0

    slots = asyncio.Semaphore(MAX_IN_FLIGHT)  # a bounded client: waiting for a slot counts in the latency

    async def one(payload: bytes, due: float) -> None:
        nonlocal undecided, refused
        try:
            async with slots:
                answer = await call(payload, timeout=WAIT_MS / 1000 + 30)
            decided = answer.outcome != PENDING
        except grpc.aio.AioRpcError as exc:
            decided = False
            refused += 1
            codes[exc.code().name] = codes.get(exc.code().name, 0) + 1
        took = (time.perf_counter() - due) * 1000.0
        if not decided:  # not decided within the wait (or refused): counts as at least the wait
            undecided += 1
            took = max(took, float(WAIT_MS))
        latencies.append(took)

    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    for index, payload in enumerate(payloads):
        due = start + index / rate_per_s
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            late = max(late, -wait * 1000.0)
        tasks.append(asyncio.create_task(one(payload, due)))
    await asyncio.gather(*tasks)
    return OpenLoop(tuple(latencies), undecided, late, refused, types.MappingProxyType(dict(codes)))


async def run_unary(
    workload: core.Workload,
    env: core.BenchEnv,
    offered_per_s: float = OFFERED_PER_S,
    open_loop_s: float = OPEN_LOOP_S,
) -> core.ModeResult:
    """(e) Unary Purchase at the workload's in-flight count (rate), then the open loop at offered_per_s whose
    request→decision p99 is the mode's p99_ms (the report's p99_ms)."""
    offered = max(1, round(offered_per_s * open_loop_s))
    warm = 200
    rate_sale, latency_sale = await sale_fixture.prepare(
        workload, env, "bench_unary", requests=(workload.purchases + warm, offered + warm)
    )
    try:
        async with (
            sales_process(rate_sale, env.work_dir / "logs" / "sales-unary.log") as server,
            grpc.aio.insecure_channel(server.address) as channel,
        ):
            rate_warm = await _warm_up(channel, rate_sale, workload)
            payloads = [
                rate_sale.request(workload, i).SerializeToString() for i in range(rate_warm, workload.purchases)
            ]
            measured = await closed_loop(channel, payloads, workload.in_flight)
            rate_total = rate_warm + len(payloads)
            latency_warm = await _warm_up(channel, latency_sale, workload)
            timed = [
                latency_sale.request(workload, i, wait_ms=WAIT_MS).SerializeToString()
                for i in range(latency_warm, latency_warm + offered)
            ]
            loop = await open_loop(channel, timed, offered_per_s)
            latency_total = latency_warm + offered - loop.refused  # a refused call was never taken
            rate_counts = await sale_fixture.wait_decided(rate_sale, rate_total, DECIDE_TIMEOUT_S)
            latency_counts = await sale_fixture.wait_decided(latency_sale, latency_total, DECIDE_TIMEOUT_S)
    finally:
        for sale in (rate_sale, latency_sale):
            await asyncio.to_thread(sale_fixture.delete_topic, sale)
    oversold = rate_counts.oversold(rate_sale, sale_fixture.sized(workload, rate_total))
    oversold += latency_counts.oversold(latency_sale, sale_fixture.sized(workload, latency_total))
    return core.ModeResult(
        rate_per_s=len(payloads) / measured.elapsed_s,
        p99_ms=core.percentile(loop.latencies_ms, 99),
        oversold=oversold,
        attempts=len(payloads),
        accepted=rate_counts.accepted,
        notes={
            "in_flight": min(workload.in_flight, len(payloads)),
            "unary_p99_ms": _round(core.percentile(measured.latencies_ms, 99)),
            "p99_is": f"request→decision, open loop {offered_per_s:g}/s for {open_loop_s:g}s",
            "decision_p50_ms": _round(core.percentile(loop.latencies_ms, 50)),
            "undecided_in_wait": loop.undecided,
            "refused_in_open_loop": loop.refused,
            "refused_codes": dict(loop.refused_codes),
            "sender_late_ms": round(loop.late_start_ms, 1),
        },
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def stream_in(channel: grpc.aio.Channel, batches: Sequence[bytes], streams: int) -> float:
    """Send pre-serialized batches over `streams` PurchaseStream calls at once; seconds until all were taken."""
    call = channel.stream_unary(
        _SERVICE + "PurchaseStream",
        request_serializer=None,
        response_deserializer=sales_pb2.PurchaseBatchResponse.FromString,
    )
    shares = [batches[i::streams] for i in range(streams)]

    async def one(share: Sequence[bytes]) -> int:
        async def items() -> AsyncIterator[bytes]:
            for batch in share:
                yield batch

        answer = await call(items(), timeout=300)
        return int(answer.submitted)

    began = time.perf_counter()
    await asyncio.gather(*(one(share) for share in shares if share))
    return time.perf_counter() - began


async def run_batched(
    workload: core.Workload,
    env: core.BenchEnv,
    batch: int = BATCH,
    streams: int = STREAMS,
    offered_per_s: float = OFFERED_PER_S,
    open_loop_s: float = OPEN_LOOP_S,
    recording: bool = False,
) -> core.ModeResult:
    """(f) The batch ingress: PurchaseStream with `batch` requests per message over `streams` streams at once;
    rate = purchases taken (appended to the request topic and acknowledged) per second. Then requests offered at
    offered_per_s through PurchaseBatch every batched_latency.TICK_S, whose request→decision p99 is p99_ms.
    `recording`: the sales process records and serves its metrics, scraped every second."""
    offered = max(1, round(offered_per_s * open_loop_s))
    sale, latency_sale = await sale_fixture.prepare(
        workload, env, "bench_batched", requests=(workload.purchases, offered)
    )
    size = max(1, min(batch, workload.purchases))
    batches = [
        sales_pb2.PurchaseBatchRequest(
            requests=[sale.request(workload, i) for i in range(start, min(start + size, workload.purchases))]
        ).SerializeToString()
        for start in range(0, workload.purchases, size)
    ]
    try:
        async with (
            sales_process(sale, env.work_dir / "logs" / "sales-batched.log", recording=recording) as server,
            grpc.aio.insecure_channel(server.address) as channel,
        ):
            cpu_began = server.cpu_s()
            elapsed = await stream_in(channel, batches, streams)
            began = time.perf_counter()
            found = await sale_fixture.wait_decided(sale, workload.purchases, DECIDE_TIMEOUT_S)
            settle_s = time.perf_counter() - began
            cpu_s = server.cpu_s() - cpu_began  # taking and deciding every purchase, its scrapes included
            timed = await batched_latency.open_loop(channel, latency_sale, workload, 0, offered, offered_per_s)
            latency_found = await sale_fixture.wait_decided(latency_sale, offered, DECIDE_TIMEOUT_S)
    finally:
        for made in (sale, latency_sale):
            await asyncio.to_thread(sale_fixture.delete_topic, made)
    oversold = found.oversold(sale, workload)
    oversold += latency_found.oversold(latency_sale, sale_fixture.sized(workload, offered))
    return core.ModeResult(
        rate_per_s=workload.purchases / elapsed,
        p99_ms=core.percentile(timed.latencies_ms, 99),
        oversold=oversold,
        attempts=workload.purchases,
        accepted=found.accepted,
        notes={
            "batch": size,
            "streams": min(streams, len(batches)),
            "decided_after_taken_s": round(settle_s, 2),
            "cpu_us_per_purchase": round(cpu_s / workload.purchases * 1e6, 2),
            "p99_is": f"request→decision event, PurchaseBatch every {batched_latency.TICK_S * 1000:g} ms, "
            f"open loop {offered_per_s:g}/s for {open_loop_s:g}s",
            "decision_p50_ms": _round(core.percentile(timed.latencies_ms, 50)),
            "undecided_in_wait": timed.undecided,
            "sender_late_ms": round(timed.late_ms, 1),
        },
    )
