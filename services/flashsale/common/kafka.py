"""Kafka producer and consumer helpers (confluent-kafka).

The producer is idempotent (acks=all). The consumer stores an offset for commit only after its
handler processed the message; a malformed message goes to the topic's dead-letter topic with the reason,
and a temporary failure is retried with backoff without committing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from typing import Any

import confluent_kafka
import confluent_kafka.admin as admin

from flashsale.common import (
    backoff,
    errors,
    events,
    kafka_metrics,
    kafka_security,
    timeutil,
    topic_readiness,
    topics,
    tracing,
)
from flashsale_api.v1 import events_pb2

log = logging.getLogger(__name__)

FETCH_MAX = 500  # records a consumer takes from its buffer per loop turn (one offset store per turn)
BATCH_BYTES = 65_536  # what a batched consumer's fetch waits for at the broker (or its wait), whichever comes first

Handler = Callable[[events_pb2.EventEnvelope], None]


def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    timeout: float = 30.0,
    security: kafka_security.Security | None = None,
) -> None:
    """Create the topics that do not exist yet (idempotent); return once their partitions take writes. A login
    Kafka refuses (credentials, an untrusted certificate) is a ConfigError saying which."""
    watch = kafka_security.LoginWatch()
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, **(security or {}), "error_cb": watch}
    client = admin.AdminClient(config)
    try:
        existing = set(client.list_topics(timeout=timeout).topics)
    except confluent_kafka.KafkaException:
        watch.raise_if_refused(client.poll)
        raise
    new_topic = admin.NewTopic  # type: ignore[attr-defined]
    wanted = [  # the broker's default.replication.factor (a Strimzi cluster's is min(3, brokers)), never a fixed 1
        new_topic(n, num_partitions=partitions, replication_factor=topics.BROKER_DEFAULT_REPLICAS)
        for n in names
        if n not in existing
    ]
    if not wanted:
        return
    for name, future in client.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result()
        except confluent_kafka.KafkaException as exc:
            if exc.args[0].code() != confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        topic_readiness.wait_until_writable(client, name, within_s=timeout)  # however many its creator gave it
        log.info("topic ready", extra={"topic": name})


class EventProducer:
    """An idempotent producer of envelopes; `publish` resolves once the broker acknowledged."""

    def __init__(
        self,
        bootstrap: str,
        client_id: str,
        counted: kafka_metrics.KafkaMetrics | None = None,
        security: kafka_security.Security | None = None,
    ) -> None:
        self._counted = counted
        self._producer = confluent_kafka.Producer(
            {
                **(security or {}),
                "bootstrap.servers": bootstrap,
                "client.id": client_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "compression.type": "lz4",
            }
        )
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name=f"{client_id}-producer", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def produce(
        self,
        topic: str,
        key: str,
        value: bytes,
        on_done: Callable[[confluent_kafka.KafkaError | None], None],
        partition: int = -1,
        trace_context: MutableMapping[str, str] | None = None,
    ) -> None:
        """Queue one message (to a given partition, or the key's); on_done gets the delivery error or None. When
        traces are on, a traceparent header carries `trace_context` (an envelope's) or else the current context."""
        headers = tracing.headers(trace_context) if tracing.active() else None
        counted = self._counted
        if counted is None:
            delivered = lambda err, _msg: on_done(err)  # noqa: E731
        else:

            def delivered(err: confluent_kafka.KafkaError | None, _msg: Any) -> None:
                counted.delivered(topic, err is None)
                on_done(err)

        while True:
            try:
                self._producer.produce(
                    topic, key=key.encode(), value=value, partition=partition, on_delivery=delivered, headers=headers
                )
                return
            except BufferError:
                time.sleep(0.01)

    def produce_all(self, items: Sequence[tuple[str, str, bytes]], timeout: float = 30.0) -> None:
        """Send (topic, key, value) messages from a plain thread and wait until all are acknowledged."""
        if not items:
            return
        left = [len(items)]
        failures: list[confluent_kafka.KafkaError] = []
        done = threading.Event()
        lock = threading.Lock()

        def on_done(err: confluent_kafka.KafkaError | None) -> None:
            with lock:
                if err is not None:
                    failures.append(err)
                left[0] -= 1
                if left[0] == 0:
                    done.set()

        for topic, key, value in items:
            self.produce(topic, key, value, on_done)
        if not done.wait(timeout):
            raise errors.TemporaryError(f"Kafka did not acknowledge {left[0]} of {len(items)} messages in {timeout}s")
        if failures:
            raise errors.TemporaryError(f"Kafka refused {len(failures)} messages: {failures[0]}")

    async def send_all(self, items: Sequence[tuple[str, int, str, bytes]]) -> None:
        """Send (topic, partition, key, value) messages and wait until the broker acknowledged all of them."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for topic, partition, key, value in items:
            fut: asyncio.Future[None] = loop.create_future()
            futures.append(fut)
            self.produce(topic, key, value, _resolver(loop, fut), partition=partition)
        for fut in futures:
            await fut

    async def publish(self, topic: str, env: events_pb2.EventEnvelope) -> None:
        """Send one envelope and wait for the acknowledgement."""
        await self.publish_many([(topic, env)])

    async def publish_many(self, items: Sequence[tuple[str, events_pb2.EventEnvelope]]) -> None:
        """Send envelopes in order and wait until the broker acknowledged all of them."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for topic, env in items:
            fut: asyncio.Future[None] = loop.create_future()
            futures.append(fut)
            self.produce(topic, env.key, env.SerializeToString(), _resolver(loop, fut), trace_context=env.trace_context)
        for fut in futures:
            await fut

    def publish_sync(self, topic: str, key: str, value: bytes, timeout: float = 30.0) -> None:
        """Send one raw message from a plain thread and wait for the acknowledgement."""
        done = threading.Event()
        failure: list[confluent_kafka.KafkaError] = []

        def on_done(err: confluent_kafka.KafkaError | None) -> None:
            if err is not None:
                failure.append(err)
            done.set()

        self.produce(topic, key, value, on_done)
        if not done.wait(timeout):
            raise errors.TemporaryError(f"no acknowledgement from Kafka for {topic} within {timeout}s")
        if failure:
            raise errors.TemporaryError(f"Kafka refused the message for {topic}: {failure[0]}")

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` for every queued message to be acknowledged (their callbacks may run in the calling
        thread); how many are still in flight."""
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued and stop the poller."""
        self._producer.flush(timeout)
        self._stop.set()
        self._poller.join()


def _resolver(
    loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]
) -> Callable[[confluent_kafka.KafkaError | None], None]:
    def done(err: confluent_kafka.KafkaError | None) -> None:
        def settle() -> None:
            if fut.done():
                return
            if err is None:
                fut.set_result(None)
            else:
                fut.set_exception(errors.TemporaryError(f"Kafka delivery failed: {err}"))

        loop.call_soon_threadsafe(settle)

    return done


class EventConsumer:
    """Consumes envelopes in a thread: handle, then commit; malformed → dead letter; temporary → retry."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        subscriptions: Sequence[str],
        handler: Handler,
        producer: EventProducer,
        max_backoff_s: float = 5.0,
        offset_reset: str = "earliest",
        counted: kafka_metrics.KafkaMetrics | None = None,
        security: kafka_security.Security | None = None,
        batch_wait_ms: int = 0,
    ) -> None:
        self._counted = counted
        # batched: the broker holds a fetch until BATCH_BYTES or batch_wait_ms, so a busy topic costs it a few
        # fetches a second per group instead of one per few records; 0: every record fetched at once
        batching = {"fetch.wait.max.ms": batch_wait_ms, "fetch.min.bytes": BATCH_BYTES} if batch_wait_ms > 0 else {}
        stats = (
            {
                "statistics.interval.ms": kafka_metrics.STATS_INTERVAL_MS,
                "stats_cb": lambda raw: counted.statistics(group_id, raw),
            }
            if counted is not None
            else {}
        )
        self._consumer = confluent_kafka.Consumer(
            {
                **stats,
                **batching,
                **(security or {}),
                "bootstrap.servers": bootstrap,
                "group.id": group_id,
                # at-least-once: an offset is stored only after its message was processed, and
                # librdkafka commits stored offsets every second, on rebalance and on close
                "enable.auto.commit": True,
                "enable.auto.offset.store": False,
                "auto.commit.interval.ms": 1000,
                "auto.offset.reset": offset_reset,
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
            }
        )
        self._group = group_id
        self._subscriptions = list(subscriptions)
        self._handler = handler
        self._producer = producer
        self._max_backoff = max_backoff_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"{group_id}-consumer", daemon=True)

    def start(self) -> None:
        """Subscribe and start consuming in the background."""
        if self._counted is not None:
            self._counted.subscribed(self._group, self._subscriptions)
        self._consumer.subscribe(self._subscriptions)
        self._thread.start()

    def stop(self) -> None:
        """Finish the message in hand, commit, and close."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                done = self._handle_all(self._fetch(0.2))
                if done:
                    self._store(done)
        except Exception:
            log.exception("consumer loop crashed", extra={"group": self._group})
            raise
        finally:
            self._consumer.close()

    def _fetch(self, timeout: float) -> list[confluent_kafka.Message]:
        """Up to FETCH_MAX records: waits at most `timeout` for the first one, then takes what is buffered."""
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        return [first, *self._consumer.consume(num_messages=FETCH_MAX - 1, timeout=0)]

    def _store(self, offsets: list[confluent_kafka.TopicPartition]) -> None:
        try:
            self._consumer.store_offsets(offsets=offsets)
        except confluent_kafka.KafkaException as exc:
            if exc.args[0].code() != confluent_kafka.KafkaError._STATE:
                raise
            # revoked while the batch was handled: the partitions' new owner reads those records again
            log.info("offsets not stored: partitions revoked", extra={"group": self._group})

    def _handle_all(self, batch: Sequence[confluent_kafka.Message]) -> list[confluent_kafka.TopicPartition]:
        """Handle a fetched batch in order; the offsets to store: past the last record handled of each partition
        (a stop in the middle leaves the rest unstored, to be read again)."""
        handled: dict[tuple[str, int], int] = {}
        for msg in batch:
            failure = msg.error()
            if failure is not None:
                if failure.code() != confluent_kafka.KafkaError._PARTITION_EOF:
                    log.warning("consumer error", extra={"error": str(failure)})
                continue
            topic = msg.topic() or ""
            if self._counted is not None:
                self._counted.consumed(self._group, topic)
            if not self._process(msg):
                break
            handled[(topic, msg.partition() or 0)] = (msg.offset() or 0) + 1
        return [confluent_kafka.TopicPartition(t, p, offset) for (t, p), offset in handled.items()]

    def _process(self, msg: confluent_kafka.Message) -> bool:
        """Handle one message; True when its offset may be committed."""
        delays = backoff.Backoff(0.1, self._max_backoff)
        while not self._stop.is_set():
            try:
                env = events.decode(msg.value())
                if tracing.active():
                    self._traced(msg, env)
                else:
                    self._handler(env)
                return True
            except errors.PermanentEventError as exc:
                self._dead_letter(msg, str(exc))
                return True
            except errors.TemporaryError as exc:
                log.warning("retrying event", extra={"reason": str(exc)})
            except Exception as exc:
                log.exception("event handler failed; retrying")
                if delays.exhausted:
                    self._dead_letter(msg, f"handler failed repeatedly: {exc!r}")
                    return True
            self._stop.wait(delays.next())
        return False

    def _traced(self, msg: confluent_kafka.Message, env: events_pb2.EventEnvelope) -> None:
        """Handle an envelope in a consumer span whose parent is the context it carries (or its record's)."""
        carrier = dict(env.trace_context) or tracing.from_headers(msg.headers())
        topic = msg.topic() or ""
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": self._group,
            "messaging.kafka.offset": msg.offset() or 0,
            "flashsale.event.type": env.type,
        }
        parent = tracing.extracted(carrier)
        with tracing.span(f"process {topic}", context=parent, kind=tracing.CONSUMER, attributes=attributes):
            self._handler(env)

    def _dead_letter(self, msg: confluent_kafka.Message, reason: str) -> None:
        topic = msg.topic() or "unknown"
        letter = events_pb2.DeadLetter(
            topic=topic,
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key=msg.key() or b"",
            value=msg.value() or b"",
            reason=reason,
            consumer=self._group,
            failed_at=timeutil.to_timestamp(timeutil.now_ms()),
        )
        key = (msg.key() or b"").decode(errors="replace")
        self._producer.publish_sync(topics.dead_letter(topic), key, letter.SerializeToString())
        if self._counted is not None:
            self._counted.dead_lettered(self._group, topic)
        log.warning("dead-lettered", extra={"topic": topic, "offset": msg.offset(), "reason": reason})
