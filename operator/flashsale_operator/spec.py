"""The FlashSale spec: parsing and validation of the custom resource's `spec` into typed, resolved terms (pure)."""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from collections.abc import Mapping
from typing import Any

from flashsale.common import limits

DEFAULT_PARTITIONS = 8
RPS_PER_PARTITION = 2000
"""Requests a second one stock partition (one single-writer worker) is planned for when partitions are derived."""
DEFAULT_LEAD_TIME_S = 60
MAX_LEAD_TIME_S = 86_400
DEFAULT_MIN_REPLICAS = 1
DEFAULT_MAX_REPLICAS = 8
MAX_REPLICAS = 1000

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class SpecError(ValueError):
    """The spec is invalid; `problems` lists each bad field as "spec.<field>: <what is wrong>"."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class Terms:
    """What the sales service stores for a sale (times in epoch milliseconds)."""

    product_id: str
    price_cents: int
    stock: int
    per_user_limit: int
    starts_at_ms: int
    ends_at_ms: int


@dataclasses.dataclass(frozen=True)
class DeploymentRef:
    """The sales Deployment whose replicas are the sale's workers."""

    namespace: str
    name: str


@dataclasses.dataclass(frozen=True)
class SaleSpec:
    """A valid FlashSale spec with every default resolved."""

    terms: Terms
    partitions: int
    reserve: int
    lead_time_s: int
    min_replicas: int
    max_replicas: int
    deployment: DeploymentRef

    @property
    def warm_at_ms(self) -> int:
        """When the workers are scaled up: the start minus the lead time."""
        return self.terms.starts_at_ms - self.lead_time_s * 1000

    @property
    def target_replicas(self) -> int:
        """Replicas that cover the spec's partitions (one single writer each), within the scaling bounds."""
        return self.replicas_for(self.partitions)

    def replicas_for(self, partitions: int) -> int:
        """Replicas that cover `partitions` (one single writer each), within the scaling bounds."""
        return min(self.max_replicas, max(self.min_replicas, partitions))


def parse_time(value: str) -> int:
    """An RFC 3339 date-time with a zone (e.g. 2030-01-01T12:00:00Z) as epoch milliseconds."""
    parsed = datetime.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("has no time zone")
    return int(parsed.timestamp() * 1000)


def format_time(ms: int) -> str:
    """Epoch milliseconds as an RFC 3339 UTC date-time with second precision (Kubernetes' style)."""
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def derived_partitions(expected_peak_rps: int) -> int:
    """Partitions planned for an expected peak of requests a second, within 1..256."""
    return min(limits.MAX_PARTITIONS, max(1, math.ceil(expected_peak_rps / RPS_PER_PARTITION)))


class _Reader:
    """Reads typed fields of a mapping, collecting every problem instead of stopping at the first."""

    def __init__(self, raw: Mapping[str, Any], prefix: str, problems: list[str]) -> None:
        self._raw = raw
        self._prefix = prefix
        self.problems = problems

    def fail(self, field: str, message: str) -> None:
        self.problems.append(f"{self._prefix}{field}: {message}")

    def integer(self, field: str, low: int, high: int, default: int | None = None) -> int | None:
        value = self._raw.get(field)
        if value is None:
            if default is None:
                self.fail(field, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, "must be an integer")
            return None
        if not low <= value <= high:
            self.fail(field, f"must be between {low} and {high}")
            return None
        return value

    def string(self, field: str, default: str | None = None) -> str | None:
        value = self._raw.get(field)
        if value is None or value == "":
            if default is None:
                self.fail(field, "is required")
            return default
        if not isinstance(value, str):
            self.fail(field, "must be a string")
            return None
        return value

    def time(self, field: str) -> int | None:
        value = self.string(field)
        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError:
            self.fail(field, "must be an RFC 3339 date-time with a time zone, e.g. 2030-01-01T12:00:00Z")
            return None

    def mapping(self, field: str) -> Mapping[str, Any]:
        value = self._raw.get(field)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(field, "must be an object")
            return {}
        return value


def parse(raw: Mapping[str, Any], namespace: str, default_deployment: str) -> SaleSpec:
    """Validate a FlashSale spec and resolve its defaults; raise SpecError listing every bad field."""
    problems: list[str] = []
    spec = _Reader(raw, "spec.", problems)
    product_id = spec.string("productId")
    if product_id is not None and not _ID.match(product_id):
        spec.fail("productId", "must be 1..64 characters of A-Z, a-z, 0-9, '_' or '-'")
    price = spec.integer("priceCents", 1, limits.MAX_PRICE_CENTS)
    stock = spec.integer("stock", 1, limits.MAX_STOCK)
    limit = spec.integer("perUserLimit", 1, limits.MAX_PER_USER_LIMIT)
    starts = spec.time("startsAt")
    ends = spec.time("endsAt")
    if starts is not None and ends is not None and ends <= starts:
        spec.fail("endsAt", "must be after spec.startsAt")

    partitions: int | None
    if raw.get("partitions") is not None and raw.get("expectedPeakRps") is not None:
        spec.fail("partitions", "set partitions or expectedPeakRps, not both")
        partitions = None
    elif raw.get("expectedPeakRps") is not None:
        rps = spec.integer("expectedPeakRps", 1, 10**9)
        partitions = None if rps is None else derived_partitions(rps)
    else:
        partitions = spec.integer("partitions", 1, limits.MAX_PARTITIONS, DEFAULT_PARTITIONS)
    reserve = spec.integer("reserve", 0, limits.MAX_STOCK, 0)
    if reserve is not None and stock is not None and reserve > stock:
        spec.fail("reserve", f"must not exceed spec.stock ({stock})")
    lead = spec.integer("leadTimeSeconds", 0, MAX_LEAD_TIME_S, DEFAULT_LEAD_TIME_S)

    scaling = _Reader(spec.mapping("scaling"), "spec.scaling.", problems)
    low = scaling.integer("minReplicas", 0, MAX_REPLICAS, DEFAULT_MIN_REPLICAS)
    high = scaling.integer("maxReplicas", 1, MAX_REPLICAS, DEFAULT_MAX_REPLICAS)
    if low is not None and high is not None and low > high:
        scaling.fail("maxReplicas", f"must not be below spec.scaling.minReplicas ({low})")

    target = _Reader(spec.mapping("salesDeployment"), "spec.salesDeployment.", problems)
    deployment_name = target.string("name", default_deployment)
    if deployment_name is not None and not _DNS_SUBDOMAIN.match(deployment_name):
        target.fail("name", "must be a Kubernetes object name (lower-case letters, digits, '-' and '.')")
    deployment_namespace = target.string("namespace", namespace)
    if deployment_namespace is not None and not _DNS_LABEL.match(deployment_namespace):
        target.fail("namespace", "must be a Kubernetes namespace name")

    if problems:
        raise SpecError(problems)
    assert product_id is not None and price is not None and stock is not None and limit is not None
    assert starts is not None and ends is not None and partitions is not None and reserve is not None
    assert lead is not None and low is not None and high is not None
    assert deployment_name is not None and deployment_namespace is not None
    return SaleSpec(
        terms=Terms(product_id, price, stock, limit, starts, ends),
        partitions=partitions,
        reserve=reserve,
        lead_time_s=lead,
        min_replicas=low,
        max_replicas=high,
        deployment=DeploymentRef(deployment_namespace, deployment_name),
    )
