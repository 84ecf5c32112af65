"""Decisions made by any sales worker, read back from the purchases.decided events, for the calls of this
process that wait for them (a purchase's partition may be decided by a worker in another process)."""

from __future__ import annotations

from collections.abc import Callable

from flashsale.common import decided, errors, events, timeutil, topics
from flashsale.sales import domain, pipeline
from flashsale_api.v1 import events_pb2


def decisions_of(body: events_pb2.PurchasesDecided, decided_at: int) -> list[domain.Decision]:
    """The decisions a purchases.decided event carries (PermanentEventError for an unknown reason)."""
    try:
        return [
            domain.Decision(
                request_id=entry.request_id,
                sale_id=body.sale_id,
                user_id=entry.user_id,
                quantity=entry.quantity,
                outcome=domain.Outcome(entry.reason) if entry.reason else domain.Outcome.ACCEPTED,
                reservation_id=entry.reservation_id,
                decided_at=decided_at,
            )
            for entry in decided.entries(body)
        ]
    except ValueError as exc:
        raise errors.PermanentEventError(f"{topics.PURCHASES_DECIDED}: {exc}") from None


def handler(waiters: pipeline.Waiters) -> Callable[[events_pb2.EventEnvelope], None]:
    """The handler of topics.SALES (a per-process group reading from the end): hands decisions to the waiting
    calls; does nothing while no call waits."""

    def handle(env: events_pb2.EventEnvelope) -> None:
        if env.type != topics.PURCHASES_DECIDED or not waiters.anyone_waiting():
            return
        body = events_pb2.PurchasesDecided()
        events.unpack(env, body)
        waiters.resolve_from_thread(decisions_of(body, timeutil.from_timestamp(env.occurred_at)))

    return handle
