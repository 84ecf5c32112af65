"""The GitHub Actions workflows: actionlint and zizmor find nothing, and every action is pinned by a full commit SHA
with its version in a comment."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.charts

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
USES = re.compile(r"^\s*-?\s*uses:\s*(\S+)(.*)$", re.MULTILINE)
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^\s+#\s*v\d+(\.\d+)*\s*$")


def unpinned(text: str) -> list[str]:
    """The `uses:` of a workflow that are not owner/repo@<40-hex SHA> # vX.Y.Z (local actions excepted)."""
    return [
        f"{ref}{rest}"
        for ref, rest in USES.findall(text)
        if not ref.startswith("./") and not (PINNED.match(ref) and VERSION_COMMENT.match(rest))
    ]


def test_the_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "charts.yml", "e2e-kind.yml", "release.yml", "deploy.yml"}


def test_actionlint_finds_nothing(chart_tools: dict[str, Path]) -> None:
    done = subprocess.run(
        [str(chart_tools["ACTIONLINT"]), "-no-color", *map(str, WORKFLOWS)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing() -> None:
    zizmor = shutil.which("zizmor", path=str(Path(sys.executable).parent))
    assert zizmor is not None, "zizmor is a dev dependency (make install)"
    done = subprocess.run(
        [zizmor, "--offline", "--no-progress", str(ROOT / ".github" / "workflows")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_a_full_sha_with_its_version(workflow: Path) -> None:
    assert not unpinned(workflow.read_text())


def test_the_pin_check_refuses_a_tag_a_short_sha_and_a_missing_version() -> None:
    refused = """
      - uses: actions/checkout@v4
      - uses: actions/cache@55cc834
      - uses: actions/setup-go@b7ad1dad31e06c5925ef5d2fc7ad053ef454303e
      - uses: ./.github/actions/local
      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0
    """
    assert unpinned(refused) == [
        "actions/checkout@v4",
        "actions/cache@55cc834",
        "actions/setup-go@b7ad1dad31e06c5925ef5d2fc7ad053ef454303e",
    ]
