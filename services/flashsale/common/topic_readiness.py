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
    client: kafka_admin.AdminClient, topic: str, partitions: Iterable[int] | None = None, within_s: float = 30.0
) -> None:
    """Return once the leader of every given partition (all the topic has, when None) answers a ListOffsets for
    it (its log exists there); TemporaryError after `within_s`."""
    waiting = None if partitions is None else set(partitions)
    deadline = time.monotonic() + within_s
    last = ""
    while True:
        known, led = _partitions(client, topic)  # the admin client asks the leaders its metadata names
        if waiting is None and known:
            waiting = known
        if waiting is not None and waiting <= led:
            waiting -= _answering(client, topic, waiting)
            if not waiting:
                return
            last = "a leader does not answer for its partition yet"
        else:
            last = "no leader in the metadata yet"
        if time.monotonic() >= deadline:
            raise errors.TemporaryError(f"{topic}{sorted(waiting or ())} not writable after {within_s}s: {last}")
        time.sleep(0.05)


def _partitions(client: kafka_admin.AdminClient, topic: str) -> tuple[set[int], set[int]]:
    """The topic's partitions in fresh metadata, and those of them it names a leader for."""
    meta = client.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return set(), set()
    led = {p for p, found in meta.partitions.items() if found.leader >= 0 and found.error is None}
    return set(meta.partitions), led


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
