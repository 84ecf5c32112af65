"""The load schedule: when each simulated shopper sends which purchase requests (pure and seeded).

Each shopper arrives once (by the arrival profile) and asks for 1..limit units in one or more requests;
some greedy shoppers then ask for more than their limit, and some requests are sent again with the same
request id (a client retry). A small sample is sent as unary Purchase calls that wait for the decision.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
import re

from flashsale.common import errors

PROFILES = ("spike", "ramp", "uniform")
MAX_USERS = 1_000_000
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,24}$")


class Kind(enum.StrEnum):
    """Why a request is in the schedule."""

    WANT = "want"  # within the shopper's limit
    GREEDY = "greedy"  # takes the shopper beyond the per-user limit
    RETRY = "retry"  # the same request id sent again


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    """The shape of the load: how many shoppers, their limit, when they arrive and how they behave."""

    users: int
    limit: int
    profile: str = "spike"
    duration_s: float = 10.0
    spike_s: float = 1.0
    greedy_fraction: float = 0.1
    retry_fraction: float = 0.05
    unary_fraction: float = 0.01
    seed: int = 1
    tag: str = "lt"

    def __post_init__(self) -> None:
        if not 1 <= self.users <= MAX_USERS:
            raise errors.InvalidArgument(f"must be between 1 and {MAX_USERS}", "users")
        if self.limit < 1:
            raise errors.InvalidArgument("must be at least 1", "limit")
        if self.profile not in PROFILES:
            raise errors.InvalidArgument(f"must be one of {', '.join(PROFILES)}", "profile")
        if not self.duration_s > 0:
            raise errors.InvalidArgument("must be positive", "duration_s")
        if not self.spike_s > 0:
            raise errors.InvalidArgument("must be positive", "spike_s")
        for name in ("greedy_fraction", "retry_fraction", "unary_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise errors.InvalidArgument("must be between 0 and 1", name)
        if not _TAG.match(self.tag):
            raise errors.InvalidArgument("must be 1..24 characters of A-Z, a-z, 0-9, '_' or '-'", "tag")


@dataclasses.dataclass(frozen=True)
class Planned:
    """One send: `at_ms` after the start of the load; `unary` ones wait for their decision."""

    at_ms: int
    request_id: str
    user_id: str
    quantity: int
    kind: Kind
    unary: bool = False


def arrival_s(spec: LoadSpec, index: int, rng: random.Random) -> float:
    """When shopper `index` arrives, in seconds after the start.

    spike: uniformly within the first `spike_s`; ramp: the arrival rate rises linearly from 0 over
    `duration_s` (inverse of the CDF t²/d²); uniform: a constant rate over `duration_s` (stratified).
    """
    u = rng.random()
    if spec.profile == "spike":
        return spec.spike_s * u
    if spec.profile == "ramp":
        return spec.duration_s * math.sqrt(u)
    return spec.duration_s * (index + u) / spec.users


def _split(units: int, rng: random.Random) -> list[int]:
    """`units` as a list of request quantities (each at least 1)."""
    parts = []
    while units > 0:
        take = rng.randint(1, units)
        parts.append(take)
        units -= take
    return parts


def shopper(spec: LoadSpec, index: int, rng: random.Random) -> list[Planned]:
    """Every send of one shopper, in the order drawn (not sorted)."""
    user = f"{spec.tag}-u{index}"
    at = arrival_s(spec, index, rng) * 1000.0
    wanted = rng.randint(1, spec.limit)
    quantities = [(q, Kind.WANT) for q in _split(wanted, rng)]
    if rng.random() < spec.greedy_fraction:
        quantities.append((rng.randint(spec.limit - wanted + 1, spec.limit), Kind.GREEDY))
    sends: list[Planned] = []
    for number, (quantity, kind) in enumerate(quantities):
        if number:
            at += rng.uniform(10.0, 200.0)  # think time between a shopper's clicks
        rid = f"{user}-r{number}"
        unary = rng.random() < spec.unary_fraction
        sends.append(Planned(round(at), rid, user, quantity, kind, unary))
        if rng.random() < spec.retry_fraction:
            sends.append(Planned(round(at + rng.uniform(50.0, 500.0)), rid, user, quantity, Kind.RETRY))
    return sends


def build(spec: LoadSpec) -> tuple[Planned, ...]:
    """The whole schedule, ordered by send time (then request id); the same spec gives the same schedule."""
    rng = random.Random(spec.seed)
    plan = [p for index in range(spec.users) for p in shopper(spec, index, rng)]
    plan.sort(key=lambda p: (p.at_ms, p.request_id, p.kind == Kind.RETRY))
    return tuple(plan)


def distinct_requests(plan: tuple[Planned, ...]) -> int:
    """How many request ids the schedule uses (retries reuse one)."""
    return len({p.request_id for p in plan})


def demand_units(plan: tuple[Planned, ...]) -> int:
    """Units asked for by distinct requests within each shopper's limit (what the sale could sell at most)."""
    return sum(p.quantity for p in plan if p.kind == Kind.WANT)
