"""Sampling profiles of a benchmark's processes (py-spy, every thread, idle samples left out), recorded while a
closed loop runs, and their summary: where each process's CPU went, by the function on top of the stack."""

from __future__ import annotations

import asyncio
import collections
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from flashsale_tools.bench import core

TOP = 8


def _binary() -> str:
    beside = Path(sys.executable).parent / "py-spy"  # the virtual environment's, whether or not it is on PATH
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise core.BenchError("py-spy is not installed (it is a dev dependency: make install)")
    return found


def _argv(pid: int, seconds: float, output: Path) -> list[str]:
    duration = str(max(1, round(seconds)))
    return [_binary(), "record", "--pid", str(pid), "--duration", duration, "--rate", "200", "--format", "raw",
            "--output", str(output), "--nonblocking"]  # fmt: skip


async def record(pids: Mapping[str, int], seconds: float, folder: Path) -> dict[str, Path]:
    """Start py-spy on each process for `seconds`; return once all have written their collapsed stacks."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    out = {name: folder / f"{name}.collapsed" for name in pids}
    quiet = asyncio.subprocess.DEVNULL
    procs = [
        await asyncio.create_subprocess_exec(*_argv(pid, seconds, out[name]), stdout=quiet, stderr=quiet)
        for name, pid in pids.items()
    ]
    await asyncio.gather(*(p.wait() for p in procs))
    return {name: path for name, path in out.items() if path.exists()}


def top_functions(collapsed: Path, top: int = TOP) -> list[tuple[str, float]]:
    """The functions on top of the sampled stacks, with their share of the samples (%)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[stack.rsplit(";", 1)[-1]] += int(count)
    total = sum(counts.values())
    return [(frame, 100.0 * n / total) for frame, n in counts.most_common(top)] if total else []


def summary(profiles: Mapping[str, Path], cpu_us: Mapping[str, float]) -> str:
    """A text report: per process, its CPU per decision and its hottest functions."""
    lines = []
    for name, path in sorted(profiles.items(), key=lambda item: -cpu_us.get(item[0], 0.0)):
        lines.append(f"{name}: {cpu_us.get(name, 0.0):,.0f} µs CPU per decision ({path.name})")
        lines.extend(f"  {share:5.1f}%  {frame}" for frame, share in top_functions(path))
    return "\n".join(lines) + "\n"
