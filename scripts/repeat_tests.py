#!/usr/bin/env python3
"""Run a group of tests N times in a row and report the failures by test.

    scripts/repeat_tests.py --runs 20 -- -m faults          (what `make faults-repeat N=20` runs)

Each run gets a pytest temporary folder of its own under reports/repeat/<started>/run-KK, so the logs of every
process a failing run started (sales workers, the broker, PostgreSQL) are kept; the folders of passing runs are
removed unless --keep. The summary (runs, failures per test, wall time per run) is printed and written to
reports/repeat/<started>/summary.json. Exits 1 when any run failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _failed_tests(junit: Path) -> list[str]:
    """The node ids of the tests that failed or errored in one junit report."""
    if not junit.exists():
        return ["<no report: pytest did not finish>"]
    failed = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    return failed


def main() -> int:
    """Run the tests --runs times; print and write the summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="how many times to run the tests")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders of passing runs too")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "repeat", help="where runs are kept")
    parser.add_argument("pytest_args", nargs="*", help="arguments of pytest (after --), e.g. -m faults")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    folder = args.out / time.strftime("%Y%m%dT%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    failures: collections.Counter[str] = collections.Counter()
    runs: list[dict[str, object]] = []
    seconds_each: list[float] = []
    for index in range(1, args.runs + 1):
        run = folder / f"run-{index:02d}"
        run.mkdir()
        junit = run / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={run / 'tmp'}",
            f"--junitxml={junit}",
            *args.pytest_args,
        ]
        started = time.monotonic()
        with (folder / f"run-{index:02d}.out").open("wb") as out:
            code = subprocess.call(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        seconds = round(time.monotonic() - started, 1)
        failed = _failed_tests(junit) if code else []
        if code and not failed:
            failed = [f"<pytest exited {code}>"]
        failures.update(failed)
        seconds_each.append(seconds)
        runs.append({"run": index, "exit": code, "seconds": seconds, "failed": failed})
        print(f"run {index:2d}/{args.runs}: {'passed' if not failed else 'FAILED ' + ', '.join(failed)} ({seconds} s)")
        sys.stdout.flush()
        if not failed and not args.keep:
            shutil.rmtree(run / "tmp", ignore_errors=True)
    passed = sum(1 for r in runs if not r["failed"])
    times = sorted(seconds_each)
    summary = {
        "pytest_args": args.pytest_args,
        "runs": args.runs,
        "passed": passed,
        "failures_by_test": dict(failures.most_common()),
        "median_seconds": times[len(times) // 2],
        "total_seconds": round(sum(times), 1),
        "each": runs,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    median, total = summary["median_seconds"], summary["total_seconds"]
    print(f"\n{passed} of {args.runs} runs passed; median {median} s, total {total} s")
    for test, count in failures.most_common():
        print(f"  {count:2d} x {test}")
    print(f"runs kept in {folder}")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
