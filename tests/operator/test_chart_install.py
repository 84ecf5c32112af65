"""Both charts installed by the real Helm into the envtest API server (every CRD there); the operator process, logged
in with the chart's ServiceAccount token and configured as the chart's Deployment says, takes a FlashSale through its
phases while scaling the chart's sales Deployment up and back; then `helm upgrade` with changed values and
`helm uninstall`, which leaves nothing of either release behind but the CRDs."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from operator_harness import Kubectl, OperatorProcess, flashsale, mark_topic_ready, service_account_kubeconfig
from prometheus_client import parser
from waiting import eventually_sync

from flashsale.common import timeutil
from flashsale_tools.platform import cache

pytestmark = [pytest.mark.operator, pytest.mark.charts]

REPO = Path(__file__).resolve().parents[2]
SHOP = "shop"  # the releases' namespace (the other operator tests own `flashsale`)
S = 1000


def _helm_binary() -> Path:
    script = REPO / "scripts" / "charts.sh"
    subprocess.run([script, "build"], cwd=REPO, check=True, timeout=1800, stdin=subprocess.DEVNULL)
    printed = subprocess.run([script, "paths"], cwd=REPO, check=True, capture_output=True, text=True, timeout=60)
    return Path(dict(line.split("=", 1) for line in printed.stdout.splitlines())["HELM"])


class Helm:
    """helm on the envtest control plane as the admin."""

    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", "--namespace", SHOP, *args],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}"
        return done.stdout


@pytest.fixture(scope="module")
def helm(kubectl: Kubectl) -> Helm:
    """Helm built once, with the shop namespace created."""
    kubectl.run("create", "namespace", SHOP)
    return Helm(_helm_binary(), kubectl.kubeconfig)


def _get(kubectl: Kubectl, kind: str, name: str) -> dict[str, Any] | None:
    return kubectl.get(kind, name, namespace=SHOP)


def _status(kubectl: Kubectl, name: str) -> dict[str, Any]:
    found = _get(kubectl, "flashsale", name)
    assert found is not None
    return dict(found.get("status") or {})


def _replicas(kubectl: Kubectl) -> int:
    found = _get(kubectl, "deployment", "flashsale-sales")
    assert found is not None
    return int(found["spec"]["replicas"])


def _wait_phase(kubectl: Kubectl, operator: OperatorProcess, name: str, phase: str) -> dict[str, Any]:
    try:
        return eventually_sync(
            lambda: _status(kubectl, name), until=lambda s: s.get("phase") == phase, within_s=40, every_s=0.2,
            what=f"{name} to be {phase}",
        )  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status {_status(kubectl, name)}\noperator log:\n{operator.tail()}") from None


def _port(container: dict[str, Any], name: str) -> int:
    return next(int(p["containerPort"]) for p in container["ports"] if p["name"] == name)


def _operator_metrics(operator: OperatorProcess) -> dict[tuple[str, str], float]:
    """(family, phase or result) → value of the operator's own series."""
    text = httpx.get(f"http://127.0.0.1:{operator.env['FLASHSALE_METRICS_PORT']}/metrics", timeout=5).text
    return {
        (sample.name, sample.labels.get("phase") or sample.labels.get("result") or ""): sample.value
        for family in parser.text_string_to_metric_families(text)
        if family.name.startswith("flashsale_operator_")
        for sample in family.samples
    }


def _chart_operator(kubectl: Kubectl, folder: Path) -> OperatorProcess:
    """The operator as a process configured by the chart's Deployment, logged in with its ServiceAccount token."""
    deployment = _get(kubectl, "deployment", "flashsale-operator")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    kubeconfig = service_account_kubeconfig(kubectl, folder / "kubeconfig", pod["serviceAccountName"], SHOP)
    env = {e["name"]: e.get("value", "") for e in container["env"]}  # the API server drops an empty value
    assert env["FLASHSALE_METRICS_PORT"] == str(_port(container, "metrics"))  # what the chart's Service targets
    env.update(
        KUBECONFIG=str(kubeconfig),
        PATH="/usr/bin:/bin",
        FLASHSALE_OPERATOR_HEALTH_PORT=str(cache.free_port()),  # the chart's 8080 is a pod's own
        FLASHSALE_METRICS_HOST="127.0.0.1",
        FLASHSALE_METRICS_PORT=str(cache.free_port()),  # and so is its metrics port
        FLASHSALE_OPERATOR_POLL_S="0.3",
        FLASHSALE_OPERATOR_STATS_INTERVAL_S="0.5",
        FLASHSALE_LOG_FORMAT="text",
    )
    return OperatorProcess(env, folder / "operator.log")


@pytest.fixture
def installed(helm: Helm, sales_services: dict[str, str], tmp_path: Path) -> Iterator[Helm]:
    """Both releases in the shop namespace; uninstalled afterwards whatever the test did."""
    helm.run(
        "install", "flashsale", str(REPO / "charts" / "flashsale"),
        "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true",
        "--set", "metrics.grafanaDashboards.enabled=true",
    )  # fmt: skip
    helm.run(
        "install", "flashsale-operator", str(REPO / "charts" / "flashsale-operator"),
        "--set", f"flashsale.salesAddress={sales_services['sales']}", "--set", "metrics.serviceMonitor.enabled=true",
    )  # fmt: skip
    try:
        yield helm
    finally:
        subprocess.run(
            [str(helm.binary), f"--kubeconfig={helm.kubeconfig}", "-n", SHOP, "uninstall", "flashsale-operator",
             "flashsale", "--ignore-not-found"], capture_output=True, timeout=300, check=False,
        )  # fmt: skip


def test_the_charts_install_run_a_sale_upgrade_and_uninstall(
    installed: Helm, kubectl: Kubectl, product_id: str, tmp_path: Path
) -> None:
    kinds = {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "ServiceMonitor", "PrometheusRule", "Deployment"}
    manifest = list(yaml.safe_load_all(installed.run("get", "manifest", "flashsale")))
    assert kinds <= {doc["kind"] for doc in manifest if doc}
    assert _replicas(kubectl) == 1
    operator_kinds = {doc["kind"] for doc in yaml.safe_load_all(installed.run("get", "manifest", "flashsale-operator"))}
    assert {"Deployment", "Service", "ServiceMonitor", "Role", "RoleBinding", "ServiceAccount"} <= operator_kinds

    operator = _chart_operator(kubectl, tmp_path)
    operator.start()
    try:
        name = f"chart-{uuid.uuid4().hex[:6]}"
        start = timeutil.now_ms() + 12 * S
        sale = flashsale(name, product_id, start, start + 8 * S, leadTimeSeconds=3, partitions=3, reserve=0)
        sale["metadata"]["namespace"] = SHOP
        kubectl.apply(sale)

        def topic() -> list[dict[str, Any]]:
            listed = kubectl.json("get", "kafkatopics", "-n", SHOP, "-l", f"flashsale.io/flashsale={name}")
            return list(listed["items"])

        (found,) = eventually_sync(topic, every_s=0.2, within_s=30, what=f"the KafkaTopic of {name}")
        assert found["metadata"]["labels"]["strimzi.io/cluster"] == "flashsale-kafka"  # the chart's Kafka
        mark_topic_ready(kubectl, found, SHOP)
        assert _wait_phase(kubectl, operator, name, "Active")["partitions"] == 3
        eventually_sync(
            lambda: _replicas(kubectl), until=lambda n: n == 3, within_s=15, every_s=0.2,
            what="the chart's sales Deployment scaled to the 3 partitions",
        )  # fmt: skip
        chart = str(REPO / "charts" / "flashsale")  # an upgrade mid-sale neither conflicts with the operator nor scales
        installed.run("upgrade", "flashsale", chart, "--reuse-values", "--set", "config.rateBurst=150")  # it down
        assert (_replicas(kubectl), _status(kubectl, name)["phase"]) == (3, "Active")
        sales = kubectl.json("get", "deployment", "flashsale-sales", "-n", SHOP, "--show-managed-fields")
        managers = {field["manager"] for field in sales["metadata"]["managedFields"]}
        assert "flashsale-operator" in managers, managers
        ended = _wait_phase(kubectl, operator, name, "Ended")
        seen = eventually_sync(
            lambda: _operator_metrics(operator),
            until=lambda found: found.get(("flashsale_operator_flashsales", "Ended")) == 1,
            within_s=15, every_s=0.2, what="the operator's metrics showing the FlashSale Ended",
        )  # fmt: skip
        passes = seen[("flashsale_operator_passes_total", "ok")]
        assert passes >= 3  # warming, active, ended at least
        assert seen[("flashsale_operator_pass_duration_seconds_count", "")] >= passes
        assert ended["scaling"]["deployment"] == f"{SHOP}/flashsale-sales"
        assert (ended["scaling"]["previousReplicas"], ended["scaling"]["targetReplicas"]) == (1, 3)
        eventually_sync(
            lambda: _replicas(kubectl), until=lambda n: n == 1, within_s=15, every_s=0.2,
            what="the chart's sales Deployment back to 1",
        )  # fmt: skip
        kubectl.run("delete", "flashsale", name, "-n", SHOP, "--wait=true", "--timeout=60s")  # its finalizer released
        eventually_sync(
            lambda: _operator_metrics(operator),
            until=lambda found: ("flashsale_operator_flashsales", "Ended") not in found,
            within_s=15, every_s=0.2, what="the deleted FlashSale gone from the operator's metrics",
        )  # fmt: skip
    finally:
        operator.stop()

    before = _get(kubectl, "deployment", "flashsale-gateway")
    assert before is not None
    installed.run(
        "upgrade", "flashsale", str(REPO / "charts" / "flashsale"), "--reuse-values", "--set", "config.logLevel=DEBUG"
    )
    config = _get(kubectl, "configmap", "flashsale-config")
    assert config is not None and config["data"]["FLASHSALE_LOG_LEVEL"] == "DEBUG"
    after = _get(kubectl, "deployment", "flashsale-gateway")
    assert after is not None
    annotations = "spec", "template", "metadata", "annotations"
    old, new = before, after
    for key in annotations:
        old, new = old[key], new[key]
    assert old["checksum/config"] != new["checksum/config"]  # the pods roll

    installed.run("uninstall", "flashsale-operator", "flashsale", "--wait")
    left = kubectl.json(
        "get", "all,configmaps,secrets,serviceaccounts,roles,rolebindings,networkpolicies,poddisruptionbudgets,"
        "kafkas,kafkanodepools,kafkatopics,clusters.postgresql.cnpg.io,servicemonitors,prometheusrules",
        "-n", SHOP, "-l", "app.kubernetes.io/part-of=flashsale",
    )  # fmt: skip
    assert [f"{o['kind']}/{o['metadata']['name']}" for o in left["items"]] == []
    assert kubectl.run("get", "crd", "flashsales.flashsale.io", check=False).returncode == 0  # Helm keeps CRDs
