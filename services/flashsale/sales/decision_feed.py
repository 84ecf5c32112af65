"""Decisions made by any sales worker, read back from the purchases.decided events, for the calls of this
process that wait for them (a purchase's partition may be decided by a worker in another process)."""

from __future__ import annotations

from collections.abc import Callable

from flashsale.common import events, timeutil, topics
from flashsale.sales import messages, waiting
from flashsale_api.v1 import events_pb2


def handler(waiters: waiting.Waiters) -> Callable[[events_pb2.EventEnvelope], None]:
    """The handler of topics.SALES (a per-process group reading from the end): hands decisions to the waiting
    calls; does nothing while no call waits."""

    def handle(env: events_pb2.EventEnvelope) -> None:
        if env.type != topics.PURCHASES_DECIDED or not waiters.anyone_waiting():
            return
        body = events_pb2.PurchasesDecided()
        events.unpack(env, body)
        waiters.resolve_from_thread(messages.decisions_of(body, timeutil.from_timestamp(env.occurred_at)))

    return handle
