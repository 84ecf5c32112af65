"""Notification application service: preferences, delivery history and live subscriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator

from flashsale.common import database, errors, timeutil, validation
from flashsale.notification import domain, live, repository


class NotificationService:
    """What the gRPC API offers; deliveries themselves happen in the consumers."""

    def __init__(self, db: database.Database, hub: live.Hub) -> None:
        self._db = db
        self._hub = hub

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
