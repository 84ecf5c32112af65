"""CPU time the parts of a load test used while its load was sent and decided (Linux /proc): which process the
machine's cores went to during the sale, beside the wall time of that window."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Set
from pathlib import Path

PROC = Path("/proc")


def ticks_of(stat: str) -> int:
    """User plus system clock ticks of a process (every thread of it) from the text of /proc/PID/stat."""
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)


def tree_ticks(stats: Mapping[int, str], root: int, apart: Set[int] = frozenset()) -> int | None:
    """Clock ticks of a process and every descendant still running (PostgreSQL's backends, a wrapper's child),
    with what each reaped of its children (cutime, cstime), leaving out the subtrees of the processes `apart`
    (counted on their own); None when `root` is not among `stats`."""
    if root not in stats:
        return None
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(pid)  # ppid: field 4
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        fields = stats[pid].rpartition(")")[2].split()
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        todo.extend(child for child in children.get(pid, ()) if child not in apart)
    return total


def _stats(proc: Path) -> dict[int, str]:
    found = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
    return found


def cpu_seconds(pids: Mapping[str, int], proc: Path = PROC) -> dict[str, float]:
    """CPU seconds each named process and its descendants have used so far (a named process's own subtree is
    counted under its name only: the load test's children are the platform's parts); a process gone is left out."""
    stats = _stats(proc)
    roots = set(pids.values())
    found = {}
    for name, pid in pids.items():
        ticks = tree_ticks(stats, pid, roots - {pid})
        if ticks is not None:
            found[name] = ticks / os.sysconf("SC_CLK_TCK")
    return found


@dataclasses.dataclass(frozen=True)
class CpuUse:
    """CPU seconds of each part over a window of `window_s` seconds on a machine of `cores` cores."""

    window_s: float
    cores: int
    seconds: Mapping[str, float]

    def to_dict(self) -> dict[str, object]:
        """Plain data for the JSON report: the window, the cores, each part's seconds (largest first), the share
        of the machine they took together."""
        parts = dict(sorted(((k, round(v, 2)) for k, v in self.seconds.items()), key=lambda kv: -kv[1]))
        used = sum(self.seconds.values())
        share = used / (self.window_s * self.cores) if self.window_s > 0 else 0.0
        return {
            "window_s": round(self.window_s, 2),
            "cores": self.cores,
            "seconds": parts,
            "machine_share": round(share, 2),
        }


class Meter:
    """Measures the CPU the given processes use between start() and stop()."""

    def __init__(
        self,
        pids: Mapping[str, int],
        read: Callable[[Mapping[str, int]], dict[str, float]] = cpu_seconds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pids = dict(pids)
        self._read = read
        self._clock = clock
        self._began = 0.0
        self._start: dict[str, float] = {}

    def start(self) -> None:
        """Note every process's CPU time now."""
        self._began = self._clock()
        self._start = self._read(self._pids)

    def stop(self) -> CpuUse:
        """The CPU each process used since start() (a process missing at either end is left out)."""
        window = self._clock() - self._began
        now = self._read(self._pids)
        seconds = {name: now[name] - before for name, before in self._start.items() if name in now}
        return CpuUse(window, os.cpu_count() or 1, seconds)
