"""The FlashSale status: phase, conditions and what the operator has done, with its JSON form (pure)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any


class Phase(enum.Enum):
    """Where a FlashSale is in its life."""

    PENDING = "Pending"
    WARMING = "Warming"
    READY = "Ready"
    ACTIVE = "Active"
    ENDED = "Ended"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        """Ended and Failed: nothing more happens until the spec changes (Failed) or ever (Ended)."""
        return self in (Phase.ENDED, Phase.FAILED)


class ConditionType(enum.Enum):
    """The conditions a FlashSale reports, each True, False or Unknown with a reason."""

    VALID = "Valid"
    SALE_CREATED = "SaleCreated"
    TOPIC_READY = "TopicReady"
    SALE_PREPARED = "SalePrepared"
    WORKERS_SCALED = "WorkersScaled"
    SPEC_APPLIED = "SpecApplied"
    READY = "Ready"


@dataclasses.dataclass(frozen=True)
class Condition:
    """A Kubernetes-style condition; lastTransitionTime changes only when `status` changes."""

    type: str
    status: str
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int

    def to_dict(self) -> dict[str, Any]:
        """The condition as stored in the resource's status."""
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
            "observedGeneration": self.observed_generation,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Condition:
        """A condition read back from the resource."""
        return cls(
            type=str(raw.get("type", "")),
            status=str(raw.get("status", "Unknown")),
            reason=str(raw.get("reason", "")),
            message=str(raw.get("message", "")),
            last_transition_time=str(raw.get("lastTransitionTime", "")),
            observed_generation=int(raw.get("observedGeneration", 0)),
        )


@dataclasses.dataclass(frozen=True)
class ScalingStatus:
    """What the operator did to the sales Deployment: replicas before its scale-up and the ones it asked for."""

    deployment: str = ""  # namespace/name
    previous_replicas: int | None = None
    target_replicas: int | None = None
    held: bool = False  # the sale is one of the Deployment's holders (its workers are scaled for it)
    restored: bool = False  # the sale let go of the Deployment after the end

    def to_dict(self) -> dict[str, Any]:
        """The scaling record as stored in the resource's status."""
        return {
            "deployment": self.deployment,
            "previousReplicas": self.previous_replicas,
            "targetReplicas": self.target_replicas,
            "held": self.held,
            "restored": self.restored,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ScalingStatus:
        """The scaling record read back from the resource."""
        previous = raw.get("previousReplicas")
        target = raw.get("targetReplicas")
        return cls(
            deployment=str(raw.get("deployment", "")),
            previous_replicas=None if previous is None else int(previous),
            target_replicas=None if target is None else int(target),
            held=bool(raw.get("held", False)),
            restored=bool(raw.get("restored", False)),
        )


@dataclasses.dataclass(frozen=True)
class Status:
    """Everything the operator records about a FlashSale; decisions are made from it after any restart."""

    phase: Phase | None = None
    reason: str = ""
    message: str = ""
    observed_generation: int = 0
    sale_id: str = ""
    topic: str = ""
    partitions: int = 0  # the split the sales service prepared
    reserve: int = 0
    stock: int = 0
    sold: int = 0
    remaining: int = 0
    scaling: ScalingStatus = ScalingStatus()
    conditions: tuple[Condition, ...] = ()

    def condition(self, kind: ConditionType) -> Condition | None:
        """The condition of a type, if recorded."""
        return next((c for c in self.conditions if c.type == kind.value), None)

    def to_dict(self) -> dict[str, Any]:
        """The status as written to the resource's status subresource."""
        return {
            "phase": None if self.phase is None else self.phase.value,
            "reason": self.reason,
            "message": self.message,
            "observedGeneration": self.observed_generation,
            "saleId": self.sale_id,
            "topic": self.topic,
            "partitions": self.partitions,
            "reserve": self.reserve,
            "stock": self.stock,
            "sold": self.sold,
            "remaining": self.remaining,
            "scaling": self.scaling.to_dict(),
            "conditions": [c.to_dict() for c in self.conditions],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Status:
        """The status read back from the resource (empty or partial for a new one)."""
        if not raw:
            return cls()
        phase = raw.get("phase")
        return cls(
            phase=Phase(phase) if phase in {p.value for p in Phase} else None,
            reason=str(raw.get("reason") or ""),
            message=str(raw.get("message") or ""),
            observed_generation=int(raw.get("observedGeneration") or 0),
            sale_id=str(raw.get("saleId") or ""),
            topic=str(raw.get("topic") or ""),
            partitions=int(raw.get("partitions") or 0),
            reserve=int(raw.get("reserve") or 0),
            stock=int(raw.get("stock") or 0),
            sold=int(raw.get("sold") or 0),
            remaining=int(raw.get("remaining") or 0),
            scaling=ScalingStatus.from_dict(raw.get("scaling") or {}),
            conditions=tuple(Condition.from_dict(c) for c in raw.get("conditions") or ()),
        )
