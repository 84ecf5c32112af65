"""One reconciliation pass, the same for Kubernetes and for the local platform: load, observe, decide, act, record.

A Backend adapts one world (the Kubernetes API, or Kafka's admin API and a state file); the decisions are the
pure functions of flashsale_operator.decide.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Protocol

from flashsale.common import timeutil
from flashsale_operator import decide, plan, state
from flashsale_operator import observed as obs
from flashsale_operator.sales_client import Refused

log = logging.getLogger(__name__)

MAX_STEPS = 12
"""Decisions one pass makes at most: after actions it observes and decides again at once, until nothing is left."""


class Backend(Protocol):
    """The world one FlashSale is reconciled in."""

    async def load(self, *, deleting: bool = False) -> tuple[decide.Resource, state.Status] | None:
        """The resource and its recorded status; None when it is gone (or being deleted, unless `deleting`)."""
        ...

    async def observe(self, resource: decide.Resource, status: state.Status, wanted: decide.Wanted) -> obs.Observed:
        """What exists now; raise errors.TemporaryError when something cannot be seen."""
        ...

    async def act(self, resource: decide.Resource, action: plan.Action) -> None:
        """Carry out one action; raise Refused for a permanent refusal, errors.TemporaryError to retry later."""
        ...

    async def save(self, resource: decide.Resource, status: state.Status) -> None:
        """Record the status."""
        ...

    def post(self, resource: decide.Resource, event: plan.Event) -> None:
        """Tell people what happened."""
        ...


async def run_pass(
    backend: Backend, options: decide.Options, clock: Callable[[], int] = timeutil.now_ms
) -> float | None:
    """Reconcile until no action is left; the seconds until the next pass is due (None: only on a change)."""
    failure: obs.Failure | None = None
    for _ in range(MAX_STEPS):
        loaded = await backend.load()
        if loaded is None:
            return None
        resource, status = loaded
        seen = await backend.observe(resource, status, decide.wanted(resource, status, options))
        if failure is not None:
            seen = dataclasses.replace(seen, failure=failure)
        decided = decide.decide(resource, status, seen, clock(), options)
        try:
            for action in decided.actions:
                log.info("%s: %r", resource.key, action, extra={"flashsale": resource.key})
                await backend.act(resource, action)
        except Refused as exc:
            log.warning("%s: %s", resource.key, exc, extra={"flashsale": resource.key})
            failure = exc.failure
            continue
        failure = None
        await _record(backend, resource, status, decided)
        if not decided.actions:
            return decided.requeue_after_s
    return options.poll_s


async def run_deletion(backend: Backend, options: decide.Options) -> None:
    """Undo what the FlashSale created (topics, the hold on the sales Deployment) before it goes away."""
    for _ in range(MAX_STEPS):
        loaded = await backend.load(deleting=True)
        if loaded is None:
            return
        resource, status = loaded
        wanted = dataclasses.replace(decide.wanted(resource, status, options), stats=False)
        seen = await backend.observe(resource, status, wanted)
        decided = decide.decide_deletion(resource, status, seen)
        if not decided.actions:
            return
        for action in decided.actions:
            log.info("%s (deleted): %r", resource.key, action, extra={"flashsale": resource.key})
            await backend.act(resource, action)
        for event in decided.events:
            backend.post(resource, event)
        if decided.status != status:
            await backend.save(resource, decided.status)


async def _record(backend: Backend, resource: decide.Resource, before: state.Status, decided: plan.Plan) -> None:
    if decided.status != before:
        await backend.save(resource, decided.status)
    for event in decided.events:
        backend.post(resource, event)
