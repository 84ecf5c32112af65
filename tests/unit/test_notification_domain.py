"""Notification domain: rendering, channel choice, preferences, the retry schedule, and events read as notices."""

from __future__ import annotations

import asyncio
import threading

import pytest

from flashsale.common import errors, events, topics
from flashsale.notification import consumers, delivery, domain, live, messages
from flashsale_api.v1 import events_pb2

CONTACT = domain.Contact("u1", "ann@example.com", "+15551234567")


def _order(status: str = "PENDING_PAYMENT") -> domain.OrderUpdate:
    return domain.OrderUpdate("o1", "u1", "s1", 2, 1999, status, pay_by_ms=1_700_000_000_000)


def test_verification_mail_has_the_token_on_a_line_of_its_own() -> None:
    note = domain.verification("n1", "u1", "ann@example.com", "tok-123", 5)
    assert note.title == "Verify your Flashsale account"
    assert "Verification token: tok-123" in note.body.splitlines()
    assert note.kind == "user.registered"
    assert "tok-123" not in note.data.values()


def test_verification_is_never_live() -> None:
    assert not domain.is_live("user.registered")
    assert domain.is_live("user.verified")
    assert domain.is_live("purchase.decided")
    assert domain.is_live("order.paid")
    assert not domain.is_live("product.changed")


@pytest.mark.parametrize(
    ("kind", "title", "fragment"),
    [
        ("order.created", "Your order awaits payment", "Pay by 2023-11-14 22:13 UTC"),
        ("order.paid", "Payment received", "19.99"),
        ("order.expired", "Your order expired", "not paid in time"),
        ("order.cancelled", "Your order was cancelled", "2 items"),
    ],
)
def test_order_messages(kind: str, title: str, fragment: str) -> None:
    note = domain.order_changed("n1", kind, _order(), 7)
    assert note.title == title
    assert fragment in note.body
    assert "o1" in note.body
    assert note.data["order_id"] == "o1"
    assert note.user_id == "u1"


def test_purchase_messages_tell_the_reason() -> None:
    accepted = domain.PurchaseUpdate("r1", "u1", "s1", 1, True, "", "res1")
    rejected = domain.PurchaseUpdate("r1", "u1", "s1", 1, False, "sold_out", "")
    assert domain.purchase_decided("n", accepted, 0).title == "Purchase accepted"
    note = domain.purchase_decided("n", rejected, 0)
    assert note.title == "Purchase rejected"
    assert "sold out" in note.body
    assert note.data["reason"] == "sold_out"
    assert domain.rejection_text("some_new_reason") == "some new reason"


def _batch() -> events_pb2.PurchasesDecided:
    """Decisions of sale s1: ann rejected (sold out), bob accepted, ann accepted."""
    return events_pb2.PurchasesDecided(
        sale_id="s1",
        product_id="p1",
        price_cents=1999,
        stock=10,
        remaining=7,
        request_ids=["r1", "r2", "r3"],
        user_ids=["ann", "bob", "ann"],
        quantities=[1, 2, 1],
        reasons=["sold_out", "", ""],
        reservation_ids=["", "res2", "res3"],
    )


def _decided(batch: events_pb2.PurchasesDecided) -> events_pb2.EventEnvelope:
    return events.envelope(topics.PURCHASES_DECIDED, batch.sale_id, batch, "test")


def test_one_purchase_notice_per_decision_to_its_shopper() -> None:
    notes = [incoming.notification for incoming in messages.interpret(_decided(_batch()))]
    assert [(n.notification_id, n.user_id, n.kind, n.title) for n in notes] == [
        ("decision-r1", "ann", "purchase.decided", "Purchase rejected"),
        ("decision-r2", "bob", "purchase.decided", "Purchase accepted"),
        ("decision-r3", "ann", "purchase.decided", "Purchase accepted"),
    ]
    assert "sold out" in notes[0].body and "2 items" in notes[1].body
    assert [n.data["reservation_id"] for n in notes] == ["", "res2", "res3"]
    assert {n.data["sale_id"] for n in notes} == {"s1"}
    assert all(domain.is_live(n.kind) for n in notes)


def test_unusable_decisions_are_permanent_errors() -> None:
    short = _batch()
    del short.reasons[-1]
    with pytest.raises(errors.PermanentEventError, match="different lengths"):
        messages.interpret(_decided(short))
    bad_user = _batch()
    bad_user.user_ids[1] = "bad id!"
    with pytest.raises(errors.PermanentEventError, match="user_id"):
        messages.interpret(_decided(bad_user))


def test_live_handler_publishes_each_decision_and_never_the_verification() -> None:
    published: list[domain.Notification] = []
    handle = consumers.LiveHandler(published.extend)
    handle(_decided(_batch()))
    assert [(n.notification_id, n.user_id) for n in published] == [
        ("decision-r1", "ann"),
        ("decision-r2", "bob"),
        ("decision-r3", "ann"),
    ]
    published.clear()
    registered = events_pb2.UserRegistered(user_id="ann", email="ann@example.com", verification_token="secret")
    handle(events.envelope(topics.USER_REGISTERED, "ann", registered, "test"))
    malformed = _batch()
    del malformed.quantities[0]
    handle(_decided(malformed))  # skipped here, dead-lettered by the delivery consumer
    handle(events.envelope("sale.created", "s1", events_pb2.SaleCreated(sale_id="s1"), "test"))
    assert published == []


class _Watching:
    """An audience of the given users."""

    def __init__(self, *users: str) -> None:
        self.users = set(users)

    def anyone(self) -> bool:
        return bool(self.users)

    def watches(self, user_id: str) -> bool:
        return user_id in self.users


def test_live_handler_publishes_an_events_notifications_for_the_subscribed_users_at_once() -> None:
    calls: list[list[domain.Notification]] = []
    consumers.LiveHandler(calls.append, _Watching("bob"))(_decided(_batch()))
    assert [[n.notification_id for n in notes] for notes in calls] == [["decision-r2"]]
    calls.clear()
    consumers.LiveHandler(calls.append, _Watching("carol"))(_decided(_batch()))
    assert calls == []  # nobody of the event is subscribed: nothing to hand over


def test_live_handler_reads_nothing_while_nobody_is_subscribed(monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    interpret = messages.interpret

    def reading(env: events_pb2.EventEnvelope) -> list[domain.Incoming]:
        read.append(env.type)
        return interpret(env)

    monkeypatch.setattr(messages, "interpret", reading)
    calls: list[list[domain.Notification]] = []
    consumers.LiveHandler(calls.append, _Watching())(_decided(_batch()))
    assert (read, calls) == ([], [])
    consumers.LiveHandler(calls.append, _Watching("ann"))(_decided(_batch()))
    assert read == [topics.PURCHASES_DECIDED] and len(calls) == 1


def test_the_delivery_handler_checks_decisions_and_delivers_none() -> None:
    class _Refusing:
        def deliver(self, incoming: domain.Incoming) -> None:
            raise AssertionError(f"delivered {incoming}")

    handle = consumers.deliveries(_Refusing())  # type: ignore[arg-type]
    handle(_decided(_batch()))
    bad_user = _batch()
    bad_user.user_ids[1] = "bad id!"
    with pytest.raises(errors.PermanentEventError, match="user_id"):
        handle(_decided(bad_user))
    short = _batch()
    del short.reasons[-1]
    with pytest.raises(errors.PermanentEventError, match="different lengths"):
        handle(_decided(short))


def test_money_formatting() -> None:
    assert domain.money(0) == "0.00"
    assert domain.money(5) == "0.05"
    assert domain.money(123456) == "1234.56"
    assert domain.money(-150) == "-1.50"


def test_sms_text_is_short() -> None:
    note = domain.order_changed("n1", "order.created", _order(), 0)
    text = domain.sms_text(note)
    assert text.startswith("Flashsale: Your order awaits payment.")
    long = domain.Notification("n", "u", "order.paid", "T" * 300, "b", {}, 0)
    assert len(domain.sms_text(long)) == domain.SMS_MAX


def test_verification_is_mailed_whatever_the_preferences() -> None:
    off = domain.Preferences("u1", email_enabled=False, sms_enabled=False)
    assert domain.channels("user.registered", off, CONTACT, sms_configured=True) == ("email",)


@pytest.mark.parametrize(
    ("email_on", "sms_on", "phone", "sms_configured", "expected"),
    [
        (True, True, "+15551234567", True, ("email", "sms")),
        (True, True, "", True, ("email",)),
        (True, True, "+15551234567", False, ("email",)),
        (False, True, "+15551234567", True, ("sms",)),
        (True, False, "+15551234567", True, ("email",)),
        (False, False, "+15551234567", True, ()),
    ],
)
def test_order_channels_follow_preferences(
    email_on: bool, sms_on: bool, phone: str, sms_configured: bool, expected: tuple[str, ...]
) -> None:
    prefs = domain.Preferences("u1", email_enabled=email_on, sms_enabled=sms_on)
    contact = domain.Contact("u1", "ann@example.com", phone)
    assert domain.channels("order.paid", prefs, contact, sms_configured) == expected


def test_no_channels_without_contact_or_for_live_only_kinds() -> None:
    prefs = domain.Preferences("u1")
    assert domain.channels("order.paid", prefs, None, True) == ()
    assert domain.channels("user.verified", prefs, CONTACT, True) == ()
    assert domain.channels("purchase.decided", prefs, CONTACT, True) == ()


def test_default_preferences_are_on() -> None:
    prefs = domain.Preferences("u1")
    assert prefs.email_enabled and prefs.sms_enabled


def test_backoff_doubles_and_is_capped() -> None:
    assert domain.backoff_delays(1, 0.2) == ()
    assert domain.backoff_delays(4, 0.2) == pytest.approx((0.2, 0.4, 0.8))
    assert domain.backoff_delays(10, 10.0)[-1] == domain.BACKOFF_CAP_S


def test_deliver_retries_with_the_schedule_then_succeeds() -> None:
    slept: list[float] = []
    calls = iter([delivery.DeliveryError("down"), delivery.DeliveryError("still down"), None])

    def send() -> None:
        failure = next(calls)
        if failure is not None:
            raise failure

    outcome = delivery.deliver(send, attempts=5, first_backoff_s=0.1, sleep=slept.append)
    assert outcome == domain.Outcome("sent", 3, "still down")
    assert slept == pytest.approx([0.1, 0.2])


def test_deliver_records_failure_after_the_last_attempt() -> None:
    slept: list[float] = []

    def send() -> None:
        raise delivery.DeliveryError("connection refused")

    outcome = delivery.deliver(send, attempts=3, first_backoff_s=0.5, sleep=slept.append)
    assert outcome == domain.Outcome("failed", 3, "connection refused")
    assert slept == pytest.approx([0.5, 1.0])  # no wait after the last attempt


def test_short_error_is_bounded() -> None:
    assert len(domain.short_error("e" * 2000)) == domain.ERROR_MAX


def _note(user_id: str, n: int = 0) -> domain.Notification:
    return domain.Notification(f"n{n}", user_id, "order.paid", "t", "b", {}, n)


async def test_hub_fans_out_to_the_users_subscribers_only() -> None:
    hub = live.Hub(asyncio.get_running_loop(), queue_size=4)
    ann1, ann2, bob = hub.subscribe("ann"), hub.subscribe("ann"), hub.subscribe("bob")
    hub.publish(_note("ann"))
    assert ann1.queue.get_nowait() == ann2.queue.get_nowait() == _note("ann")
    assert bob.queue.empty()
    hub.unsubscribe(ann1)
    hub.unsubscribe(ann1)  # idempotent
    assert hub.subscriber_count() == 2


async def test_hub_drops_a_slow_subscriber_and_frees_its_queue() -> None:
    hub = live.Hub(asyncio.get_running_loop(), queue_size=2)
    slow, other = hub.subscribe("ann"), hub.subscribe("bob")
    for n in range(3):
        hub.publish(_note("ann", n))
    assert slow.queue.qsize() == 1
    assert slow.queue.get_nowait() is live.End.DROPPED
    assert hub.subscriber_count() == 1
    hub.publish(_note("ann", 9))  # a dropped subscriber gets nothing more
    assert slow.queue.empty()
    hub.publish(_note("bob"))
    assert other.queue.get_nowait() == _note("bob")


async def test_hub_close_ends_every_stream() -> None:
    hub = live.Hub(asyncio.get_running_loop())
    sub = hub.subscribe("ann")
    hub.close()
    assert sub.queue.get_nowait() is live.End.CLOSED
    assert hub.subscribe("ann").queue.get_nowait() is live.End.CLOSED
    assert hub.subscriber_count() == 0


async def test_hub_takes_notifications_from_another_thread() -> None:
    hub = live.Hub(asyncio.get_running_loop())
    sub = hub.subscribe("ann")
    thread = threading.Thread(target=hub.publish_all_threadsafe, args=([_note("ann")],))
    thread.start()
    thread.join()
    assert await asyncio.wait_for(sub.queue.get(), 5) == _note("ann")
