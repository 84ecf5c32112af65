"""Pure report arithmetic: which modes exist, the ratios between them, the targets, and reports/bench.json.

Results are keyed by the mode's letter in the issue (a … g). A mode that was not measured has no key in
the JSON (never a made-up number); its ratios and targets show as not measured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flashsale_tools.bench import core


@dataclasses.dataclass(frozen=True)
class ModeSpec:
    """A mode of the issue: its letter, its key in reports/bench.json and a title."""

    letter: str
    key: str
    title: str


SPECS = (
    ModeSpec("a", "naive_for_update_per_s", "naive: BEGIN; SELECT … FOR UPDATE; UPDATE; COMMIT (PostgreSQL)"),
    ModeSpec("b", "conditional_update_per_s", "conditional UPDATE … WHERE remaining >= q (PostgreSQL)"),
    ModeSpec("c", "pipeline_decisions_per_s", "Flashsale pipeline decisions"),
    ModeSpec("d", "grpc_echo_per_s", "bare grpc.aio unary echo"),
    ModeSpec("e", "purchase_unary_per_s", "unary Purchase"),
    ModeSpec("f", "batched_ingress_per_s", "batched ingress"),
    ModeSpec("g", "redis_lua_per_s", "Redis Lua check-and-decrement (redis-benchmark, not durable)"),
    ModeSpec("m", "pipeline_with_metrics_per_s", "(c) with metrics recorded and scraped, against without"),
    ModeSpec("n", "batched_ingress_with_metrics_per_s", "(f) with metrics recorded and scraped, against without"),
    ModeSpec("h", "gateway_purchase_per_s", "purchases through the REST gateway (64 in flight; 400 in the notes)"),
    ModeSpec("i", "bare_http_per_s", "bare FastAPI + uvicorn POST endpoint, same shape (64 in flight; 400 in notes)"),
)
BY_LETTER = {spec.letter: spec for spec in SPECS}

RATIOS = (("c", "a"), ("c", "b"), ("c", "g"), ("e", "d"), ("h", "i"))
"""(numerator, denominator) letters of the ratios the report shows."""

P99_FROM = ("f", "e", "c")
"""Whose p99 is the report's p99_ms: the first of these modes that was measured with a latency."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A goal of the issue: `value op threshold` where value is a ratio, a rate, p99_ms or oversold."""

    name: str
    op: str  # ">=", "<=" or "=="
    threshold: float

    def met(self, value: float) -> bool:
        """Whether a measured value meets the target."""
        if self.op == ">=":
            return value >= self.threshold
        if self.op == "<=":
            return value <= self.threshold
        return value == self.threshold


TARGETS = (
    Target("c/a", ">=", 30),
    Target("c/b", ">=", 20),
    Target("e/d", ">=", 0.8),
    Target("batched_ingress_per_s", ">=", 100_000),
    Target("p99_ms", "<=", 50),
    Target("c/g", ">=", 1),
    Target("oversold", "==", 0),
    Target("m on/off", ">=", 0.97),
    Target("n on/off", ">=", 0.97),
    Target("m cpu on/off", "<=", 1.03),
    Target("n cpu on/off", "<=", 1.03),
    Target("h/i", ">=", 0.5),
    Target("gateway_p99_ms_at_1000", "<=", 100),
    Target("gateway_fairness_inversions", "==", 0),
    Target("pipeline_first_decision_ms", "<=", 50),
)
COSTS = ("m", "n")
"""Modes comparing a run with metrics to one without: their targets are the ratios in their notes (rate, CPU)."""

NOTED = {
    "gateway_p99_ms_at_1000": ("h", "p99_ms_at_1000"),
    "gateway_fairness_inversions": ("h", "fairness_inversions"),
    "pipeline_first_decision_ms": ("c", "first_decision_ms"),  # a warm worker's first record to its first round
}
"""Report keys taken from a mode's notes: key → (letter, note)."""


def noted(results: Mapping[str, core.ModeResult]) -> dict[str, float]:
    """The NOTED figures of the modes measured (a figure the mode could not measure is left out)."""
    out: dict[str, float] = {}
    for key, (letter, note) in NOTED.items():
        value = results[letter].notes.get(note) if letter in results else None
        if isinstance(value, int | float):
            out[key] = value
    return out


Results = Mapping[str, core.ModeResult]


def ratio_name(numerator: str, denominator: str) -> str:
    """The name of a ratio, e.g. "c/a"."""
    return f"{numerator}/{denominator}"


def ratios(results: Results) -> dict[str, float]:
    """Every ratio of RATIOS whose two modes were measured (and whose denominator is not zero)."""
    out: dict[str, float] = {}
    for top, bottom in RATIOS:
        if top in results and bottom in results and results[bottom].rate_per_s > 0:
            out[ratio_name(top, bottom)] = results[top].rate_per_s / results[bottom].rate_per_s
    return out


def p99_ms(results: Results) -> float | None:
    """The purchase path's p99 latency: from the first mode of P99_FROM measured with one, else None."""
    for letter in P99_FROM:
        result = results.get(letter)
        if result is not None and result.p99_ms is not None:
            return result.p99_ms
    return None


def total_oversold(results: Results) -> int | None:
    """Units oversold summed over the measured modes (None when nothing was measured)."""
    if not results:
        return None
    return sum(result.oversold for result in results.values())


def target_values(results: Results) -> dict[str, float | None]:
    """The measured value of each target, None when its modes were not measured."""
    measured: dict[str, float] = dict(ratios(results))
    for letter, result in results.items():
        measured[BY_LETTER[letter].key] = result.rate_per_s
    p99 = p99_ms(results)
    if p99 is not None:
        measured["p99_ms"] = p99
    oversold = total_oversold(results)
    if oversold is not None:
        measured["oversold"] = oversold
    measured.update(noted(results))
    for letter in COSTS:
        for note in ("on/off", "cpu on/off"):
            ratio = results[letter].notes.get(note) if letter in results else None
            if isinstance(ratio, int | float):
                measured[f"{letter} {note}"] = float(ratio)
    return {target.name: measured.get(target.name) for target in TARGETS}


def targets(results: Results) -> dict[str, dict[str, Any]]:
    """Each target with its threshold, measured value (None if not measured) and met (None if not measured)."""
    values = target_values(results)
    out: dict[str, dict[str, Any]] = {}
    for target in TARGETS:
        value = values[target.name]
        out[target.name] = {
            "op": target.op,
            "threshold": target.threshold,
            "value": None if value is None else round(value, 3),
            "met": None if value is None else target.met(value),
        }
    return out


def missing(results: Results) -> list[ModeSpec]:
    """The modes with no result (not registered, not selected, or failed)."""
    return [spec for spec in SPECS if spec.letter not in results]


def build_report(results: Results) -> dict[str, Any]:
    """The content of reports/bench.json: only measured rates, p99_ms and oversold when known, ratios, targets."""
    unknown = sorted(set(results) - set(BY_LETTER))
    if unknown:
        raise ValueError(f"unknown mode letters: {', '.join(unknown)}")
    doc: dict[str, Any] = {}
    for spec in SPECS:
        if spec.letter in results:
            doc[spec.key] = round(results[spec.letter].rate_per_s, 1)
    p99 = p99_ms(results)
    if p99 is not None:
        doc["p99_ms"] = round(p99, 3)
    oversold = total_oversold(results)
    if oversold is not None:
        doc["oversold"] = oversold
    doc.update(noted(results))
    doc["ratios"] = {name: round(value, 3) for name, value in ratios(results).items()}
    doc["targets"] = targets(results)
    return doc


def exit_code(results: Results, failures: Mapping[str, str]) -> int:
    """1 when a registered mode failed or oversold, else 0 (modes not registered do not fail the run)."""
    if failures or any(result.oversold > 0 for result in results.values()):
        return 1
    return 0
