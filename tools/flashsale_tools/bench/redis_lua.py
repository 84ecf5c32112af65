"""(g) What most seckill systems pick: a Redis Lua check-and-decrement per purchase, at the server's ceiling.

Debian's redis-server runs throwaway on a free loopback port without persistence; redis-benchmark (its C
client) sends EVALSHA of the script from `redis_connections` connections, best of REPEATS runs. Not durable:
a crash loses decrements, and nothing ties the counter to the orders database.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import fcntl
import io
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from flashsale_tools.bench import core
from flashsale_tools.platform.cache import cache_dir, free_port

log = logging.getLogger(__name__)

STOCK_KEY = "stock"
SCRIPT = (
    "local left = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "local qty = tonumber(ARGV[1]) "
    "if left >= qty then return redis.call('DECRBY', KEYS[1], qty) end "
    "return -1"
)
"""Decrement the stock key by ARGV[1] only when at least that much is left; answer what is left, or -1."""

TOOLS = ("redis-server", "redis-cli", "redis-benchmark")
REPEATS = 3


def ensure_redis() -> None:
    """Make redis-server, redis-cli and redis-benchmark available, installing Debian's packages if missing."""
    if all(shutil.which(tool) for tool in TOOLS):
        return
    with (cache_dir() / "redis-install.lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if all(shutil.which(tool) for tool in TOOLS):
            return
        if os.geteuid() != 0:
            raise core.BenchError("Redis is not installed; run as root: apt-get install -y redis-server redis-tools")
        log.info("installing redis-server and redis-tools with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "redis-server", "redis-tools"]):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise core.BenchError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        raise core.BenchError(f"apt-get ran but {', '.join(missing)} is still missing")


@dataclasses.dataclass(frozen=True)
class RedisServer:
    """A running throwaway redis-server on 127.0.0.1."""

    port: int

    def cli(self, *args: str) -> str:
        """Run one redis-cli command against this server; return its answer (raise on an error reply)."""
        proc = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        answer = proc.stdout.strip()
        if proc.returncode != 0 or answer.startswith(("ERR", "NOSCRIPT", "WRONGTYPE")):
            raise core.BenchError(f"redis-cli {args[0]} failed: {answer} {proc.stderr.strip()}")
        return answer


@contextlib.contextmanager
def redis_server(work_dir: Path, timeout_s: float = 20.0) -> Iterator[RedisServer]:
    """Start redis-server (no RDB, no AOF) in `work_dir` on a free loopback port; stop it afterwards."""
    ensure_redis()
    work_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with (work_dir / "redis.log").open("ab") as out:
        proc = subprocess.Popen(
            [
                *("redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"),
                *("--dir", str(work_dir), "--daemonize", "no", "--protected-mode", "no"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RedisServer(port)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise core.BenchError(f"redis-server exited with code {proc.returncode}; see {work_dir}/redis.log")
            with contextlib.suppress(core.BenchError, subprocess.TimeoutExpired):
                if server.cli("PING") == "PONG":
                    break
            if time.monotonic() > deadline:
                raise core.BenchError(f"redis-server not ready on port {port} in {timeout_s}s")
            time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclasses.dataclass(frozen=True)
class BenchLine:
    """One redis-benchmark CSV result line."""

    rate_per_s: float
    p99_ms: float


def parse_csv(output: str) -> BenchLine:
    """The rate and p99 of redis-benchmark --csv output (header "test","rps",…,"p99_latency_ms",…)."""
    rows = list(csv.DictReader(io.StringIO(output)))
    if len(rows) != 1 or "rps" not in rows[0] or "p99_latency_ms" not in rows[0]:
        raise core.BenchError(f"unexpected redis-benchmark output: {output.strip()[:500]}")
    return BenchLine(float(rows[0]["rps"]), float(rows[0]["p99_latency_ms"]))


def benchmark(server: RedisServer, sha: str, workload: core.Workload) -> BenchLine:
    """One redis-benchmark run of workload.purchases EVALSHA calls from workload.redis_connections clients."""
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port)]
    cmd += ["-c", str(workload.redis_connections), "-n", str(workload.purchases), "-q", "--csv"]
    cmd += ["EVALSHA", sha, "1", STOCK_KEY, str(workload.quantity)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise core.BenchError(f"redis-benchmark failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return parse_csv(proc.stdout)


def scaled(workload: core.Workload) -> core.Workload:
    """The workload with stock and purchases multiplied by one factor to at least redis_ceiling_requests."""
    return core.scaled(workload, workload.redis_ceiling_requests)


def measure(workload: core.Workload, work_dir: Path, script: str = SCRIPT) -> core.ModeResult:
    """REPEATS runs of the (scaled) workload, stock reset each time; the best rate; every run's counter checked."""
    run_load = scaled(workload)
    lines: list[BenchLine] = []
    oversold = 0
    accepted = 0
    with redis_server(work_dir) as server:
        sha = server.cli("SCRIPT", "LOAD", script)
        for _ in range(REPEATS):
            server.cli("SET", STOCK_KEY, str(run_load.stock))
            lines.append(benchmark(server, sha, run_load))
            left = int(server.cli("GET", STOCK_KEY))
            # the script is the only writer: what is gone from the counter was accepted
            accepted = (run_load.stock - left) // run_load.quantity
            oversold = max(oversold, core.check_counts(run_load, accepted, left))
    best = max(lines, key=lambda line: line.rate_per_s)
    return core.ModeResult(
        rate_per_s=best.rate_per_s,
        p99_ms=best.p99_ms,
        oversold=oversold,
        attempts=run_load.purchases,
        accepted=accepted,
        notes={
            "connections": run_load.redis_connections,
            "stock_x_purchases": f"{run_load.stock}x{run_load.purchases}",
            "runs_per_s": [round(line.rate_per_s) for line in lines],
            "durable": False,
        },
    )


async def run(workload: core.Workload, env: core.BenchEnv) -> core.ModeResult:
    """Measure the Redis Lua check-and-decrement at redis-benchmark's rate."""
    return await asyncio.to_thread(measure, workload, env.work_dir / "redis")
