"""Pure product logic: validation, patches, price selection and list cursors."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from flashsale.common import errors, paging, validation

MAX_PRICE_CENTS = 10**10
DEFAULT_CURRENCY = "EUR"

_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclasses.dataclass(frozen=True)
class Product:
    """A catalogue entry; times are epoch milliseconds."""

    product_id: str
    name: str
    description: str
    base_price_cents: int
    currency: str
    created_at: int
    updated_at: int


@dataclasses.dataclass(frozen=True)
class ProductDraft:
    """The validated fields of a product to create."""

    name: str
    description: str
    base_price_cents: int
    currency: str


@dataclasses.dataclass(frozen=True)
class ProductPatch:
    """The validated fields of an update; None leaves a field unchanged."""

    name: str | None = None
    description: str | None = None
    base_price_cents: int | None = None


@dataclasses.dataclass(frozen=True)
class Availability:
    """The stock display of one sale of a product."""

    sale_id: str
    product_id: str
    stock: int
    remaining: int
    sale_price_cents: int
    starts_at: int
    ends_at: int
    updated_at: int

    def is_active(self, now: int) -> bool:
        """True while the sale runs: starts_at ≤ now < ends_at."""
        return self.starts_at <= now < self.ends_at


@dataclasses.dataclass(frozen=True)
class Quote:
    """The price a shopper pays now; sale_id is set when a sale price applies."""

    price_cents: int
    sale_id: str = ""


def _name(value: str) -> str:
    return validation.text(value, "name", min_len=1, max_len=200)


def _description(value: str) -> str:
    return validation.text(value, "description", min_len=0, max_len=2000)


def _price(value: int) -> int:
    return validation.integer(value, "base_price_cents", low=1, high=MAX_PRICE_CENTS)


def validate_draft(name: str, description: str, base_price_cents: int, currency: str) -> ProductDraft:
    """Validate the fields of a new product; the currency defaults to EUR."""
    currency = currency.strip() or DEFAULT_CURRENCY
    if not _CURRENCY.match(currency):
        raise errors.InvalidArgument("must be 3 upper-case letters (ISO 4217)", "currency")
    return ProductDraft(_name(name), _description(description), _price(base_price_cents), currency)


def validate_patch(name: str | None, description: str | None, base_price_cents: int | None) -> ProductPatch:
    """Validate the set fields of an update; at least one must be set."""
    if name is None and description is None and base_price_cents is None:
        raise errors.InvalidArgument("at least one of name, description, base_price_cents must be set")
    return ProductPatch(
        name=None if name is None else _name(name),
        description=None if description is None else _description(description),
        base_price_cents=None if base_price_cents is None else _price(base_price_cents),
    )


def select_price(base_price_cents: int, sales: Sequence[Availability], sale_id: str, now: int) -> Quote:
    """The sale price of the given sale (or of any sale when none given) when it is active now, else the base."""
    candidates = [s for s in sales if s.is_active(now) and (not sale_id or s.sale_id == sale_id)]
    if not candidates:
        return Quote(base_price_cents)
    best = min(candidates, key=lambda s: (s.sale_price_cents, s.sale_id))
    return Quote(best.sale_price_cents, best.sale_id)


# List paging is shared with the other services (flashsale.common.paging); these names stay for the product modules.
Cursor = paging.Cursor
page_size = paging.page_size
encode_cursor = paging.encode_cursor
decode_cursor = paging.decode_cursor
