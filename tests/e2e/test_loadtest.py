"""`flashsale loadtest` starts its own platform, sends a spike, checks the sale and writes the JSON and the PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_loadtest_sells_exactly_the_stock_without_violations(tmp_path: Path) -> None:
    report_path, chart_path = tmp_path / "loadtest.json", tmp_path / "loadtest.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flashsale_tools.loadtest",
            "--users",
            "600",
            "--stock",
            "150",
            "--limit",
            "2",
            "--partitions",
            "4",
            "--retry-fraction",
            "0.1",
            "--unary-fraction",
            "0.05",
            "--data-dir",
            str(tmp_path / "platform"),
            "--report",
            str(report_path),
            "--chart",
            str(chart_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["ok"] is True
    assert report["violations"] == 0
    assert all(count == 0 for count in report["invariants"].values()), report["invariants"]
    assert len(report["invariants"]) == len(report["checker"]["violations"]) >= 10
    assert all(row["applied"] for row in report["checker"]["violations"])  # orders and undersell were judged
    assert report["orders_settled"] is True
    assert report["sold"] == report["stock"] == 150  # demand (600 shoppers asking 1..2 units each) exceeds the stock
    assert report["oversold"] == report["per_user_violations"] == report["undersell"] == 0
    assert report["fairness_inversions"] == 0
    assert report["undecided"] == 0 and report["send_errors"] == 0
    assert report["decided"] == report["requests"] < report["sends"]  # retries reuse request ids
    assert report["outcomes"]["accepted"] == report["accepted"] >= 75  # 150 units, at most 2 per request
    assert report["outcomes"]["sold_out"] > 0
    assert report["unary"]["calls"] > 0 and report["unary"]["answered_decided"] == report["unary"]["calls"]
    assert report["offered_per_s"] > 0 and report["decided_per_s"] > 0 and report["accepted_per_s"] > 0
    assert 0 < report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"]
    assert round(sum(b["accepted_per_s"] for b in report["series"]) * report["bucket_ms"] / 1000) == report["accepted"]
    assert chart_path.read_bytes()[:8] == PNG_MAGIC
    assert chart_path.stat().st_size > 10_000
