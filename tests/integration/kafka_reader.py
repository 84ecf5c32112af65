"""A reader of a Kafka topic for the integration tests: keeps every event envelope published from now on."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable

import confluent_kafka
from waiting import eventually, eventually_sync

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

        def ends() -> dict[int, int]:
            meta = probe.list_topics(self._topic, timeout=10).topics[self._topic]
            return {
                p: probe.get_watermark_offsets(confluent_kafka.TopicPartition(self._topic, p), timeout=10)[1]
                for p in meta.partitions
            }

        try:
            return eventually_sync(
                ends,
                until=lambda _: True,  # any answer: only a KafkaException means "not yet"
                within_s=wait_s,
                every_s=0.1,
                ignoring=(confluent_kafka.KafkaException,),
                what=f"the end offsets of {self._topic}",
            )
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
        found = await eventually(
            lambda: self.matching(predicate),
            until=lambda got: len(got) >= count,
            within_s=wait_s,
            what=f"{count} matching events on {self._topic}",
        )
        return found[0]

    async def settle(self, wait_s: float = 30.0) -> None:
        """Wait until everything on the topic now has been read."""
        ends = await asyncio.to_thread(self._ends)

        def behind() -> dict[int, int]:
            """Partition → how many messages are still to be read."""
            with self._lock:
                return {p: end - self._next.get(p, 0) for p, end in ends.items() if self._next.get(p, 0) < end}

        await eventually(
            behind, until=lambda lag: not lag, within_s=wait_s, what=f"the tap to catch up on {self._topic}"
        )

    def close(self) -> None:
        """Stop reading."""
        self._stop.set()
        self._thread.join()
