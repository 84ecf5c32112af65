"""The operator's decisions: pure functions of (resource, status, observed state, now) returning a Plan.

Phases: Pending (creating the sale) → Warming (request topic, stock partitions) → Ready (prepared, before the
start; the workers are scaled at start minus the lead time) → Active (the window is open) → Ended; or Failed with a
reason. Every decision is made again from the recorded status and what is observed, so a restart at any point
repeats the same decision, and every action is idempotent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flashsale.common import topics
from flashsale_operator import observed as obs
from flashsale_operator import plan, spec, state, workers

Phase = state.Phase
Cond = state.ConditionType

# Reasons of conditions and failures that deserve a Warning event.
WARNING_REASONS = frozenset(
    {
        "InvalidSpec",
        "WindowOver",
        "WindowMissed",
        "SaleMissing",
        "NotApplied",
        "StockRefused",
        "DeploymentNotFound",
        "NotReady",
    }
)
# Conditions whose first appearance as True says nothing worth an event.
_QUIET_WHEN_FIRST_TRUE = frozenset({(Cond.VALID.value, "SpecValid"), (Cond.SPEC_APPLIED.value, "Applied")})
# Conditions that repeat what another one's event says.
_QUIET = frozenset({(Cond.SALE_PREPARED.value, "WaitingForTopic")})
_PHASE_EVENT_REASONS = {
    Phase.PENDING: "Pending",
    Phase.WARMING: "Warming",
    Phase.READY: "Ready",
    Phase.ACTIVE: "SaleStarted",
    Phase.ENDED: "SaleEnded",
}


@dataclasses.dataclass(frozen=True)
class Resource:
    """The FlashSale being decided: identity, generation and its raw spec."""

    namespace: str
    name: str
    generation: int
    spec: Mapping[str, Any]

    @property
    def key(self) -> str:
        """namespace/name: how the FlashSale is named as a holder of the sales Deployment."""
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Options:
    """Operator-wide choices the decisions depend on."""

    default_deployment: str = "flashsale-sales"
    poll_s: float = 1.0  # how often to look while waiting for the topic or the sales service
    stats_interval_s: float = 2.0  # how often sold/remaining are refreshed while Active


@dataclasses.dataclass(frozen=True)
class Wanted:
    """What a pass must observe: the sale (or the product's sales to adopt from), topics and the Deployment."""

    sale_id: str
    product_id: str
    deployment: spec.DeploymentRef | None
    stats: bool = True  # deletion needs no stats (they cannot be read once the topic is gone)


def wanted(resource: Resource, status: state.Status, options: Options = Options()) -> Wanted:
    """What the adapters should observe before deciding (the Deployment the sale holds wins over the spec's)."""
    deployment: spec.DeploymentRef | None = None
    product_id = ""
    try:
        parsed = spec.parse(resource.spec, resource.namespace, options.default_deployment)
        deployment = parsed.deployment
        product_id = parsed.terms.product_id
    except spec.SpecError:
        pass
    if status.scaling.held and "/" in status.scaling.deployment:
        namespace, _, name = status.scaling.deployment.partition("/")
        deployment = spec.DeploymentRef(namespace, name)
    return Wanted(status.sale_id, "" if status.sale_id else product_id, deployment)


class _Draft:
    """The status being decided, the actions and the explicit events, turned into a Plan at the end."""

    def __init__(self, old: state.Status, generation: int, now_ms: int) -> None:
        self.old = old
        self.status = old
        self.generation = generation
        self.now_ms = now_ms
        self.actions: list[plan.Action] = []

    def set(self, **changes: Any) -> None:
        self.status = dataclasses.replace(self.status, **changes)

    def condition(self, kind: state.ConditionType, ok: bool, reason: str, message: str) -> None:
        value = "True" if ok else "False"
        before = self.status.condition(kind)
        since = spec.format_time(self.now_ms)
        if before is not None and before.status == value:
            since = before.last_transition_time
        updated = state.Condition(kind.value, value, reason, message, since, self.generation)
        rest = tuple(c for c in self.status.conditions if c.type != kind.value)
        self.set(conditions=tuple(sorted((*rest, updated), key=lambda c: c.type)))

    def act(self, action: plan.Action) -> None:
        self.actions.append(action)

    def phase(self, phase: state.Phase, reason: str, message: str) -> None:
        self.set(phase=phase, reason=reason, message=message)

    def done(self, requeue_after_s: float | None) -> plan.Plan:
        return plan.Plan(self.status, tuple(self.actions), _events(self.old, self.status), requeue_after_s)


def _events(old: state.Status, new: state.Status) -> tuple[plan.Event, ...]:
    """Events for what changed: the phase, then each condition's status or reason (never for the same state)."""
    events: list[plan.Event] = []
    if new.phase is not None and (new.phase, new.reason) != (old.phase, old.reason):
        if new.phase is Phase.FAILED:
            events.append(plan.Event("Warning", new.reason, new.message))
        else:
            events.append(plan.Event("Normal", _PHASE_EVENT_REASONS[new.phase], new.message))
    for cond in new.conditions:
        if cond.type == Cond.READY.value:
            continue
        before = old.condition(state.ConditionType(cond.type))
        if before is not None and (before.status, before.reason) == (cond.status, cond.reason):
            continue
        if before is None and cond.status == "True" and (cond.type, cond.reason) in _QUIET_WHEN_FIRST_TRUE:
            continue
        if (cond.type, cond.reason) in _QUIET:
            continue
        if new.phase is Phase.FAILED and cond.reason == new.reason:
            continue  # the Failed event says it
        kind = "Warning" if cond.reason in WARNING_REASONS else "Normal"
        events.append(plan.Event(kind, cond.reason, cond.message))
    return tuple(events)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _describe(terms: spec.Terms) -> str:
    return (
        f"{terms.stock} units of product {terms.product_id} at {_money(terms.price_cents)}, "
        f"at most {terms.per_user_limit} per user, {spec.format_time(terms.starts_at_ms)} to "
        f"{spec.format_time(terms.ends_at_ms)}"
    )


def _term_changes(wanted_terms: spec.Terms, actual: spec.Terms) -> list[str]:
    names = {
        "product_id": "productId",
        "price_cents": "priceCents",
        "stock": "stock",
        "per_user_limit": "perUserLimit",
        "starts_at_ms": "startsAt",
        "ends_at_ms": "endsAt",
    }
    changes = []
    for field, label in names.items():
        have, want = getattr(actual, field), getattr(wanted_terms, field)
        if have != want:
            if field.endswith("_ms"):
                have, want = spec.format_time(have), spec.format_time(want)
            changes.append(f"{label} {have} → {want}")
    return changes


def _stock_refusal(status: state.Status, generation: int, seen: obs.Observed) -> str | None:
    """Why the sales service refused this generation's new stock (just now, or as recorded), or None."""
    if seen.failure is not None and seen.failure.action == plan.UPDATE_SALE:
        return f"stock not changed: the sales service refused ({seen.failure.code}): {seen.failure.message}"
    earlier = status.condition(Cond.SPEC_APPLIED)
    if earlier is not None and earlier.reason == "StockRefused" and status.observed_generation == generation:
        return earlier.message
    return None


def _adopt(candidates: tuple[obs.SaleView, ...], terms: spec.Terms, claimed: frozenset[str]) -> obs.SaleView | None:
    """The sale a previous pass created (its id was lost before the status was written): same terms, unclaimed."""
    return next((c for c in candidates if c.terms == terms and c.sale_id not in claimed), None)


def _release(draft: _Draft, seen: obs.Observed, holder: str) -> None:
    """Let go of the sales Deployment after the end (or on failure): back to the baseline or the others' target."""
    scaling = draft.status.scaling
    dep = seen.deployment
    if dep is None or dep.lease is None or dep.lease.target_of(holder) is None:
        if scaling.held:  # the Deployment or its lease is gone: nothing left to give back
            draft.set(scaling=dataclasses.replace(scaling, held=False, restored=True))
        return
    replicas, lease = workers.release(dep.lease, holder)
    draft.act(plan.SetWorkers(dep.namespace, dep.name, replicas, lease, dep.resource_version))
    draft.set(scaling=dataclasses.replace(scaling, held=False, restored=True))
    others = "" if lease is None else f"; {len(lease.holders)} other sale(s) still hold it"
    draft.condition(
        Cond.WORKERS_SCALED,
        False,
        "Restored",
        f"sales Deployment {dep.key} scaled {dep.replicas} → {replicas} replicas after the sale{others}",
    )


def _fail(draft: _Draft, seen: obs.Observed, holder: str, reason: str, message: str) -> plan.Plan:
    draft.phase(Phase.FAILED, reason, message)
    draft.condition(Cond.READY, False, reason, message)
    _release(draft, seen, holder)
    return draft.done(None)


def _scale(
    draft: _Draft, parsed: spec.SaleSpec, terms: spec.Terms, partitions: int, seen: obs.Observed, holder: str
) -> None:
    """From start minus the lead time until the end, hold the sales Deployment at replicas covering the partitions."""
    if seen.workers is obs.Workers.LOCAL:
        draft.condition(
            Cond.WORKERS_SCALED, True, "LocalWorkers", "the local platform's sales process decides every partition"
        )
        return
    ref = f"{parsed.deployment.namespace}/{parsed.deployment.name}"
    target = parsed.replicas_for(partitions)
    warm_at = terms.starts_at_ms - parsed.lead_time_s * 1000
    if draft.now_ms < warm_at and not draft.status.scaling.held:
        draft.condition(
            Cond.WORKERS_SCALED,
            False,
            "WaitingForLeadTime",
            f"sales Deployment {ref} is scaled to {target} replicas at {spec.format_time(warm_at)}",
        )
        return
    dep = seen.deployment
    if dep is None:
        draft.condition(
            Cond.WORKERS_SCALED,
            False,
            "DeploymentNotFound",
            f"no Deployment {ref}: the sale runs on the sales workers that exist",
        )
        return
    have = None if dep.lease is None else dep.lease.target_of(holder)
    if draft.status.scaling.held:
        previous = draft.status.scaling.previous_replicas
    elif have is not None and dep.lease is not None:  # held already, but the status write was lost
        previous = dep.lease.baseline
    else:
        previous = dep.replicas
    if have == target:
        replicas = dep.replicas
    else:
        replicas, lease = workers.hold(dep.lease, dep.replicas, holder, target)
        draft.act(plan.SetWorkers(dep.namespace, dep.name, replicas, lease, dep.resource_version))
    draft.set(scaling=state.ScalingStatus(dep.key, previous, replicas, held=True, restored=False))
    if previous is not None and replicas > previous:
        message = f"sales Deployment {dep.key} scaled {previous} → {replicas} replicas for {target} partition workers"
    else:
        message = f"sales Deployment {dep.key} keeps {replicas} replicas (covers {target} for the sale)"
    draft.condition(Cond.WORKERS_SCALED, True, "Scaled", message)


def decide(
    resource: Resource, status: state.Status, seen: obs.Observed, now_ms: int, options: Options = Options()
) -> plan.Plan:
    """Decide the next step of a FlashSale from its spec, recorded status, what is observed, and the time."""
    draft = _Draft(status, resource.generation, now_ms)
    holder = resource.key
    if status.phase is Phase.ENDED:
        _release(draft, seen, holder)
        return draft.done(None)
    if status.phase is Phase.FAILED and status.observed_generation == resource.generation and seen.failure is None:
        _release(draft, seen, holder)
        return draft.done(None)
    draft.set(observed_generation=resource.generation)

    try:
        parsed = spec.parse(resource.spec, resource.namespace, options.default_deployment)
    except spec.SpecError as exc:
        draft.condition(Cond.VALID, False, "InvalidSpec", str(exc))
        return _fail(draft, seen, holder, "InvalidSpec", f"invalid spec: {exc}")
    draft.condition(Cond.VALID, True, "SpecValid", "the spec is valid")
    if seen.failure is not None and seen.failure.action != plan.UPDATE_SALE:  # a refused restock is not fatal
        failure = seen.failure
        reason = f"{failure.action}Refused"
        return _fail(draft, seen, holder, reason, f"{failure.action} refused ({failure.code}): {failure.message}")

    # The sale in the sales service.
    sale = seen.sale
    if not status.sale_id:
        if now_ms >= parsed.terms.ends_at_ms:
            message = f"the sale window ended at {spec.format_time(parsed.terms.ends_at_ms)}; nothing was created"
            return _fail(draft, seen, holder, "WindowOver", message)
        sale = _adopt(seen.candidates, parsed.terms, seen.claimed)
        if sale is None:
            draft.phase(Phase.PENDING, "CreatingSale", "creating the sale in the sales service")
            draft.condition(Cond.READY, False, "CreatingSale", "the sale is being created")
            draft.act(plan.CreateSale(parsed.terms))
            return draft.done(options.poll_s)
        draft.set(sale_id=sale.sale_id)
        draft.condition(Cond.SALE_CREATED, True, "SaleCreated", f"sale {sale.sale_id}: {_describe(sale.terms)}")
    elif sale is None or sale.sale_id != status.sale_id:
        return _fail(draft, seen, holder, "SaleMissing", f"the sales service has no sale {status.sale_id}")
    terms = sale.terms
    draft.set(stock=terms.stock)
    if seen.stats is not None:
        draft.set(sold=seen.stats.sold, remaining=seen.stats.remaining)
    elif not status.remaining:
        draft.set(remaining=terms.stock)

    # The window, by the terms the sales service enforces.
    if now_ms >= terms.ends_at_ms:
        if status.phase in (Phase.READY, Phase.ACTIVE):
            draft.phase(Phase.ENDED, "SaleEnded", f"sold {draft.status.sold} of {terms.stock}")
            draft.condition(Cond.READY, False, "SaleEnded", "the sale window is over")
            _release(draft, seen, holder)
            return draft.done(None)
        message = f"the sale window ended at {spec.format_time(terms.ends_at_ms)} before the sale was ready"
        return _fail(draft, seen, holder, "WindowMissed", message)
    started = now_ms >= terms.starts_at_ms

    # What of the spec can still be applied: the stock until the start (while none is sold), not the other terms.
    not_applied = []
    not_applied_reason = "NotApplied"
    changes = _term_changes(parsed.terms, terms)
    restock = bool(changes) and not _term_changes(dataclasses.replace(parsed.terms, stock=terms.stock), terms)
    if restock and not started:
        refusal = _stock_refusal(status, resource.generation, seen)
        if refusal is None:
            draft.condition(Cond.SPEC_APPLIED, False, "Restocking", f"stock {terms.stock} → {parsed.terms.stock}")
            draft.act(plan.UpdateSale(sale.sale_id, parsed.terms.stock))
            return draft.done(options.poll_s)
        not_applied.append(refusal)
        not_applied_reason = "StockRefused"
    elif changes:
        when = "once the sale has started" if restock else "once it exists"
        not_applied.append(
            f"{', '.join(changes)}: the terms of sale {sale.sale_id} cannot change {when}; "
            "delete and re-create the FlashSale"
        )
    if started and status.partitions:
        partitions, reserve = status.partitions, status.reserve
        if (parsed.partitions, parsed.reserve) != (partitions, reserve):
            not_applied.append(f"partitions and reserve stay {partitions} and {reserve} once the sale has started")
    else:
        name = topics.request_topic(sale.sale_id)
        existing = seen.topic(name)
        partitions = max(parsed.partitions, existing.partitions if existing is not None else 0)
        if partitions != parsed.partitions:
            not_applied.append(f"partitions cannot shrink below the request topic's {partitions}")
        reserve = min(parsed.reserve, terms.stock)
        if reserve != parsed.reserve:
            not_applied.append(f"reserve {parsed.reserve} exceeds the sale's stock {terms.stock}")
    if not_applied:
        draft.condition(Cond.SPEC_APPLIED, False, not_applied_reason, "; ".join(not_applied))
    else:
        draft.condition(Cond.SPEC_APPLIED, True, "Applied", "the spec is applied")

    # The request topic, then the stock partitions.
    name = topics.request_topic(sale.sale_id)
    topic = seen.topic(name)
    topic_ready = False
    if topic is None or topic.partitions < partitions:
        draft.set(topic=name)
        draft.act(plan.EnsureTopic(name, partitions))
        reason = "TopicRequested" if topic is None else "TopicResizing"
        draft.condition(Cond.TOPIC_READY, False, reason, f"request topic {name} with {partitions} partitions requested")
    elif not topic.ready:
        detail = f": {topic.message}" if topic.message else ""
        draft.condition(Cond.TOPIC_READY, False, "WaitingForTopic", f"waiting until {name} is Ready{detail}")
    else:
        topic_ready = True
        draft.condition(Cond.TOPIC_READY, True, "TopicReady", f"{name} is Ready with {topic.partitions} partitions")

    prepared = (
        seen.stats is not None
        and seen.stats.partitions == partitions
        and (status.partitions, status.reserve) == (partitions, reserve)
    )
    if topic_ready and not prepared:
        draft.act(plan.PrepareSale(sale.sale_id, partitions, reserve))
        draft.set(partitions=partitions, reserve=reserve)
        prepared = True
    if prepared:
        draft.condition(
            Cond.SALE_PREPARED,
            True,
            "Prepared",
            f"stock {terms.stock} split over {partitions} partitions with {reserve} in reserve",
        )
    else:
        draft.condition(Cond.SALE_PREPARED, False, "WaitingForTopic", "the stock is split once the topic is Ready")

    _scale(draft, parsed, terms, partitions, seen, holder)

    # The phase and when to look again.
    warm_at = terms.starts_at_ms - parsed.lead_time_s * 1000
    if not (topic_ready and prepared):
        late = " (the start has passed: purchases are refused until it is ready)" if started else ""
        draft.phase(Phase.WARMING, "Warming", f"creating the request topic and the stock partitions{late}")
        draft.condition(Cond.READY, False, "NotReady" if started else "Warming", "the sale is not prepared yet")
        return draft.done(options.poll_s)
    if not started:
        draft.phase(Phase.READY, "Prepared", f"prepared; the sale starts at {spec.format_time(terms.starts_at_ms)}")
        draft.condition(Cond.READY, True, "Prepared", "the sale is prepared")
        wake = [terms.starts_at_ms]
        if not draft.status.scaling.held and warm_at > now_ms:
            wake.append(warm_at)
        return draft.done(max(0.05, (min(wake) - now_ms) / 1000))
    draft.phase(Phase.ACTIVE, "Selling", f"the sale is open until {spec.format_time(terms.ends_at_ms)}")
    draft.condition(Cond.READY, True, "Selling", "the sale is open")
    return draft.done(max(0.05, min(options.stats_interval_s, (terms.ends_at_ms - now_ms) / 1000)))


def decide_deletion(resource: Resource, status: state.Status, seen: obs.Observed) -> plan.Plan:
    """What to undo when a FlashSale is deleted: let go of the sales Deployment and delete its request topics.

    The sale stays in the sales service (it has no delete); without its topic it takes no more purchases.
    """
    draft = _Draft(status, resource.generation, 0)
    undone = []
    for topic in seen.topics:
        draft.act(plan.DeleteTopic(topic.name))
        undone.append(f"deleting request topic {topic.name}")
    holding = len(draft.actions)
    _release(draft, seen, resource.key)
    if len(draft.actions) > holding and seen.deployment is not None:
        undone.append(f"giving sales Deployment {seen.deployment.key} back")
    events = [plan.Event("Normal", "Deleting", "; ".join(undone))] if undone else []
    return plan.Plan(draft.status, tuple(draft.actions), tuple(events), None)
