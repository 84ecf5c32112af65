"""The sales' request topics in Kafka: created with P partitions and the broker's log-append time (the arrival
time of a request), grown when a sale is split over more, and how far each partition's log reaches."""

from __future__ import annotations

import time

import confluent_kafka
import confluent_kafka.admin as kafka_admin

from flashsale.common import errors, kafka_security, topic_readiness, topics

CONFIG = {"message.timestamp.type": "LogAppendTime"}


class RequestTopics:
    """Kafka's admin API and watermarks for request topics (blocking: call from a thread)."""

    def __init__(self, bootstrap: str, security: kafka_security.Security | None = None) -> None:
        self._client: dict[str, str | int | float | bool] = {"bootstrap.servers": bootstrap, **(security or {})}
        self._admin = kafka_admin.AdminClient(self._client)  # thread-safe, as librdkafka is
        self._watermarks: confluent_kafka.Consumer | None = None
        self._known: set[str] = set()  # topics seen to exist (a request topic is never deleted under a sale)

    def exists(self, topic: str) -> bool:
        """True when the topic exists (remembered once seen)."""
        if topic not in self._known:
            # all topics' metadata: asking for this one by name would let a broker that auto-creates topics make it
            meta = self._admin.list_topics(timeout=30).topics.get(topic)
            if meta is not None and meta.error is None:
                self._known.add(topic)
        return topic in self._known

    def ensure(self, topic: str, partitions: int) -> None:
        """Create the topic with `partitions` partitions, or grow it to that many, and return once every partition
        takes writes; FailedPrecondition when it has more already (Kafka cannot take partitions away)."""
        client = self._admin
        meta = client.list_topics(timeout=30).topics.get(topic)
        if meta is None:
            new_topic = kafka_admin.NewTopic(  # type: ignore[attr-defined]
                topic, num_partitions=partitions, replication_factor=topics.BROKER_DEFAULT_REPLICAS, config=CONFIG
            )
            for future in client.create_topics([new_topic], operation_timeout=30).values():
                try:
                    future.result()
                except confluent_kafka.KafkaException as exc:
                    if exc.args[0].code() != confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                        raise errors.TemporaryError(f"cannot create {topic}: {exc}") from exc
            topic_readiness.wait_until_writable(client, topic, range(partitions))
            self._known.add(topic)
            return
        have = len(meta.partitions)
        if have < partitions:
            grow = kafka_admin.NewPartitions(topic, partitions)  # type: ignore[attr-defined]
            for future in client.create_partitions([grow], operation_timeout=30).values():
                future.result()
        elif have > partitions:
            raise errors.FailedPrecondition(f"the request topic has {have} partitions already", "partitions")
        topic_readiness.wait_until_writable(client, topic, range(partitions))  # created or grown just now, maybe
        self._known.add(topic)

    def ends(self, topic: str) -> dict[int, int]:
        """The offset after the last record of each partition the topic has; none when it does not exist."""
        if not self.exists(topic):
            return {}
        meta = self._admin.list_topics(timeout=30).topics[topic]
        return self.end_offsets(topic, sorted(meta.partitions))

    def holds_records(self, topic: str) -> bool:
        """True when the topic exists and a record was ever appended to it."""
        return any(self.ends(topic).values())

    def end_offsets(self, topic: str, partitions: list[int]) -> dict[int, int]:
        """The offset after the last record of each partition."""
        if self._watermarks is None:
            self._watermarks = confluent_kafka.Consumer(
                {**self._client, "group.id": "flashsale-sales-stats", "enable.auto.commit": False}
            )
        ends = {}
        for p in partitions:
            for attempt in range(20):
                try:
                    _, high = self._watermarks.get_watermark_offsets(
                        confluent_kafka.TopicPartition(topic, p), timeout=10
                    )
                    ends[p] = int(high)
                    break
                except confluent_kafka.KafkaException as exc:  # e.g. a leader being elected
                    if attempt == 19:
                        raise errors.TemporaryError(f"cannot read the end of {topic}[{p}]: {exc}") from exc
                    time.sleep(0.1)
        return ends

    def close(self) -> None:
        """Release the Kafka client used for watermarks."""
        if self._watermarks is not None:
            self._watermarks.close()
