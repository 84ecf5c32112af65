"""What one decision asks for: the status to record, the actions to take, the events to post, when to look again."""

from __future__ import annotations

import dataclasses

from flashsale_operator import spec, state, workers


@dataclasses.dataclass(frozen=True)
class CreateSale:
    """Create the sale in the sales service (CreateSale)."""

    terms: spec.Terms


UPDATE_SALE = "UpdateSale"


@dataclasses.dataclass(frozen=True)
class UpdateSale:
    """Change the sale's stock before its start (UpdateSale; refused once some stock was sold)."""

    sale_id: str
    stock: int


@dataclasses.dataclass(frozen=True)
class EnsureTopic:
    """Create the request topic with `partitions` partitions, or grow it to that many."""

    name: str
    partitions: int


@dataclasses.dataclass(frozen=True)
class PrepareSale:
    """Split the sale's stock into partitions and a reserve (PrepareSale; idempotent)."""

    sale_id: str
    partitions: int
    reserve: int


@dataclasses.dataclass(frozen=True)
class SetWorkers:
    """Patch the sales Deployment's replicas and its worker lease together (None removes the lease)."""

    namespace: str
    name: str
    replicas: int
    lease: workers.WorkerLease | None
    resource_version: str


@dataclasses.dataclass(frozen=True)
class DeleteTopic:
    """Delete a request topic the FlashSale owns."""

    name: str


Action = CreateSale | UpdateSale | EnsureTopic | PrepareSale | SetWorkers | DeleteTopic


@dataclasses.dataclass(frozen=True)
class Event:
    """A Kubernetes event for people: type Normal or Warning, a CamelCase reason and a sentence."""

    type: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Plan:
    """The outcome of a decision. Actions run in order; the status is written only once all of them succeeded."""

    status: state.Status
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after_s: float | None = None  # None: nothing to do until the resource changes
