"""Transactional outbox: events are stored with the rows they describe and relayed to Kafka afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from flashsale.common import database, errors, kafka
from flashsale_api.v1 import events_pb2

log = logging.getLogger(__name__)

MIGRATION = """
CREATE TABLE outbox (
  seq {serial_pk},
  topic TEXT NOT NULL,
  event_key TEXT NOT NULL,
  payload {blob} NOT NULL
);
CREATE TABLE processed_events (event_id TEXT PRIMARY KEY)
"""


def add(tx: database.Tx, topic: str, env: events_pb2.EventEnvelope) -> None:
    """Store an event in the same transaction as the change it describes."""
    tx.execute(
        "INSERT INTO outbox (topic, event_key, payload) VALUES (?, ?, ?)",
        (topic, env.key, env.SerializeToString()),
    )


def processed(tx: database.Tx, event_id: str) -> bool:
    """True when an event (or a notification, a decision: any id deduplicated here) was processed already."""
    return tx.fetchone("SELECT 1 FROM processed_events WHERE event_id = ?", (event_id,)) is not None


def first_time(tx: database.Tx, event_id: str) -> bool:
    """Record an event as processed; False when it was processed before (a redelivery)."""
    if processed(tx, event_id):
        return False
    tx.execute("INSERT INTO processed_events (event_id) VALUES (?)", (event_id,))
    return True


def backlog(tx: database.Tx) -> int:
    """Events stored and not yet published."""
    row = tx.fetchone("SELECT COUNT(*) FROM outbox")
    return int(row[0]) if row else 0


class OutboxRelay:
    """Publishes stored events in order, deleting each batch once Kafka acknowledged it."""

    def __init__(self, db: database.Database, producer: kafka.EventProducer, batch: int = 500) -> None:
        self._db = db
        self._producer = producer
        self._batch = batch
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Wake the relay after a commit that added events (call from the event loop)."""
        self._wake.set()

    async def run(self, idle_s: float = 0.05) -> None:
        """Relay forever; a failure is logged and retried."""
        while True:
            try:
                moved = await self.relay_once()
            except (errors.TemporaryError, OSError) as exc:
                log.warning("outbox relay failed; retrying", extra={"reason": str(exc)})
                moved = 0
                await asyncio.sleep(1.0)
            if moved < self._batch:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), idle_s)

    async def relay_once(self) -> int:
        """Publish one batch of stored events; return how many were moved."""
        rows = await self._db.run(
            lambda tx: tx.fetchall("SELECT seq, topic, payload FROM outbox ORDER BY seq LIMIT ?", (self._batch,))
        )
        if not rows:
            return 0
        items = []
        for _seq, topic, payload in rows:
            env = events_pb2.EventEnvelope()
            env.ParseFromString(bytes(payload))
            items.append((str(topic), env))
        await self._producer.publish_many(items)
        # delete exactly what was published: a row with a lower seq may still commit after this read
        seqs = [row[0] for row in rows]
        marks = ", ".join("?" * len(seqs))
        await self._db.run(lambda tx: tx.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", seqs))
        return len(rows)
