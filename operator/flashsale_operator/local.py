"""Local mode: the operator's decisions driven against the local platform, no Kubernetes.

The FlashSale manifest is read from a file, the status kept in a JSON file beside the platform's data, the request
topic made through Kafka's admin API, the sale created and prepared through the sales service, and the workers are
the local sales process (nothing to scale). Events are printed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import confluent_kafka
import yaml
from confluent_kafka import admin as kafka_admin

from flashsale.common import errors, kafka_security, timeutil, topics
from flashsale_operator import decide, plan, reconciler, state
from flashsale_operator import observed as obs
from flashsale_operator.sales_client import Refused, SalesClient

TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}  # what the sales service creates its topics with


class ManifestError(ValueError):
    """The file is not a FlashSale manifest."""


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A FlashSale read from a file."""

    namespace: str
    name: str
    spec: Mapping[str, Any]


def read_manifest(path: Path) -> Manifest:
    """The FlashSale of a YAML file (one document)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("kind") != "FlashSale":
        raise ManifestError(f"{path}: not a FlashSale manifest (kind: FlashSale)")
    meta = raw.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{path}: metadata.name is required")
    spec = raw.get("spec")
    if not isinstance(spec, dict):
        raise ManifestError(f"{path}: spec is required")
    return Manifest(str(meta.get("namespace") or "default"), name, spec)


def _spec_hash(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StateFile:
    """The status of one FlashSale and its generation (bumped when the manifest's spec changes), as JSON."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> tuple[int, str, state.Status]:
        """(generation, spec hash, status); a fresh FlashSale when the file does not exist."""
        if not self.path.exists():
            return 0, "", state.Status()
        raw = json.loads(self.path.read_text())
        return int(raw["generation"]), str(raw["specHash"]), state.Status.from_dict(raw["status"])

    def write(self, generation: int, spec_hash: str, status: state.Status) -> None:
        """Replace the file atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps({"generation": generation, "specHash": spec_hash, "status": status.to_dict()}))
        os.replace(temp, self.path)

    def remove(self) -> None:
        """Forget the FlashSale."""
        self.path.unlink(missing_ok=True)


class KafkaTopics:
    """Request topics through Kafka's admin API (blocking: call from a thread)."""

    def __init__(self, bootstrap: str, security: kafka_security.Security | None = None) -> None:
        self._admin = kafka_admin.AdminClient({"bootstrap.servers": bootstrap, **(security or {})})

    def view(self, name: str) -> obs.TopicView | None:
        """The topic, Ready once every partition has a leader; None when it does not exist.

        Every topic's metadata is asked for: asking for one topic would make a broker auto-create it."""
        try:
            meta = self._admin.list_topics(timeout=10).topics.get(name)
        except confluent_kafka.KafkaException as exc:
            raise errors.TemporaryError(f"Kafka metadata of {name}: {exc}") from exc
        if meta is None or meta.error is not None:
            return None
        ready = bool(meta.partitions) and all(p.leader >= 0 and p.error is None for p in meta.partitions.values())
        return obs.TopicView(name, len(meta.partitions), ready, "" if ready else "partitions without a leader")

    def ensure(self, name: str, partitions: int) -> None:
        """Create the topic with `partitions` partitions, or grow it to that many."""
        existing = self.view(name)
        if existing is None:
            topic = kafka_admin.NewTopic(  # type: ignore[attr-defined]
                name,
                num_partitions=partitions,
                replication_factor=topics.BROKER_DEFAULT_REPLICAS,
                config=dict(TOPIC_CONFIG),
            )
            futures = self._admin.create_topics([topic], operation_timeout=30)
        elif existing.partitions < partitions:
            grow = kafka_admin.NewPartitions(name, partitions)  # type: ignore[attr-defined]
            futures = self._admin.create_partitions([grow], operation_timeout=30)
        else:
            return
        for future in futures.values():
            try:
                future.result()
            except confluent_kafka.KafkaException as exc:
                if exc.args[0].code() != confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise errors.TemporaryError(f"cannot create {name}: {exc}") from exc

    def delete(self, name: str) -> None:
        """Delete the topic (absent is fine)."""
        for future in self._admin.delete_topics([name], operation_timeout=30).values():
            try:
                future.result()
            except confluent_kafka.KafkaException as exc:
                if exc.args[0].code() != confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise errors.TemporaryError(f"cannot delete {name}: {exc}") from exc


def print_event(out: TextIO) -> Callable[[plan.Event], None]:
    """An event printer in the style of `kubectl get events`."""

    def post(event: plan.Event) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")
        print(f"{now}  {event.type:<7}  {event.reason:<18}  {event.message}", file=out, flush=True)

    return post


class LocalBackend:
    """Reconciles a FlashSale manifest against the local platform's Kafka and sales service."""

    def __init__(
        self,
        manifest_path: Path,
        state_file: StateFile,
        sales: SalesClient,
        topics: KafkaTopics,
        post_event: Callable[[plan.Event], None],
    ) -> None:
        self._path = manifest_path
        self._state = state_file
        self._sales = sales
        self._topics = topics
        self._post_event = post_event
        self._spec_hash = ""

    async def load(self, *, deleting: bool = False) -> tuple[decide.Resource, state.Status] | None:
        """The manifest (a changed spec is a new generation) and the recorded status."""
        manifest = read_manifest(self._path)
        generation, recorded_hash, status = self._state.read()
        self._spec_hash = _spec_hash(manifest.spec)
        if self._spec_hash != recorded_hash:
            generation += 1
        return decide.Resource(manifest.namespace, manifest.name, generation, manifest.spec), status

    async def observe(self, resource: decide.Resource, status: state.Status, wanted: decide.Wanted) -> obs.Observed:
        """The sale and its stats (or the product's sales to adopt from) and the request topic."""
        sale = stats = None
        candidates: tuple[obs.SaleView, ...] = ()
        found: tuple[obs.TopicView, ...] = ()
        if wanted.sale_id:
            sale = await self._sales.get_sale(wanted.sale_id)
            stats = await self._sales.stats(wanted.sale_id) if sale is not None and wanted.stats else None
            topic = await asyncio.to_thread(self._topics.view, topics.request_topic(wanted.sale_id))
            found = () if topic is None else (topic,)
        elif wanted.product_id:
            candidates = await self._sales.list_sales(wanted.product_id)
        return obs.Observed(sale=sale, stats=stats, candidates=candidates, topics=found, workers=obs.Workers.LOCAL)

    async def act(self, resource: decide.Resource, action: plan.Action) -> None:
        """Carry out one action on the sales service or Kafka."""
        if await self._sales.carry_out(action):
            return
        match action:
            case plan.EnsureTopic(name=name, partitions=partitions):
                await asyncio.to_thread(self._topics.ensure, name, partitions)
            case plan.DeleteTopic(name=name):
                await asyncio.to_thread(self._topics.delete, name)
            case plan.SetWorkers():
                raise Refused("SetWorkers", "Unsupported", "the local platform has no Deployment to scale")

    async def save(self, resource: decide.Resource, status: state.Status) -> None:
        """Write the state file."""
        self._state.write(resource.generation, self._spec_hash, status)

    def post(self, resource: decide.Resource, event: plan.Event) -> None:
        """Print the event."""
        self._post_event(event)


async def apply(
    backend: LocalBackend,
    state_file: StateFile,
    options: decide.Options,
    until: frozenset[state.Phase],
    clock: Callable[[], int] = timeutil.now_ms,
) -> state.Status:
    """Reconcile until the FlashSale reaches a phase of `until` (or ends, or fails); its final status."""
    stop_at = until | {state.Phase.ENDED, state.Phase.FAILED}
    while True:
        try:
            delay = await reconciler.run_pass(backend, options, clock)
        except errors.TemporaryError as exc:
            print(f"retrying: {exc}", flush=True)
            delay = options.poll_s
        _, _, status = state_file.read()
        if status.phase in stop_at:
            return status
        await asyncio.sleep(options.poll_s if delay is None else delay)


async def delete(backend: LocalBackend, state_file: StateFile, options: decide.Options) -> None:
    """Undo what the FlashSale created locally (its request topic) and forget its status."""
    await reconciler.run_deletion(backend, options)
    state_file.remove()
