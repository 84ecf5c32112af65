"""(m) and (n): what recording metrics costs the hot paths. The pipeline's decisions (c) and the batched ingress (f)
run alternately without and with metrics (recorded, served and scraped every second) in the same run, a few
rounds each; the mode's rate is the median with metrics, its notes the median without and their ratio, and the
same for CPU time per purchase (less sensitive than a rate to what else the machine runs)."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable

from flashsale_tools.bench import core, pipeline_decide, sale_fixture, sales_ingress

ROUNDS = 7  # pairs of runs; the order alternates (off, on), (on, off), … so drift favours neither
LATENCY_PER_S, LATENCY_S = 200.0, 0.5  # (n) keeps the latency phase of (f) short: only the rate is compared
SCALE = 4  # the workload's stock, users and purchases times this: runs of seconds, not a fraction of one

Timed = Callable[[bool], Awaitable[core.ModeResult]]


async def compare(timed: Timed, rounds: int = ROUNDS) -> core.ModeResult:
    """Run `timed(recording)` `rounds` times each way, alternating; the median with metrics against without, and
    the median of each back-to-back pair's ratio (what drifts during the run cancels within a pair)."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    oversold = 0
    last: core.ModeResult | None = None
    for index in range(rounds):
        for recording in (False, True) if index % 2 == 0 else (True, False):
            last = await timed(recording)
            rates[recording].append(last.rate_per_s)
            cpu[recording].append(float(last.notes["cpu_us_per_purchase"]))  # type: ignore[arg-type]
            oversold += last.oversold
    assert last is not None
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    cpu_off, cpu_on = statistics.median(cpu[False]), statistics.median(cpu[True])
    paired = statistics.median(w / wo for w, wo in zip(rates[True], rates[False], strict=True) if wo > 0)
    return core.ModeResult(
        rate_per_s=on,
        p99_ms=None,
        oversold=oversold,
        attempts=last.attempts,
        accepted=last.accepted,
        notes={
            "without_metrics_per_s": round(off),
            "on/off": round(on / off, 4) if off > 0 else None,
            "paired on/off": round(paired, 4),
            "rounds": rounds,
            "purchases": last.attempts,
            "with_per_s": [round(r) for r in rates[True]],
            "without_per_s": [round(r) for r in rates[False]],
            "cpu_us_per_purchase_with": round(cpu_on, 2),
            "cpu_us_per_purchase_without": round(cpu_off, 2),
            "cpu on/off": round(cpu_on / cpu_off, 4) if cpu_off > 0 else None,
        },
    )


def scaled(workload: core.Workload, scale: int) -> core.Workload:
    """The workload with `scale` times its stock, users and purchases (the same mix, longer runs)."""
    return dataclasses.replace(
        workload, stock=workload.stock * scale, users=workload.users * scale, purchases=workload.purchases * scale
    )


async def run_pipeline(
    workload: core.Workload, env: core.BenchEnv, rounds: int = ROUNDS, scale: int = SCALE
) -> core.ModeResult:
    """(m) Decisions per second of one sales worker (as (c), on the workload times `scale`) with its metrics,
    against without."""
    workload = scaled(workload, scale)

    async def timed(recording: bool) -> core.ModeResult:
        (sale,) = await sale_fixture.prepare(workload, env, "bench_cost")
        try:
            await asyncio.to_thread(sale_fixture.preload, sale, workload)
            began = time.process_time()  # this process's CPU: the worker, its consumer, producer and scraper
            run = await asyncio.to_thread(pipeline_decide.decide_all, sale, workload.purchases, 5000, None, recording)
            cpu_s = time.process_time() - began
            found = await asyncio.to_thread(sale_fixture.counts, sale)
        finally:
            await asyncio.to_thread(sale_fixture.delete_topic, sale)
        if found.decided != workload.purchases:
            raise core.BenchError(f"{found.decided} decisions stored for {workload.purchases} requests")
        return core.ModeResult(
            workload.purchases / run.warm_s,
            None,
            found.oversold(sale, workload),
            workload.purchases,
            found.accepted,
            {"cpu_us_per_purchase": cpu_s / workload.purchases * 1e6},
        )

    return await compare(timed, rounds)


async def run_ingress(
    workload: core.Workload, env: core.BenchEnv, rounds: int = ROUNDS, scale: int = SCALE
) -> core.ModeResult:
    """(n) Purchases taken per second by the batched ingress (as (f), on the workload times `scale`) with the sales
    process's metrics, against without (the latency phase of (f) kept short: only the rate is compared)."""
    workload = scaled(workload, scale)

    async def timed(recording: bool) -> core.ModeResult:
        return await sales_ingress.run_batched(
            workload, env, offered_per_s=LATENCY_PER_S, open_loop_s=LATENCY_S, recording=recording
        )  # its cpu_us_per_purchase: the sales process's, from the first batch until every purchase is decided

    return await compare(timed, rounds)
