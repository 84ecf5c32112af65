"""Decisions read back from purchases.decided events reach the calls of this process that wait for them."""

from __future__ import annotations

import asyncio

import pytest

from flashsale.common import errors, events, topics
from flashsale.sales import decision_feed, domain, waiting
from flashsale_api.v1 import events_pb2


def _event(reasons: list[str]) -> events_pb2.EventEnvelope:
    body = events_pb2.PurchasesDecided(
        sale_id="sale-1",
        request_ids=[f"r{i}" for i in range(len(reasons))],
        user_ids=[f"u{i}" for i in range(len(reasons))],
        quantities=[1] * len(reasons),
        reasons=reasons,
        reservation_ids=["" if r else f"res{i}" for i, r in enumerate(reasons)],
    )
    return events.envelope(topics.PURCHASES_DECIDED, "sale-1", body, "sales")


async def test_a_waiting_call_gets_its_decision_from_an_event_handled_in_another_thread() -> None:
    waiters = waiting.Waiters(asyncio.get_running_loop())
    handle = decision_feed.handler(waiters)
    accepted, refused = waiters.wait("r0"), waiters.wait("r1")
    await asyncio.to_thread(handle, _event(["", "sold_out"]))
    first, second = await asyncio.wait_for(asyncio.gather(accepted, refused), 5)
    assert (first.outcome, first.reservation_id, first.sale_id) == (domain.Outcome.ACCEPTED, "res0", "sale-1")
    assert (second.outcome, second.reservation_id) == (domain.Outcome.SOLD_OUT, "")
    assert not waiters.anyone_waiting()


def test_nothing_is_built_while_no_call_waits_and_a_bad_reason_is_refused() -> None:
    loop = asyncio.new_event_loop()
    try:
        waiters = waiting.Waiters(loop)
        handle = decision_feed.handler(waiters)
        handle(_event(["no_such_reason"]))  # nobody waits: not even read
        waiters.wait("r0")
        with pytest.raises(errors.PermanentEventError, match="no_such_reason"):
            handle(_event(["no_such_reason"]))
    finally:
        loop.close()
