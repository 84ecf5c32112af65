"""The invariant rules of `flashsale verify` on hand-built snapshots: each detects its violation, and a
clean sale breaks none."""

from __future__ import annotations

import dataclasses
import json

from flashsale_tools.verify import model, rules

NOW = 1_000_000
STARTS = NOW - 60_000
ENDS = NOW - 1_000


def _decision(
    request_id: str,
    user_id: str,
    outcome: str = model.ACCEPTED,
    *,
    quantity: int = 1,
    reservation_id: str = "",
    partition: int = 0,
    arrived_at: int = STARTS + 100,
    decided_at: int = STARTS + 200,
    log_offset: int = 0,
) -> model.Decision:
    return model.Decision(
        request_id=request_id,
        user_id=user_id,
        quantity=quantity,
        outcome=outcome,
        reservation_id=reservation_id,
        decided_at=decided_at,
        partition=partition,
        log_offset=log_offset,
        arrived_at=arrived_at,
    )


def _reservation(
    reservation_id: str,
    request_id: str,
    user_id: str,
    *,
    quantity: int = 1,
    status: str = "reserved",
    partition: int = 0,
    created_at: int = STARTS + 200,
    updated_at: int = STARTS + 200,
) -> model.Reservation:
    return model.Reservation(
        reservation_id=reservation_id,
        request_id=request_id,
        user_id=user_id,
        quantity=quantity,
        status=status,
        release_reason="expired" if status == model.RELEASED else "",
        created_at=created_at,
        updated_at=updated_at,
        partition=partition,
    )


def _clean() -> model.Snapshot:
    """Stock 10 in two partitions of 5, limit 2: u1 holds 2 (unpaid), u2 bought 1, u3's order expired."""
    return model.Snapshot(
        sale=model.Sale(
            "s1",
            "p1",
            stock=10,
            per_user_limit=2,
            starts_at=STARTS,
            ends_at=ENDS,
            remaining=10,
            partitions=2,
            reserve=0,
        ),
        partitions=(
            model.Partition(0, stock=5, remaining=3, decided=4),
            model.Partition(1, stock=5, remaining=4, decided=1),
        ),
        pool=model.Pool(stock=0, remaining=0),
        offsets=(model.PartitionOffset(0, 4, 4), model.PartitionOffset(1, 1, 1)),
        decisions=(
            _decision("q1", "u1", quantity=2, reservation_id="r1", log_offset=0),
            _decision("q2", "u2", reservation_id="r2", partition=1),
            _decision("q3", "u3", reservation_id="r3", log_offset=1),
            _decision("q4", "u1", "limit_exceeded", log_offset=2),
        ),
        reservations=(
            _reservation("r1", "q1", "u1", quantity=2),
            _reservation("r2", "q2", "u2", status="confirmed", partition=1),
            _reservation("r3", "q3", "u3", status=model.RELEASED, updated_at=STARTS + 5_000),
        ),
        orders=(
            model.Order("o1", "r1", model.ORDER_PENDING, pay_by=NOW + 600_000),
            model.Order("o2", "r2", model.ORDER_PAID, pay_by=NOW + 600_000),
            model.Order("o3", "r3", "EXPIRED", pay_by=STARTS + 4_000),
        ),
        pending_requests=0,
    )


def _check(s: model.Snapshot, *, finished: bool = True, settled: bool = True) -> rules.Report:
    return rules.check(s, now_ms=NOW, sale_finished=finished, orders_settled=settled)


def _with(s: model.Snapshot, **changes: object) -> model.Snapshot:
    return dataclasses.replace(s, **changes)  # type: ignore[arg-type]


def test_a_clean_sale_breaks_no_invariant_and_lists_every_one() -> None:
    report = _check(_clean())
    assert [v.name for v in report.violations] == list(rules.DESCRIPTIONS)
    assert {v.name: v.count for v in report.violations} == dict.fromkeys(rules.DESCRIPTIONS, 0)
    assert all(v.applied for v in report.violations)
    assert report.ok
    assert (report.stock, report.held, report.remaining) == (10, 3, 7)
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["ok"] is True and len(doc["violations"]) == len(rules.DESCRIPTIONS)


def test_oversold_counts_units_held_beyond_stock() -> None:
    s = _clean()
    s = _with(s, sale=dataclasses.replace(s.sale, stock=1))
    v = rules.oversold(s)
    assert (v.count, v.examples) == (2, ("s1",))
    assert not _check(s).ok


def test_stock_mismatch_finds_the_sale_and_the_partition_that_do_not_add_up() -> None:
    s = _clean()
    s = _with(s, partitions=(s.partitions[0], dataclasses.replace(s.partitions[1], remaining=5)))
    v = rules.stock_mismatch(s)
    assert (v.count, v.examples) == (2, ("partition:1", "s1"))


def test_stock_mismatch_finds_stock_moved_between_partitions_without_its_reservations() -> None:
    s = _clean()
    s = _with(
        s,
        partitions=(
            dataclasses.replace(s.partitions[0], remaining=2),
            dataclasses.replace(s.partitions[1], remaining=5),
        ),
    )
    v = rules.stock_mismatch(s)
    assert (v.count, v.examples) == (2, ("partition:0", "partition:1"))  # the sale's total still adds up


def test_stock_mismatch_finds_a_negative_pool_and_counts_an_unprepared_sale_by_its_row() -> None:
    s = _clean()
    assert rules.stock_mismatch(_with(s, pool=model.Pool(0, -1))).examples == ("pool", "s1")
    unprepared = _with(
        s,
        sale=dataclasses.replace(s.sale, partitions=0, remaining=7),
        partitions=(),
        pool=None,
    )
    assert rules.stock_mismatch(unprepared).count == 0
    assert rules.stock_mismatch(_with(unprepared, sale=dataclasses.replace(unprepared.sale, remaining=8))).count == 1


def test_per_user_limit_counts_users_above_the_limit_but_not_released_units() -> None:
    s = _clean()
    extra = _reservation("r9", "q9", "u1", partition=1)
    assert rules.per_user_limit(_with(s, reservations=(*s.reservations, extra))).examples == ("u1",)
    released = dataclasses.replace(extra, status=model.RELEASED)
    assert rules.per_user_limit(_with(s, reservations=(*s.reservations, released))).count == 0


def test_duplicate_reservations_per_request_id() -> None:
    s = _clean()
    twin = _reservation("r1b", "q1", "u1")
    v = rules.duplicate_reservations(_with(s, reservations=(*s.reservations, twin)))
    assert (v.count, v.examples) == (1, ("q1",))


def test_accepted_decisions_and_reservations_match_one_to_one() -> None:
    s = _clean()
    lost = _decision("q7", "u7", reservation_id="r7")
    assert rules.accepted_without_reservation(_with(s, decisions=(*s.decisions, lost))).examples == ("q7",)
    stray = _reservation("r8", "q8", "u8")
    assert rules.accepted_without_reservation(_with(s, reservations=(*s.reservations, stray))).examples == ("q8",)


def test_reservation_without_order_counts_only_once_orders_settled() -> None:
    s = _with(_clean(), orders=_clean().orders[1:])  # r1 has no order yet
    assert rules.reservation_orders(s, orders_settled=True).examples == ("r1",)
    assert rules.reservation_orders(s, orders_settled=False).count == 0
    assert _check(s, settled=True).count("reservation_orders") == 1


def test_two_orders_for_one_reservation_count_even_while_orders_are_being_made() -> None:
    s = _clean()
    s = _with(s, orders=(*s.orders, model.Order("o9", "r2", model.ORDER_PENDING, NOW + 1)))
    assert rules.reservation_orders(s, orders_settled=False).examples == ("r2",)


def test_an_order_without_reservation_counts_once_settled() -> None:
    s = _clean()
    s = _with(s, orders=(*s.orders, model.Order("o9", "r404", model.ORDER_PAID, NOW)))
    assert rules.reservation_orders(s, orders_settled=True).examples == ("order:o9",)
    assert rules.reservation_orders(s, orders_settled=False).count == 0


def test_orders_not_ended_after_their_deadline_and_grace() -> None:
    s = _clean()
    overdue = _with(s, orders=(model.Order("o1", "r1", model.ORDER_PENDING, NOW - 20_000), *s.orders[1:]))
    assert rules.orders_not_ended(overdue, now_ms=NOW, grace_ms=10_000).examples == ("o1",)
    assert rules.orders_not_ended(overdue, now_ms=NOW, grace_ms=30_000).count == 0


def test_a_released_reservation_whose_order_was_paid() -> None:
    s = _clean()
    s = _with(s, orders=(*s.orders[:2], model.Order("o3", "r3", model.ORDER_PAID, STARTS + 4_000)))
    assert rules.released_with_live_order(s).examples == ("r3",)


def test_unreleased_expired_stock_once_settled() -> None:
    s = _clean()
    s = _with(s, orders=(model.Order("o1", "r1", "CANCELLED", NOW + 1), *s.orders[1:]))
    assert rules.unreleased_expired_stock(s, orders_settled=True).examples == ("o1",)
    skipped = rules.unreleased_expired_stock(s, orders_settled=False)
    assert (skipped.count, skipped.applied) == (0, False)


def _sold_out_sale(release_at: int) -> model.Snapshot:
    """Stock 2 in one partition, both sold; q3 rejected SOLD_OUT at STARTS+300; r2 released at release_at."""
    return model.Snapshot(
        sale=model.Sale("s2", "p1", 2, 1, STARTS, ENDS, 2, partitions=1, reserve=0),
        partitions=(model.Partition(0, stock=2, remaining=1, decided=3),),
        pool=model.Pool(0, 0),
        offsets=(),
        decisions=(
            _decision("q1", "u1", reservation_id="r1", arrived_at=STARTS + 10),
            _decision("q2", "u2", reservation_id="r2", arrived_at=STARTS + 20),
            _decision("q3", "u3", model.SOLD_OUT, arrived_at=STARTS + 30, decided_at=STARTS + 300),
        ),
        reservations=(
            _reservation("r1", "q1", "u1", status="confirmed"),
            _reservation("r2", "q2", "u2", status=model.RELEASED, updated_at=release_at),
        ),
        orders=(model.Order("o1", "r1", model.ORDER_PAID, NOW), model.Order("o2", "r2", "EXPIRED", STARTS + 900)),
    )


def test_undersell_counts_units_left_while_a_request_was_rejected_sold_out() -> None:
    s = _sold_out_sale(release_at=STARTS + 100)  # released BEFORE q3 was rejected: q3 could have had it
    v = rules.undersell(s, sale_finished=True)
    assert (v.count, v.examples) == (1, ("q3",))
    skipped = rules.undersell(s, sale_finished=False)
    assert (skipped.count, skipped.applied) == (0, False)


def test_stock_released_after_the_last_rejection_is_no_undersell() -> None:
    s = _sold_out_sale(release_at=STARTS + 1_000)
    assert rules.undersell(s, sale_finished=True).count == 0
    assert _check(s).ok


def test_leftover_smaller_than_every_rejected_quantity_is_no_undersell() -> None:
    s = _sold_out_sale(release_at=STARTS + 100)
    big = dataclasses.replace(s.decisions[2], quantity=2)
    assert rules.undersell(_with(s, decisions=(*s.decisions[:2], big)), sale_finished=True).count == 0


def _inversion(*, rejected_at: int, accepted_at: int, release_at: int | None, quantity: int = 1) -> model.Snapshot:
    """Partition 0: q1 rejected SOLD_OUT (decided at rejected_at+50), q2 accepted later (decided at accepted_at+50)."""
    s = _sold_out_sale(release_at=release_at if release_at is not None else NOW)
    reservations = (
        s.reservations[0],
        _reservation("r2", "q2", "u2", status="confirmed"),
        *(
            ()
            if release_at is None
            else (_reservation("r9", "q9", "u9", status=model.RELEASED, updated_at=release_at),)
        ),
    )
    return _with(
        s,
        decisions=(
            _decision(
                "q1", "u1", model.SOLD_OUT, quantity=quantity, arrived_at=rejected_at, decided_at=rejected_at + 50
            ),
            _decision("q2", "u2", reservation_id="r2", arrived_at=accepted_at, decided_at=accepted_at + 50),
            _decision("q5", "u5", reservation_id="r5", partition=1, arrived_at=rejected_at + 5_000),
        ),
        reservations=reservations,
    )


def test_fairness_inversion_a_rejected_request_arrived_clearly_before_an_accepted_one() -> None:
    s = _inversion(rejected_at=STARTS, accepted_at=STARTS + 3_000, release_at=None)
    v = rules.fairness_inversions(s, tolerance_ms=1_000)
    assert (v.count, v.examples) == (1, ("q1",))
    assert rules.fairness_inversions(s, tolerance_ms=5_000).count == 0  # within the tolerance


def test_no_fairness_inversion_when_stock_was_released_in_between_or_the_rejected_asked_more() -> None:
    released = _inversion(rejected_at=STARTS, accepted_at=STARTS + 3_000, release_at=STARTS + 1_000)
    assert rules.fairness_inversions(released, tolerance_ms=1_000).count == 0
    bigger = _inversion(rejected_at=STARTS, accepted_at=STARTS + 3_000, release_at=None, quantity=2)
    assert rules.fairness_inversions(bigger, tolerance_ms=1_000).count == 0
    later = _inversion(rejected_at=STARTS + 3_000, accepted_at=STARTS, release_at=None)
    assert rules.fairness_inversions(later, tolerance_ms=1_000).count == 0


def test_fairness_is_judged_within_a_partition_only() -> None:
    s = _inversion(rejected_at=STARTS, accepted_at=STARTS + 3_000, release_at=None)
    moved = dataclasses.replace(s.decisions[1], partition=1)
    assert rules.fairness_inversions(_with(s, decisions=(s.decisions[0], moved)), tolerance_ms=1_000).count == 0


def test_examples_are_capped_at_five_but_the_count_is_complete() -> None:
    s = _clean()
    greedy = tuple(_reservation(f"x{i}", f"y{i}", f"user{i}", quantity=3) for i in range(7))
    v = rules.per_user_limit(_with(s, reservations=(*s.reservations, *greedy)))
    assert v.count == 7 and len(v.examples) == 5


def test_settled_and_finished_follow_pending_requests_orders_and_releases() -> None:
    s = _clean()
    assert rules.is_settled(s, now_ms=NOW) and rules.is_finished(s, now_ms=NOW)
    assert not rules.is_settled(_with(s, pending_requests=3), now_ms=NOW)
    assert not rules.is_finished(_with(s, pending_requests=3), now_ms=NOW)
    assert not rules.is_settled(_with(s, orders=s.orders[1:]), now_ms=NOW)
    unknown = _with(s, pending_requests=None)
    assert rules.is_finished(unknown, now_ms=ENDS) and not rules.is_finished(unknown, now_ms=ENDS - 1)
    assert not rules.is_settled(unknown, now_ms=ENDS - 1)
