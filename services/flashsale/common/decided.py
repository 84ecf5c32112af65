"""Reading the purchases.decided event: one sale's decisions made together, as one entry per decision."""

from __future__ import annotations

import dataclasses

from flashsale.common import errors, topics
from flashsale_api.v1 import events_pb2

_ITEM_PREFIX = "decision-"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One decision of a purchases.decided event."""

    request_id: str
    user_id: str
    quantity: int
    reason: str  # empty when accepted
    reservation_id: str  # set when accepted

    @property
    def accepted(self) -> bool:
        """True when the purchase was accepted (a reservation was made)."""
        return not self.reason


def entries(msg: events_pb2.PurchasesDecided) -> list[Entry]:
    """The decisions of an event in order, or PermanentEventError when its columns disagree."""
    columns = (msg.request_ids, msg.user_ids, msg.quantities, msg.reasons, msg.reservation_ids)
    if len({len(c) for c in columns}) != 1:
        raise errors.PermanentEventError(
            f"{topics.PURCHASES_DECIDED}: columns of different lengths {[len(c) for c in columns]} "
            f"for sale {msg.sale_id!r}"
        )
    return [Entry(*row) for row in zip(*columns, strict=True)]


def entry_id(request_id: str) -> str:
    """A stable id of one decision, for deduplicating it across re-publications (as an event id is used)."""
    return _ITEM_PREFIX + request_id
