"""Product domain: validation, patches, price selection and page tokens."""

from __future__ import annotations

import pytest

from flashsale.common import errors
from flashsale.product import domain


def _sale(sale_id: str, price: int, starts: int, ends: int) -> domain.Availability:
    return domain.Availability(sale_id, "p1", 10, 10, price, starts, ends, 0)


def test_draft_defaults_currency_and_trims() -> None:
    draft = domain.validate_draft("  Lamp ", "", 1999, "")
    assert draft == domain.ProductDraft("Lamp", "", 1999, "EUR")


@pytest.mark.parametrize(
    ("name", "description", "price", "currency", "field"),
    [
        ("", "", 100, "EUR", "name"),
        ("x" * 201, "", 100, "EUR", "name"),
        ("ok", "d" * 2001, 100, "EUR", "description"),
        ("ok", "", 0, "EUR", "base_price_cents"),
        ("ok", "", 10**10 + 1, "EUR", "base_price_cents"),
        ("ok", "", 100, "eur", "currency"),
        ("ok", "", 100, "EURO", "currency"),
    ],
)
def test_bad_draft_names_the_field(name: str, description: str, price: int, currency: str, field: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        domain.validate_draft(name, description, price, currency)
    assert caught.value.field == field


def test_draft_bounds_are_inclusive() -> None:
    assert domain.validate_draft("x" * 200, "d" * 2000, 10**10, "USD").base_price_cents == 10**10
    assert domain.validate_draft("x", "", 1, "USD").base_price_cents == 1


def test_patch_needs_a_field_and_validates_set_ones() -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        domain.validate_patch(None, None, None)
    assert "name" in caught.value.detail()
    assert domain.validate_patch(None, "", None) == domain.ProductPatch(description="")
    with pytest.raises(errors.InvalidArgument) as bad:
        domain.validate_patch(None, None, -5)
    assert bad.value.field == "base_price_cents"


def test_price_is_the_sale_price_only_while_active() -> None:
    sale = _sale("s1", 500, starts=100, ends=200)
    assert domain.select_price(900, [sale], "", 99) == domain.Quote(900)
    assert domain.select_price(900, [sale], "", 100) == domain.Quote(500, "s1")
    assert domain.select_price(900, [sale], "", 199) == domain.Quote(500, "s1")
    assert domain.select_price(900, [sale], "", 200) == domain.Quote(900)


def test_price_of_a_named_sale_ignores_other_sales() -> None:
    sales = [_sale("s1", 500, 0, 1000), _sale("s2", 300, 0, 1000)]
    assert domain.select_price(900, sales, "s1", 10) == domain.Quote(500, "s1")
    assert domain.select_price(900, sales, "", 10) == domain.Quote(300, "s2")
    assert domain.select_price(900, sales, "unknown", 10) == domain.Quote(900)


def test_page_size_default_and_bounds() -> None:
    assert domain.page_size(0) == 20
    assert domain.page_size(100) == 100
    for bad in (-1, 101):
        with pytest.raises(errors.InvalidArgument) as caught:
            domain.page_size(bad)
        assert caught.value.field == "page_size"


def test_cursor_round_trips() -> None:
    cursor = domain.Cursor(1_700_000_000_123, "abc123")
    token = domain.encode_cursor(cursor)
    assert "abc123" not in token
    assert domain.decode_cursor(token) == cursor
    assert domain.decode_cursor("") is None


@pytest.mark.parametrize("bad", ["x", "!!!!", "bm90LWEtY3Vyc29y", domain.encode_cursor(domain.Cursor(1, "a")) + "%"])
def test_bad_page_token_is_invalid_argument(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        domain.decode_cursor(bad)
    assert caught.value.field == "page_token"
