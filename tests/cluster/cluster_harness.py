"""Helpers of the local node's tests: scripts/cluster.sh and kubectl on the node it starts."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NODE_IP = "10.244.0.1"  # the bridge's gateway: the node's address, the host as the pods reach it
POD_CIDR = "10.244.0.0/24"
COLD_BUILD_TIMEOUT_S = 3600  # a cold machine builds every part first


def cluster_sh(command: str, state: Path) -> str:
    """Run scripts/cluster.sh COMMAND on the node whose state folder is ``state``; its stdout."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "cluster.sh"), command],
        env={**os.environ, "CLUSTER_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=COLD_BUILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"cluster.sh {command} failed:\n{done.stderr[-4000:]}"
    return done.stdout


class Kubectl:
    """kubectl of the node's Kubernetes version, as the node's admin."""

    def __init__(self, state: Path) -> None:
        """Read the kubeconfig and kubectl of the running node (``cluster.sh env``)."""
        exported = dict(line.removeprefix("export ").split("=", 1) for line in cluster_sh("env", state).splitlines())
        self.kubeconfig = exported["KUBECONFIG"]
        self.binary = str(Path(exported["PATH"].split(":")[0]) / "kubectl")
        self.argv = [self.binary, f"--kubeconfig={self.kubeconfig}"]

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
        """Run kubectl; with ``check``, fail the test on a non-zero exit, showing stderr. Its stdout."""
        done = subprocess.run(
            [*self.argv, *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr[-3000:]}"
        return done.stdout

    def json(self, *args: str) -> Any:
        """A kubectl get, as JSON."""
        return json.loads(self.run(*args, "-o", "json"))

    def apply(self, *manifests: dict[str, Any], namespace: str = "") -> None:
        """Apply manifests (as one list)."""
        listed = {"apiVersion": "v1", "kind": "List", "items": list(manifests)}
        self.run("apply", *(["-n", namespace] if namespace else []), "-f", "-", stdin=json.dumps(listed))
