"""Fixtures for the chart and workflow tests: Helm and actionlint built from their Go modules by scripts/charts.sh
(once, cached by version)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 1800  # a cold build downloads Helm's modules and compiles for minutes


@pytest.fixture(scope="session")
def chart_tools() -> dict[str, Path]:
    """The tools scripts/charts.sh builds (once, cached), by name: HELM, ACTIONLINT."""
    script = ROOT / "scripts" / "charts.sh"
    subprocess.run([script, "build"], cwd=ROOT, check=True, timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    printed = subprocess.run([script, "paths"], cwd=ROOT, check=True, capture_output=True, text=True, timeout=60)
    return {name: Path(path) for name, path in (line.split("=", 1) for line in printed.stdout.splitlines())}


@pytest.fixture(scope="session")
def helm(chart_tools: dict[str, Path]) -> Path:
    """The helm binary."""
    return chart_tools["HELM"]
