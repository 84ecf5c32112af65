"""Every process has the same entry point: a bad setting ends it with exit status 2 and a message naming the
variable, before it touches Kafka, a database or the Kubernetes API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("process", ["user", "product", "sales", "order", "notification"])
def test_a_kafka_login_without_its_user_exits_2_naming_it(process: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flashsale_tools.cli", "run", process],
        env={
            "FLASHSALE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "FLASHSALE_KAFKA_SASL_PASSWORD": "pw",
            "FLASHSALE_JWT_SECRET": "a-secret-long-enough-for-the-user-service",
            "FLASHSALE_SQLITE_DIR": str(tmp_path),
            "PATH": "/usr/bin:/bin",
            **_python_path(),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"flashsale {process}: configuration error: FLASHSALE_KAFKA_SASL_USERNAME" in result.stderr
