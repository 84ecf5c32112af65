"""Who holds the sales Deployment scaled up, and to how many replicas it goes (pure).

Overlapping sales share one sales Deployment. The Deployment carries one annotation recording its baseline (the
replicas before the first sale scaled it) and each holding sale's target; it is written in the same patch as the
replicas, so a crash can never separate the two. The replicas are the largest of the baseline and the targets.
"""

from __future__ import annotations

import dataclasses
import json

ANNOTATION = "flashsale.io/workers"


@dataclasses.dataclass(frozen=True)
class WorkerLease:
    """The baseline replicas of a Deployment and the target of every sale holding it (sorted by holder)."""

    baseline: int
    holders: tuple[tuple[str, int], ...]

    def target_of(self, holder: str) -> int | None:
        """The target a holder asked for, or None when it does not hold the Deployment."""
        return dict(self.holders).get(holder)

    @property
    def replicas(self) -> int:
        """Replicas that satisfy the baseline and every holder."""
        return max([self.baseline, *(target for _, target in self.holders)])


def encode(lease: WorkerLease) -> str:
    """The annotation value of a lease."""
    return json.dumps({"baseline": lease.baseline, "holders": dict(lease.holders)}, sort_keys=True)


def decode(text: str | None) -> WorkerLease | None:
    """A lease from its annotation value; None when absent or unreadable (then nobody holds the Deployment)."""
    if not text:
        return None
    try:
        raw = json.loads(text)
        baseline = int(raw["baseline"])
        holders = tuple(sorted((str(k), int(v)) for k, v in dict(raw.get("holders", {})).items()))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return WorkerLease(baseline, holders)


def hold(lease: WorkerLease | None, current: int, holder: str, target: int) -> tuple[int, WorkerLease]:
    """Replicas and lease once `holder` holds the Deployment at `target` (never fewer replicas than now)."""
    baseline = current if lease is None else lease.baseline
    holders = {} if lease is None else dict(lease.holders)
    holders[holder] = target
    held = WorkerLease(baseline, tuple(sorted(holders.items())))
    return max(current, held.replicas), held


def release(lease: WorkerLease, holder: str) -> tuple[int, WorkerLease | None]:
    """Replicas and lease once `holder` lets go: the others' largest target, or the baseline when none is left."""
    rest = tuple((name, target) for name, target in lease.holders if name != holder)
    if not rest:
        return lease.baseline, None
    remaining = WorkerLease(lease.baseline, rest)
    return remaining.replicas, remaining
