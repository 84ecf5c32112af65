"""The bulk histogram bins a round's values exactly as prometheus-client's histogram observed one by one would."""

from __future__ import annotations

import prometheus_client
from prometheus_client import parser

from flashsale.common import metrics

BUCKETS = (0.01, 0.1, 1.0)


def _samples(reg: prometheus_client.CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = prometheus_client.generate_latest(reg).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("latency")
    }


def test_bulk_observations_match_one_observe_per_value() -> None:
    values = [0.001, 0.01, 0.0100001, 0.05, 0.1, 0.5, 1.0, 3.0, 7.5]
    one_by_one, in_bulk = prometheus_client.CollectorRegistry(), prometheus_client.CollectorRegistry()
    reference = prometheus_client.Histogram("latency_seconds", "doc", ("sale",), buckets=BUCKETS, registry=one_by_one)
    for value in values:
        reference.labels("s1").observe(value)
    bulk = metrics.BulkHistogram(in_bulk, "latency_seconds", "doc", ("sale",), BUCKETS)
    bulk.observe_many(("s1",), values[:4])
    bulk.observe_many(("s1",), values[4:])
    bulk.observe_many(("s1",), [])
    expected = {k: v for k, v in _samples(one_by_one).items() if not k[0].endswith("_created")}
    assert _samples(in_bulk) == expected
    assert expected[("latency_seconds_bucket", (("le", "0.01"), ("sale", "s1")))] == 2
    assert expected[("latency_seconds_count", (("sale", "s1"),))] == len(values)
