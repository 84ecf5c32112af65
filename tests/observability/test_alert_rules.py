"""The Prometheus alert rules: valid for promtool, their promtool unit tests pass, and every rule carries a
severity, a summary, a description and a runbook_url to a heading of docs/runbooks.md, uses only labels the code
exports, and is tested both firing and not firing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.observability

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "observability/prometheus/rules").glob("*.yaml"))
TESTS = sorted((ROOT / "observability/prometheus/tests").glob("*.yaml"))
RUNBOOKS = ROOT / "docs/runbooks.md"
RUNBOOK_URL = "https://github.com/flashsale/flashsale/blob/main/docs/runbooks.md#"
SEVERITIES = {"critical", "warning"}
LABELS = {  # the labels of the metrics the code exports, Prometheus' job and instance, and histograms' le
    *("sale", "outcome", "group", "topic", "partition", "channel", "result", "state", "status", "method", "handler"),
    *("grpc_service", "grpc_method", "grpc_type", "grpc_code", "job", "instance", "le"),
}


def _promtool() -> str:
    found = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(found).is_file():
        pytest.fail("promtool is not installed: run scripts/observability.sh build")
    return found


def _run(*args: str) -> None:
    done = subprocess.run([_promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path} is not a YAML mapping"
    return doc


def _rules() -> list[dict[str, Any]]:
    return [rule for path in RULES for group in _load(path)["groups"] for rule in group["rules"]]


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _runbook_anchors() -> set[str]:
    anchors: set[str] = set()
    fenced = False
    for line in RUNBOOKS.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"#{1,6} (.+)", line)):
            anchor, n = _anchor(heading.group(1)), 1
            while anchor in anchors:  # GitHub numbers repeated headings
                anchor, n = f"{_anchor(heading.group(1))}-{n}", n + 1
            anchors.add(anchor)
    return anchors


def test_the_rule_files_are_valid() -> None:
    assert RULES, "no rule files under observability/prometheus/rules"
    _run("check", "rules", *(str(p.relative_to(ROOT)) for p in RULES))


def test_the_promtool_unit_tests_of_the_rules_pass() -> None:
    assert TESTS, "no rule tests under observability/prometheus/tests"
    _run("test", "rules", *(str(p.relative_to(ROOT)) for p in TESTS))


def test_every_rule_has_a_severity_a_summary_a_description_and_a_runbook_heading() -> None:
    anchors = _runbook_anchors()
    problems = []
    for rule in _rules():
        name = rule.get("alert")
        if not (isinstance(name, str) and re.fullmatch(r"Flashsale(?:[A-Z][a-z0-9]*)+", name)):
            problems.append(f"{rule}: not an alert named FlashsaleUpperCamelCase")
            continue
        labels, notes = rule.get("labels") or {}, rule.get("annotations") or {}
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {labels.get('severity')!r} is not one of {sorted(SEVERITIES)}")
        problems += [f"{name}: no {key} annotation" for key in ("summary", "description") if not notes.get(key)]
        url = notes.get("runbook_url", "")
        if not url.startswith(RUNBOOK_URL):
            problems.append(f"{name}: runbook_url {url!r} does not start with {RUNBOOK_URL}")
        elif url.removeprefix(RUNBOOK_URL) not in anchors:
            problems.append(f"{name}: no heading of docs/runbooks.md has the anchor {url.removeprefix(RUNBOOK_URL)!r}")
    assert not problems, "\n".join(problems)


def test_every_rule_groups_and_matches_only_on_exported_labels() -> None:
    clause = re.compile(r"\b(?:by|on|without|ignoring|group_left|group_right)\s*\(([^)]*)\)")
    unknown = [
        f"{rule['alert']}: {label}"
        for rule in _rules()
        for labels in clause.findall(rule["expr"])
        for label in re.split(r"\s*,\s*", labels.strip())
        if label and label not in LABELS
    ]
    assert not unknown, f"labels no metric has: {unknown}"


def test_every_rule_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    without_annotations = []
    for path in TESTS:
        for case in _load(path)["tests"]:
            for check in case.get("alert_rule_test") or []:
                alerts = check.get("exp_alerts") or []
                (firing if alerts else silent).add(check["alertname"])
                without_annotations += [check["alertname"] for alert in alerts if "exp_annotations" not in alert]
    names = {rule["alert"] for rule in _rules()}
    assert not names - firing, f"never tested firing: {sorted(names - firing)}"
    assert not names - silent, f"never tested not firing (exp_alerts: []): {sorted(names - silent)}"
    assert not (firing | silent) - names, f"tests of no rule: {sorted((firing | silent) - names)}"
    assert not without_annotations, f"firing cases without exp_annotations: {sorted(set(without_annotations))}"
