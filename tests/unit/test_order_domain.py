"""Order domain: creation from a decision, the payment/expiry/cancel rules, page tokens."""

from __future__ import annotations

import dataclasses

import pytest

from flashsale.common import errors
from flashsale.order import domain

DECISION = domain.Decision("req-1", "res-1", "user-1", "sale-1", "prod-1", quantity=3, price_cents=1250)


def _order(status: domain.Status = domain.Status.PENDING_PAYMENT, pay_by: int = 2000) -> domain.Order:
    return dataclasses.replace(domain.new_order(DECISION, "o1", now=1000, window_ms=1000), status=status, pay_by=pay_by)


def test_new_order_is_pending_with_amount_and_deadline() -> None:
    order = domain.new_order(DECISION, "o1", now=1000, window_ms=500)
    assert order.status is domain.Status.PENDING_PAYMENT
    assert order.amount_cents == 3750
    assert order.pay_by == 1500
    assert (order.reservation_id, order.request_id, order.user_id) == ("res-1", "req-1", "user-1")


@pytest.mark.parametrize(
    "change",
    [{"reservation_id": ""}, {"user_id": ""}, {"sale_id": ""}, {"quantity": 0}, {"price_cents": -1}],
)
def test_unusable_decision_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        domain.check_decision(dataclasses.replace(DECISION, **change))  # type: ignore[arg-type]


def test_can_pay_only_pending_before_deadline() -> None:
    assert domain.can_pay(_order(), 1999)
    assert not domain.can_pay(_order(), 2000)
    for status in (domain.Status.PAID, domain.Status.CANCELLED, domain.Status.EXPIRED):
        assert not domain.can_pay(_order(status), 1500)


@pytest.mark.parametrize(
    ("status", "now", "message"),
    [
        (domain.Status.PENDING_PAYMENT, 2000, "payment deadline passed"),
        (domain.Status.EXPIRED, 1500, "payment deadline passed"),
        (domain.Status.PAID, 1500, "already paid"),
        (domain.Status.CANCELLED, 1500, "cancelled"),
    ],
)
def test_ensure_payable_explains_refusals(status: domain.Status, now: int, message: str) -> None:
    with pytest.raises(errors.FailedPrecondition) as caught:
        domain.ensure_payable(_order(status), now)
    assert message in caught.value.message


def test_ensure_payable_passes_a_pending_order() -> None:
    domain.ensure_payable(_order(), 1999)


def test_expiry_decision() -> None:
    assert not domain.is_overdue(_order(), 1999)
    assert domain.is_overdue(_order(), 2000)
    assert not domain.is_overdue(_order(domain.Status.PAID), 5000)
    assert not domain.is_overdue(_order(domain.Status.CANCELLED), 5000)


def test_only_pending_orders_can_be_cancelled() -> None:
    domain.ensure_cancellable(_order())
    for status in (domain.Status.PAID, domain.Status.CANCELLED, domain.Status.EXPIRED):
        with pytest.raises(errors.FailedPrecondition):
            domain.ensure_cancellable(_order(status))


def test_transition_keeps_payment_id() -> None:
    paid = domain.transition(_order(), domain.Status.PAID, 1500, "pay_1")
    assert (paid.status, paid.payment_id, paid.updated_at) == (domain.Status.PAID, "pay_1", 1500)


@pytest.mark.parametrize("bad", ["", "t" * 129])
def test_bad_payment_token(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        domain.payment_token(bad)
    assert caught.value.field == "payment_token"


def test_payment_token_bounds() -> None:
    assert domain.payment_token("t" * 128) == "t" * 128


def test_cursor_round_trip_and_bad_token() -> None:
    cursor = domain.Cursor(42, "deadbeef")
    assert domain.decode_cursor(domain.encode_cursor(cursor)) == cursor
    with pytest.raises(errors.InvalidArgument) as caught:
        domain.decode_cursor("not a token")
    assert caught.value.field == "page_token"
    assert domain.page_size(0) == 20
