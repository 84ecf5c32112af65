"""The purchase path's own metrics (flashsale_*): requests taken, decisions by outcome, request→decision latency
(log-append time to the round's commit), the time of each sale's last decision, rounds, refills, the partitions
each worker holds, and each sale's stock, remaining, sold and oversold units read from the ledger at scrape time.
Labelled by sale and outcome only."""

from __future__ import annotations

import collections
import operator
from collections.abc import Callable, Iterable, Sequence

import numpy
import prometheus_client
import prometheus_client.core

from flashsale.common import database, metrics
from flashsale.sales import domain, sale_store

ROUND_SIZES = (1, 10, 50, 100, 500, 1_000, 2_000, 5_000, 10_000, 20_000)
_OUTCOMES = tuple(o.value for o in domain.Outcome if o is not domain.Outcome.PENDING)
_OUTCOME_OF = operator.attrgetter("outcome._value_")  # the enum's value without its Python-level hash and property
Batch = tuple[str, Sequence[domain.Decision], Sequence[int], int]  # sale id, decisions, arrivals, units refilled


class PipelineMetrics:
    """Recorded by the ingress, the rounds and the worker; the per-sale figures are read from the database."""

    def __init__(self, reg: metrics.Registry) -> None:
        self._taken = prometheus_client.Counter(
            "flashsale_requests_taken_total", "Purchase requests appended to a sale's request topic.", ("sale",),
            registry=reg,
        )  # fmt: skip
        self._decisions = prometheus_client.Counter(
            "flashsale_decisions_total", "Purchase requests decided, by outcome.", ("sale", "outcome"), registry=reg
        )
        self._last_decision = prometheus_client.Gauge(
            "flashsale_sale_last_decision_timestamp_seconds",
            "Unix time of the last round that decided requests of a sale in this process.",
            ("sale",),
            registry=reg,
        )
        self._latency = metrics.BulkHistogram(
            reg,
            "flashsale_decision_latency_seconds",
            "From a request's log-append time to the commit of the round that decided it.",
            ("sale",),
            metrics.LATENCY_BUCKETS,
        )
        self._round_seconds = prometheus_client.Histogram(
            "flashsale_round_duration_seconds",
            "Time a worker's round took, its transaction included.",
            buckets=metrics.LATENCY_BUCKETS,
            registry=reg,
        )
        self._round_size = prometheus_client.Histogram(
            "flashsale_round_requests", "Requests decided by one round.", buckets=ROUND_SIZES, registry=reg
        )
        self._refills = prometheus_client.Counter(
            "flashsale_refills_total", "Rounds that moved stock into the pool from other partitions.", ("sale",),
            registry=reg,
        )  # fmt: skip
        self._refilled = prometheus_client.Counter(
            "flashsale_refilled_units_total", "Units moved into the pool by refills.", ("sale",), registry=reg
        )
        self._held = prometheus_client.Gauge(
            "flashsale_worker_partitions", "Request-topic partitions this process's worker holds.", ("sale",),
            registry=reg,
        )  # fmt: skip
        self._holding: set[str] = set()
        self._decided: set[str] = set()

    def taken(self, counts: Iterable[tuple[str, int]]) -> None:
        """Requests appended, as (sale id, count) pairs."""
        for sale_id, count in counts:
            self._taken.labels(sale_id).inc(count)

    def round_committed(self, batches: Sequence[Batch], seconds: float) -> None:
        """A committed round, as (sale id, decisions, their requests' log-append times, units it moved into the pool)
        per batch: outcomes counted, latencies observed (to the round's decided_at), refills once per sale, the
        round's duration and size."""
        refilled: dict[str, int] = {}
        for sale_id, made, arrivals, moved in batches:
            self._known(sale_id)
            if made:
                decided_at = made[0].decided_at  # one round, one time
                self._last_decision.labels(sale_id).set(decided_at / 1000)
                for outcome, count in collections.Counter(map(_OUTCOME_OF, made)).items():  # in C, per decision
                    self._decisions.labels(sale_id, outcome).inc(count)
                waited_ms = decided_at - numpy.asarray(arrivals, dtype=numpy.float64)
                self._latency.observe_many((sale_id,), waited_ms / 1000)
            if moved:
                refilled[sale_id] = moved
        for sale_id, units in refilled.items():
            self._refills.labels(sale_id).inc()
            self._refilled.labels(sale_id).inc(units)
        self._round_seconds.observe(seconds)
        self._round_size.observe(sum(len(made) for _, made, _, _ in batches))

    def holding(self, per_sale: dict[str, int]) -> None:
        """The partitions the worker holds now, per sale (a sale's decision series start at 0 here)."""
        for sale_id in self._holding - set(per_sale):
            self._held.remove(sale_id)
        for sale_id, count in per_sale.items():
            self._held.labels(sale_id).set(count)
            self._known(sale_id)
        self._holding = set(per_sale)

    def _known(self, sale_id: str) -> None:
        """Create a sale's counters at 0 once, before its first decision, so a scrape sees them rise (a series
        born at its first burst would show Prometheus no increase)."""
        if sale_id in self._decided:
            return
        self._decided.add(sale_id)
        for outcome in _OUTCOMES:
            self._decisions.labels(sale_id, outcome)
        self._refills.labels(sale_id)
        self._refilled.labels(sale_id)


def sale_figures(reg: metrics.Registry, db: database.Database) -> None:
    """Register gauges of every sale's stock, remaining, sold and oversold units, read from the ledger at scrape
    time (oversold: units reserved or sold beyond the stock; it must stay 0)."""

    def collect() -> list[prometheus_client.Metric]:
        names: Sequence[tuple[str, str, Callable[[sale_store.Figures], int]]] = (
            ("flashsale_sale_stock", "Units a sale offers.", lambda f: f.stock),
            ("flashsale_sale_remaining", "Units of a sale left in its partitions and pool.", lambda f: f.remaining),
            ("flashsale_sale_sold", "Units of a sale reserved or confirmed (not released).", lambda f: f.held),
            (
                "flashsale_sale_oversold",
                "Units of a sale reserved or sold beyond its stock (must be 0).",
                lambda f: max(0, f.held - f.stock),
            ),
        )
        figures = db.run_sync(sale_store.figures)
        families: list[prometheus_client.Metric] = []
        for name, doc, value in names:
            family = prometheus_client.core.GaugeMetricFamily(name, doc, labels=["sale"])
            for found in figures:
                family.add_metric([found.sale_id], value(found))
            families.append(family)
        return families

    metrics.Callback(reg, collect)
