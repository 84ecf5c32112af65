"""The benchmark report arithmetic: ratios, targets, the JSON keys, exit status, and the stock checks."""

from __future__ import annotations

import pytest

from flashsale_tools.bench import core, redis_lua, report


def _result(rate: float, p99: float | None = 10.0, oversold: int = 0) -> core.ModeResult:
    return core.ModeResult(rate_per_s=rate, p99_ms=p99, oversold=oversold, attempts=100)


def test_baselines_only_leave_pipeline_keys_out_and_targets_unmeasured() -> None:
    results = {"a": _result(2000), "b": _result(4000), "d": _result(4500, 60.0), "g": _result(100_000, 1.0)}
    doc = report.build_report(results)
    assert doc["naive_for_update_per_s"] == 2000
    assert doc["conditional_update_per_s"] == 4000
    assert doc["grpc_echo_per_s"] == 4500
    assert doc["redis_lua_per_s"] == 100_000
    for key in ("pipeline_decisions_per_s", "purchase_unary_per_s", "batched_ingress_per_s", "p99_ms"):
        assert key not in doc  # never a made-up number; d's p99 is not the purchase path's
    assert doc["oversold"] == 0
    assert doc["ratios"] == {}
    assert doc["targets"]["c/a"] == {"op": ">=", "threshold": 30, "value": None, "met": None}
    assert doc["targets"]["oversold"]["met"] is True
    assert [spec.letter for spec in report.missing(results)] == ["c", "e", "f", "m", "n", "h", "i"]
    assert "gateway_p99_ms_at_1000" not in doc and doc["targets"]["gateway_fairness_inversions"]["met"] is None
    assert doc["targets"]["m on/off"]["met"] is None
    assert report.exit_code(results, {}) == 0


def test_every_mode_gives_ratios_and_targets() -> None:
    results = {
        "a": _result(2000),
        "b": _result(4000),
        "c": _result(120_000, 80.0),
        "d": _result(5000),
        "e": _result(3000, 9000.0),
        "f": _result(150_000, 40.0),
        "g": _result(100_000),
        "m": core.ModeResult(
            118_000, None, 0, 100, notes={"without_metrics_per_s": 120_000, "on/off": 0.9833, "cpu on/off": 1.02}
        ),
        "n": core.ModeResult(
            140_000, None, 0, 100, notes={"without_metrics_per_s": 150_000, "on/off": 0.9333, "cpu on/off": 1.05}
        ),
        "h": core.ModeResult(
            1200, 40.0, 0, 100, notes={"p99_ms_at_1000": 80.5, "fairness_inversions": 3, "per_s_400": 1000}
        ),
        "i": _result(3000, 20.0),
    }
    assert report.ratios(results) == pytest.approx({"c/a": 60.0, "c/b": 30.0, "c/g": 1.2, "e/d": 0.6, "h/i": 0.4})
    doc = report.build_report(results)
    assert doc["p99_ms"] == 40.0  # the batch ingress's open loop comes first
    targets = doc["targets"]
    assert targets["c/a"]["met"] is True
    assert targets["c/b"]["met"] is True
    assert targets["c/g"]["met"] is True
    assert targets["e/d"] == {"op": ">=", "threshold": 0.8, "value": 0.6, "met": False}
    assert targets["batched_ingress_per_s"]["met"] is True
    assert targets["p99_ms"]["met"] is True
    assert targets["m on/off"] == {"op": ">=", "threshold": 0.97, "value": 0.983, "met": True}
    assert targets["n on/off"] == {"op": ">=", "threshold": 0.97, "value": 0.933, "met": False}
    assert targets["m cpu on/off"] == {"op": "<=", "threshold": 1.03, "value": 1.02, "met": True}
    assert targets["n cpu on/off"] == {"op": "<=", "threshold": 1.03, "value": 1.05, "met": False}
    assert targets["h/i"] == {"op": ">=", "threshold": 0.5, "value": 0.4, "met": False}
    assert targets["gateway_p99_ms_at_1000"] == {"op": "<=", "threshold": 100, "value": 80.5, "met": True}
    assert targets["gateway_fairness_inversions"] == {"op": "==", "threshold": 0, "value": 3, "met": False}
    assert (doc["gateway_purchase_per_s"], doc["bare_http_per_s"]) == (1200, 3000)
    assert (doc["gateway_p99_ms_at_1000"], doc["gateway_fairness_inversions"]) == (80.5, 3)
    assert set(doc) == {spec.key for spec in report.SPECS} | {"p99_ms", "oversold", "ratios", "targets"} | {
        "gateway_p99_ms_at_1000",
        "gateway_fairness_inversions",
    }


def test_a_ratio_needs_both_sides() -> None:
    assert report.ratios({"c": _result(10_000), "b": _result(1000)}) == {"c/b": 10.0}
    assert report.ratios({"e": _result(10_000)}) == {}


def test_p99_falls_back_to_unary_then_the_pipeline_when_the_batch_ingress_is_missing() -> None:
    assert report.p99_ms({"e": _result(1, 900.0), "c": _result(1, 30.0), "f": _result(1, 70.0)}) == 70.0
    assert report.p99_ms({"e": _result(1, 900.0), "c": _result(1, 30.0)}) == 900.0
    assert report.p99_ms({"c": _result(1, 30.0), "f": _result(1, None)}) == 30.0
    assert report.p99_ms({"a": _result(1, 5.0)}) is None


def test_an_oversold_mode_fails_the_run_and_shows_in_the_report() -> None:
    results = {"a": _result(2000), "g": _result(90_000, oversold=3)}
    doc = report.build_report(results)
    assert doc["oversold"] == 3
    assert doc["targets"]["oversold"]["met"] is False
    assert report.exit_code(results, {}) == 1


def test_a_failed_mode_fails_the_run_without_a_number() -> None:
    results = {"a": _result(2000)}
    assert report.exit_code(results, {"b": "BenchError: boom"}) == 1
    assert "conditional_update_per_s" not in report.build_report(results)


def test_nothing_measured_writes_no_numbers() -> None:
    doc = report.build_report({})
    assert set(doc) == {"ratios", "targets"}
    assert all(t["value"] is None and t["met"] is None for t in doc["targets"].values())


def test_unknown_mode_letter_is_refused() -> None:
    with pytest.raises(ValueError, match="z"):
        report.build_report({"z": _result(1)})


def test_check_counts_accepts_a_correct_sellout() -> None:
    workload = core.Workload(stock=50, users=10, purchases=200)
    assert core.check_counts(workload, accepted=50, remaining=0) == 0


def test_check_counts_reports_an_oversell() -> None:
    workload = core.Workload(stock=50, users=10, purchases=200)
    assert core.check_counts(workload, accepted=53, remaining=-3) == 3


def test_check_counts_refuses_a_lost_update_and_an_undersell() -> None:
    workload = core.Workload(stock=50, users=10, purchases=200)
    with pytest.raises(core.BenchError, match="counter"):
        core.check_counts(workload, accepted=50, remaining=2)
    with pytest.raises(core.BenchError, match="unsold"):
        core.check_counts(workload, accepted=48, remaining=2)


def test_workload_validates_and_assigns_users() -> None:
    with pytest.raises(ValueError, match="stock"):
        core.Workload(stock=0)
    with pytest.raises(ValueError, match="users"):
        core.Workload(users=10, purchases=5)
    workload = core.Workload(stock=5, users=3, purchases=9)
    assert {workload.user_of(i) for i in range(9)} == {workload.user_of(0), workload.user_of(1), workload.user_of(2)}
    assert workload.expected_accepted == 5


def test_percentile_nearest_rank() -> None:
    assert core.percentile([], 99) is None
    assert core.percentile([float(v) for v in range(1, 101)], 99) == 99.0


def test_redis_benchmark_csv_is_parsed() -> None:
    output = (
        '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",'
        '"max_latency_ms"\n"EVALSHA abc 1 stock 1","91533.18","0.303","0.064","0.271","0.575","0.863","4.703"\n'
    )
    line = redis_lua.parse_csv(output)
    assert line.rate_per_s == 91533.18
    assert line.p99_ms == 0.863
    with pytest.raises(core.BenchError):
        redis_lua.parse_csv("ERR unknown command\n")


def test_redis_workload_is_scaled_with_the_same_mix() -> None:
    workload = core.Workload(stock=20_000, users=20_000, purchases=40_000, redis_ceiling_requests=400_000)
    big = redis_lua.scaled(workload)
    assert (big.stock, big.purchases) == (200_000, 400_000)
    assert redis_lua.scaled(core.Workload(stock=5, users=5, purchases=10, redis_ceiling_requests=1)).purchases == 10
