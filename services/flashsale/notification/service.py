"""Notification application service: deliveries by e-mail and SMS, preferences, delivery history and live
subscriptions."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator

from flashsale.common import database, errors, outbox, timeutil, validation
from flashsale.notification import delivery, domain, live, repository

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Plan:
    contact: domain.Contact | None
    channels: tuple[domain.Channel, ...]


class NotificationService:
    """What the gRPC API and the consumers offer: sending and recording deliveries, preferences, live streams."""

    def __init__(self, db: database.Database, hub: live.Hub, channels: delivery.Channels) -> None:
        self._db = db
        self._hub = hub
        self._channels = channels

    def deliver(self, incoming: domain.Incoming) -> None:
        """Send a notification on the channels its kind and its user's preferences call for and record every
        delivery, once per notification id (consumer thread: blocks while sending); other kinds are only live."""
        note = incoming.notification
        if not domain.is_delivered(note.kind):
            return
        plan = self._db.run_sync(lambda tx: self._plan(tx, incoming))
        if plan is None:
            log.info("notification already handled", extra={"notification_id": note.notification_id, "kind": note.kind})
            return
        deliveries = [self._channels.send(channel, note, plan.contact) for channel in plan.channels]

        def record(tx: database.Tx) -> None:
            if outbox.first_time(tx, note.notification_id):
                repository.record_deliveries(tx, deliveries)

        self._db.run_sync(record)

    def _plan(self, tx: database.Tx, incoming: domain.Incoming) -> _Plan | None:
        """The contact and channels of a notification not handled yet (saving the contact it carries), else None."""
        if outbox.processed(tx, incoming.notification.notification_id):
            return None
        user_id = incoming.notification.user_id
        if incoming.contact is not None:
            repository.save_contact(tx, incoming.contact, timeutil.now_ms())
        contact = repository.get_contact(tx, user_id)
        prefs = repository.get_preferences(tx, user_id)
        chosen = domain.channels(incoming.notification.kind, prefs, contact, self._channels.sms_configured)
        return _Plan(contact, chosen)

    def publish_live(self, notes: list[domain.Notification]) -> None:
        """Hand notifications to the live subscribers of this replica (from any thread: the consumer's)."""
        self._hub.publish_all_threadsafe(notes)

    async def get_preferences(self, user_id: str) -> domain.Preferences:
        """A user's preferences (the defaults when never set)."""
        validation.identifier(user_id, "user_id")
        return await self._db.run(lambda tx: repository.get_preferences(tx, user_id))

    async def set_preferences(self, user_id: str, email_enabled: bool, sms_enabled: bool) -> domain.Preferences:
        """Replace a user's preferences."""
        validation.identifier(user_id, "user_id")
        prefs = domain.Preferences(user_id, email_enabled=email_enabled, sms_enabled=sms_enabled)
        now = timeutil.now_ms()
        await self._db.run(lambda tx: repository.save_preferences(tx, prefs, now))
        return prefs

    async def list_deliveries(self, user_id: str) -> list[domain.Delivery]:
        """A user's deliveries, failed ones included, newest first."""
        validation.identifier(user_id, "user_id")
        return await self._db.run(lambda tx: repository.list_deliveries(tx, user_id))

    def open_subscription(self, user_id: str) -> live.Subscription:
        """Register a live subscriber (validated); close it with close_subscription."""
        validation.identifier(user_id, "user_id")
        return self._hub.subscribe(user_id)

    def close_subscription(self, sub: live.Subscription) -> None:
        """Unregister a live subscriber."""
        self._hub.unsubscribe(sub)

    async def stream(self, sub: live.Subscription) -> AsyncIterator[domain.Notification]:
        """A subscriber's notifications until the hub closes; ResourceExhausted when it fell behind."""
        while True:
            item = await sub.queue.get()
            if item is live.End.CLOSED:
                return
            if item is live.End.DROPPED:
                raise errors.ResourceExhausted("the stream fell behind and was dropped; subscribe again")
            assert isinstance(item, domain.Notification)
            yield item
