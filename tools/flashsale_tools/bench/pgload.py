"""Drives per-purchase transactions against one stock row from `concurrency` threads, one connection each."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from flashsale_tools.bench import core

Attempt = Callable[[psycopg.Connection[Any], int], bool]
"""One purchase of `quantity` units on its own connection; True when accepted."""

SCHEMA = "CREATE TABLE sale_stock (sale_id INTEGER PRIMARY KEY, remaining INTEGER NOT NULL)"
# no CHECK (remaining >= 0): the benchmark must see an oversell, not have the database hide it


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """Accepted purchases, wall time and per-purchase latencies of one run."""

    accepted: int
    elapsed_s: float
    latencies_ms: tuple[float, ...]


def prepare(dsn: str, stock: int) -> None:
    """Create the one stock row of the sale."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("INSERT INTO sale_stock (sale_id, remaining) VALUES (1, %s)", (stock,))


def remaining(dsn: str) -> int:
    """The stock row's remaining units."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT remaining FROM sale_stock WHERE sale_id = 1").fetchone()
    if row is None:
        raise core.BenchError("the stock row is gone")
    return int(row[0])


def drive(dsn: str, workload: core.Workload, attempt: Attempt) -> LoadResult:
    """Run workload.purchases attempts from workload.concurrency threads; raise the first worker error."""
    threads = min(workload.concurrency, workload.purchases)
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(threads)]
    lock = threading.Lock()
    next_index = 0
    accepted = 0
    latencies: list[float] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def take() -> int:
        nonlocal next_index
        with lock:
            index = next_index
            next_index += 1
            return index

    def work(conn: psycopg.Connection[Any]) -> None:
        nonlocal accepted
        mine: list[float] = []
        won = 0
        start.wait()
        try:
            while not errors and take() < workload.purchases:
                began = time.perf_counter()
                if attempt(conn, workload.quantity):
                    won += 1
                mine.append((time.perf_counter() - began) * 1000.0)
        except BaseException as exc:
            errors.append(exc)
        with lock:
            accepted += won
            latencies.extend(mine)

    workers = [threading.Thread(target=work, args=(conn,), name=f"bench-pg-{i}") for i, conn in enumerate(conns)]
    try:
        for worker in workers:
            worker.start()
        start.wait()
        began = time.perf_counter()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - began
    finally:
        for conn in conns:
            conn.close()
    if errors:
        raise core.BenchError(f"a purchase failed: {errors[0]!r}") from errors[0]
    return LoadResult(accepted, elapsed, tuple(latencies))


async def run(workload: core.Workload, env: core.BenchEnv, prefix: str, attempt: Attempt) -> core.ModeResult:
    """Measure one per-purchase design on a fresh database of env's PostgreSQL."""
    dsn = await asyncio.to_thread(env.fresh_database, prefix)
    await asyncio.to_thread(prepare, dsn, workload.stock)
    load = await asyncio.to_thread(drive, dsn, workload, attempt)
    left = await asyncio.to_thread(remaining, dsn)
    oversold = core.check_counts(workload, load.accepted, left)
    return core.ModeResult(
        rate_per_s=workload.purchases / load.elapsed_s,
        p99_ms=core.percentile(load.latencies_ms, 99),
        oversold=oversold,
        attempts=workload.purchases,
        accepted=load.accepted,
        notes={"connections": min(workload.concurrency, workload.purchases), "remaining": left},
    )
