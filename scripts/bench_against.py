#!/usr/bin/env python3
"""Benchmark the working tree against another commit, back to back on this machine.

    scripts/bench_against.py --rev HEAD~3 --rounds 3 -- --only c,f

The commit is checked out once into a git worktree (under ~/.cache/flashsale/worktrees); then `python -m
flashsale_tools.bench` runs alternately on that commit and on the working tree, `--rounds` times each, with the same
arguments. Each figure of every run is printed side by side, with the medians and the ratio of the working tree's
median to the commit's. The runs are written to reports/bench-against.json. Exits 1 when a bench run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FLASHSALE_CACHE_DIR", Path.home() / ".cache" / "flashsale"))
FIGURES = ("_per_s", "p99_ms")  # rates (key suffix) and the report's p99


def _worktree(rev: str) -> tuple[str, Path]:
    """The full commit id of `rev` and a worktree of it (made once, reused)."""
    sha = subprocess.check_output(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, text=True).strip()
    tree = CACHE / "worktrees" / sha
    if not (tree / "services").is_dir():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.check_call(["git", "worktree", "add", "--detach", "--force", str(tree), sha], cwd=ROOT)
    return sha, tree


def _bench(tree: Path, bench_args: list[str]) -> dict[str, float] | None:
    """One run of the benchmark on the code of `tree`: its rates, or None when it failed."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        roots = [tree / folder for folder in ("services", "operator", "tools") if (tree / folder).is_dir()]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, roots))}
        # the benchmark's module: flashsale_tools.bench, or flashsale.bench before the tools moved out of services
        module = "flashsale_tools.bench" if (tree / "tools" / "flashsale_tools").is_dir() else "flashsale.bench"
        command = [sys.executable, "-m", module, "--report", report.name, *bench_args]
        code = subprocess.call(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if code != 0:
            return None
        doc = json.loads(Path(report.name).read_text())
    return {key: float(value) for key, value in doc.items() if key.endswith(FIGURES) and value is not None}


def _short(key: str, value: float) -> str:
    """A figure in a few characters: rates in thousands, latencies in ms."""
    return f"{value:.0f}ms" if key.endswith("_ms") else f"{value / 1000:.1f}k"


def main() -> int:
    """Run the rounds and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", required=True, help="the commit to compare against (e.g. HEAD~3, a sha, a tag)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench-against.json")
    parser.add_argument("bench_args", nargs="*", help="arguments of python -m flashsale_tools.bench (after --)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    sha, tree = _worktree(args.rev)
    sides = {"base": tree, "work": ROOT}
    runs: dict[str, list[dict[str, float]]] = {"base": [], "work": []}
    failed = 0
    for index in range(args.rounds):
        for side, where in sides.items():
            rates = _bench(where, args.bench_args)
            label = f"{side} {sha[:10]}" if side == "base" else "working tree"
            if rates is None:
                failed += 1
                print(f"round {index + 1}, {label}: the bench failed")
                continue
            runs[side].append(rates)
            print(f"round {index + 1}, {label}: " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(rates.items())))
            sys.stdout.flush()
    keys = sorted({k for side in runs.values() for rates in side for k in rates})
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for key in keys:
        base = [r[key] for r in runs["base"] if key in r]
        work = [r[key] for r in runs["work"] if key in r]
        if not base or not work:
            continue
        b, w = statistics.median(base), statistics.median(work)
        summary[key] = {"base_median": b, "work_median": w, "ratio": w / b if b else float("nan")}
        each_b = "/".join(_short(key, v) for v in base) + f" = {b:,.0f}"
        each_w = "/".join(_short(key, v) for v in work) + f" = {w:,.0f}"
        rows.append((key, each_b, each_w, f"{w / b if b else 0:.2f}"))
    header = ("figure", f"base {sha[:10]}: each run = median", "working tree: each run = median", "work/base")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    print()
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"base": sha, "bench_args": args.bench_args, "runs": runs, "medians": summary}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"written to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
