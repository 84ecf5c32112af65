"""Server-Sent Events from a gRPC server stream, with keep-alive comments."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pydantic

from flashsale.gateway import errors

log = logging.getLogger(__name__)

_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]
KEEPALIVE = b": keep-alive\n\n"
CONNECTED = b": connected\n\n"


def event(name: str, data: str) -> bytes:
    """One SSE event: `event: <name>` then one `data:` line per line of data."""
    name = " ".join(name.split()) or "message"
    lines = [f"event: {name}", *(f"data: {line}" for line in data.splitlines() or [""])]
    return ("\n".join(lines) + "\n\n").encode()


async def stream(
    call: grpc.aio.UnaryStreamCall[Any, Any],
    render: Callable[[Any], tuple[str, pydantic.BaseModel]],
    keepalive_s: float,
    stopping: asyncio.Event,
) -> AsyncIterator[bytes]:
    """Relay a server stream as SSE events until it ends, the gateway stops or the client goes away.

    `render` turns a message into (event name, body). A keep-alive comment goes out whenever nothing
    was sent for `keepalive_s`. A failed stream ends with an `error` event in the JSON error shape.
    """
    stop = asyncio.ensure_future(stopping.wait())
    read: asyncio.Future[Any] | None = None
    try:
        yield CONNECTED
        while True:
            if read is None:
                read = asyncio.ensure_future(call.read())
            done, _ = await asyncio.wait({read, stop}, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED)
            if stop in done:
                return
            if read not in done:
                yield KEEPALIVE
                continue
            try:
                item = read.result()
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                    yield event("error", json.dumps(errors.from_rpc_error(exc).response_body()))
                return
            read = None
            if item is _EOF:
                return
            name, body = render(item)
            yield event(name, body.model_dump_json())
    finally:
        stop.cancel()
        call.cancel()
        if read is not None:
            read.cancel()
            with contextlib.suppress(BaseException):
                await read
