"""The operator's settings come from FLASHSALE_* variables; a bad value stops it naming the variable."""

import os
import subprocess
import sys

import pytest

from flashsale.common import settings as common_settings
from flashsale_operator import settings

pytestmark = pytest.mark.integration


def _python_path() -> dict[str, str]:
    """PYTHONPATH when the checkout is not installed (a worktree run against another checkout's venv)."""
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLASHSALE_OPERATOR_NAMESPACE", "FLASHSALE_STRIMZI_CLUSTER", "FLASHSALE_SALES_DEPLOYMENT"):
        monkeypatch.delenv(name, raising=False)
    loaded = settings.load_operator_settings()
    assert (loaded.operator_namespace, loaded.strimzi_cluster, loaded.sales_deployment) == (
        "",
        "flashsale",
        "flashsale-sales",
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [("FLASHSALE_OPERATOR_POLL_S", "0"), ("FLASHSALE_TOPIC_REPLICAS", "-1"), ("FLASHSALE_STRIMZI_CLUSTER", "")],
)
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(common_settings.ConfigError, match=variable):
        settings.load_operator_settings()


def test_the_operator_process_stops_naming_the_bad_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flashsale_tools.cli", "run", "operator"],
        env={"FLASHSALE_OPERATOR_POLL_S": "soon", "PATH": "/usr/bin:/bin", **_python_path()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "FLASHSALE_OPERATOR_POLL_S" in result.stderr
