"""A reader of a Kafka topic for the integration tests: keeps every event envelope published from now on."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable

import confluent_kafka

from flashsale_api.v1 import events_pb2

Predicate = Callable[[events_pb2.EventEnvelope], bool]


class TopicTap:
    """Reads a topic from its current end in a thread and keeps every envelope it sees."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._consumer = confluent_kafka.Consumer(
            {"bootstrap.servers": bootstrap_servers, "group.id": uuid.uuid4().hex, "enable.auto.commit": False}
        )
        self._next = self._ends()
        self._consumer.assign([confluent_kafka.TopicPartition(topic, p, o) for p, o in self._next.items()])
        self.seen: list[events_pb2.EventEnvelope] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _ends(self, wait_s: float = 30.0) -> dict[int, int]:
        """The end offset of every partition (retried while a new topic elects its leaders)."""
        probe = confluent_kafka.Consumer({"bootstrap.servers": self._bootstrap, "group.id": uuid.uuid4().hex})
        deadline = time.monotonic() + wait_s
        try:
            while True:
                try:
                    meta = probe.list_topics(self._topic, timeout=10).topics[self._topic]
                    return {
                        p: probe.get_watermark_offsets(confluent_kafka.TopicPartition(self._topic, p), timeout=10)[1]
                        for p in meta.partitions
                    }
                except confluent_kafka.KafkaException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            probe.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            env = events_pb2.EventEnvelope()
            env.ParseFromString(msg.value() or b"")
            with self._lock:
                self.seen.append(env)
                self._next[msg.partition() or 0] = (msg.offset() or 0) + 1
        self._consumer.close()

    def matching(self, predicate: Predicate) -> list[events_pb2.EventEnvelope]:
        """The envelopes seen so far that match."""
        with self._lock:
            return [e for e in self.seen if predicate(e)]

    async def wait_for(self, predicate: Predicate, count: int = 1, wait_s: float = 30.0) -> events_pb2.EventEnvelope:
        """The first matching envelope, once at least count have been seen."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            found = self.matching(predicate)
            if len(found) >= count:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"fewer than {count} matching events on {self._topic} within {wait_s}s")

    async def settle(self, wait_s: float = 30.0) -> None:
        """Wait until everything on the topic now has been read."""
        ends = await asyncio.to_thread(self._ends)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with self._lock:
                if all(self._next.get(p, 0) >= end for p, end in ends.items()):
                    return
            await asyncio.sleep(0.05)
        raise AssertionError("tap did not catch up")

    def close(self) -> None:
        """Stop reading."""
        self._stop.set()
        self._thread.join()
