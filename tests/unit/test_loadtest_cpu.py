"""The load test's CPU meter: parsing /proc/PID/stat and the window's arithmetic (pure; no process read)."""

from __future__ import annotations

import os

from flashsale_tools.loadtest import cpu

# stat(5): pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime …
STAT = "4781 (python3.11 -m x) S 1 4781 4781 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 500 0 0"


def test_ticks_are_user_plus_system_even_with_spaces_in_the_name() -> None:
    assert cpu.ticks_of(STAT) == 325


def test_the_meter_counts_each_part_over_the_window() -> None:
    used: dict[int, list[float | None]] = {1: [10.0, 12.5], 2: [3.0, 3.25], 3: [1.0, None]}  # 3 exits meanwhile
    now = iter([100.0, 102.0])
    meter = cpu.Meter({"sales": 1, "kafka": 2, "gone": 3}, read=lambda pid: used[pid].pop(0), clock=lambda: next(now))
    meter.start()
    use = meter.stop()
    assert use.window_s == 2.0
    assert dict(use.seconds) == {"sales": 2.5, "kafka": 0.25}
    shown = use.to_dict()
    parts = shown["seconds"]
    assert isinstance(parts, dict) and list(parts.items()) == [("sales", 2.5), ("kafka", 0.25)]  # largest first
    assert shown["machine_share"] == round(2.75 / (2.0 * (os.cpu_count() or 1)), 2)


def test_a_process_missing_at_the_start_is_left_out() -> None:
    meter = cpu.Meter({"never": 99}, read=lambda pid: None, clock=lambda: 0.0)
    meter.start()
    assert dict(meter.stop().seconds) == {}
