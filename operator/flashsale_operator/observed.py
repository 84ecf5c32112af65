"""What the operator sees of the world on one pass: the sale, its stats, the topic and the Deployment (pure data)."""

from __future__ import annotations

import dataclasses
import enum

from flashsale_operator import spec, workers


@dataclasses.dataclass(frozen=True)
class SaleView:
    """A sale as the sales service reports it."""

    sale_id: str
    terms: spec.Terms


@dataclasses.dataclass(frozen=True)
class StatsView:
    """A sale's counters: how many stock partitions are prepared (0: not yet), sold and remaining units."""

    partitions: int
    sold: int
    remaining: int


@dataclasses.dataclass(frozen=True)
class TopicView:
    """A request topic (a KafkaTopic, or a Kafka topic in local mode): its partitions and readiness."""

    name: str
    partitions: int
    ready: bool
    message: str = ""


@dataclasses.dataclass(frozen=True)
class DeploymentView:
    """The sales Deployment: its replicas, who holds it scaled, and the version a patch must match."""

    namespace: str
    name: str
    replicas: int
    lease: workers.WorkerLease | None
    resource_version: str = ""

    @property
    def key(self) -> str:
        """namespace/name."""
        return f"{self.namespace}/{self.name}"


class Workers(enum.Enum):
    """How sales workers run: replicas of a Kubernetes Deployment, or the local platform's sales process."""

    DEPLOYMENT = "deployment"
    LOCAL = "local"


@dataclasses.dataclass(frozen=True)
class Failure:
    """An action the platform refused for good (e.g. CreateSale of a product that does not exist)."""

    action: str
    code: str
    message: str


@dataclasses.dataclass(frozen=True)
class Observed:
    """Everything one pass saw; absent things are None or empty."""

    sale: SaleView | None = None
    stats: StatsView | None = None
    candidates: tuple[SaleView, ...] = ()  # sales of the spec's product while no sale id is recorded
    claimed: frozenset[str] = frozenset()  # sale ids other FlashSales hold
    topics: tuple[TopicView, ...] = ()  # every request topic the FlashSale owns (normally one)
    deployment: DeploymentView | None = None
    workers: Workers = Workers.DEPLOYMENT
    failure: Failure | None = None

    def topic(self, name: str) -> TopicView | None:
        """The owned topic of a name, if it exists."""
        return next((t for t in self.topics if t.name == name), None)
