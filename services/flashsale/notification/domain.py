"""Pure notification logic: message rendering, channel choice, retry schedule, preferences."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Literal

from flashsale.common import topics

Channel = Literal["email", "sms"]
Status = Literal["sent", "failed"]

PURCHASE_DECIDED = "purchase.decided"  # one decision, as a shopper sees it (a purchases.decided event holds many)
ORDER_KINDS = frozenset({topics.ORDER_CREATED, topics.ORDER_PAID, topics.ORDER_EXPIRED, topics.ORDER_CANCELLED})
LIVE_KINDS = frozenset({topics.USER_VERIFIED, PURCHASE_DECIDED, *ORDER_KINDS})
DELIVERED_KINDS = frozenset({topics.USER_REGISTERED, *ORDER_KINDS})  # sent by e-mail or SMS and recorded
VERIFICATION_SUBJECT = "Verify your Flashsale account"
SMS_MAX = 160
ERROR_MAX = 500
BACKOFF_CAP_S = 30.0

_REJECTIONS = {
    "sold_out": "the sale is sold out",
    "limit_exceeded": "you reached the per-user limit of this sale",
    "not_started": "the sale has not started yet",
    "ended": "the sale has ended",
}


@dataclasses.dataclass(frozen=True)
class Preferences:
    """Which channels a user wants; both are on until the user says otherwise."""

    user_id: str
    email_enabled: bool = True
    sms_enabled: bool = True


@dataclasses.dataclass(frozen=True)
class Contact:
    """Where a user can be reached, learned from user.registered."""

    user_id: str
    email: str
    phone: str


@dataclasses.dataclass(frozen=True)
class Notification:
    """One thing to tell a user, whatever the channel; its id is the id of the event (or decision) behind it."""

    notification_id: str
    user_id: str
    kind: str
    title: str
    body: str
    data: Mapping[str, str]
    created_at_ms: int


@dataclasses.dataclass(frozen=True)
class Incoming:
    """An event read as a notification, with the contact it carries (user.registered only)."""

    notification: Notification
    contact: Contact | None = None


@dataclasses.dataclass(frozen=True)
class OrderUpdate:
    """The parts of an order change a notification tells."""

    order_id: str
    user_id: str
    sale_id: str
    quantity: int
    amount_cents: int
    status: str
    pay_by_ms: int


@dataclasses.dataclass(frozen=True)
class PurchaseUpdate:
    """The parts of a purchase decision a notification tells."""

    request_id: str
    user_id: str
    sale_id: str
    quantity: int
    accepted: bool
    reason: str
    reservation_id: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one channel delivery ended."""

    status: Status
    attempts: int
    last_error: str


@dataclasses.dataclass(frozen=True)
class Delivery:
    """The record of one channel delivery of a notification."""

    notification_id: str
    user_id: str
    channel: Channel
    status: Status
    attempts: int
    last_error: str
    updated_at_ms: int


def money(cents: int) -> str:
    """An amount in cents as a decimal string, e.g. 1999 → "19.99"."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def clock(ms: int) -> str:
    """Epoch milliseconds as a UTC time people read, e.g. "2025-01-31 12:00 UTC"."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def verification(notification_id: str, user_id: str, email: str, token: str, created_at_ms: int) -> Notification:
    """The verification e-mail; the token stands on a line of its own."""
    body = (
        "Welcome to Flashsale!\n"
        "\n"
        "Confirm your e-mail address with this token:\n"
        "\n"
        f"Verification token: {token}\n"
        "\n"
        "Until you do, you can sign in but not buy.\n"
    )
    return Notification(
        notification_id, user_id, topics.USER_REGISTERED, VERIFICATION_SUBJECT, body, {"email": email}, created_at_ms
    )


def verified(notification_id: str, user_id: str, email: str, created_at_ms: int) -> Notification:
    """The live notice that an e-mail address is verified."""
    body = f"Your e-mail address {email} is verified; you can now buy in flash sales."
    return Notification(
        notification_id, user_id, topics.USER_VERIFIED, "E-mail verified", body, {"email": email}, created_at_ms
    )


def order_changed(notification_id: str, kind: str, order: OrderUpdate, created_at_ms: int) -> Notification:
    """The notice of an order created, paid, expired or cancelled."""
    items = f"{order.quantity} item{'s' if order.quantity != 1 else ''}"
    amount = money(order.amount_cents)
    if kind == topics.ORDER_CREATED:
        title = "Your order awaits payment"
        body = f"Order {order.order_id} for {items} ({amount}) is reserved for you. Pay by {clock(order.pay_by_ms)}."
    elif kind == topics.ORDER_PAID:
        title = "Payment received"
        body = f"We received {amount} for order {order.order_id} ({items}). Thank you!"
    elif kind == topics.ORDER_EXPIRED:
        title = "Your order expired"
        body = f"Order {order.order_id} was not paid in time and has expired; the items went back on sale."
    else:
        title = "Your order was cancelled"
        body = f"Order {order.order_id} ({items}, {amount}) is cancelled."
    data = {
        "order_id": order.order_id,
        "sale_id": order.sale_id,
        "status": order.status,
        "quantity": str(order.quantity),
        "amount_cents": str(order.amount_cents),
    }
    return Notification(notification_id, order.user_id, kind, title, body, data, created_at_ms)


def rejection_text(reason: str) -> str:
    """A rejection reason in words."""
    return _REJECTIONS.get(reason, reason.replace("_", " ") or "it could not be accepted")


def purchase_decided(notification_id: str, purchase: PurchaseUpdate, created_at_ms: int) -> Notification:
    """The live notice of a purchase decision, accepted or rejected with its reason."""
    items = f"{purchase.quantity} item{'s' if purchase.quantity != 1 else ''}"
    if purchase.accepted:
        title = "Purchase accepted"
        body = f"Your request for {items} was accepted; your order follows."
    else:
        title = "Purchase rejected"
        body = f"Your request for {items} was rejected: {rejection_text(purchase.reason)}."
    data = {
        "request_id": purchase.request_id,
        "sale_id": purchase.sale_id,
        "accepted": "true" if purchase.accepted else "false",
        "reason": purchase.reason,
        "reservation_id": purchase.reservation_id,
    }
    return Notification(notification_id, purchase.user_id, PURCHASE_DECIDED, title, body, data, created_at_ms)


def sms_text(notification: Notification) -> str:
    """A short text for SMS: the title and the first line of the body, at most SMS_MAX characters."""
    first = notification.body.strip().splitlines()[0] if notification.body.strip() else ""
    text = f"Flashsale: {notification.title}. {first}".strip()
    return text if len(text) <= SMS_MAX else text[: SMS_MAX - 1] + "…"


def is_live(kind: str) -> bool:
    """Whether a notification kind goes to live streams (the verification e-mail never does: it holds a secret)."""
    return kind in LIVE_KINDS


def is_delivered(kind: str) -> bool:
    """Whether a notification kind is sent by e-mail or SMS (and its deliveries recorded): the verification and the
    order notices; the others only go to live streams."""
    return kind in DELIVERED_KINDS


def channels(kind: str, prefs: Preferences, contact: Contact | None, sms_configured: bool) -> tuple[Channel, ...]:
    """The channels to send a notification on: verification always by e-mail, orders as the user prefers."""
    if contact is None:
        return ()
    if kind == topics.USER_REGISTERED:
        return ("email",) if contact.email else ()
    if kind not in ORDER_KINDS:
        return ()
    chosen: list[Channel] = []
    if prefs.email_enabled and contact.email:
        chosen.append("email")
    if prefs.sms_enabled and contact.phone and sms_configured:
        chosen.append("sms")
    return tuple(chosen)


def backoff_delays(attempts: int, first_s: float) -> tuple[float, ...]:
    """The waits between attempts: first_s, doubled each time, capped at BACKOFF_CAP_S (attempts-1 of them)."""
    return tuple(min(first_s * 2**i, BACKOFF_CAP_S) for i in range(max(attempts - 1, 0)))


def short_error(text: str) -> str:
    """An error message trimmed for storage."""
    return text if len(text) <= ERROR_MAX else text[: ERROR_MAX - 1] + "…"
