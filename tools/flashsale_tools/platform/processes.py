"""Helpers for the child processes the local runners start (Kafka, PostgreSQL)."""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import signal
import subprocess

log = logging.getLogger(__name__)


def tail(path: pathlib.Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a text file, or a note when it is missing."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no {path})"
    return "\n".join(text.splitlines()[-lines:])


def stop(proc: subprocess.Popen[bytes], first: signal.Signals, timeout: float, what: str) -> None:
    """Send ``first`` to the process group, wait up to ``timeout`` seconds, then SIGKILL the group."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, first)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %.0fs; killing it", what, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
