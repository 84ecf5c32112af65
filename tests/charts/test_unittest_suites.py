"""The charts' helm-unittest suites (charts/<chart>/tests/*_test.yaml) run by `helm unittest`, the plugin built from
its Go module by scripts/charts.sh: rendering per service, toggles off and on, the schema's refusals."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.charts

ROOT = Path(__file__).resolve().parents[2]
_TOTALS = re.compile(r"^Tests:\s+(?:(?P<failed>\d+) failed, )?(?P<passed>\d+) passed, (?P<total>\d+) total", re.M)


@pytest.mark.parametrize("chart", ["flashsale", "flashsale-operator"])
def test_the_charts_unit_suites_pass(helm: Path, chart_tools: dict[str, Path], chart: str) -> None:
    suites = sorted((ROOT / "charts" / chart / "tests").glob("*_test.yaml"))
    assert suites, f"no helm-unittest suite in charts/{chart}/tests"
    done = subprocess.run(
        [str(helm), "unittest", str(ROOT / "charts" / chart)],
        env={**os.environ, "HELM_PLUGINS": str(chart_tools["HELM_PLUGINS"])},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    totals = _TOTALS.search(done.stdout)
    assert totals is not None, done.stdout
    print(f"charts/{chart}: {totals['passed']} of {totals['total']} unit tests passed in {len(suites)} suites")
    assert int(totals["passed"]) == int(totals["total"]) > 0
