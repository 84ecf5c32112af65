"""The operator's Prometheus metrics: reconciliation passes by result and their duration, and the FlashSales it
watches by phase (as the last watch event showed them). Labels are bounded: results and phases."""

from __future__ import annotations

import collections

import prometheus_client
import prometheus_client.core

from flashsale.common import metrics

PASS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OperatorMetrics:
    """Recorded by the handlers; the phase gauge is counted at scrape time."""

    def __init__(self, reg: metrics.Registry) -> None:
        self._passes = prometheus_client.Counter(
            "flashsale_operator_passes_total",
            "Reconciliation passes of FlashSales, by result (ok; failed: retried after a back-off).",
            ("result",),
            registry=reg,
        )
        self._seconds = prometheus_client.Histogram(
            "flashsale_operator_pass_duration_seconds",
            "Time a reconciliation pass took, its Kubernetes and sales-service calls included.",
            buckets=PASS_BUCKETS,
            registry=reg,
        )
        for result in ("ok", "failed"):
            self._passes.labels(result)
        self._phases: dict[str, str] = {}
        metrics.Callback(reg, self._families)

    def passed(self, seconds: float, ok: bool) -> None:
        """Count a pass and observe its duration."""
        self._passes.labels("ok" if ok else "failed").inc()
        self._seconds.observe(seconds)

    def seen(self, uid: str, phase: str | None) -> None:
        """The phase a FlashSale's latest watch event showed (None: gone, or no phase written yet)."""
        if phase is None:
            self._phases.pop(uid, None)
        else:
            self._phases[uid] = phase

    def _families(self) -> list[prometheus_client.Metric]:
        family = prometheus_client.core.GaugeMetricFamily(
            "flashsale_operator_flashsales", "FlashSales the operator watches, by phase.", labels=["phase"]
        )
        for phase, count in sorted(collections.Counter(self._phases.values()).items()):
            family.add_metric([phase], count)
        return [family]
