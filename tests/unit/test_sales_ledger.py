"""The single writer's batch decision: log order, window, limit, stock, pool, duplicates."""

import pytest

from flashsale.common import topics
from flashsale.sales import domain, ledger, partitioning

TERMS = ledger.Terms("s", starts_at=1_000, ends_at=2_000, per_user_limit=2)
A = domain.Outcome


def _r(rid: str, user: str, qty: int = 1, at: int = 1_500, offset: int = 0) -> ledger.Request:
    return ledger.Request(rid, user, qty, at, offset)


def _outcomes(batch: ledger.BatchDecision) -> list[tuple[str, A]]:
    return [(v.request.request_id, v.outcome) for v in batch.verdicts]


def test_first_come_first_served_in_log_order() -> None:
    batch = ledger.decide_batch(TERMS, [_r("1", "a"), _r("2", "b"), _r("3", "c")], 2, 0, {}, set())
    assert _outcomes(batch) == [("1", A.ACCEPTED), ("2", A.ACCEPTED), ("3", A.SOLD_OUT)]
    assert (batch.taken, batch.drawn) == (2, 0)


def test_window_uses_the_arrival_time() -> None:
    batch = ledger.decide_batch(
        TERMS, [_r("1", "a", at=999), _r("2", "b", at=2_000), _r("3", "c", at=1_000)], 5, 0, {}, set()
    )
    assert _outcomes(batch) == [("1", A.NOT_STARTED), ("2", A.ENDED), ("3", A.ACCEPTED)]


def test_limit_counts_what_the_user_holds_and_this_batch() -> None:
    batch = ledger.decide_batch(TERMS, [_r("1", "a"), _r("2", "a"), _r("3", "b", 2)], 10, 0, {"a": 1, "b": 1}, set())
    assert _outcomes(batch) == [("1", A.ACCEPTED), ("2", A.LIMIT_EXCEEDED), ("3", A.LIMIT_EXCEEDED)]


def test_a_rejected_request_takes_nothing() -> None:
    batch = ledger.decide_batch(TERMS, [_r("1", "a", 2), _r("2", "b")], 1, 0, {}, set())
    assert _outcomes(batch) == [("1", A.SOLD_OUT), ("2", A.ACCEPTED)]
    assert batch.taken == 1


def test_the_pool_tops_up_the_partition_only_by_what_is_needed() -> None:
    batch = ledger.decide_batch(TERMS, [_r("1", "a", 2), _r("2", "b", 2), _r("3", "c")], 1, 3, {}, set())
    assert _outcomes(batch) == [("1", A.ACCEPTED), ("2", A.ACCEPTED), ("3", A.SOLD_OUT)]
    assert (batch.taken, batch.drawn) == (4, 3)


def test_a_request_id_keeps_its_first_decision() -> None:
    batch = ledger.decide_batch(TERMS, [_r("1", "a"), _r("1", "a"), _r("2", "b")], 5, 0, {}, {"2"})
    assert _outcomes(batch) == [("1", A.ACCEPTED)]
    assert [d.request_id for d in batch.duplicates] == ["1", "2"]
    assert batch.taken == 1


def test_split_spreads_the_remainder_and_keeps_the_reserve() -> None:
    assert partitioning.split(10, 4, 1) == [3, 2, 2, 2]
    assert sum(partitioning.split(1_000_003, 7, 3)) == 1_000_000


def test_a_user_always_lands_in_one_partition() -> None:
    assert {partitioning.partition_of("ann", 8) for _ in range(5)} == {partitioning.partition_of("ann", 8)}
    spread = {partitioning.partition_of(f"user-{i}", 8) for i in range(200)}
    assert spread == set(range(8))
    assert topics.sale_of_topic(topics.request_topic("abc")) == "abc"


def test_undecided_drops_what_was_decided_and_resumes_at_the_stored_offset() -> None:
    log = [_r(str(i), f"u{i}", offset=i) for i in range(10, 15)]
    assert [r.offset for r in ledger.undecided(range(10, 15), log, 12)] == [12, 13, 14]
    assert ledger.undecided(range(10, 15), log, 15) == []


def test_a_record_holds_many_requests_and_an_empty_record_still_continues_the_log() -> None:
    log = [_r("a", "u1", offset=12), _r("b", "u2", offset=12), _r("c", "u1", offset=14)]
    assert [r.request_id for r in ledger.undecided([12, 13, 14], log, 12)] == ["a", "b", "c"]
    with pytest.raises(ledger.Gap):
        ledger.undecided([12, 14], log, 12)  # record 13 (malformed, so no requests) was never read


def test_a_hole_in_the_log_is_never_decided_over() -> None:
    stale = [_r(str(i), f"u{i}", offset=i) for i in (14, 15, 16)]  # 12 and 13 were skipped by the consumer
    with pytest.raises(ledger.Gap) as caught:
        ledger.undecided([14, 15, 16], stale, 12)
    assert caught.value.expected == 12
    jump = [_r(str(i), f"u{i}", offset=i) for i in (12, 13, 15)]
    with pytest.raises(ledger.Gap):
        ledger.undecided([12, 13, 15], jump, 12)


def test_need_is_what_the_batch_would_take_with_unlimited_stock() -> None:
    terms = ledger.Terms("s", starts_at=100, ends_at=200, per_user_limit=2)
    batch = [
        _r("a", "ann", qty=1, at=150),
        _r("a", "ann", qty=1, at=150, offset=1),  # the same request again
        _r("b", "ann", qty=2, at=151),  # over ann's limit after "a"
        _r("c", "bob", qty=2, at=152),
        _r("d", "cy", qty=1, at=99),  # before the start
        _r("e", "dee", qty=1, at=152),  # decided before
        _r("f", "eve", qty=1, at=153),  # eve holds 2 already
    ]
    held = {"eve": 2}
    assert ledger.need(terms, batch, held, {"e"}) == 3
    unlimited = ledger.decide_batch(terms, batch, remaining=1_000, pool=0, held=held, decided_before={"e"})
    assert unlimited.taken == 3


def test_the_shortfall_is_what_the_partitions_and_the_pool_do_not_cover() -> None:
    assert ledger.shortfall({0: 5, 1: 1}, {0: 3, 1: 9}, 2) == 0  # partition 0 lacks 2, the pool has them
    assert ledger.shortfall({0: 5, 1: 4}, {0: 3, 1: 1}, 2) == 3  # 2 + 3 beyond the partitions, 2 in the pool
    assert ledger.shortfall({0: 0}, {0: 0}, 0) == 0


def test_a_refill_takes_what_the_round_does_not_need_then_the_fullest_partitions_outside_it() -> None:
    remaining = {0: 0, 1: 9, 2: 4, 3: 6}
    # the round holds 0 and 1; 1 needs 5 of its 9: its 4 spare go first, then 3 (the fullest outside) gives the rest
    assert ledger.refill({0: 8, 1: 5}, remaining, 1) == {1: 4, 3: 3}
    # nothing short: nothing moves
    assert ledger.refill({0: 0, 1: 9}, remaining, 0) == {}
    # more wanted than the sale holds: every spare unit moves, the rest is refused (fairly: there is none)
    assert ledger.refill({0: 30, 1: 9}, remaining, 2) == {3: 6, 2: 4}


def _one(req: ledger.Request, remaining: int = 5, held: dict[str, int] | None = None) -> A:
    return ledger.decide_batch(TERMS, [req], remaining, 0, held or {}, set()).verdicts[0].outcome


def test_the_window_is_closed_before_the_start_and_from_the_end_on() -> None:
    assert _one(_r("1", "a", at=999)) is A.NOT_STARTED
    assert _one(_r("1", "a", at=1_000)) is A.ACCEPTED
    assert _one(_r("1", "a", at=1_999)) is A.ACCEPTED
    assert _one(_r("1", "a", at=2_000)) is A.ENDED


def test_the_limit_allows_exactly_up_to_the_limit_and_stock_exactly_what_remains() -> None:
    assert _one(_r("1", "a", qty=2)) is A.ACCEPTED
    assert _one(_r("1", "a", qty=1), held={"a": 1}) is A.ACCEPTED
    assert _one(_r("1", "a", qty=2), held={"a": 1}) is A.LIMIT_EXCEEDED
    assert _one(_r("1", "a", qty=2), remaining=2) is A.ACCEPTED
    assert _one(_r("1", "a", qty=2), remaining=1) is A.SOLD_OUT


def test_the_rule_is_window_then_limit_then_stock() -> None:
    assert _one(_r("1", "a", qty=1, at=500), remaining=0, held={"a": 2}) is A.NOT_STARTED
    assert _one(_r("1", "a", qty=1), remaining=0, held={"a": 2}) is A.LIMIT_EXCEEDED
    assert _one(_r("1", "a", qty=1), remaining=0, held={"a": 1}) is A.SOLD_OUT
