"""The benchmark's Flashsale modes (c, e, f) on real PostgreSQL and Kafka with a tiny workload: correctness only."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from flashsale_tools.bench import (
    batched_latency,
    core,
    metrics_cost,
    pipeline_decide,
    registry,
    sale_fixture,
    sales_ingress,
)
from flashsale_tools.platform import kafka_broker, postgres_server

TINY = core.Workload(stock=50, users=100, purchases=200, concurrency=4, in_flight=20, redis_ceiling_requests=1)

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path, postgres: postgres_server.PostgresServer, kafka: kafka_broker.KafkaBroker) -> core.BenchEnv:
    """A benchmark environment on the session's PostgreSQL and Kafka."""
    return core.BenchEnv(tmp_path, postgres=postgres, kafka=kafka)


def _sells_out(result: core.ModeResult, attempts: int) -> None:
    assert result.accepted == TINY.stock
    assert result.oversold == 0
    assert result.attempts == attempts
    assert result.rate_per_s > 0


def test_the_pipeline_modes_are_registered() -> None:
    letters = [mode.letter for mode in registry.MODES]
    assert {"c", "e", "f"} <= set(letters)
    assert len(letters) == len(set(letters))


async def test_pipeline_decides_every_request_and_sells_exactly_the_stock(env: core.BenchEnv) -> None:
    result = await pipeline_decide.run(TINY, env, batch_max=64)
    _sells_out(result, TINY.purchases)
    assert result.notes["remaining"] == 0
    assert result.p99_ms is None
    runs = result.notes["runs_per_s"]
    assert isinstance(runs, list) and len(runs) == pipeline_decide.RUNS
    assert sorted(runs)[len(runs) // 2] == round(result.rate_per_s)  # the median run
    first = result.notes["first_decision_ms"]
    assert isinstance(first, float) and first > 0


async def test_an_oversold_or_lost_unit_fails_the_check(env: core.BenchEnv) -> None:
    (sale,) = await sale_fixture.prepare(TINY, env, "bench_tamper")
    try:
        sale_fixture.preload(sale, TINY)
        pipeline_decide.decide_all(sale, TINY.purchases, 100)
        found = sale_fixture.counts(sale)
        assert (found.decided, found.accepted, found.remaining) == (TINY.purchases, TINY.stock, 0)
        assert found.oversold(sale, TINY) == 0
        with psycopg.connect(sale.dsn, autocommit=True, options=f"-c search_path={sale_fixture.SCHEMA}") as conn:
            conn.execute(  # one more accepted reservation than the stock, as an oversell would leave
                "INSERT INTO reservations (reservation_id, request_id, sale_id, user_id, quantity, status,"
                " created_at, updated_at) VALUES ('extra', 'extra', %s, 'user-0000001', 1, 'reserved', 0, 0)",
                (sale.sale_id,),
            )
            conn.execute("UPDATE decisions SET outcome = 'accepted' WHERE request_id = %s", (sale.request_id(199),))
        tampered = sale_fixture.counts(sale)
        assert tampered.accepted_units == TINY.stock + 1
        with pytest.raises(core.BenchError):
            tampered.oversold(sale, TINY)
    finally:
        sale_fixture.delete_topic(sale)


async def test_unary_purchase_and_open_loop_decide_everything(env: core.BenchEnv) -> None:
    result = await sales_ingress.run_unary(TINY, env, offered_per_s=200, open_loop_s=0.5)
    assert result.accepted == TINY.stock
    assert result.oversold == 0
    assert 0 < result.attempts < TINY.purchases  # the warm-up took the first few
    assert result.p99_ms is not None and result.p99_ms > 0
    assert result.notes["undecided_in_wait"] == 0


async def test_batched_ingress_takes_every_request_and_sells_exactly_the_stock(env: core.BenchEnv) -> None:
    result = await sales_ingress.run_batched(TINY, env, batch=30, streams=3, offered_per_s=200, open_loop_s=0.5)
    _sells_out(result, TINY.purchases)
    assert result.notes["streams"] == 3
    assert result.p99_ms is not None and 0 < result.p99_ms < batched_latency.WAIT_S * 1000
    assert result.notes["undecided_in_wait"] == 0


async def test_the_metrics_cost_modes_compare_runs_with_and_without_metrics(env: core.BenchEnv) -> None:
    for run in (metrics_cost.run_pipeline, metrics_cost.run_ingress):
        result = await run(TINY, env, rounds=1, scale=1)
        assert result.oversold == 0
        assert result.accepted == TINY.stock
        assert result.rate_per_s > 0
        assert len(result.notes["with_per_s"]) == len(result.notes["without_per_s"]) == 1  # type: ignore[arg-type]
        assert result.notes["cpu_us_per_purchase_with"] > 0 and result.notes["cpu_us_per_purchase_without"] > 0  # type: ignore[operator]
        assert result.notes["on/off"] == pytest.approx(
            result.rate_per_s / result.notes["without_metrics_per_s"], rel=0.01
        )  # type: ignore[operator]
