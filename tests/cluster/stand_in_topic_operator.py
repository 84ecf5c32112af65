"""For tests only: a stand-in for Strimzi's Topic Operator on the local node, whose Strimzi images cannot be pulled.

It does the part of the Topic Operator the platform relies on: each KafkaTopic of one Strimzi cluster name gets its
topic in the real broker (partitions, replicas and config from its spec; partitions grown, never shrunk) and its
`Ready` condition for the generation it saw, as Strimzi reports it. Deleting a KafkaTopic leaves its topic (the test's
broker is thrown away with it)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

CLUSTER_LABEL = "strimzi.io/cluster"


class StandInTopicOperator:
    """Reconciles the KafkaTopics labelled with one Strimzi cluster name against a broker, in a thread."""

    def __init__(self, kubectl: Sequence[str], bootstrap_servers: str, cluster: str, interval_s: float = 0.5) -> None:
        """``kubectl`` is the command line reaching the cluster (binary and --kubeconfig)."""
        self._kubectl = list(kubectl)
        self._cluster = cluster
        self._interval_s = interval_s
        self._admin = AdminClient({"bootstrap.servers": bootstrap_servers})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stand-in-topic-operator", daemon=True)
        self.reconciled: dict[str, int] = {}  # topic name -> partitions made Ready
        self.errors: list[str] = []

    def __enter__(self) -> StandInTopicOperator:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.reconcile_once()
            except (subprocess.SubprocessError, KafkaException, RuntimeError) as exc:
                self.errors.append(str(exc))  # the next pass tries again, as an operator would

    def reconcile_once(self) -> None:
        """One pass: every KafkaTopic of the cluster not yet Ready for its generation is made so."""
        listed = subprocess.run(
            [*self._kubectl, "get", "kafkatopics", "-A", "-l", f"{CLUSTER_LABEL}={self._cluster}", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        for topic in json.loads(listed.stdout)["items"]:
            if not _ready_for_generation(topic):
                self._reconcile(topic)

    def _reconcile(self, topic: dict[str, Any]) -> None:
        meta, spec = topic["metadata"], topic.get("spec") or {}
        name = str(spec.get("topicName") or meta["name"])
        partitions = int(spec.get("partitions") or 1)
        existing = self._admin.list_topics(timeout=10).topics.get(name)
        if existing is None:
            config = {key: str(value) for key, value in (spec.get("config") or {}).items()}
            new = NewTopic(name, partitions, int(spec.get("replicas") or 1), config=config)
            self._admin.create_topics([new])[name].result(timeout=30)
        elif len(existing.partitions) < partitions:
            self._admin.create_partitions([NewPartitions(name, partitions)])[name].result(timeout=30)
        status = {
            "conditions": [{"type": "Ready", "status": "True", "reason": "TopicReconciled"}],
            "observedGeneration": meta["generation"],
            "topicName": name,
        }
        subprocess.run(
            [
                *self._kubectl,
                "patch",
                "kafkatopic",
                meta["name"],
                "-n",
                meta["namespace"],
                "--subresource=status",
                "--type=merge",
                "-p",
                json.dumps({"status": status}),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        self.reconciled[name] = partitions


def _ready_for_generation(topic: dict[str, Any]) -> bool:
    status = topic.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
    return ready and int(status.get("observedGeneration") or 0) >= int(topic["metadata"].get("generation") or 0)
