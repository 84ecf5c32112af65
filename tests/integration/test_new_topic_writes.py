"""The first writes to a topic created a moment ago all land: none is acknowledged and lost.

A request topic is created when a sale takes its first purchase, and the purchases follow at once. Every
partition gets many small records in flight together, as in a rush (linger 0); each acknowledged record must
be read back from the log.
"""

from __future__ import annotations

import asyncio
import uuid

import confluent_kafka
import pytest

from flashsale.common import kafka as kafka_io
from flashsale.sales import request_topics
from flashsale_tools.platform import kafka_broker

pytestmark = pytest.mark.integration

PARTITIONS = 16
TOPICS = 6
RECORDS = 40  # per partition


def _records_in(bootstrap: str, topic: str) -> int:
    """How many records the topic's partitions hold, read from the start."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        return sum(
            high - low
            for low, high in (
                consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p), timeout=10)
                for p in range(PARTITIONS)
            )
        )
    finally:
        consumer.close()


async def _rush_into_new_topic(bootstrap: str, producer: kafka_io.EventProducer) -> tuple[str, int]:
    topics = request_topics.RequestTopics(bootstrap)
    topic = f"flashsale.sale.{uuid.uuid4().hex}.requests"
    try:
        await asyncio.to_thread(topics.ensure, topic, PARTITIONS)
    finally:
        topics.close()
    sends = []
    for n in range(RECORDS):  # a record per partition every few milliseconds, none waiting for the one before
        batch = [(topic, p, f"k{p}", f"record {n} of partition {p}".encode()) for p in range(PARTITIONS)]
        sends.append(asyncio.ensure_future(producer.send_all(batch)))
        await asyncio.sleep(0.003)
    await asyncio.gather(*sends)  # every one acknowledged
    return topic, RECORDS * PARTITIONS


async def test_every_acknowledged_first_write_of_a_new_topic_is_in_its_log(
    kafka: kafka_broker.KafkaBroker,
) -> None:
    producer = kafka_io.EventProducer(kafka.bootstrap_servers, "new-topic-writes")
    try:
        for _ in range(TOPICS):
            topic, sent = await _rush_into_new_topic(kafka.bootstrap_servers, producer)
            assert await asyncio.to_thread(_records_in, kafka.bootstrap_servers, topic) == sent
    finally:
        producer.close()
