"""The cyclic garbage collector as every Flashsale process runs it.

A sales worker's round makes tens of thousands of short-lived tuples (requests, verdicts, rows, decisions) that
reference counting frees; with CPython's default thresholds (700, 10, 10) the collector still walks the young
generation every 700 allocations and the whole heap every few rounds, which cost a third of the pipeline's time
in `make bench` (c). What start-up allocated before the call (the imported modules, the settings) is frozen out
of every collection, and the young generation is collected every THRESHOLDS[0] allocations: cycles are still
found, later.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 100)  # CPython's gc.set_threshold(young, middle, old)


def tune() -> None:
    """Freeze the objects alive now out of every collection, then set THRESHOLDS (process.main calls it once the
    settings are loaded, before the process is wired)."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
