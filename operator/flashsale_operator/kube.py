"""The Kubernetes side of reconciliation: the FlashSale and its status, KafkaTopics and the sales Deployment."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes_asyncio import client as k8s

from flashsale.common import errors
from flashsale_operator import decide, plan, spec, state, workers
from flashsale_operator import observed as obs
from flashsale_operator.sales_client import Refused, SalesClient

GROUP = "flashsale.io"
VERSION = "v1alpha1"
PLURAL = "flashsales"
KIND = "FlashSale"

STRIMZI_GROUP = "kafka.strimzi.io"
STRIMZI_VERSION = "v1"
TOPICS = "kafkatopics"
CLUSTER_LABEL = "strimzi.io/cluster"
OWNER_LABEL = "flashsale.io/flashsale"
MANAGED_BY = {"app.kubernetes.io/managed-by": "flashsale-operator"}
FIELD_MANAGER = "flashsale-operator"  # whose fields the API server records the operator's writes as
TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}  # what the sales service creates its topics with

MERGE_PATCH = "application/merge-patch+json"


@dataclasses.dataclass(frozen=True)
class KubeOptions:
    """Where request topics go and how they are made."""

    strimzi_cluster: str = "flashsale"
    topic_namespace: str = ""  # empty: the FlashSale's namespace
    topic_replicas: int = 0  # 0: the broker's default


def _temporary(what: str, exc: k8s.ApiException) -> errors.TemporaryError:
    return errors.TemporaryError(f"{what}: HTTP {exc.status} {exc.reason}: {str(exc.body)[:300]}")


def _topic_view(raw: Mapping[str, Any]) -> obs.TopicView:
    """A KafkaTopic as the Strimzi Topic Operator reports it: Ready once it has seen the latest generation."""
    meta = raw.get("metadata", {})
    status = raw.get("status") or {}
    ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
    seen = status.get("observedGeneration")
    current = seen is None or int(seen) >= int(meta.get("generation", 0))
    is_ready = ready is not None and ready.get("status") == "True" and current
    message = "" if ready is None else str(ready.get("message") or ready.get("reason") or "")
    return obs.TopicView(str(meta["name"]), int(raw.get("spec", {}).get("partitions") or 0), is_ready, message)


class KubeBackend:
    """Reconciles one FlashSale against the Kubernetes API and the sales service."""

    def __init__(
        self,
        api: k8s.ApiClient,
        sales: SalesClient,
        options: KubeOptions,
        namespace: str,
        name: str,
        post_event: Callable[[plan.Event], None],
    ) -> None:
        self._custom = k8s.CustomObjectsApi(api)
        self._apps = k8s.AppsV1Api(api)
        self._sales = sales
        self._options = options
        self._namespace = namespace
        self._name = name
        self._post_event = post_event
        self._uid = ""

    @property
    def key(self) -> str:
        """namespace/name of the FlashSale."""
        return f"{self._namespace}/{self._name}"

    @property
    def _topic_namespace(self) -> str:
        return self._options.topic_namespace or self._namespace

    async def load(self, *, deleting: bool = False) -> tuple[decide.Resource, state.Status] | None:
        """The FlashSale and its status; None when it is gone (or being deleted, unless `deleting`)."""
        try:
            raw = await self._custom.get_namespaced_custom_object(GROUP, VERSION, self._namespace, PLURAL, self._name)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise _temporary("get FlashSale", exc) from exc
        meta = raw["metadata"]
        if meta.get("deletionTimestamp") and not deleting:
            return None
        self._uid = str(meta["uid"])
        resource = decide.Resource(self._namespace, self._name, int(meta.get("generation", 1)), raw.get("spec") or {})
        return resource, state.Status.from_dict(raw.get("status"))

    async def observe(self, resource: decide.Resource, status: state.Status, wanted: decide.Wanted) -> obs.Observed:
        """The sale and its stats, the product's sales to adopt from, the owned topics and the sales Deployment."""
        sale = stats = None
        candidates: tuple[obs.SaleView, ...] = ()
        claimed: frozenset[str] = frozenset()
        if wanted.sale_id:
            sale = await self._sales.get_sale(wanted.sale_id)
            stats = await self._sales.stats(wanted.sale_id) if sale is not None and wanted.stats else None
        elif wanted.product_id:
            candidates = await self._sales.list_sales(wanted.product_id)
            claimed = await self._claimed_sales()
        return obs.Observed(
            sale=sale,
            stats=stats,
            candidates=candidates,
            claimed=claimed,
            topics=await self._owned_topics(),
            deployment=await self._deployment(wanted.deployment),
        )

    async def _claimed_sales(self) -> frozenset[str]:
        try:
            listed = await self._custom.list_namespaced_custom_object(GROUP, VERSION, self._namespace, PLURAL)
        except k8s.ApiException as exc:
            raise _temporary("list FlashSales", exc) from exc
        return frozenset(
            str(item["status"]["saleId"])
            for item in listed.get("items", ())
            if item["metadata"]["name"] != self._name and (item.get("status") or {}).get("saleId")
        )

    async def _owned_topics(self) -> tuple[obs.TopicView, ...]:
        try:
            listed = await self._custom.list_namespaced_custom_object(
                STRIMZI_GROUP,
                STRIMZI_VERSION,
                self._topic_namespace,
                TOPICS,
                label_selector=f"{OWNER_LABEL}={self._name}",
            )
        except k8s.ApiException as exc:
            raise _temporary("list KafkaTopics", exc) from exc
        return tuple(_topic_view(t) for t in listed.get("items", ()) if not t["metadata"].get("deletionTimestamp"))

    async def _deployment(self, ref: spec.DeploymentRef | None) -> obs.DeploymentView | None:
        if ref is None:
            return None
        try:
            found = await self._apps.read_namespaced_deployment(ref.name, ref.namespace)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise _temporary("get Deployment", exc) from exc
        annotations = found.metadata.annotations or {}
        return obs.DeploymentView(
            namespace=ref.namespace,
            name=ref.name,
            replicas=int(found.spec.replicas if found.spec.replicas is not None else 1),
            lease=workers.decode(annotations.get(workers.ANNOTATION)),
            resource_version=str(found.metadata.resource_version or ""),
        )

    async def act(self, resource: decide.Resource, action: plan.Action) -> None:
        """Carry out one action on the cluster or the sales service."""
        if await self._sales.carry_out(action):
            return
        match action:
            case plan.EnsureTopic(name=name, partitions=partitions):
                await self._ensure_topic(name, partitions)
            case plan.DeleteTopic(name=name):
                await self._delete_topic(name)
            case plan.SetWorkers():
                await self._set_workers(action)

    def _topic_manifest(self, name: str, partitions: int) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": self._topic_namespace,
            "labels": {CLUSTER_LABEL: self._options.strimzi_cluster, OWNER_LABEL: self._name, **MANAGED_BY},
        }
        if self._topic_namespace == self._namespace and self._uid:
            metadata["ownerReferences"] = [
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": self._name, "uid": self._uid}
            ]
        topic_spec: dict[str, Any] = {"partitions": partitions, "config": dict(TOPIC_CONFIG)}
        if self._options.topic_replicas:
            topic_spec["replicas"] = self._options.topic_replicas
        return {
            "apiVersion": f"{STRIMZI_GROUP}/{STRIMZI_VERSION}",
            "kind": "KafkaTopic",
            "metadata": metadata,
            "spec": topic_spec,
        }

    async def _ensure_topic(self, name: str, partitions: int) -> None:
        try:
            await self._custom.create_namespaced_custom_object(
                STRIMZI_GROUP,
                STRIMZI_VERSION,
                self._topic_namespace,
                TOPICS,
                self._topic_manifest(name, partitions),
                field_manager=FIELD_MANAGER,
            )
            return
        except k8s.ApiException as exc:
            if exc.status == 422:
                raise Refused("CreateKafkaTopic", "Invalid", str(exc.body)[:300]) from exc
            if exc.status != 409:
                raise _temporary("create KafkaTopic", exc) from exc
        try:  # it exists: grow it when it has fewer partitions
            await self._custom.patch_namespaced_custom_object(
                STRIMZI_GROUP,
                STRIMZI_VERSION,
                self._topic_namespace,
                TOPICS,
                name,
                {"spec": {"partitions": partitions}},
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # accepted by the client, missing in its stubs
            )
        except k8s.ApiException as exc:
            raise _temporary("patch KafkaTopic", exc) from exc

    async def _delete_topic(self, name: str) -> None:
        try:
            await self._custom.delete_namespaced_custom_object(
                STRIMZI_GROUP, STRIMZI_VERSION, self._topic_namespace, TOPICS, name
            )
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise _temporary("delete KafkaTopic", exc) from exc

    async def _set_workers(self, action: plan.SetWorkers) -> None:
        lease = None if action.lease is None else workers.encode(action.lease)
        body = {
            "metadata": {"resourceVersion": action.resource_version, "annotations": {workers.ANNOTATION: lease}},
            "spec": {"replicas": action.replicas},
        }
        try:
            await self._apps.patch_namespaced_deployment(
                action.name,
                action.namespace,
                body,
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # accepted by the client, missing in its stubs
            )
        except k8s.ApiException as exc:
            raise _temporary("scale Deployment", exc) from exc  # a conflict is decided again on fresh state

    async def save(self, resource: decide.Resource, status: state.Status) -> None:
        """Write the status subresource."""
        try:
            await self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self._namespace,
                PLURAL,
                self._name,
                {"status": status.to_dict()},
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # accepted by the client, missing in its stubs
            )
        except k8s.ApiException as exc:
            if exc.status == 404:
                return
            raise _temporary("patch FlashSale status", exc) from exc

    def post(self, resource: decide.Resource, event: plan.Event) -> None:
        """Post a Kubernetes event on the FlashSale."""
        self._post_event(event)
