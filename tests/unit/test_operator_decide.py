"""The operator's decisions as pure functions of (resource, status, observed state, now): every phase, bad specs,
restarts at any step, scaling math and spec updates."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from flashsale.common import topics
from flashsale_operator import decide, plan, spec, state, workers
from flashsale_operator import observed as obs

S = 1000  # one second in milliseconds
T0 = 1_900_000_000_000  # "now" at creation
START = T0 + 120 * S
END = START + 60 * S
LEAD = 30
NAMESPACE = "shop"
NAME = "drop"
HOLDER = f"{NAMESPACE}/{NAME}"
SALE_ID = "a" * 32
TOPIC = topics.request_topic(SALE_ID)
Phase = state.Phase


def raw_spec(**changes: Any) -> dict[str, Any]:
    """A valid FlashSale spec: 100 units, 4 partitions, 2 in reserve, scaled 30 s before the start."""
    base: dict[str, Any] = {
        "productId": "p-1",
        "priceCents": 4999,
        "stock": 100,
        "perUserLimit": 2,
        "startsAt": spec.format_time(START),
        "endsAt": spec.format_time(END),
        "partitions": 4,
        "reserve": 2,
        "leadTimeSeconds": LEAD,
        "scaling": {"minReplicas": 1, "maxReplicas": 6},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def resource(generation: int = 1, **changes: Any) -> decide.Resource:
    return decide.Resource(NAMESPACE, NAME, generation, raw_spec(**changes))


def terms(**changes: Any) -> spec.Terms:
    base = spec.Terms("p-1", 4999, 100, 2, START, END)
    return dataclasses.replace(base, **changes)


def sale(**changes: Any) -> obs.SaleView:
    return obs.SaleView(SALE_ID, terms(**changes))


def deployment(replicas: int = 1, lease: workers.WorkerLease | None = None) -> obs.DeploymentView:
    return obs.DeploymentView(NAMESPACE, "flashsale-sales", replicas, lease, resource_version="7")


def topic(partitions: int = 4, ready: bool = True, name: str = TOPIC) -> obs.TopicView:
    return obs.TopicView(name, partitions, ready)


def seen(**changes: Any) -> obs.Observed:
    """A world where the sale exists, is prepared over 4 partitions, its topic is Ready, the Deployment has 1."""
    base: dict[str, Any] = {
        "sale": sale(),
        "stats": obs.StatsView(4, 0, 100),
        "topics": (topic(),),
        "deployment": deployment(),
    }
    base.update(changes)
    return obs.Observed(**base)


def prepared_status(**changes: Any) -> state.Status:
    """The status once the sale is prepared (Ready), before the workers are scaled."""
    base = state.Status(
        phase=Phase.READY,
        reason="Prepared",
        observed_generation=1,
        sale_id=SALE_ID,
        topic=TOPIC,
        partitions=4,
        reserve=2,
        stock=100,
        remaining=100,
    )
    return dataclasses.replace(base, **changes)


def reasons(p: plan.Plan) -> list[str]:
    return [e.reason for e in p.events]


def cond(p: plan.Plan, kind: state.ConditionType) -> state.Condition:
    found = p.status.condition(kind)
    assert found is not None, kind
    return found


# --- the spec ---------------------------------------------------------------------------------------------------


def test_spec_defaults_are_resolved() -> None:
    minimal = {k: v for k, v in raw_spec().items() if k in spec_required()}
    parsed = spec.parse(minimal, NAMESPACE, "sales")
    assert parsed.terms == terms()
    assert (parsed.partitions, parsed.reserve, parsed.lead_time_s) == (8, 0, 60)
    assert (parsed.min_replicas, parsed.max_replicas) == (1, 8)
    assert parsed.deployment == spec.DeploymentRef(NAMESPACE, "sales")
    assert parsed.warm_at_ms == START - 60 * S


def spec_required() -> set[str]:
    return {"productId", "priceCents", "stock", "perUserLimit", "startsAt", "endsAt"}


@pytest.mark.parametrize(("rps", "partitions"), [(1, 1), (2000, 1), (2001, 2), (15_000, 8), (10**9, 256)])
def test_partitions_are_derived_from_the_expected_peak(rps: int, partitions: int) -> None:
    parsed = spec.parse(raw_spec(partitions=None, expectedPeakRps=rps), NAMESPACE, "sales")
    assert parsed.partitions == partitions


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"stock": 0}, "spec.stock: must be between 1 and"),
        ({"partitions": 0}, "spec.partitions: must be between 1 and 256"),
        ({"partitions": 257}, "spec.partitions: must be between 1 and 256"),
        ({"perUserLimit": 0}, "spec.perUserLimit: must be between 1 and"),
        ({"priceCents": "12"}, "spec.priceCents: must be an integer"),
        ({"stock": True}, "spec.stock: must be an integer"),
        ({"endsAt": spec.format_time(START)}, "spec.endsAt: must be after spec.startsAt"),
        ({"startsAt": "tomorrow"}, "spec.startsAt: must be an RFC 3339 date-time"),
        ({"startsAt": "2030-01-01T12:00:00"}, "spec.startsAt: must be an RFC 3339 date-time"),
        ({"productId": "no spaces"}, "spec.productId: must be 1..64 characters"),
        ({"productId": None}, "spec.productId: is required"),
        ({"reserve": 101}, "spec.reserve: must not exceed spec.stock (100)"),
        ({"expectedPeakRps": 5000}, "spec.partitions: set partitions or expectedPeakRps, not both"),
        ({"scaling": {"minReplicas": 5, "maxReplicas": 2}}, "spec.scaling.maxReplicas: must not be below"),
        ({"scaling": "big"}, "spec.scaling: must be an object"),
        ({"salesDeployment": {"name": "Sales_Deploy"}}, "spec.salesDeployment.name: must be a Kubernetes object"),
        ({"leadTimeSeconds": -1}, "spec.leadTimeSeconds: must be between 0 and 86400"),
    ],
)
def test_bad_specs_name_the_field(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(spec.SpecError) as caught:
        spec.parse(raw_spec(**changes), NAMESPACE, "sales")
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(spec.SpecError) as caught:
        spec.parse(raw_spec(stock=0, perUserLimit=0, partitions=300), NAMESPACE, "sales")
    assert [p.split(":")[0] for p in caught.value.problems] == ["spec.stock", "spec.perUserLimit", "spec.partitions"]


@pytest.mark.parametrize(
    ("partitions", "low", "high", "replicas"), [(4, 1, 8, 4), (16, 1, 8, 8), (2, 3, 8, 3), (1, 0, 1, 1), (8, 0, 8, 8)]
)
def test_target_replicas_cover_the_partitions_within_bounds(
    partitions: int, low: int, high: int, replicas: int
) -> None:
    scaling = {"minReplicas": low, "maxReplicas": high}
    assert spec.parse(raw_spec(partitions=partitions, scaling=scaling), NAMESPACE, "s").target_replicas == replicas


# --- the worker lease --------------------------------------------------------------------------------------------


def test_the_first_holder_records_the_baseline_and_never_shrinks_the_deployment() -> None:
    replicas, lease = workers.hold(None, 2, "a", 6)
    assert (replicas, lease) == (6, workers.WorkerLease(2, (("a", 6),)))
    replicas, lease = workers.hold(None, 10, "a", 6)
    assert (replicas, lease.baseline) == (10, 10)


def test_overlapping_holders_scale_to_the_largest_target_and_back_to_the_baseline() -> None:
    _, lease = workers.hold(None, 1, "a", 8)
    replicas, lease = workers.hold(lease, 8, "b", 4)
    assert replicas == 8
    replicas, rest = workers.release(lease, "a")
    assert (replicas, rest) == (4, workers.WorkerLease(1, (("b", 4),)))
    assert rest is not None
    assert workers.release(rest, "b") == (1, None)


def test_the_lease_survives_its_annotation_and_a_bad_one_is_ignored() -> None:
    lease = workers.WorkerLease(3, (("ns/a", 5), ("ns/b", 2)))
    assert workers.decode(workers.encode(lease)) == lease
    for bad in (None, "", "{", "[]", '{"holders": {}}', '{"baseline": "x"}'):
        assert workers.decode(bad) is None


# --- the phases ---------------------------------------------------------------------------------------------------


def test_a_new_flashsale_creates_its_sale_and_nothing_else() -> None:
    p = decide.decide(resource(), state.Status(), obs.Observed(deployment=deployment()), T0)
    assert p.status.phase is Phase.PENDING
    assert p.actions == (plan.CreateSale(terms()),)
    assert p.status.observed_generation == 1
    assert reasons(p) == ["Pending"]
    assert p.requeue_after_s == decide.Options().poll_s


def test_the_created_sale_is_recorded_and_its_topic_requested() -> None:
    world = obs.Observed(candidates=(sale(),), deployment=deployment())
    p = decide.decide(resource(), state.Status(phase=Phase.PENDING, observed_generation=1), world, T0)
    assert p.status.sale_id == SALE_ID
    assert p.status.topic == TOPIC
    assert p.actions == (plan.EnsureTopic(TOPIC, 4),)
    assert p.status.phase is Phase.WARMING
    assert {"SaleCreated", "TopicRequested", "Warming"} <= set(reasons(p))
    assert cond(p, state.ConditionType.SALE_PREPARED).status == "False"


def test_a_sale_claimed_by_another_flashsale_or_with_other_terms_is_not_adopted() -> None:
    other = obs.SaleView("b" * 32, terms(stock=99))
    claimed = obs.Observed(candidates=(sale(), other), claimed=frozenset({SALE_ID}))
    p = decide.decide(resource(), state.Status(), claimed, T0)
    assert p.actions == (plan.CreateSale(terms()),)
    assert not p.status.sale_id


def test_warming_waits_for_the_topic_operator() -> None:
    status = prepared_status(phase=Phase.WARMING, partitions=0, reserve=0)
    world = seen(topics=(obs.TopicView(TOPIC, 4, False, "reconciling"),), stats=obs.StatsView(0, 0, 100))
    p = decide.decide(resource(), status, world, T0)
    assert p.status.phase is Phase.WARMING
    assert p.actions == ()
    topic_ready = cond(p, state.ConditionType.TOPIC_READY)
    assert (topic_ready.status, topic_ready.reason) == ("False", "WaitingForTopic")
    assert "reconciling" in topic_ready.message
    assert p.requeue_after_s == decide.Options().poll_s


def test_a_ready_topic_gets_the_stock_prepared_and_the_sale_is_ready() -> None:
    status = prepared_status(phase=Phase.WARMING, partitions=0, reserve=0)
    p = decide.decide(resource(), status, seen(stats=obs.StatsView(0, 0, 100)), T0)
    assert p.actions == (plan.PrepareSale(SALE_ID, 4, 2),)
    assert (p.status.partitions, p.status.reserve) == (4, 2)
    assert p.status.phase is Phase.READY
    assert {"TopicReady", "Prepared", "Ready"} <= set(reasons(p))
    assert cond(p, state.ConditionType.READY).status == "True"


def test_ready_sleeps_until_the_workers_are_due() -> None:
    p = decide.decide(resource(), prepared_status(), seen(), T0)
    assert p.actions == ()
    assert p.status.phase is Phase.READY
    scaled = cond(p, state.ConditionType.WORKERS_SCALED)
    assert (scaled.status, scaled.reason) == ("False", "WaitingForLeadTime")
    assert p.requeue_after_s == pytest.approx((START - LEAD * S - T0) / 1000)


def test_at_start_minus_the_lead_time_the_workers_are_scaled_to_cover_the_partitions() -> None:
    now = START - LEAD * S
    p = decide.decide(resource(), prepared_status(), seen(), now)
    lease = workers.WorkerLease(1, ((HOLDER, 4),))
    assert p.actions == (plan.SetWorkers(NAMESPACE, "flashsale-sales", 4, lease, "7"),)
    assert p.status.scaling == state.ScalingStatus(f"{NAMESPACE}/flashsale-sales", 1, 4, held=True, restored=False)
    assert "Scaled" in reasons(p)
    assert p.requeue_after_s == pytest.approx(LEAD)


def test_a_deployment_already_bigger_is_not_shrunk() -> None:
    p = decide.decide(resource(), prepared_status(), seen(deployment=deployment(10)), START - LEAD * S)
    (action,) = p.actions
    assert isinstance(action, plan.SetWorkers)
    assert action.replicas == 10
    assert "keeps 10 replicas" in cond(p, state.ConditionType.WORKERS_SCALED).message


def test_a_missing_deployment_is_reported_and_the_sale_goes_on() -> None:
    p = decide.decide(resource(), prepared_status(), seen(deployment=None), START)
    assert p.status.phase is Phase.ACTIVE
    scaled = cond(p, state.ConditionType.WORKERS_SCALED)
    assert (scaled.status, scaled.reason) == ("False", "DeploymentNotFound")
    assert plan.Event("Warning", "DeploymentNotFound", scaled.message) in p.events


def test_local_workers_need_no_scaling() -> None:
    world = seen(deployment=None, workers=obs.Workers.LOCAL)
    p = decide.decide(resource(), prepared_status(), world, START - LEAD * S)
    assert p.actions == ()
    assert cond(p, state.ConditionType.WORKERS_SCALED).reason == "LocalWorkers"


def held(replicas: int = 4) -> tuple[state.Status, obs.DeploymentView]:
    """A prepared sale holding the Deployment at 4 replicas (baseline 1)."""
    status = prepared_status(scaling=state.ScalingStatus(f"{NAMESPACE}/flashsale-sales", 1, replicas, held=True))
    return status, deployment(replicas, workers.WorkerLease(1, ((HOLDER, 4),)))


def test_the_start_opens_the_sale_and_stats_are_refreshed() -> None:
    status, dep = held()
    ready = decide.decide(resource(), status, seen(deployment=dep), START - S).status
    p = decide.decide(resource(), ready, seen(deployment=dep, stats=obs.StatsView(4, 7, 93)), START)
    assert p.actions == ()
    assert p.status.phase is Phase.ACTIVE
    assert (p.status.sold, p.status.remaining, p.status.stock) == (7, 93, 100)
    assert reasons(p) == ["SaleStarted"]
    assert p.requeue_after_s == decide.Options().stats_interval_s
    near_end = decide.decide(resource(), p.status, seen(deployment=dep), END - 500)
    assert near_end.requeue_after_s == pytest.approx(0.5)


def test_the_end_ends_the_sale_and_gives_the_workers_back() -> None:
    status, dep = held()
    active = dataclasses.replace(status, phase=Phase.ACTIVE)
    p = decide.decide(resource(), active, seen(deployment=dep, stats=obs.StatsView(4, 100, 0)), END)
    assert p.status.phase is Phase.ENDED
    assert p.actions == (plan.SetWorkers(NAMESPACE, "flashsale-sales", 1, None, "7"),)
    assert p.status.scaling.restored and not p.status.scaling.held
    assert plan.Event("Normal", "SaleEnded", "sold 100 of 100") in p.events
    assert "Restored" in reasons(p)
    assert p.requeue_after_s is None
    # Once given back, an Ended sale does nothing more, whatever happens to its spec.
    again = decide.decide(resource(2, stock=5), p.status, seen(deployment=deployment(1)), END + 3600 * S)
    assert (again.actions, again.events, again.requeue_after_s) == ((), (), None)
    assert again.status == p.status


def test_an_ending_sale_leaves_the_deployment_to_another_holder() -> None:
    status, _ = held()
    shared = deployment(8, workers.WorkerLease(1, ((HOLDER, 4), ("shop/other", 8))))
    p = decide.decide(resource(), dataclasses.replace(status, phase=Phase.ACTIVE), seen(deployment=shared), END)
    assert p.actions == (
        plan.SetWorkers(NAMESPACE, "flashsale-sales", 8, workers.WorkerLease(1, (("shop/other", 8),)), "7"),
    )
    assert "1 other sale(s) still hold it" in cond(p, state.ConditionType.WORKERS_SCALED).message


def test_a_window_missed_while_warming_fails() -> None:
    status = prepared_status(phase=Phase.WARMING, partitions=0)
    p = decide.decide(resource(), status, seen(topics=(topic(ready=False),)), END)
    assert p.status.phase is Phase.FAILED
    assert p.status.reason == "WindowMissed"
    assert plan.Event("Warning", "WindowMissed", p.status.message) in p.events


def test_a_late_topic_keeps_the_sale_warming_with_a_warning() -> None:
    status = prepared_status(phase=Phase.WARMING, partitions=0)
    p = decide.decide(resource(), status, seen(topics=(topic(ready=False),)), START + S)
    assert p.status.phase is Phase.WARMING
    assert "the start has passed" in p.status.message
    assert cond(p, state.ConditionType.READY).reason == "NotReady"


# --- bad specs and refusals ---------------------------------------------------------------------------------------


def test_a_bad_spec_fails_with_the_reason_and_creates_nothing() -> None:
    p = decide.decide(resource(stock=0, endsAt=spec.format_time(START - S)), state.Status(), obs.Observed(), T0)
    assert p.status.phase is Phase.FAILED
    assert p.status.reason == "InvalidSpec"
    assert "spec.stock" in p.status.message and "spec.endsAt" in p.status.message
    assert p.actions == ()
    assert "InvalidSpec" in reasons(p)
    assert all(e.type == "Warning" for e in p.events)
    assert p.requeue_after_s is None
    # Failed is kept (silently) until the spec changes; a fixed spec starts over.
    again = decide.decide(resource(stock=0), p.status, obs.Observed(), T0 + S)
    assert (again.actions, again.events, again.status) == ((), (), p.status)
    fixed = decide.decide(resource(2), p.status, obs.Observed(), T0 + S)
    assert fixed.status.phase is Phase.PENDING
    assert cond(fixed, state.ConditionType.VALID).status == "True"
    assert fixed.actions == (plan.CreateSale(terms()),)


def test_a_window_already_over_fails_before_creating_anything() -> None:
    p = decide.decide(resource(), state.Status(), obs.Observed(), END)
    assert (p.status.phase, p.status.reason, p.actions) == (Phase.FAILED, "WindowOver", ())


def test_a_refused_create_fails_with_the_services_reason() -> None:
    failure = obs.Failure("CreateSale", "NOT_FOUND", "product_id: no such product")
    p = decide.decide(resource(), state.Status(phase=Phase.PENDING), obs.Observed(failure=failure), T0)
    assert p.status.phase is Phase.FAILED
    assert p.status.reason == "CreateSaleRefused"
    assert "product_id: no such product" in p.status.message
    assert p.actions == ()


def test_a_vanished_sale_fails() -> None:
    p = decide.decide(resource(), prepared_status(), seen(sale=None, stats=None), T0)
    assert (p.status.phase, p.status.reason) == (Phase.FAILED, "SaleMissing")


def test_failing_gives_back_held_workers() -> None:
    status, dep = held()
    p = decide.decide(
        resource(2, stock=0), dataclasses.replace(status, phase=Phase.ACTIVE), seen(deployment=dep), START
    )
    assert p.status.phase is Phase.FAILED
    assert p.actions == (plan.SetWorkers(NAMESPACE, "flashsale-sales", 1, None, "7"),)


# --- spec updates -------------------------------------------------------------------------------------------------


def test_more_partitions_before_the_start_grow_the_topic_then_the_split() -> None:
    grown = resource(2, partitions=8)
    p = decide.decide(grown, prepared_status(), seen(), T0)
    assert p.actions == (plan.EnsureTopic(TOPIC, 8),)
    assert cond(p, state.ConditionType.TOPIC_READY).reason == "TopicResizing"
    assert p.status.phase is Phase.WARMING
    ready = decide.decide(grown, p.status, seen(topics=(topic(8),)), T0 + S)
    assert ready.actions == (plan.PrepareSale(SALE_ID, 8, 2),)
    assert ready.status.phase is Phase.READY
    assert ready.status.observed_generation == 2


def test_a_new_reserve_before_the_start_is_prepared_again() -> None:
    p = decide.decide(resource(2, reserve=10), prepared_status(), seen(), T0)
    assert p.actions == (plan.PrepareSale(SALE_ID, 4, 10),)


def test_partitions_cannot_shrink_below_the_topic() -> None:
    p = decide.decide(resource(2, partitions=2), prepared_status(), seen(), T0)
    assert p.actions == ()
    applied = cond(p, state.ConditionType.SPEC_APPLIED)
    assert (applied.status, applied.reason) == ("False", "NotApplied")
    assert "cannot shrink below the request topic's 4" in applied.message
    assert plan.Event("Warning", "NotApplied", applied.message) in p.events


def test_the_split_is_fixed_once_the_sale_has_started() -> None:
    status, dep = held()
    p = decide.decide(
        resource(2, partitions=8), dataclasses.replace(status, phase=Phase.ACTIVE), seen(deployment=dep), START
    )
    assert p.actions == ()
    assert "fixed" not in p.status.message
    assert "stay 4 and 2 once the sale has started" in cond(p, state.ConditionType.SPEC_APPLIED).message


def test_more_stock_before_the_start_updates_the_sale() -> None:
    p = decide.decide(resource(2, stock=150), prepared_status(), seen(), T0)
    assert p.actions == (plan.UpdateSale(SALE_ID, 150),)
    applied = cond(p, state.ConditionType.SPEC_APPLIED)
    assert (applied.status, applied.reason, applied.message) == ("False", "Restocking", "stock 100 → 150")
    done = decide.decide(resource(2, stock=150), p.status, seen(sale=sale(stock=150)), T0 + S)
    assert plan.UpdateSale(SALE_ID, 150) not in done.actions
    assert done.status.stock == 150
    assert cond(done, state.ConditionType.SPEC_APPLIED).reason == "Applied"


def test_a_refused_restock_is_reported_and_not_retried_for_that_generation() -> None:
    refused = obs.Failure(plan.UPDATE_SALE, "FAILED_PRECONDITION", "stock: purchases were accepted already")
    p = decide.decide(resource(2, stock=150), prepared_status(), seen(failure=refused), T0)
    assert p.actions == () and p.status.phase is Phase.READY  # the sale goes on with its stock
    applied = cond(p, state.ConditionType.SPEC_APPLIED)
    assert (applied.status, applied.reason) == ("False", "StockRefused")
    assert "purchases were accepted already" in applied.message
    assert plan.Event("Warning", "StockRefused", applied.message) in p.events
    again = decide.decide(resource(2, stock=150), p.status, seen(), T0 + S)
    assert plan.UpdateSale(SALE_ID, 150) not in again.actions
    newer = decide.decide(resource(3, stock=160), again.status, seen(), T0 + 2 * S)
    assert newer.actions == (plan.UpdateSale(SALE_ID, 160),)


def test_the_stock_cannot_change_once_the_sale_has_started() -> None:
    status, dep = held()
    p = decide.decide(
        resource(2, stock=150), dataclasses.replace(status, phase=Phase.ACTIVE), seen(deployment=dep), START
    )
    assert p.actions == ()
    applied = cond(p, state.ConditionType.SPEC_APPLIED)
    assert (applied.status, applied.reason) == ("False", "NotApplied")
    assert "stock 100 → 150" in applied.message and "once the sale has started" in applied.message
    assert p.status.stock == 100


def test_other_terms_cannot_change_once_the_sale_exists() -> None:
    p = decide.decide(resource(2, priceCents=5000), prepared_status(), seen(), T0)
    assert p.actions == ()
    assert "cannot change once it exists" in cond(p, state.ConditionType.SPEC_APPLIED).message


def test_more_stock_before_the_sale_is_created_is_simply_used() -> None:
    p = decide.decide(
        resource(2, stock=150), state.Status(phase=Phase.PENDING, observed_generation=1), obs.Observed(), T0
    )
    assert p.actions == (plan.CreateSale(terms(stock=150)),)


def test_new_scaling_bounds_move_the_held_target() -> None:
    status, dep = held()
    p = decide.decide(resource(2, scaling={"minReplicas": 6, "maxReplicas": 6}), status, seen(deployment=dep), START)
    assert p.actions == (plan.SetWorkers(NAMESPACE, "flashsale-sales", 6, workers.WorkerLease(1, ((HOLDER, 6),)), "7"),)


# --- deletion -----------------------------------------------------------------------------------------------------


def test_deletion_removes_the_topics_and_gives_the_workers_back() -> None:
    status, dep = held()
    stray = topic(name="flashsale.sale.old.requests")
    p = decide.decide_deletion(resource(), status, seen(deployment=dep, topics=(topic(), stray)))
    assert p.actions == (
        plan.DeleteTopic(TOPIC),
        plan.DeleteTopic(stray.name),
        plan.SetWorkers(NAMESPACE, "flashsale-sales", 1, None, "7"),
    )
    assert p.events == (
        plan.Event(
            "Normal",
            "Deleting",
            f"deleting request topic {TOPIC}; deleting request topic {stray.name}; "
            "giving sales Deployment shop/flashsale-sales back",
        ),
    )
    nothing = decide.decide_deletion(resource(), p.status, seen(topics=()))
    assert (nothing.actions, nothing.events) == ((), ())


# --- restarts -----------------------------------------------------------------------------------------------------


class World:
    """The platform the decisions act on, in memory: the sales service, a topic operator and the Deployment."""

    def __init__(self) -> None:
        self.sales: dict[str, spec.Terms] = {}
        self.prepared: dict[str, tuple[int, int]] = {}
        self.topics: dict[str, int] = {}
        self.replicas = 1
        self.lease: workers.WorkerLease | None = None
        self.version = 0

    def observe(self, status: state.Status, product: str) -> obs.Observed:
        sale_id = status.sale_id
        found = obs.SaleView(sale_id, self.sales[sale_id]) if sale_id in self.sales else None
        stats = obs.StatsView(self.prepared.get(sale_id, (0, 0))[0], 0, 100) if found else None
        candidates = (
            () if sale_id else tuple(obs.SaleView(i, t) for i, t in self.sales.items() if t.product_id == product)
        )
        return obs.Observed(
            sale=found,
            stats=stats,
            candidates=candidates,
            topics=tuple(obs.TopicView(n, p, True) for n, p in self.topics.items()),  # the topic operator is quick
            deployment=obs.DeploymentView(NAMESPACE, "flashsale-sales", self.replicas, self.lease, str(self.version)),
        )

    def apply(self, action: plan.Action) -> None:
        match action:
            case plan.CreateSale(terms=t):
                self.sales[f"{len(self.sales) + 1:032x}"] = t
            case plan.EnsureTopic(name=name, partitions=partitions):
                self.topics[name] = max(partitions, self.topics.get(name, 0))
            case plan.PrepareSale(sale_id=sale_id, partitions=partitions, reserve=reserve):
                self.prepared[sale_id] = (partitions, reserve)
            case plan.SetWorkers(replicas=replicas, lease=lease, resource_version=version):
                assert version == str(self.version), "a stale Deployment patch would conflict"
                self.replicas, self.lease, self.version = replicas, lease, self.version + 1
            case plan.DeleteTopic(name=name):
                self.topics.pop(name, None)


TIMELINE = [T0, T0 + S, T0 + 2 * S, START - LEAD * S, START, START + S, END, END + S]


def run_life(lose_status_at: int | None) -> tuple[World, state.Status, list[Phase]]:
    """Drive a FlashSale through its life; at step `lose_status_at` the status write is lost (a crash after acting)."""
    world, status, phases, step = World(), state.Status(), [], 0
    for now in TIMELINE:
        for _ in range(10):
            p = decide.decide(resource(), status, world.observe(status, "p-1"), now)
            for action in p.actions:
                world.apply(action)
            if step != lose_status_at:
                status = p.status
            step += 1
            if status.phase is not None and (not phases or phases[-1] is not status.phase):
                phases.append(status.phase)
            if not p.actions:
                break
    return world, status, phases


def test_a_whole_life_passes_every_phase() -> None:
    world, status, phases = run_life(None)
    assert phases == [Phase.PENDING, Phase.WARMING, Phase.READY, Phase.ACTIVE, Phase.ENDED]
    assert len(world.sales) == 1
    assert world.prepared == {status.sale_id: (4, 2)}
    assert (world.replicas, world.lease) == (1, None)
    assert status.scaling == state.ScalingStatus(f"{NAMESPACE}/flashsale-sales", 1, 4, held=False, restored=True)


@pytest.mark.parametrize("lost", range(12))
def test_a_restart_at_any_step_ends_the_same(lost: int) -> None:
    expected_world, _, _ = run_life(None)
    world, status, _ = run_life(lost)
    assert len(world.sales) == 1, "a lost status write must not create a second sale"
    assert (status.phase, status.partitions, status.reserve) == (Phase.ENDED, 4, 2)
    assert (world.replicas, world.lease, world.topics.keys()) == (1, None, expected_world.topics.keys())
    assert status.scaling.restored and not status.scaling.held


@pytest.mark.parametrize(
    "status",
    [
        state.Status(),
        state.Status(phase=Phase.PENDING, observed_generation=1),
        prepared_status(phase=Phase.WARMING, partitions=0, reserve=0),
        prepared_status(),
        held()[0],
    ],
)
def test_the_same_state_gives_the_same_decision_and_no_repeated_events(status: state.Status) -> None:
    world = seen(deployment=held()[1]) if status.scaling.held else seen()
    first = decide.decide(resource(), status, world, START - LEAD * S)
    assert decide.decide(resource(), status, world, START - LEAD * S) == first
    if not first.actions:
        assert decide.decide(resource(), first.status, world, START - LEAD * S).events == ()


def test_the_status_round_trips_through_its_json_form() -> None:
    status, _ = held()
    p = decide.decide(resource(), status, seen(deployment=held()[1]), START)
    assert state.Status.from_dict(p.status.to_dict()) == p.status
    assert state.Status.from_dict(None) == state.Status()
    assert state.Status.from_dict({"phase": "Nonsense"}).phase is None


def test_wanted_follows_the_held_deployment_and_skips_candidates_once_the_sale_is_known() -> None:
    status, _ = held()
    moved: Mapping[str, Any] = {"name": "other"}
    wants = decide.wanted(
        resource(2, salesDeployment=moved),
        dataclasses.replace(status, scaling=dataclasses.replace(status.scaling, deployment="shop/flashsale-sales")),
    )
    assert wants == decide.Wanted(SALE_ID, "", spec.DeploymentRef(NAMESPACE, "flashsale-sales"))
    fresh = decide.wanted(resource(), state.Status())
    assert fresh == decide.Wanted("", "p-1", spec.DeploymentRef(NAMESPACE, "flashsale-sales"))
    assert decide.wanted(resource(stock=0), state.Status()) == decide.Wanted("", "", None)
