"""Helpers of the operator tests: kubectl on the envtest control plane, service and operator processes, the test's
part of the Strimzi Topic Operator, and waiting for a service to serve."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from waiting import eventually_sync

from flashsale_operator import spec
from flashsale_tools.platform import envtest

NAMESPACE = "flashsale"
DEPLOYMENT = "flashsale-sales"
SERVICE_ACCOUNT = "flashsale-operator"
REPO = Path(__file__).resolve().parents[2]


class Kubectl:
    """kubectl on the control plane with a kubeconfig (the admin's unless told)."""

    def __init__(self, plane: envtest.ControlPlane, kubeconfig: Path | None = None) -> None:
        self.plane = plane
        self.kubeconfig = kubeconfig or plane.kubeconfig

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl; with `check`, fail the test on a non-zero exit, showing stderr."""
        argv = [str(self.plane.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, check=False)
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        """Run a kubectl get that prints JSON."""
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifest: dict[str, Any]) -> None:
        """Apply one manifest."""
        self.run("apply", "-f", "-", stdin=json.dumps(manifest))

    def get(self, kind: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        """An object, or None when it does not exist."""
        result = self.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            assert "NotFound" in result.stderr, result.stderr
            return None
        found: dict[str, Any] = json.loads(result.stdout)
        return found


def wait_healthy(address: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    """Wait until a gRPC service answers SERVING; fail with its log when it exits."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def serving() -> bool:
            assert proc.poll() is None, f"{log.name} exited:\n{log.read_text(errors='replace')[-3000:]}"
            status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status
            return bool(status == health_pb2.HealthCheckResponse.SERVING)

        eventually_sync(
            serving, within_s=timeout, every_s=0.2, ignoring=(grpc.RpcError,), what=f"{address} answering SERVING"
        )


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in its own session, its output in `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Signal a process group and wait for it (SIGKILL after `timeout`)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class OperatorProcess:
    """`flashsale run operator` as a process, which a test may kill and start again."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, within_s: float = 60.0) -> None:
        """Start it (it resumes every existing FlashSale) and wait until Kopf answers on its liveness endpoint: a
        test's sale timeline starts from a running operator, not from a process still importing on a busy machine."""
        self.proc = spawn([sys.executable, "-m", "flashsale_tools.cli", "run", "operator"], self.env, self.log)
        url = f"http://127.0.0.1:{self.env['FLASHSALE_OPERATOR_HEALTH_PORT']}/healthz"

        def alive() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"the operator exited:\n{self.tail()}"
            try:
                return httpx.get(url, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        eventually_sync(alive, within_s=within_s, every_s=0.1, what="the operator's liveness endpoint")

    def ensure_running(self) -> None:
        """Start it unless it runs."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crashed pod."""
        assert self.proc is not None
        stop(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None:
            stop(self.proc)

    def tail(self) -> str:
        """The end of its log, for failure messages."""
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def service_account_kubeconfig(
    kubectl: Kubectl, path: Path, account: str = SERVICE_ACCOUNT, namespace: str = NAMESPACE
) -> Path:
    """A kubeconfig holding a token of a ServiceAccount (the operator's of operator/rbac.yaml unless told)."""
    admin = kubectl.json("config", "view", "--raw")
    cluster = admin["clusters"][0]["cluster"]
    token = kubectl.run("create", "token", account, "-n", namespace, "--duration=2h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "envtest", "user": account}}],
        "current-context": "operator",
    }
    assert base64.b64decode(cluster["certificate-authority-data"])
    path.write_text(json.dumps(config))
    return path


def flashsale(name: str, product_id: str, starts_ms: int, ends_ms: int, **changes: Any) -> dict[str, Any]:
    """The example FlashSale (k8s/examples/flashsale.yaml) with a name, a product, a window and spec changes."""
    manifest: dict[str, Any] = yaml.safe_load((REPO / "k8s" / "examples" / "flashsale.yaml").read_text())
    manifest["metadata"]["name"] = name
    manifest["spec"].update(
        productId=product_id, startsAt=spec.format_time(starts_ms), endsAt=spec.format_time(ends_ms), **changes
    )
    return manifest


def owned_topics(kubectl: Kubectl, flashsale_name: str) -> list[dict[str, Any]]:
    """KafkaTopics the operator made for a FlashSale."""
    listed = kubectl.json("get", "kafkatopics", "-n", NAMESPACE, "-l", f"flashsale.io/flashsale={flashsale_name}")
    items: list[dict[str, Any]] = listed["items"]
    return items


def mark_topic_ready(kubectl: Kubectl, topic: dict[str, Any], namespace: str = NAMESPACE) -> None:
    """Play the Strimzi Topic Operator: report the KafkaTopic Ready for its current generation."""
    status = {
        "conditions": [{"type": "Ready", "status": "True", "reason": "TopicCreated"}],
        "observedGeneration": topic["metadata"]["generation"],
        "topicName": topic["metadata"]["name"],
    }
    kubectl.run(
        "patch",
        "kafkatopic",
        topic["metadata"]["name"],
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def replicas(kubectl: Kubectl) -> int:
    """spec.replicas of the sales Deployment (nothing reconciles it: the spec is what the operator set)."""
    found = kubectl.get("deployment", DEPLOYMENT)
    assert found is not None
    return int(found["spec"]["replicas"])
