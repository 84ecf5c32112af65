"""The gateway's purchases to the sales service over one long-lived DecidePurchases stream instead of a unary call
each: purchases are queued in the order the handlers reach it, all those of one turn of the event loop go in one
message, and each answer comes back on the same stream naming the request's position. A broken stream fails the
purchases it carried (503: the client retries with the same request id) and the next purchase opens a new one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from flashsale.gateway import errors
from flashsale_api.v1 import sales_pb2, sales_pb2_grpc

log = logging.getLogger(__name__)


class _Stream:
    """One open DecidePurchases call: the batches it sends (from its outbox) and the task reading its answers."""

    def __init__(self, sales: sales_pb2_grpc.SalesServiceAsyncStub) -> None:
        self.next_index = 0
        self.waiting: dict[int, asyncio.Future[sales_pb2.PurchaseAnswer]] = {}
        self.queued: list[sales_pb2.PurchaseRequest] = []
        self.outbox: asyncio.Queue[list[sales_pb2.PurchaseRequest] | None] = asyncio.Queue()
        self.broken = False
        self.call = sales.DecidePurchases(self._batches())
        self.reader = asyncio.create_task(self._read())

    async def _batches(self) -> AsyncIterator[sales_pb2.PurchaseBatchRequest]:
        while (batch := await self.outbox.get()) is not None:
            yield sales_pb2.PurchaseBatchRequest(requests=batch)

    async def _read(self) -> None:
        try:
            async for message in self.call:
                for item in message.answers:
                    fut = self.waiting.pop(item.index, None)
                    if fut is not None and not fut.done():
                        fut.set_result(item)
            failure = errors.ApiError(503, "UNAVAILABLE", "the sales service ended the purchase stream; retry")
        except grpc.aio.AioRpcError as exc:
            failure = errors.from_rpc_error(exc)
        self.fail(failure)

    def enqueue(self, request: sales_pb2.PurchaseRequest) -> tuple[int, asyncio.Future[sales_pb2.PurchaseAnswer]]:
        """Queue a request for the next message (sent once this turn of the loop is over): its index and the
        future of its answer."""
        loop = asyncio.get_running_loop()
        index, self.next_index = self.next_index, self.next_index + 1
        fut: asyncio.Future[sales_pb2.PurchaseAnswer] = loop.create_future()
        self.waiting[index] = fut
        if not self.queued:
            loop.call_soon(self._flush)
        self.queued.append(request)
        return index, fut

    def _flush(self) -> None:
        queued, self.queued = self.queued, []
        self.outbox.put_nowait(queued)

    def fail(self, failure: Exception) -> None:
        """Fail every purchase still waiting on this stream and stop using it."""
        self.broken = True
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(failure)
        self.waiting.clear()
        self.outbox.put_nowait(None)  # the request stream ends

    async def close(self) -> None:
        """Cancel the call and its reader."""
        self.call.cancel()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


class PurchaseStream:
    """Purchases carried to the sales service over one stream per gateway process."""

    def __init__(self, sales: sales_pb2_grpc.SalesServiceAsyncStub) -> None:
        self._sales = sales
        self._stream: _Stream | None = None

    def _open(self) -> _Stream:
        if self._stream is None or self._stream.broken:
            self._stream = _Stream(self._sales)
        return self._stream

    async def purchase(self, request: sales_pb2.PurchaseRequest, timeout_s: float) -> sales_pb2.PurchaseDecision:
        """The decision on one purchase (PENDING when the sales service did not decide it within its wait_ms);
        errors.ApiError when it was refused (the field named), the stream broke (503) or no answer came in time
        (504)."""
        stream = self._open()
        index, fut = stream.enqueue(request)
        try:
            answer = await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            stream.waiting.pop(index, None)
            raise errors.ApiError(504, "DEADLINE_EXCEEDED", "the sales service did not answer in time") from None
        if answer.error_code:
            raise errors.from_status(answer.error_code, answer.error_message, answer.error_field)
        return answer.decision

    async def close(self) -> None:
        """End the stream (the gateway is stopping)."""
        if self._stream is not None:
            self._stream.fail(errors.ApiError(503, "UNAVAILABLE", "the gateway is stopping; retry"))
            await self._stream.close()
            self._stream = None
