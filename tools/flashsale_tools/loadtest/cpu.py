"""CPU time the parts of a load test used while its load was sent and decided (Linux /proc): which process the
machine's cores went to during the sale, beside the wall time of that window."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

PROC = Path("/proc")


def ticks_of(stat: str) -> int:
    """User plus system clock ticks of a process (every thread of it) from the text of /proc/PID/stat."""
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)


def cpu_seconds(pid: int, proc: Path = PROC) -> float | None:
    """CPU seconds a process has used so far; None when it is gone (or /proc has no such process)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return ticks_of(stat) / os.sysconf("SC_CLK_TCK")


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
        read: Callable[[int], float | None] = cpu_seconds,
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
        self._start = {name: used for name, pid in self._pids.items() if (used := self._read(pid)) is not None}

    def stop(self) -> CpuUse:
        """The CPU each process used since start() (a process gone meanwhile is left out)."""
        window = self._clock() - self._began
        seconds = {}
        for name, before in self._start.items():
            after = self._read(self._pids[name])
            if after is not None:
                seconds[name] = after - before
        return CpuUse(window, os.cpu_count() or 1, seconds)
