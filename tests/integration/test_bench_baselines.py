"""The benchmark's baselines on real PostgreSQL, Redis and gRPC with a tiny workload: correctness, not speed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flashsale_tools.bench import conditional_update, core, grpc_echo, naive_for_update, pgload, redis_lua, runner
from flashsale_tools.platform import postgres_server

TINY = core.Workload(
    stock=50, users=100, purchases=200, concurrency=4, redis_connections=5, in_flight=20, redis_ceiling_requests=1
)

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path, postgres: postgres_server.PostgresServer) -> core.BenchEnv:
    """A benchmark environment on the session's PostgreSQL."""
    return core.BenchEnv(tmp_path, postgres=postgres)


def _sells_out(result: core.ModeResult) -> None:
    assert result.accepted == TINY.stock
    assert result.oversold == 0
    assert result.attempts == TINY.purchases
    assert result.rate_per_s > 0
    assert result.p99_ms is not None


async def test_naive_for_update_sells_exactly_the_stock(env: core.BenchEnv) -> None:
    result = await naive_for_update.run(TINY, env)
    _sells_out(result)
    assert result.notes["remaining"] == 0


async def test_conditional_update_sells_exactly_the_stock(env: core.BenchEnv) -> None:
    result = await conditional_update.run(TINY, env)
    _sells_out(result)
    assert result.notes["remaining"] == 0


async def test_an_unchecked_decrement_is_reported_as_oversold(env: core.BenchEnv) -> None:
    def blind(conn: psycopg.Connection[Any], quantity: int) -> bool:
        conn.execute("UPDATE sale_stock SET remaining = remaining - %s WHERE sale_id = 1", (quantity,))
        return True

    result = await pgload.run(TINY, env, "bench_blind", blind)
    assert result.oversold == TINY.purchases - TINY.stock


async def test_redis_lua_sells_exactly_the_stock(env: core.BenchEnv) -> None:
    result = await redis_lua.run(TINY, env)
    _sells_out(result)
    assert result.notes["durable"] is False


def test_redis_plain_decrement_is_reported_as_oversold(tmp_path: Path) -> None:
    result = redis_lua.measure(TINY, tmp_path, script="return redis.call('DECRBY', KEYS[1], ARGV[1])")
    assert result.oversold == TINY.purchases - TINY.stock


async def test_grpc_echo_answers_every_request(env: core.BenchEnv) -> None:
    result = await grpc_echo.run(TINY, env)
    assert result.attempts == TINY.purchases
    assert result.oversold == 0
    assert result.rate_per_s > 0
    assert result.p99_ms is not None


def test_harness_writes_only_measured_keys(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    out = tmp_path / "bench.json"
    tiny = "--stock 50 --users 100 --purchases 200 --concurrency 4 --redis-connections 5 --in-flight 20"
    selection = "--redis-ceiling-requests 1 --only a,g"
    args = parser.parse_args([*tiny.split(), *selection.split(), "--report", str(out), "--work-dir", str(tmp_path)])
    assert runner.run_cli(args) == 0
    doc = json.loads(out.read_text())
    assert set(doc) == {"naive_for_update_per_s", "redis_lua_per_s", "oversold", "ratios", "targets"}
    assert doc["oversold"] == 0
    assert doc["naive_for_update_per_s"] > 0
    assert doc["targets"]["c/a"]["value"] is None
