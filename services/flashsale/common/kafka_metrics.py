"""Kafka metrics of a process: records produced (acknowledged) and failed by topic, consumed and dead-lettered by
group and topic, and each consumer's lag by group, topic and partition (from librdkafka's statistics)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

import prometheus_client

from flashsale.common import metrics

log = logging.getLogger(__name__)

STATS_INTERVAL_MS = 5000  # how often a consumer reports its lag


class KafkaMetrics:
    """The counters and gauges; children are cached per label values (the hot path only increments)."""

    def __init__(self, reg: metrics.Registry) -> None:
        self._produced = prometheus_client.Counter(
            "flashsale_kafka_records_produced_total", "Records Kafka acknowledged, by topic.", ("topic",), registry=reg
        )
        self._failed = prometheus_client.Counter(
            "flashsale_kafka_records_failed_total",
            "Records Kafka refused or never acknowledged.",
            ("topic",),
            registry=reg,
        )
        self._consumed = prometheus_client.Counter(
            "flashsale_kafka_records_consumed_total",
            "Records read by a consumer group.",
            ("group", "topic"),
            registry=reg,
        )
        self._dead = prometheus_client.Counter(
            "flashsale_kafka_records_dead_lettered_total",
            "Records a consumer group sent to the topic's dead-letter topic.",
            ("group", "topic"),
            registry=reg,
        )
        self._lag = prometheus_client.Gauge(
            "flashsale_kafka_consumer_lag",
            "Records of a partition not yet read by a consumer group (its high watermark minus its position).",
            ("group", "topic", "partition"),
            registry=reg,
        )
        self._children: dict[tuple[str, ...], Any] = {}
        self._lagging: dict[str, set[tuple[str, str]]] = {}  # group → the (topic, partition) gauges it set
        self._lock = threading.Lock()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def delivered(self, topic: str, ok: bool) -> None:
        """Count a record Kafka acknowledged (or refused)."""
        self._child(self._produced if ok else self._failed, topic).inc()

    def consumed(self, group: str, topic: str, count: int = 1) -> None:
        """Count records a group read."""
        self._child(self._consumed, group, topic).inc(count)

    def subscribed(self, group: str, topics: Iterable[str]) -> None:
        """Create a group's consumed and dead-lettered series of its topics at 0 (they exist before any record)."""
        for topic in topics:
            if topic.startswith("^"):  # a pattern, not a topic
                continue
            self._child(self._consumed, group, topic)
            self._child(self._dead, group, topic)

    def dead_lettered(self, group: str, topic: str) -> None:
        """Count a record sent to the dead-letter topic."""
        self._child(self._dead, group, topic).inc()

    def statistics(self, group: str, raw: str) -> None:
        """Take a consumer's librdkafka statistics (JSON): its lag per assigned partition; partitions it no
        longer holds leave the gauge."""
        try:
            doc = json.loads(raw)
        except ValueError:
            log.debug("unreadable Kafka statistics", extra={"group": group})
            return
        seen: set[tuple[str, str]] = set()
        for topic, body in (doc.get("topics") or {}).items():
            for partition, stats in (body.get("partitions") or {}).items():
                lag = stats.get("consumer_lag", -1)
                if partition == "-1" or not isinstance(lag, int) or lag < 0:
                    continue
                seen.add((topic, partition))
                self._lag.labels(group, topic, partition).set(lag)
        with self._lock:
            gone = self._lagging.get(group, set()) - seen
            self._lagging[group] = seen
        for topic, partition in gone:
            self._lag.remove(group, topic, partition)
