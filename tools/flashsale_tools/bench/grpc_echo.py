"""(d) A bare grpc.aio unary echo server (child process) driven by a grpc.aio client with `in_flight` requests."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc

from flashsale_tools.bench import child_server, core, echo_server

_PAYLOAD_BYTES = 64  # about a serialized purchase request (sale id, user id, request id, quantity)
_WARMUP = 200


def echo_process(timeout_s: float = 30.0) -> contextlib.AbstractAsyncContextManager[int]:
    """Start the echo server in a child process; yield its port; stop it."""
    return child_server.serving(echo_server.__name__, timeout_s)


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
