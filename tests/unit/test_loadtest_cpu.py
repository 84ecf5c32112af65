"""The load test's CPU meter: parsing /proc/PID/stat and the window's arithmetic (pure; no process read)."""

from __future__ import annotations

import os
import subprocess
import sys

from flashsale_tools.loadtest import cpu

# stat(5): pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime …
STAT = "4781 (python3.11 -m x) S 1 4781 4781 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 500 0 0"


def test_ticks_are_user_plus_system_even_with_spaces_in_the_name() -> None:
    assert cpu.ticks_of(STAT) == 325


def test_the_meter_counts_each_part_over_the_window() -> None:
    readings = iter([{"sales": 10.0, "kafka": 3.0, "gone": 1.0}, {"sales": 12.5, "kafka": 3.25}])  # gone exits
    now = iter([100.0, 102.0])
    meter = cpu.Meter({"sales": 1, "kafka": 2, "gone": 3}, read=lambda pids: next(readings), clock=lambda: next(now))
    meter.start()
    use = meter.stop()
    assert use.window_s == 2.0
    assert dict(use.seconds) == {"sales": 2.5, "kafka": 0.25}
    shown = use.to_dict()
    parts = shown["seconds"]
    assert isinstance(parts, dict) and list(parts.items()) == [("sales", 2.5), ("kafka", 0.25)]  # largest first
    assert shown["machine_share"] == round(2.75 / (2.0 * (os.cpu_count() or 1)), 2)


def test_a_process_missing_at_the_start_is_left_out() -> None:
    readings = iter([{}, {"late": 5.0}])
    meter = cpu.Meter({"late": 99}, read=lambda pids: next(readings), clock=lambda: 0.0)
    meter.start()
    assert dict(meter.stop().seconds) == {}


def _stat(pid: int, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0) -> str:
    return f"{pid} (post gres) S {ppid} 1 1 0 -1 0 0 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0 5 0 0"


def test_a_process_tree_counts_its_running_descendants_and_what_they_reaped() -> None:
    stats = {
        10: _stat(10, 1, 5, 5),  # runuser
        11: _stat(11, 10, 100, 20, cutime=30, cstime=10),  # the postmaster, which reaped backends
        12: _stat(12, 11, 50, 7),  # a backend
        13: _stat(13, 12, 1, 1),  # a grandchild
        20: _stat(20, 1, 999, 999),  # another process
    }
    assert cpu.tree_ticks(stats, 10) == 10 + 160 + 57 + 2
    assert cpu.tree_ticks(stats, 12) == 59
    assert cpu.tree_ticks(stats, 10, apart={12}) == 10 + 160  # 12's subtree is counted under its own name
    assert cpu.tree_ticks(stats, 99) is None


def test_the_load_test_is_not_charged_for_its_children() -> None:
    # a child that burns about half a second of CPU, then waits (alive) until its stdin closes
    burn = (
        "import sys, time\n"
        "end = time.process_time() + 0.5\n"
        "while time.process_time() < end: pass\n"
        "print(flush=True)\n"
        "sys.stdin.read()"
    )
    with subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stdin is not None
        child.stdout.readline()  # it has burnt its CPU
        alone = cpu.cpu_seconds({"me": os.getpid()})
        apart = cpu.cpu_seconds({"me": os.getpid(), "child": child.pid})
        child.stdin.close()
    assert apart["child"] >= 0.4
    assert alone["me"] - apart["me"] >= 0.4  # counted under its own name only, not again under its parent's
