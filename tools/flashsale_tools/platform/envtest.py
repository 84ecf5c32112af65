"""A real Kubernetes control plane (etcd and kube-apiserver, no nodes) for operator tests, run by scripts/envtest.sh."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shlex
import subprocess
from types import TracebackType

BUILD_TIMEOUT_S = 3600.0
"""Upper bound for ``scripts/envtest.sh build``: a cold build downloads the modules and compiles for minutes."""

UP_TIMEOUT_S = 300.0
"""Upper bound for ``scripts/envtest.sh up`` and ``down`` (the script itself waits at most 180 s for /readyz)."""


def _repo_root() -> pathlib.Path:
    """Return the checkout holding scripts/envtest.sh (this module lives in tools/flashsale_tools/platform/)."""
    root = pathlib.Path(__file__).resolve().parents[3]
    if not (root / "scripts" / "envtest.sh").is_file():
        raise FileNotFoundError(f"scripts/envtest.sh not found under {root}: run from a source checkout")
    return root


class ControlPlaneError(RuntimeError):
    """scripts/envtest.sh failed; the message carries the end of its output."""


class ControlPlane:
    """Context manager that builds and starts the envtest control plane in ``state_dir`` and stops it on exit."""

    def __init__(self, state_dir: pathlib.Path, *, repo: pathlib.Path | None = None) -> None:
        self.state_dir = state_dir.resolve()
        self._repo = repo if repo is not None else _repo_root()
        self._exports: dict[str, str] | None = None

    @property
    def kubeconfig(self) -> pathlib.Path:
        """The admin kubeconfig (client certificate in group system:masters)."""
        return pathlib.Path(self._export("KUBECONFIG"))

    @property
    def server(self) -> str:
        """The API server's URL, e.g. ``https://127.0.0.1:23456``."""
        return self._export("ENVTEST_SERVER")

    @property
    def kubectl(self) -> pathlib.Path:
        """The kubectl built at the same pinned version as the API server."""
        return pathlib.Path(self._export("ENVTEST_BIN")) / "kubectl"

    def kubectl_command(self, *args: str) -> list[str]:
        """Return the argv of a kubectl call on this control plane with the admin kubeconfig."""
        return [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args]

    def __enter__(self) -> ControlPlane:
        self._script("build", timeout=BUILD_TIMEOUT_S)
        try:
            self._script("up", timeout=UP_TIMEOUT_S)
            self._exports = _parse_exports(self._script("env", timeout=UP_TIMEOUT_S))
        except BaseException:
            with contextlib.suppress(ControlPlaneError, subprocess.TimeoutExpired):
                self._script("down", timeout=UP_TIMEOUT_S)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exports = None
        self._script("down", timeout=UP_TIMEOUT_S)

    def _export(self, name: str) -> str:
        if self._exports is None:
            raise RuntimeError("the control plane is not running: use ControlPlane as a context manager")
        return self._exports[name]

    def _script(self, command: str, *, timeout: float) -> str:
        env = {**os.environ, "ENVTEST_DIR": str(self.state_dir)}
        result = subprocess.run(
            [str(self._repo / "scripts" / "envtest.sh"), command],
            cwd=self._repo,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
            raise ControlPlaneError(f"scripts/envtest.sh {command} exited {result.returncode}:\n{output}")
        return result.stdout


def _parse_exports(text: str) -> dict[str, str]:
    """Parse the ``export NAME=value`` lines of ``scripts/envtest.sh env`` (PATH is left out)."""
    exports: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            if name != "PATH":
                exports[name] = value
    return exports
