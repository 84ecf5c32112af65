"""(c) Flashsale's pipeline deciding from the topic: a sales worker over a pre-loaded request topic.

The workload's purchases are appended to the sale's request topic before timing (partition by user, as the
ingress does). The clock runs from the worker's start until every request was decided (one PostgreSQL
transaction per batch, fsync on) and its purchase.decided event acknowledged by Kafka.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import threading
import time
import uuid
from collections.abc import Callable

from flashsale.common import database, kafka, kafka_metrics, metrics
from flashsale.sales import domain, pipeline_metrics, worker
from flashsale_tools.bench import core, sale_fixture, scraper

DEFAULT_POOL = 4
RUNS = 3  # the median of this many runs is the mode's rate
TIMEOUT_S = 600.0


class _Tally:
    """Counts decisions handed over by the worker (after their events were acknowledged)."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._lock = threading.Lock()
        self.count = 0
        self.first_at: float | None = None
        self.done = threading.Event()

    def __call__(self, decided: list[domain.Decision]) -> None:
        with self._lock:
            if self.first_at is None:
                self.first_at = time.perf_counter()
            self.count += len(decided)
            if self.count >= self._total:
                self.done.set()


@dataclasses.dataclass(frozen=True)
class Decided:
    """One timed run of a worker: seconds from start to the last acknowledged decision, and to the first;
    seconds from holding its partitions (warm, as a pre-warmed sale's workers are) to the last; the join; and
    seconds from the first record it read to its first committed round."""

    elapsed_s: float
    first_s: float
    warm_s: float
    join_s: float
    first_round_s: float


def decide_all(
    sale: sale_fixture.BenchSale,
    total: int,
    batch_max: int,
    wrap: Callable[[worker.SalesWorker], None] | None = None,
    recording: bool = False,
) -> Decided:
    """Run a SalesWorker (own consumer group) until `total` decisions were made and published; stop it.

    `wrap` may instrument the worker before it starts (the profiler does). `recording` gives the worker and its
    producer the metrics a sales process records, collected as a Prometheus scrape would every second.
    """
    db = database.PostgresDatabase(sale.dsn, sale_fixture.SCHEMA, DEFAULT_POOL)
    registry = metrics.registry()
    counted = kafka_metrics.KafkaMetrics(registry) if recording else None
    telemetry = pipeline_metrics.PipelineMetrics(registry) if recording else None
    producer = kafka.EventProducer(sale.bootstrap, "bench-pipeline", counted)
    tally = _Tally(total)
    decider = worker.SalesWorker(
        db,
        sale.bootstrap,
        producer,
        tally,
        batch_max,
        group=f"bench-{uuid.uuid4().hex}",
        telemetry=telemetry,
        counted=counted,
    )
    if wrap is not None:
        wrap(decider)
    scraping = scraper.Scraper(registry) if recording else None
    try:
        began = time.perf_counter()
        decider.start()
        if not decider.assigned.wait(TIMEOUT_S):
            raise core.BenchError(f"the worker got no partition in {TIMEOUT_S:.0f}s")
        warm = time.perf_counter()
        if not tally.done.wait(TIMEOUT_S):
            raise core.BenchError(f"the worker decided {tally.count} of {total} requests in {TIMEOUT_S:.0f}s")
        finished = time.perf_counter()
    finally:
        if scraping is not None:
            scraping.stop()
        decider.stop()
        producer.close()
        db.close()
    if recording and _total(registry, "flashsale_decisions_total") != total:
        raise core.BenchError("with metrics on, the worker's decisions were not all counted")
    first = (tally.first_at or began) - began
    read, decided = decider.first_read, decider.first_decided
    first_round = decided - read if read is not None and decided is not None else float("nan")
    return Decided(finished - began, first, finished - warm, warm - began, first_round)


def _total(registry: metrics.Registry, sample: str) -> float:
    """The sum of a metric's samples of that name (every label set)."""
    return sum(s.value for family in registry.collect() for s in family.samples if s.name == sample)


async def run(workload: core.Workload, env: core.BenchEnv, batch_max: int = 5000) -> core.ModeResult:
    """Measure decisions per second of one sales worker on PostgreSQL (fsync on) and Kafka: RUNS runs of the
    workload scaled up as Redis's is (long enough to be stable), each on a fresh sale; the median and the spread."""
    load = core.scaled(workload, workload.redis_ceiling_requests)
    runs = [await _one(load, env, batch_max, k) for k in range(RUNS)]
    middle = sorted(runs, key=lambda run: run[0].rate_per_s)[len(runs) // 2][0]
    rates = [run[0].rate_per_s for run in runs]
    firsts = [run[1].first_round_s * 1000 for run in runs]
    return dataclasses.replace(
        middle,
        oversold=max(run[0].oversold for run in runs),
        notes={
            **middle.notes,
            "runs_per_s": [round(rate) for rate in rates],
            "spread_per_s": round(max(rates) - min(rates)),
            "first_decision_ms": round(statistics.median(firsts), 1),
            "first_decision_ms_runs": [round(ms, 1) for ms in firsts],
        },
    )


async def _one(workload: core.Workload, env: core.BenchEnv, batch_max: int, k: int) -> tuple[core.ModeResult, Decided]:
    """One run on a fresh sale and database: preload, checkpoint, decide everything, check the tables."""
    (sale,) = await sale_fixture.prepare(workload, env, f"bench_pipeline_{k}")
    try:
        await asyncio.to_thread(sale_fixture.preload, sale, workload)
        await asyncio.to_thread(env.postgres().checkpoint)  # the runs before this one do not flush during it
        timed = await asyncio.to_thread(decide_all, sale, workload.purchases, batch_max)
        found = await asyncio.to_thread(sale_fixture.counts, sale)
    finally:
        await asyncio.to_thread(sale_fixture.delete_topic, sale)
    if found.decided != workload.purchases:
        raise core.BenchError(f"{found.decided} decisions stored for {workload.purchases} requests")
    oversold = found.oversold(sale, workload)
    steady = timed.elapsed_s - timed.first_s
    result = core.ModeResult(
        # a sale's workers are warm before it starts (scaled up before it): the rate counts from partition assignment
        rate_per_s=workload.purchases / timed.warm_s,
        p99_ms=None,
        oversold=oversold,
        attempts=workload.purchases,
        accepted=found.accepted,
        notes={
            "purchases": workload.purchases,
            "partitions": sale.partitions,
            "batch_max": batch_max,
            "group_join_s": round(timed.join_s, 2),
            "cold_per_s": round(workload.purchases / timed.elapsed_s),
            "first_acknowledged_s": round(timed.first_s, 2),
            "after_first_per_s": round(workload.purchases / steady) if steady > 0 else None,
            "remaining": found.remaining,
        },
    )
    return result, timed
