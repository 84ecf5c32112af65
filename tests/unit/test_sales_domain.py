"""Pure rules of the sales service's entities: validation of sales and purchases, retries, outcomes (the purchase
rule itself is tested with the ledger)."""

from __future__ import annotations

from typing import Any

import pytest

from flashsale.common import errors
from flashsale.sales import domain

HOUR = 3_600_000


def _sale(starts_at: int = 1_000, ends_at: int = 1_000 + HOUR, limit: int = 2, remaining: int = 10) -> domain.Sale:
    return domain.Sale(
        sale_id="s1",
        product_id="p1",
        price_cents=500,
        stock=10,
        per_user_limit=limit,
        starts_at=starts_at,
        ends_at=ends_at,
        remaining=remaining,
        created_at=0,
        partitions=4,
    )


def _validate(**changes: Any) -> domain.SaleSpec:
    fields: dict[str, Any] = {
        "product_id": "p1",
        "price_cents": 500,
        "stock": 10,
        "per_user_limit": 2,
        "starts_at": 1_000,
        "ends_at": 2_000,
    }
    fields.update(changes)
    return domain.validate_sale(**fields)


def test_a_valid_sale_is_accepted_as_given() -> None:
    spec = _validate()
    assert spec == domain.SaleSpec("p1", 500, 10, 2, 1_000, 2_000)


def test_sale_bounds_are_inclusive() -> None:
    spec = _validate(price_cents=10**10, stock=10**7, per_user_limit=1000)
    assert (spec.price_cents, spec.stock, spec.per_user_limit) == (10**10, 10**7, 1000)
    low = _validate(price_cents=1, stock=1, per_user_limit=1)
    assert (low.price_cents, low.stock, low.per_user_limit) == (1, 1, 1)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"product_id": ""}, "product_id"),
        ({"product_id": "bad id!"}, "product_id"),
        ({"price_cents": 0}, "price_cents"),
        ({"price_cents": 10**10 + 1}, "price_cents"),
        ({"stock": 0}, "stock"),
        ({"stock": 10**7 + 1}, "stock"),
        ({"per_user_limit": 0}, "per_user_limit"),
        ({"per_user_limit": 1001}, "per_user_limit"),
        ({"starts_at": None}, "starts_at"),
        ({"ends_at": None}, "ends_at"),
        ({"ends_at": 1_000}, "ends_at"),
        ({"ends_at": 999}, "ends_at"),
    ],
)
def test_a_bad_sale_field_is_named(changes: dict[str, object], field: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        _validate(**changes)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "u1", 1, "r1"), "sale_id"),
        (("s1", "", 1, "r1"), "user_id"),
        (("s1", "u1", 0, "r1"), "quantity"),
        (("s1", "u1", -3, "r1"), "quantity"),
        (("s1", "u1", 1, ""), "request_id"),
        (("s1", "u1", 1, "r" * 65), "request_id"),
        (("s1", "u1", 1, "r/1"), "request_id"),
    ],
)
def test_a_bad_purchase_field_is_named(args: tuple[str, str, int, str], field: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        domain.validate_purchase(*args)
    assert caught.value.field == field


def test_a_valid_purchase_request_keeps_its_fields() -> None:
    assert domain.validate_purchase("s1", "u1", 2, "r-1_A" + "x" * 59) == domain.PurchaseRequest(
        "s1", "u1", 2, "r-1_A" + "x" * 59
    )


def test_quantity_may_not_exceed_the_per_user_limit() -> None:
    domain.check_quantity(_sale(limit=2), 2)
    with pytest.raises(errors.InvalidArgument) as caught:
        domain.check_quantity(_sale(limit=2), 3)
    assert caught.value.field == "quantity"


def test_a_retry_must_describe_the_same_purchase() -> None:
    first = domain.Decision("r1", "s1", "u1", 1, domain.Outcome.ACCEPTED, "res1", 5)
    domain.check_retry(first, domain.PurchaseRequest("s1", "u1", 1, "r1"))
    for other in (
        domain.PurchaseRequest("s1", "u2", 1, "r1"),
        domain.PurchaseRequest("s2", "u1", 1, "r1"),
        domain.PurchaseRequest("s1", "u1", 2, "r1"),
    ):
        with pytest.raises(errors.InvalidArgument) as caught:
            domain.check_retry(first, other)
        assert caught.value.field == "request_id"
        assert "already used for another purchase" in caught.value.detail()


def test_outcome_reasons_are_empty_only_when_accepted() -> None:
    assert domain.Outcome.ACCEPTED.accepted
    assert domain.Outcome.ACCEPTED.reason == ""
    assert domain.Outcome.SOLD_OUT.reason == "sold_out"
    assert domain.Outcome.LIMIT_EXCEEDED.reason == "limit_exceeded"
    assert not any(o.accepted for o in domain.Outcome if o is not domain.Outcome.ACCEPTED)


def test_only_expired_and_cancelled_orders_release_stock() -> None:
    assert domain.release_reason("order.expired") == "expired"
    assert domain.release_reason("order.cancelled") == "cancelled"
    assert domain.release_reason("order.paid") is None
    assert domain.release_reason("order.created") is None
