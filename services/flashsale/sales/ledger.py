"""The single writer's decision of one batch of a partition's requests, in log order (pure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from flashsale.sales import domain


@dataclasses.dataclass(frozen=True)
class Terms:
    """What a decision needs to know of its sale."""

    sale_id: str
    starts_at: int
    ends_at: int
    per_user_limit: int


class Request(NamedTuple):
    """A request read from the partition's log (a named tuple: records are decoded by the thousand)."""

    request_id: str
    user_id: str
    quantity: int
    arrived_at: int  # the broker's log-append time, epoch ms
    offset: int


class Verdict(NamedTuple):
    """The decision of one new request of the batch."""

    request: Request
    outcome: domain.Outcome


@dataclasses.dataclass(frozen=True)
class BatchDecision:
    """Everything a batch changes: new verdicts, stock taken, pool drawn (what users hold follows from the
    accepted verdicts: their reservations)."""

    verdicts: tuple[Verdict, ...]
    duplicates: tuple[Request, ...]  # request ids decided before (the first decision stands)
    taken: int  # units reserved by this batch
    drawn: int  # units moved from the pool into the partition


def decide_batch(
    terms: Terms,
    requests: Sequence[Request],
    remaining: int,
    pool: int,
    held: dict[str, int],
    decided_before: set[str],
) -> BatchDecision:
    """Decide requests in log order: window, then per-user limit, then stock (the partition's, then the pool's).

    `held` is what each user of the batch holds already; `decided_before` the batch's request ids that have a
    decision already. A request id seen twice keeps its first decision.
    """
    seen = set(decided_before)
    holding = dict(held)
    verdicts: list[Verdict] = []
    duplicates: list[Request] = []
    taken = drawn = 0
    for req in requests:
        if req.request_id in seen:
            duplicates.append(req)
            continue
        seen.add(req.request_id)
        outcome = _decide_one(terms, req, holding.get(req.user_id, 0), remaining + pool)
        if outcome.accepted:
            if req.quantity > remaining:
                need = req.quantity - remaining
                pool -= need
                drawn += need
                remaining += need
            remaining -= req.quantity
            taken += req.quantity
            holding[req.user_id] = holding.get(req.user_id, 0) + req.quantity
        verdicts.append(Verdict(req, outcome))
    return BatchDecision(tuple(verdicts), tuple(duplicates), taken, drawn)


_UNLIMITED = 1 << 62


def _decide_one(terms: Terms, req: Request, holds: int, available: int) -> domain.Outcome:
    """The purchase rule, the one place it lives: window (by log-append time), then the per-user limit (given
    what the user holds), then stock."""
    if req.arrived_at < terms.starts_at:
        return domain.Outcome.NOT_STARTED
    if req.arrived_at >= terms.ends_at:
        return domain.Outcome.ENDED
    if holds + req.quantity > terms.per_user_limit:
        return domain.Outcome.LIMIT_EXCEEDED
    if req.quantity > available:
        return domain.Outcome.SOLD_OUT
    return domain.Outcome.ACCEPTED


class Gap(Exception):
    """The requests read do not continue the log where the stored offset says deciding resumes."""

    def __init__(self, expected: int, found: int) -> None:
        super().__init__(f"log gap: expected offset {expected}, found {found}")
        self.expected = expected


def undecided(offsets: Sequence[int], requests: Sequence[Request], start: int) -> list[Request]:
    """The requests of records at or after the stored offset `start`; the records must continue the log exactly
    from there.

    `offsets` are the offsets of the records read, in log order (a record holds one or more requests, or none
    when it was malformed). A record before `start` was decided already. A hole (the first record after `start`,
    or a jump between two) means records were skipped by the consumer (e.g. stale fetches around a rebalance):
    deciding them would move the stored offset past requests never decided, so it raises Gap and the caller reads
    again from `start`.
    """
    expected = start
    for offset in offsets:
        if offset < start:
            continue
        if offset != expected:
            raise Gap(expected, offset)
        expected += 1
    if not offsets or offsets[0] >= start:  # the usual case: nothing read was decided before
        return list(requests)
    return [r for r in requests if r.offset >= start]


def need(terms: Terms, requests: Sequence[Request], held: dict[str, int], decided_before: set[str]) -> int:
    """The units a batch would reserve if stock were unlimited: new request ids inside the window and within the
    per-user limit (given what each user holds), exactly as decide_batch would take them."""
    seen = set(decided_before)
    holding = dict(held)
    units = 0
    for req in requests:
        if req.request_id in seen:
            continue
        seen.add(req.request_id)
        holds = holding.get(req.user_id, 0)
        if _decide_one(terms, req, holds, _UNLIMITED) is domain.Outcome.ACCEPTED:
            holding[req.user_id] = holds + req.quantity
            units += req.quantity
    return units


def bound(requests: Sequence[Request]) -> int:
    """The units a batch could need at most: every request's quantity (cheap; `need` is exact)."""
    return sum(r.quantity for r in requests)


def shortfall(needs: Mapping[int, int], remaining: Mapping[int, int], pool: int) -> int:
    """Units the round's batches need beyond their own partitions' stock and the pool (0 when these cover them).

    `needs` is each batch's exact need (by partition), `remaining` each partition's stock."""
    beyond = sum(max(0, need - remaining[partition]) for partition, need in needs.items())
    return max(0, beyond - pool)


def refill(needs: Mapping[int, int], remaining: Mapping[int, int], pool: int) -> dict[int, int]:
    """Units to move from each partition into the pool so that it covers the round's shortfall, or as much of it as
    the sale holds.

    `remaining` covers every partition of the sale (the round holds all of them); `needs` the round's batches.
    Partitions of the round give only what their own batch does not need, and give first (that stock is wanted by
    nobody now); then the other partitions, the fullest first. Whatever the round still lacks after this is stock
    the sale does not have, so refusing it is fair.
    """
    short = shortfall(needs, remaining, pool)
    spare = {q: left - needs.get(q, 0) for q, left in remaining.items() if left > needs.get(q, 0)}
    order = sorted(spare, key=lambda q: (q not in needs, -spare[q], q))
    moves: dict[int, int] = {}
    for donor in order:
        if short <= 0:
            break
        units = min(short, spare[donor])
        moves[donor] = units
        short -= units
    return moves
