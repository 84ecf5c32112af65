"""How a worker cuts a partition's pending records into a round's batch: whole records, in log order."""

from __future__ import annotations

from flashsale.sales import ledger, worker


def _pending(sizes: dict[int, int]) -> worker.Pending:
    """Records at the given offsets holding that many requests each (0: a malformed record, none)."""
    held = worker.Pending(due=1.0)
    for offset, size in sizes.items():
        held.offsets.append(offset)
        held.requests.extend(ledger.Request(f"r{offset}-{k}", "u", 1, 0, offset) for k in range(size))
    return held


def test_a_batch_within_the_limit_is_taken_whole() -> None:
    held = _pending({10: 3, 11: 2})
    first, rest = worker.split(held, 5)
    assert first is held
    assert rest is None


def test_only_whole_records_are_taken() -> None:
    first, rest = worker.split(_pending({10: 3, 11: 3, 12: 3}), 7)
    assert first.offsets == [10, 11]
    assert [r.request_id for r in first.requests] == ["r10-0", "r10-1", "r10-2", "r11-0", "r11-1", "r11-2"]
    assert rest is not None
    assert rest.offsets == [12]
    assert [r.offset for r in rest.requests] == [12, 12, 12]
    assert rest.due == first.due == 1.0


def test_a_record_larger_than_the_limit_is_taken_alone() -> None:
    first, rest = worker.split(_pending({10: 5, 11: 1}), 2)
    assert first.offsets == [10]
    assert len(first.requests) == 5
    assert rest is not None
    assert rest.offsets == [11]


def test_malformed_records_stay_with_their_place_in_the_log() -> None:
    # the empty record at 11 goes with the first part, 13 with the rest: each part's offsets continue the log
    first, rest = worker.split(_pending({10: 2, 11: 0, 12: 2, 13: 0, 14: 2}), 4)
    assert first.offsets == [10, 11, 12]
    assert rest is not None
    assert rest.offsets == [13, 14]
    assert [r.offset for r in rest.requests] == [14, 14]


def test_every_request_is_in_exactly_one_part() -> None:
    held = _pending({o: (o * 7) % 5 + 1 for o in range(40)})
    taken = []
    rest: worker.Pending | None = held
    while rest is not None:
        first, rest = worker.split(rest, 9)
        assert len(first.requests) <= 9 or len(first.offsets) == 1
        taken.extend(first.requests)
    assert taken == held.requests
