"""The Prometheus, promtool and Jaeger binaries, installed and built by scripts/observability.sh."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import pathlib
import subprocess

from flashsale_tools.platform import cache

BUILD_TIMEOUT_S = 3600.0
"""Upper bound for ``scripts/observability.sh build``: a cold Jaeger build fetches modules and compiles for minutes."""

PATHS_TIMEOUT_S = 60.0
"""Upper bound for ``scripts/observability.sh paths`` (it only prints)."""


class ObservabilityToolsError(RuntimeError):
    """scripts/observability.sh failed or printed no usable paths; the message carries the end of its output."""


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where the observability binaries are."""

    prometheus: pathlib.Path
    promtool: pathlib.Path
    jaeger: pathlib.Path


def repo_root() -> pathlib.Path:
    """Return the checkout holding scripts/observability.sh (this module lives in tools/flashsale_tools/platform/)."""
    root = pathlib.Path(__file__).resolve().parents[3]
    if not (root / "scripts" / "observability.sh").is_file():
        raise FileNotFoundError(f"scripts/observability.sh not found under {root}: run from a source checkout")
    return root


def _script(repo: pathlib.Path, command: str, *, timeout: float) -> str:
    """Run ``scripts/observability.sh command`` and return its stdout; raise with the output's tail on failure."""
    result = subprocess.run(
        [str(repo / "scripts" / "observability.sh"), command],
        cwd=repo,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise ObservabilityToolsError(f"scripts/observability.sh {command} exited {result.returncode}:\n{output}")
    return result.stdout


def parse_paths(text: str) -> Paths:
    """Parse the ``NAME=path`` lines of ``scripts/observability.sh paths``."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and value:
            found[name] = value
    missing = [name for name in ("PROMETHEUS", "PROMTOOL", "JAEGER") if name not in found]
    if missing:
        raise ObservabilityToolsError(f"scripts/observability.sh paths printed no {', '.join(missing)}:\n{text}")
    return Paths(
        prometheus=pathlib.Path(found["PROMETHEUS"]),
        promtool=pathlib.Path(found["PROMTOOL"]),
        jaeger=pathlib.Path(found["JAEGER"]),
    )


def ensure_built(*, repo: pathlib.Path | None = None) -> Paths:
    """Install Prometheus and build Jaeger when missing (idempotent, one build at a time); return their paths."""
    root = repo if repo is not None else repo_root()
    with (cache.cache_dir() / "observability-build.lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        _script(root, "build", timeout=BUILD_TIMEOUT_S)
    paths = parse_paths(_script(root, "paths", timeout=PATHS_TIMEOUT_S))
    for binary in (paths.prometheus, paths.promtool, paths.jaeger):
        if not os.access(binary, os.X_OK):
            raise ObservabilityToolsError(f"scripts/observability.sh build succeeded but {binary} is not executable")
    return paths
