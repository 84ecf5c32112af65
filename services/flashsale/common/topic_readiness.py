"""Waiting until a new topic's partitions take writes.

A topic (or a partition added to one) exists in the controller's metadata, with a leader, before that leader
has created the partition's log. A write arriving in between is refused and retried; an idempotent producer
that meanwhile had a later batch of the same partition taken (the first one a broker sees from a producer may
start at any sequence number) has the earlier ones answered as duplicates, which it counts as delivered: the
records are lost though acknowledged. So nothing is written to a partition before its leader answers for it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import confluent_kafka
import confluent_kafka.admin as kafka_admin

from flashsale.common import errors


def wait_until_writable(
    client: kafka_admin.AdminClient, topic: str, partitions: Iterable[int], within_s: float = 30.0
) -> None:
    """Return once the leader of every given partition answers a ListOffsets for it (its log exists there);
    TemporaryError after `within_s`."""
    waiting = set(partitions)
    deadline = time.monotonic() + within_s
    last = ""
    while True:
        if _leaders_known(client, topic, waiting):  # the admin client asks the leaders its metadata names
            waiting -= _answering(client, topic, waiting)
            if not waiting:
                return
            last = "a leader does not answer for its partition yet"
        else:
            last = "no leader in the metadata yet"
        if time.monotonic() >= deadline:
            raise errors.TemporaryError(f"{topic}{sorted(waiting)} not writable after {within_s}s: {last}")
        time.sleep(0.05)


def _leaders_known(client: kafka_admin.AdminClient, topic: str, partitions: set[int]) -> bool:
    """True when fresh metadata names a leader for every one of the partitions."""
    meta = client.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return False
    found = meta.partitions
    return all(p in found and found[p].leader >= 0 and found[p].error is None for p in partitions)


def _answering(client: kafka_admin.AdminClient, topic: str, partitions: set[int]) -> set[int]:
    """The partitions whose leader answered a ListOffsets for them."""
    latest = kafka_admin.OffsetSpec.latest()  # type: ignore[attr-defined,no-untyped-call]  # untyped, not re-exported
    asked = {confluent_kafka.TopicPartition(topic, p): latest for p in sorted(partitions)}
    try:
        answers = client.list_offsets(asked, request_timeout=10)
    except confluent_kafka.KafkaException:
        return set()
    answered = set()
    for tp, future in answers.items():
        try:
            future.result()
        except confluent_kafka.KafkaException:
            continue
        answered.add(tp.partition)
    return answered
