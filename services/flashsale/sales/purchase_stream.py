"""DecidePurchases' server side: every request of the incoming batches decided concurrently (started in the order
they came, so they reach the log in that order), the answers sent back in batches as the decisions are made."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from flashsale.common import errors, tracing
from flashsale_api.v1 import sales_pb2

log = logging.getLogger(__name__)

Decide = Callable[[sales_pb2.PurchaseRequest], Awaitable[sales_pb2.PurchaseDecision]]


def _refused(index: int, exc: BaseException) -> sales_pb2.PurchaseAnswer:
    if isinstance(exc, errors.DomainError):
        return sales_pb2.PurchaseAnswer(
            index=index, error_code=exc.status, error_message=exc.detail(), error_field=exc.field or ""
        )
    log.error("a streamed purchase failed", exc_info=exc)
    return sales_pb2.PurchaseAnswer(index=index, error_code="INTERNAL", error_message="internal error")


async def answers(
    batches: AsyncIterator[sales_pb2.PurchaseBatchRequest], decide: Decide
) -> AsyncIterator[sales_pb2.PurchaseAnswers]:
    """Answers to every request of `batches` (each named by its position in the stream), until the stream ends and
    every request is answered."""
    ready: asyncio.Queue[list[sales_pb2.PurchaseAnswer] | None] = asyncio.Queue()
    outgoing: list[sales_pb2.PurchaseAnswer] = []
    running: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    def flush() -> None:
        nonlocal outgoing
        ready.put_nowait(outgoing)
        outgoing = []

    def answer(item: sales_pb2.PurchaseAnswer) -> None:
        if not outgoing:
            loop.call_soon(flush)  # every answer made in this turn of the loop goes in one message
        outgoing.append(item)

    async def one(index: int, request: sales_pb2.PurchaseRequest) -> None:
        try:
            if request.traceparent and tracing.active():  # the purchase's own trace, as a unary call would carry
                parent = tracing.extracted({"traceparent": request.traceparent})
                with tracing.span("DecidePurchases purchase", context=parent, kind=tracing.SERVER):
                    decided = await decide(request)
            else:
                decided = await decide(request)
            answer(sales_pb2.PurchaseAnswer(index=index, decision=decided))
        except Exception as exc:
            answer(_refused(index, exc))

    async def read() -> None:
        index = 0
        try:
            async for batch in batches:
                for request in batch.requests:
                    task = asyncio.create_task(one(index, request))
                    running.add(task)
                    task.add_done_callback(running.discard)
                    index += 1
            while running:
                await asyncio.gather(*list(running))
        finally:
            loop.call_soon(ready.put_nowait, None)  # after the last flush

    reader = asyncio.create_task(read())
    try:
        while (items := await ready.get()) is not None:
            if items:
                yield sales_pb2.PurchaseAnswers(answers=items)
        await reader
    finally:
        reader.cancel()
        for task in list(running):
            task.cancel()
