"""(d) A bare grpc.aio unary echo server (child process) driven by a grpc.aio client with `in_flight` requests."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator

import grpc

from flashsale_tools.bench import core, echo_server

_PAYLOAD_BYTES = 64  # about a serialized purchase request (sale id, user id, request id, quantity)
_WARMUP = 200


@contextlib.asynccontextmanager
async def echo_process(timeout_s: float = 30.0) -> AsyncIterator[int]:
    """Start the echo server in a child process; yield its port; stop it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        echo_server.__name__,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
        except TimeoutError:
            raise core.BenchError(f"the echo server did not start in {timeout_s}s") from None
        if not line.startswith(b"PORT "):
            raise core.BenchError(f"the echo server exited (code {await proc.wait()}) before serving")
        yield int(line.split()[1])
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def drive(port: int, requests: int, in_flight: int) -> tuple[float, list[float]]:
    """Send `requests` echoes with `in_flight` outstanding; return (elapsed seconds, latencies in ms)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        call = channel.unary_unary(echo_server.METHOD, request_serializer=None, response_deserializer=None)
        for _ in range(_WARMUP):
            await call(b"w" * _PAYLOAD_BYTES, timeout=10)
        sent = 0
        latencies: list[float] = []

        async def worker() -> None:
            nonlocal sent
            while sent < requests:
                payload = f"{sent:010d}".encode().ljust(_PAYLOAD_BYTES, b"x")
                sent += 1
                began = time.perf_counter()
                answer = await call(payload, timeout=30)
                latencies.append((time.perf_counter() - began) * 1000.0)
                if answer != payload:
                    raise core.BenchError("the echo answered other bytes than it was sent")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(in_flight, requests))))
        return time.perf_counter() - began, latencies


async def run(workload: core.Workload, env: core.BenchEnv) -> core.ModeResult:
    """Measure bare gRPC unary round trips per second at the workload's in-flight count."""
    async with echo_process() as port:
        elapsed, latencies = await drive(port, workload.purchases, workload.in_flight)
    if len(latencies) != workload.purchases:
        raise core.BenchError(f"{len(latencies)} echoes answered of {workload.purchases}")
    return core.ModeResult(
        rate_per_s=workload.purchases / elapsed,
        p99_ms=core.percentile(latencies, 99),
        oversold=0,
        attempts=workload.purchases,
        notes={"in_flight": min(workload.in_flight, workload.purchases), "payload_bytes": _PAYLOAD_BYTES},
    )
