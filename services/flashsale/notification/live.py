"""In-memory fan-out of live notifications to the subscribers connected to this replica."""

from __future__ import annotations

import asyncio
import enum
import logging

from flashsale.notification import domain

log = logging.getLogger(__name__)

QUEUE_SIZE = 256


class End(enum.Enum):
    """Why a subscription ended."""

    DROPPED = "dropped"  # it fell behind
    CLOSED = "closed"  # the hub is shutting down


class Subscription:
    """One subscriber's bounded queue of notifications, ended by an End marker."""

    def __init__(self, user_id: str, size: int) -> None:
        self.user_id = user_id
        self.queue: asyncio.Queue[domain.Notification | End] = asyncio.Queue(maxsize=size)
        self.ended = False

    def end(self, reason: End) -> None:
        """Discard what is pending and mark the end (frees the memory of a slow subscriber at once)."""
        if self.ended:
            return
        self.ended = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(reason)


class Hub:
    """Subscribers by user id; publish from the event loop or, through publish_all_threadsafe, from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue_size: int = QUEUE_SIZE) -> None:
        self._loop = loop
        self._queue_size = queue_size
        self._subscribers: dict[str, set[Subscription]] = {}
        self._closed = False

    def subscribe(self, user_id: str) -> Subscription:
        """Start receiving a user's notifications."""
        sub = Subscription(user_id, self._queue_size)
        if self._closed:
            sub.end(End.CLOSED)
        else:
            self._subscribers.setdefault(user_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop receiving (idempotent)."""
        subs = self._subscribers.get(sub.user_id)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subscribers[sub.user_id]

    def anyone(self) -> bool:
        """True while a subscription is open (safe from any thread: one read of the subscribers' map)."""
        return bool(self._subscribers)

    def watches(self, user_id: str) -> bool:
        """True while the user has a subscription open (safe from any thread, like anyone)."""
        return user_id in self._subscribers

    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return sum(len(subs) for subs in self._subscribers.values())

    def publish(self, note: domain.Notification) -> None:
        """Queue a notification for each of its user's subscribers; a full queue drops its subscriber."""
        for sub in list(self._subscribers.get(note.user_id, ())):
            try:
                sub.queue.put_nowait(note)
            except asyncio.QueueFull:
                log.warning("live subscriber fell behind; dropping it", extra={"user_id": note.user_id})
                self.unsubscribe(sub)
                sub.end(End.DROPPED)

    def publish_all_threadsafe(self, notes: list[domain.Notification]) -> None:
        """Publish notifications from another thread in one wake-up of the event loop; a no-op once it is closed."""
        try:
            self._loop.call_soon_threadsafe(self._publish_all, notes)
        except RuntimeError:
            log.debug("live: event loop closed; notifications not streamed", extra={"count": len(notes)})

    def _publish_all(self, notes: list[domain.Notification]) -> None:
        for note in notes:
            self.publish(note)

    def close(self) -> None:
        """End every subscription; later subscriptions end at once."""
        self._closed = True
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.end(End.CLOSED)
        self._subscribers.clear()

    async def run(self) -> None:
        """Background task: wait for shutdown, then end the streams so the server can stop promptly."""
        try:
            await asyncio.Event().wait()
        finally:
            self.close()
