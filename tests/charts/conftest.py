"""Fixtures for the chart tests: Helm built from its Go module by scripts/charts.sh (once, cached by version)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 1800  # a cold build downloads Helm's modules and compiles for minutes


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary."""
    script = ROOT / "scripts" / "charts.sh"
    subprocess.run([script, "build"], cwd=ROOT, check=True, timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    paths = dict(
        line.split("=", 1)
        for line in subprocess.run(
            [script, "paths"], cwd=ROOT, check=True, capture_output=True, text=True, timeout=60
        ).stdout.splitlines()
    )
    return Path(paths["HELM"])
