"""A crowd of calls arriving at once is queued by the gRPC server, not cancelled (gRPC core's default sheds
calls beyond 1,000 waiting for the application)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from flashsale.common import grpc_server

pytestmark = pytest.mark.integration

CROWD = 4_000
_METHOD = "/probe.Busy/Work"


def _busy_handler() -> grpc.GenericRpcHandler:
    async def work(request: bytes, context: Any) -> bytes:
        ends = time.perf_counter() + 0.0005  # CPU the event loop spends per call, so calls pile up behind it
        while time.perf_counter() < ends:
            pass
        return request

    handler = grpc.unary_unary_rpc_method_handler(work)

    class Busy(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            return handler if details.method == _METHOD else None

    return Busy()


async def test_a_crowd_arriving_at_once_is_served_not_cancelled() -> None:
    server = grpc_server.GrpcService("probe", "127.0.0.1:0", [])
    server.register(lambda s: s.add_generic_rpc_handlers((_busy_handler(),)))
    async with server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(_METHOD, request_serializer=None, response_deserializer=None)
        outcomes = await asyncio.gather(*(call(b"x", timeout=60) for _ in range(CROWD)), return_exceptions=True)
    failed = [o.code().name for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert not failed, f"{len(failed)} of {CROWD} calls failed: {sorted(set(failed))}"
    assert outcomes.count(b"x") == CROWD
