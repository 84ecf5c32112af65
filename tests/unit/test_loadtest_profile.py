"""The load test's pure parts: the seeded schedule builder and the report arithmetic."""

from __future__ import annotations

import collections
import re

import pytest

from flashsale.common import errors
from flashsale_tools.loadtest import metrics, profile, report, sender
from flashsale_tools.verify import rules

ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _spec(**overrides: object) -> profile.LoadSpec:
    values: dict[str, object] = {"users": 2000, "limit": 2, "seed": 7, "tag": "ltabc123"}
    values.update(overrides)
    return profile.LoadSpec(**values)  # type: ignore[arg-type]


def _first_sends(plan: tuple[profile.Planned, ...]) -> dict[str, int]:
    """Arrival of each shopper: the time of their first request."""
    first: dict[str, int] = {}
    for p in plan:
        first.setdefault(p.user_id, p.at_ms)
    return first


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert profile.build(_spec()) == profile.build(_spec())
    assert profile.build(_spec()) != profile.build(_spec(seed=8))


def test_the_schedule_is_ordered_by_send_time_with_valid_ids() -> None:
    plan = profile.build(_spec(users=500, limit=5))
    assert [p.at_ms for p in plan] == sorted(p.at_ms for p in plan)
    assert all(ID.match(p.request_id) and ID.match(p.user_id) for p in plan)
    assert {p.user_id for p in plan} == {f"ltabc123-u{i}" for i in range(500)}
    assert all(p.request_id.startswith(p.user_id + "-r") for p in plan)


def test_spike_arrives_within_the_spike_window() -> None:
    plan = profile.build(_spec(profile="spike", spike_s=1.0))
    arrivals = _first_sends(plan).values()
    assert max(arrivals) <= 1000
    assert min(arrivals) < 100
    assert all(p.at_ms <= 1000 + 3 * 200 + 500 for p in plan)  # clicks and retries follow shortly


def test_uniform_has_a_constant_rate_and_ramp_a_rising_one() -> None:
    uniform = _first_sends(profile.build(_spec(profile="uniform", duration_s=10.0))).values()
    per_second = collections.Counter(t // 1000 for t in uniform)
    assert sorted(per_second) == list(range(10))
    assert all(190 <= n <= 210 for n in per_second.values())  # 2000 shoppers over 10 s
    ramp = _first_sends(profile.build(_spec(profile="ramp", duration_s=10.0))).values()
    assert max(ramp) <= 10_000
    early = sum(1 for t in ramp if t < 5000)
    assert 400 <= early <= 600  # a linear ramp puts a quarter of the arrivals in the first half
    halves = collections.Counter(t // 2500 for t in ramp)
    assert halves[0] < halves[1] < halves[2] < halves[3]


def test_each_shopper_wants_one_to_limit_units_and_greedy_ones_ask_beyond_it() -> None:
    spec = _spec(limit=3, greedy_fraction=0.3)
    plan = profile.build(spec)
    by_user: dict[str, list[profile.Planned]] = collections.defaultdict(list)
    for p in plan:
        by_user[p.user_id].append(p)
    greedy_users = 0
    for sends in by_user.values():
        firsts = [p for p in sends if p.kind != profile.Kind.RETRY]
        assert all(1 <= p.quantity <= spec.limit for p in sends)
        wanted = sum(p.quantity for p in firsts if p.kind == profile.Kind.WANT)
        assert 1 <= wanted <= spec.limit
        greedy = [p for p in firsts if p.kind == profile.Kind.GREEDY]
        assert len(greedy) <= 1
        if greedy:
            greedy_users += 1
            assert wanted + greedy[0].quantity > spec.limit
            assert greedy[0].at_ms >= max(p.at_ms for p in firsts if p.kind == profile.Kind.WANT)
        assert len({p.request_id for p in firsts}) == len(firsts)
    assert 500 <= greedy_users <= 700  # 30 % of 2000


def test_retries_repeat_an_earlier_request_later_and_are_never_unary() -> None:
    plan = profile.build(_spec(retry_fraction=0.5, unary_fraction=1.0))
    originals = {p.request_id: p for p in plan if p.kind != profile.Kind.RETRY}
    retries = [p for p in plan if p.kind == profile.Kind.RETRY]
    assert len(retries) > 0.3 * len(originals)
    for r in retries:
        first = originals[r.request_id]
        assert (r.user_id, r.quantity) == (first.user_id, first.quantity)
        assert 50 <= r.at_ms - first.at_ms <= 501
        assert not r.unary
    assert all(p.unary for p in originals.values())
    assert profile.distinct_requests(plan) == len(originals)


def test_fractions_of_zero_leave_only_requests_within_the_limit() -> None:
    plan = profile.build(_spec(greedy_fraction=0.0, retry_fraction=0.0, unary_fraction=0.0))
    assert {p.kind for p in plan} == {profile.Kind.WANT}
    assert not any(p.unary for p in plan)
    assert 2000 <= profile.demand_units(plan) <= 4000


def test_a_sample_of_requests_is_unary() -> None:
    plan = profile.build(_spec(users=5000, unary_fraction=0.02))
    unary = sum(1 for p in plan if p.unary)
    assert 0.01 * len(plan) <= unary <= 0.03 * len(plan)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"users": 0}, "users"),
        ({"limit": 0}, "limit"),
        ({"profile": "burst"}, "profile"),
        ({"duration_s": 0.0}, "duration_s"),
        ({"spike_s": -1.0}, "spike_s"),
        ({"retry_fraction": 1.5}, "retry_fraction"),
        ({"tag": "bad tag"}, "tag"),
    ],
)
def test_a_bad_spec_names_its_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        _spec(**overrides)
    assert caught.value.field == field


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert metrics.percentile(values, 50) == 50.0
    assert metrics.percentile(values, 99) == 99.0
    assert metrics.percentile(values, 100) == 100.0
    assert metrics.percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert metrics.percentile([7.0], 1) == 7.0
    assert metrics.percentile([], 99) == 0.0
    with pytest.raises(ValueError):
        metrics.percentile(values, 0)


def _decided(rid: str, outcome: str, decided_at: int, arrived_at: int | None = None) -> metrics.Decided:
    return metrics.Decided(rid, outcome, decided_at, decided_at if arrived_at is None else arrived_at)


def test_summary_rates_latencies_and_undecided_requests() -> None:
    start = 1_000_000
    # four request ids, one sent twice (a retry); "d" never decided; "x" is not ours
    send_times = [start, start, start + 500, start + 1000, start + 1000]
    first_sent = {"a": start, "b": start, "c": start + 500, "d": start + 1000}
    decisions = [
        _decided("a", "accepted", start + 100, start + 20),
        _decided("b", "sold_out", start + 300, start + 20),
        _decided("c", "accepted", start + 1500, start + 520),
        _decided("x", "accepted", start + 1600),
    ]
    s = metrics.summarize(send_times, first_sent, decisions)
    assert (s.sends, s.requests, s.decided, s.undecided, s.accepted) == (5, 4, 3, 1, 2)
    assert s.outcomes == {"accepted": 2, "sold_out": 1}
    assert s.offered_per_s == pytest.approx(5.0)  # 5 sends over 1 s
    assert s.decided_per_s == pytest.approx(3 / 1.5)  # 3 decisions by 1.5 s after the first send
    assert s.accepted_per_s == pytest.approx(2 / 1.5)
    assert (s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms) == (300.0, 1000.0, 1000.0, 1000.0)
    assert (s.queue_p50_ms, s.queue_p99_ms) == (280.0, 980.0)
    assert s.bucket_ms == 100
    assert len(s.series) == 16  # buckets 0.0 … 1.5 s
    first, at_1500 = s.series[0], s.series[15]
    assert (first.start_s, first.sent_per_s, first.decided_per_s, first.accepted_per_s) == (0.0, 20.0, 0.0, 0.0)
    assert first.p50_ms is None
    assert s.series[1].decided_per_s == 10.0 and s.series[1].p99_ms == 100.0
    assert s.series[10].sent_per_s == 20.0
    assert (at_1500.start_s, at_1500.accepted_per_s, at_1500.p50_ms) == (1.5, 10.0, 1000.0)


def test_the_longest_stall_is_the_longest_time_requests_waited_with_no_decision_made() -> None:
    # decided at 10 and 20, then nothing while the request sent at 30 waits until 900
    assert metrics.max_stall_ms([(0, 10), (5, 20), (30, 900), (40, 905)]) == 870.0
    # an idle gap with nobody waiting is no stall: from the send at 500 to its decision at 510
    assert metrics.max_stall_ms([(0, 10), (500, 510)]) == 10.0
    # the first decision after the first send counts too, whatever order the decisions come in
    assert metrics.max_stall_ms([(40, 300), (0, 50)]) == 250.0
    assert metrics.max_stall_ms([]) == 0.0


def test_the_summary_carries_the_longest_stall_of_its_decided_requests() -> None:
    start = 1_000_000
    first_sent = {"a": start, "b": start + 10, "c": start + 20}
    decided = [_decided("a", "accepted", start + 5), _decided("b", "sold_out", start + 15)]
    s = metrics.summarize(list(first_sent.values()), first_sent, [*decided, _decided("c", "sold_out", start + 700)])
    assert s.max_stall_ms == 680.0  # "c" waited from its send at 20 until 700 with nothing decided after 15


def test_series_buckets_widen_for_long_runs_and_latency_is_never_negative() -> None:
    assert metrics.bucket_ms_for(20_000) == 100
    assert metrics.bucket_ms_for(45_000) == 250
    assert metrics.bucket_ms_for(120_000) == 1000
    start = 5_000
    s = metrics.summarize([start, start + 90_000], {"a": start, "b": start + 90_000}, [_decided("a", "ended", 4_990)])
    assert s.bucket_ms == 1000 and len(s.series) == 91
    assert s.p50_ms == 0.0
    assert s.accepted_per_s == 0.0


def test_report_takes_the_headline_figures_from_the_summary_and_the_checker() -> None:
    rows = tuple(rules.Violation(name, 0) for name in rules.DESCRIPTIONS)
    bad = tuple(
        rules.Violation(v.name, 3, ("u1",)) if v.name in ("per_user_limit", "fairness_inversions") else v for v in rows
    )
    checked = rules.Report("sale1", 0, 150, 150, 0, 0, True, True, rows)
    log = sender.SendLog(send_times=[1000, 1010], first_sent={"a": 1000, "b": 1010}, failed={"b": "UNAVAILABLE: x"})
    log.unary.append(sender.Unary("a", 1000, 40.0, "accepted"))
    summary = metrics.summarize(log.send_times, log.first_sent, [_decided("a", "accepted", 1100)])
    good = report.build({"users": 2}, summary, checked, log, orders_settled=True)
    assert good["ok"] and report.passed(good)
    assert (good["sold"], good["stock"], good["oversold"], good["undersell"]) == (150, 150, 0, 0)
    assert (good["p50_ms"], good["decided"], good["send_errors"], good["undecided_taken"]) == (100.0, 1, 1, 0)
    assert good["max_stall_ms"] == 100.0  # "a" waited from 1000 to its decision at 1100 ("b" failed to send)
    assert good["unary"] == {"calls": 1, "answered_decided": 1, "p50_ms": 40.0, "p99_ms": 40.0}
    assert set(good["invariants"]) == set(rules.DESCRIPTIONS)
    for key in report.HEADLINE:
        assert key in good
    broken = report.build(
        {}, summary, rules.Report("sale1", 0, 150, 150, 0, 0, True, True, bad), log, orders_settled=True
    )
    assert (broken["per_user_violations"], broken["fairness_inversions"], broken["violations"]) == (3, 3, 6)
    assert not broken["ok"] and not report.passed(broken)
    lost = report.build({}, summary, checked, sender.SendLog([1000], {"a": 1000, "c": 1000}), orders_settled=True)
    assert lost["undecided_taken"] == 1 and not report.passed(lost)
