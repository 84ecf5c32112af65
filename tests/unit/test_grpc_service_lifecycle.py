"""A process whose background task dies ends with an error instead of serving on without it."""

from __future__ import annotations

import asyncio

import pytest

from flashsale.common import grpc_server


async def test_a_failed_background_task_shuts_the_server_down_with_an_error() -> None:
    server = grpc_server.GrpcService("probe", "127.0.0.1:0", [])
    stopped: list[str] = []

    async def dies() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("the sales worker stopped")

    async def hook() -> None:
        stopped.append("hook")

    server.add_background(dies)
    server.on_shutdown(hook)
    with pytest.raises(grpc_server.BackgroundTaskFailed, match="probe: a background task failed: the sales worker"):
        await asyncio.wait_for(server.run_until_signalled(), 10)
    assert stopped == ["hook"]  # shut down gracefully first
