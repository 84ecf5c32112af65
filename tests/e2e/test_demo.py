"""`flashsale demo` runs a whole sale on a fresh platform, on SQLite and on PostgreSQL, and reports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_demo_sells_within_stock_and_writes_the_report(tmp_path: Path, backend: str) -> None:
    report_path = tmp_path / "demo.json"
    storage = ["--postgres"] if backend == "postgres" else []
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flashsale_tools.cli",
            "demo",
            "--shoppers",
            "40",
            "--stock",
            "10",
            "--payment-window",
            "3",
            "--data-dir",
            str(tmp_path / "platform"),
            "--report",
            str(report_path),
            *storage,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    for key in ("stock", "sold", "paid", "expired", "rejected", "oversold", "per_user_violations", "p50_ms", "p99_ms"):
        assert key in report
    assert report["oversold"] == 0
    assert report["per_user_violations"] == 0
    assert report["sold"] == report["stock"] == 10  # 40 shoppers for 10 units: it sells out
    assert report["rejected"] == 30
    assert report["paid"] + report["expired"] == report["sold"]
    assert report["p99_ms"] >= report["p50_ms"] > 0
    assert report["checker"]["ok"], [v for v in report["checker"]["violations"] if v["count"]]
    assert report["checker"]["orders_settled"] and report["checker"]["sale_finished"]
