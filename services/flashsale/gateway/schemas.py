"""Request and response bodies. Requests are checked here, before any RPC; extra fields are refused."""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

import pydantic

from flashsale.common import errors, validation

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_CURRENCY = r"^[A-Z]{3}$"
_PHONE = r"^\+[1-9][0-9]{6,14}$"
_MAX_CENTS = 10**12


def _email(value: str) -> str:
    try:
        return validation.email(value)
    except errors.InvalidArgument as exc:
        raise ValueError(exc.message) from None


Email = Annotated[str, pydantic.Field(max_length=254, examples=["ada@example.com"]), pydantic.AfterValidator(_email)]
Identifier = Annotated[str, pydantic.Field(pattern=ID_PATTERN)]
Cents = Annotated[int, pydantic.Field(strict=True, ge=0, le=_MAX_CENTS)]


class _Request(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class RegisterIn(_Request):
    """A new account."""

    email: Email
    password: str = pydantic.Field(min_length=8, max_length=128)
    phone: str | None = pydantic.Field(None, pattern=_PHONE, description="E.164, e.g. +15551234567")


class VerifyIn(_Request):
    """The token from the verification e-mail."""

    token: str = pydantic.Field(min_length=1, max_length=4096)


class LoginIn(_Request):
    """Credentials."""

    email: Email
    password: str = pydantic.Field(min_length=1, max_length=128)


class ProductIn(_Request):
    """A new product."""

    name: str = pydantic.Field(min_length=1, max_length=200)
    description: str = pydantic.Field("", max_length=5000)
    base_price_cents: Cents
    currency: str = pydantic.Field("EUR", pattern=_CURRENCY)


class ProductPatch(_Request):
    """Fields to change; absent fields stay as they are."""

    name: str | None = pydantic.Field(None, min_length=1, max_length=200)
    description: str | None = pydantic.Field(None, max_length=5000)
    base_price_cents: Cents | None = None

    @pydantic.model_validator(mode="after")
    def _something(self) -> ProductPatch:
        if self.name is None and self.description is None and self.base_price_cents is None:
            raise ValueError("set at least one of name, description, base_price_cents")
        return self


class SaleIn(_Request):
    """A new flash sale of a product."""

    product_id: Identifier
    price_cents: Cents
    stock: int = pydantic.Field(strict=True, ge=1, le=10**9)
    per_user_limit: int = pydantic.Field(1, strict=True, ge=1, le=10_000)
    starts_at: pydantic.AwareDatetime
    ends_at: pydantic.AwareDatetime
    partitions: int = pydantic.Field(
        4, strict=True, ge=1, le=256, description="Partitions of the sale's stock and request topic."
    )
    reserve: int = pydantic.Field(0, strict=True, ge=0, description="Units kept in the reserve pool.")

    @pydantic.field_validator("reserve")
    @classmethod
    def _within_stock(cls, value: int, info: pydantic.ValidationInfo) -> int:
        stock = info.data.get("stock")
        if stock is not None and value > stock:
            raise ValueError("must not exceed the stock")
        return value

    @pydantic.field_validator("ends_at")
    @classmethod
    def _after_start(cls, value: datetime.datetime, info: pydantic.ValidationInfo) -> datetime.datetime:
        starts_at = info.data.get("starts_at")
        if starts_at is not None and value <= starts_at:
            raise ValueError("must be after starts_at")
        return value


class PurchaseIn(_Request):
    """A purchase request; request_id is the idempotency key (generated when absent)."""

    quantity: int = pydantic.Field(1, strict=True, ge=1, le=1000)
    request_id: str | None = pydantic.Field(None, pattern=ID_PATTERN)


class PayIn(_Request):
    """A payment token from the payment provider."""

    payment_token: str = pydantic.Field(min_length=1, max_length=512)


class PreferencesIn(_Request):
    """Notification channels to use."""

    email_enabled: bool = pydantic.Field(strict=True)
    sms_enabled: bool = pydantic.Field(strict=True)


class User(pydantic.BaseModel):
    """An account."""

    user_id: str
    email: str
    phone: str | None
    verified: bool
    created_at: str | None


class Token(pydantic.BaseModel):
    """A bearer access token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: str | None
    user: User | None


class Availability(pydantic.BaseModel):
    """Live stock of one sale."""

    sale_id: str
    product_id: str
    stock: int
    remaining: int
    sale_price_cents: int
    updated_at: str | None


class Product(pydantic.BaseModel):
    """A catalogue product."""

    product_id: str
    name: str
    description: str
    base_price_cents: int
    currency: str
    created_at: str | None
    updated_at: str | None
    availability: list[Availability]


class ProductPage(pydantic.BaseModel):
    """A page of products."""

    products: list[Product]
    next_page_token: str | None


class Price(pydantic.BaseModel):
    """The price a shopper pays now."""

    product_id: str
    price_cents: int
    currency: str
    sale_id: str | None


class Sale(pydantic.BaseModel):
    """A flash sale."""

    sale_id: str
    product_id: str
    price_cents: int
    stock: int
    per_user_limit: int
    starts_at: str | None
    ends_at: str | None
    remaining: int


class SaleList(pydantic.BaseModel):
    """Sales."""

    sales: list[Sale]


class PartitionStats(pydantic.BaseModel):
    """Counters of one stock partition of a prepared sale."""

    partition: int
    stock: int
    remaining: int
    decided: int
    committed_offset: int
    end_offset: int


class SaleStats(pydantic.BaseModel):
    """Counters of a sale (per partition when it was prepared)."""

    sale_id: str
    stock: int
    reserved: int
    released: int
    remaining: int
    accepted_requests: int
    rejected_requests: int
    requests_pending: int
    reserve_remaining: int
    partitions: list[PartitionStats]


Outcome = Literal["PENDING", "ACCEPTED", "SOLD_OUT", "LIMIT_EXCEEDED", "NOT_STARTED", "ENDED"]


class PurchaseDecision(pydantic.BaseModel):
    """The decision on a purchase request."""

    request_id: str
    sale_id: str
    outcome: Outcome
    quantity: int
    reservation_id: str | None
    decided_at: str | None


OrderStatus = Literal["UNSPECIFIED", "PENDING_PAYMENT", "PAID", "CANCELLED", "EXPIRED"]


class Order(pydantic.BaseModel):
    """An order from an accepted purchase."""

    order_id: str
    reservation_id: str
    request_id: str
    user_id: str
    sale_id: str
    product_id: str
    quantity: int
    amount_cents: int
    status: OrderStatus
    created_at: str | None
    pay_by: str | None
    updated_at: str | None
    payment_id: str | None


class OrderPage(pydantic.BaseModel):
    """A page of the caller's orders."""

    orders: list[Order]
    next_page_token: str | None


class Notification(pydantic.BaseModel):
    """One notification, as sent on the SSE stream (data of an event named after its kind)."""

    notification_id: str
    user_id: str
    kind: str
    title: str
    body: str
    data: dict[str, str]
    created_at: str | None


class Preferences(pydantic.BaseModel):
    """Notification channels of the caller."""

    email_enabled: bool
    sms_enabled: bool


class Delivery(pydantic.BaseModel):
    """One delivery attempt record."""

    notification_id: str
    channel: str
    status: str
    attempts: int
    last_error: str | None
    updated_at: str | None


class DeliveryList(pydantic.BaseModel):
    """The caller's deliveries."""

    deliveries: list[Delivery]


class ErrorDetail(pydantic.BaseModel):
    """What went wrong."""

    code: str = pydantic.Field(examples=["INVALID_ARGUMENT"])
    message: str
    field: str | None = None


class ErrorBody(pydantic.BaseModel):
    """Every error response."""

    error: ErrorDetail


class Health(pydantic.BaseModel):
    """Liveness or readiness."""

    status: str
    backends: dict[str, str] = pydantic.Field(default_factory=dict)
