"""Kopf handlers: thin adapters that run reconciliation passes for each FlashSale and clean up on delete.

One daemon per FlashSale runs a pass, then sleeps until the pass's requeue time, a spec change, or its stop (Kopf
starts the daemons again for every existing FlashSale when the operator restarts: that is the resume). The delete
handler undoes what the FlashSale created; Kopf's finalizer keeps the object until it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any

import kopf
from kubernetes_asyncio import client as k8s

from flashsale.common import errors
from flashsale_operator import decide, kube, operator_metrics, plan, reconciler
from flashsale_operator.sales_client import SalesClient

log = logging.getLogger(__name__)

ERROR_BACKOFF_S = 2.0
FINALIZER = "flashsale.io/operator"


@dataclasses.dataclass
class Context:
    """What every handler shares: the API and sales clients, options, and per-FlashSale wake-ups and locks."""

    api: k8s.ApiClient
    sales: SalesClient
    options: decide.Options
    kube_options: kube.KubeOptions
    metrics: operator_metrics.OperatorMetrics | None = None
    wakes: dict[str, asyncio.Event] = dataclasses.field(default_factory=dict)
    generations: dict[str, int] = dataclasses.field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = dataclasses.field(default_factory=dict)

    def lock(self, uid: str) -> asyncio.Lock:
        """The lock one FlashSale's passes and its cleanup take in turn."""
        return self.locks.setdefault(uid, asyncio.Lock())

    def backend(self, body: kopf.Body) -> kube.KubeBackend:
        """A backend for one FlashSale, posting its events on that object."""

        def post(event: plan.Event) -> None:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)

        namespace = str(body.metadata.namespace)
        return kube.KubeBackend(self.api, self.sales, self.kube_options, namespace, str(body.metadata.name), post)


def configure(settings: kopf.OperatorSettings) -> None:
    """Kopf settings of this operator: one instance (no peering), our finalizer and annotations, quiet events."""
    settings.peering.standalone = True
    settings.scanning.disabled = True  # no CRD or namespace watching: least privilege
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="operator.flashsale.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="operator.flashsale.io")
    settings.posting.level = logging.WARNING  # only our own events and Kopf's warnings reach people


async def _sleep(stopped: kopf.DaemonStopped, wake: asyncio.Event, seconds: float | None) -> None:
    """Sleep until `seconds` pass (forever when None), the FlashSale changes, or the daemon is stopped."""

    async def until_stopped() -> None:
        await stopped.wait()

    waiters = [asyncio.create_task(wake.wait()), asyncio.create_task(until_stopped())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiters:
            task.cancel()
        for task in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def register(registry: kopf.OperatorRegistry, ctx: Context) -> None:
    """Register the FlashSale handlers on a Kopf registry."""

    @kopf.on.login(registry=registry, id="login")
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """The pod's service account in a cluster, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.daemon(kube.GROUP, kube.VERSION, kube.PLURAL, registry=registry, id="reconcile", cancellation_timeout=30.0)
    async def reconcile(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
        """Run passes for one FlashSale until it is deleted or the operator stops."""
        uid = str(body.metadata.uid)
        wake = ctx.wakes.setdefault(uid, asyncio.Event())
        backend = ctx.backend(body)
        try:
            while not stopped:
                wake.clear()
                delay: float | None
                async with ctx.lock(uid):
                    if stopped:
                        break
                    started, ok = time.monotonic(), False
                    try:
                        delay = await reconciler.run_pass(backend, ctx.options)
                        ok = True
                    except errors.TemporaryError as exc:
                        log.warning("%s: pass failed, retrying: %s", backend.key, exc, extra={"flashsale": backend.key})
                        delay = ERROR_BACKOFF_S
                    except Exception:
                        log.exception("%s: pass failed, retrying", backend.key, extra={"flashsale": backend.key})
                        delay = ERROR_BACKOFF_S
                    if ctx.metrics is not None:
                        ctx.metrics.passed(time.monotonic() - started, ok)
                await _sleep(stopped, wake, delay)
        finally:
            ctx.wakes.pop(uid, None)
            ctx.generations.pop(uid, None)

    @kopf.on.event(kube.GROUP, kube.VERSION, kube.PLURAL, registry=registry, id="wake-on-spec-change")
    async def spec_changed(body: kopf.Body, event: kopf.RawEvent, **_: Any) -> None:
        """Wake the FlashSale's daemon when its spec changed (a new generation); note its phase."""
        uid = str(body.metadata.uid)
        if ctx.metrics is not None:
            phase = (body.get("status") or {}).get("phase")
            ctx.metrics.seen(uid, str(phase) if phase and event.get("type") != "DELETED" else None)
        generation = int(body.metadata.get("generation", 0))
        if ctx.generations.get(uid) != generation:
            ctx.generations[uid] = generation
            wake = ctx.wakes.get(uid)
            if wake is not None:
                wake.set()

    @kopf.on.delete(kube.GROUP, kube.VERSION, kube.PLURAL, registry=registry, id="cleanup", backoff=ERROR_BACKOFF_S)
    async def cleanup(body: kopf.Body, **_: Any) -> None:
        """Delete the FlashSale's request topics and give the sales Deployment back before it goes."""
        uid = str(body.metadata.uid)
        async with ctx.lock(uid):
            try:
                await reconciler.run_deletion(ctx.backend(body), ctx.options)
            except errors.TemporaryError as exc:
                raise kopf.TemporaryError(str(exc), delay=ERROR_BACKOFF_S) from exc
        ctx.locks.pop(uid, None)
        if ctx.metrics is not None:
            ctx.metrics.seen(uid, None)
