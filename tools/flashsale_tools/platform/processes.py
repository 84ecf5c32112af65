"""Helpers for the child processes the local runners start (Kafka, PostgreSQL, Prometheus, Jaeger)."""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Sequence

import httpx

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


def spawn(argv: Sequence[str], log_file: pathlib.Path, cwd: pathlib.Path) -> subprocess.Popen[bytes]:
    """Start a server in a session of its own (stopped as a group), its output appended to ``log_file``."""
    with log_file.open("ab") as out:
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
        )


def wait_http_ready(
    proc: subprocess.Popen[bytes], url: str, deadline: float, what: str, log_file: pathlib.Path
) -> str | None:
    """Poll ``url`` until it answers 200 (None) or the process exits or ``deadline`` (monotonic) passes: then
    the reason, with the end of ``log_file``."""
    last: object = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"{what} exited with code {proc.returncode}; tail of {log_file}:\n{tail(log_file)}"
        try:
            response = httpx.get(url, timeout=2.0, trust_env=False)
            if response.status_code == 200:
                return None
            last = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.1)
    return f"{what} not ready at {url} (last: {last}); tail of {log_file}:\n{tail(log_file)}"
