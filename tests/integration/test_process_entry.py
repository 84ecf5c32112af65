"""Every process has the same entry point: a bad setting ends it with exit status 2 and a message naming the
variable, before it touches Kafka, a database or the Kubernetes API."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flashsale_tools import cli

pytestmark = pytest.mark.integration


def _python_path() -> dict[str, str]:
    """PYTHONPATH when the checkout is not installed (a worktree run against another checkout's venv)."""
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


@pytest.mark.parametrize("process", cli.PROCESSES)
def test_a_bad_setting_exits_2_naming_the_variable(process: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flashsale_tools.cli", "run", process],
        env={"FLASHSALE_LOG_LEVEL": "LOUD", "PATH": "/usr/bin:/bin", **_python_path()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"flashsale {process}: configuration error: FLASHSALE_LOG_LEVEL" in result.stderr
