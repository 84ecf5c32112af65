"""charts/flashsale-operator rendered by the real Helm: the CRD and the RBAC rules are the operator's own files (one
source of truth), one standalone Kopf pod with a liveness probe only, Restricted Pod Security, settings wired."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.charts

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flashsale-operator"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))


def _helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)


def _render(helm: Path, *args: str) -> list[dict[str, Any]]:
    done = _helm(helm, "template", "flashsale-operator", str(CHART), "--namespace", "flashsale", *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _one(objects: list[dict[str, Any]], kind: str, namespace: str = "") -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and (not namespace or o["metadata"]["namespace"] == namespace)]
    return found


def _manifest_rules() -> list[dict[str, Any]]:
    docs = list(yaml.safe_load_all((ROOT / "operator" / "rbac.yaml").read_text()))
    (role,) = [d for d in docs if d["kind"] == "Role"]
    return list(role["rules"])


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_the_operator_chart_lints_strictly(helm: Path, values: Path) -> None:
    linted = _helm(helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_crd_is_the_operators_own_file(helm: Path) -> None:
    shown = _helm(helm, "show", "crds", str(CHART))
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout) == yaml.safe_load((ROOT / "operator" / "crds" / "flashsale.yaml").read_text())


def test_the_role_has_the_rules_of_operator_rbac_with_the_configured_deployment(helm: Path) -> None:
    objects = _render(helm, "--set", "flashsale.salesDeployment=shop-sales")
    rules = _one(objects, "Role")["rules"]
    expected = [
        {**rule, "resourceNames": ["shop-sales"]} if "deployments" in rule["resources"] else rule
        for rule in _manifest_rules()
    ]
    assert rules == expected
    binding = _one(objects, "RoleBinding")
    account = _one(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "flashsale"}
    ]


def test_topics_in_another_namespace_get_the_topic_rule_there(helm: Path) -> None:
    objects = _render(helm, "-f", str(CHART / "ci" / "topics-elsewhere-values.yaml"))
    assert _one(objects, "Role", "shop")["rules"][0]["resources"] == ["flashsales"]
    topic_rules = _one(objects, "Role", "kafka")["rules"]
    assert topic_rules == [rule for rule in _manifest_rules() if "kafkatopics" in rule["resources"]]
    assert (
        _one(objects, "RoleBinding", "kafka")["roleRef"]["name"] == _one(objects, "Role", "kafka")["metadata"]["name"]
    )


def test_one_standalone_operator_pod_with_a_liveness_probe_only(helm: Path) -> None:
    deployment = _one(_render(helm), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["args"] == ["run", "operator"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "readinessProbe" not in container
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert int(env["FLASHSALE_OPERATOR_HEALTH_PORT"]) == container["ports"][0]["containerPort"]
    assert env["FLASHSALE_OPERATOR_NAMESPACE"] == "flashsale"
    assert env["FLASHSALE_SALES_DEPLOYMENT"] == "flashsale-sales"
    assert env["FLASHSALE_STRIMZI_CLUSTER"] == "flashsale-kafka"


def test_the_operator_schema_refuses_a_bad_sales_address(helm: Path) -> None:
    done = _helm(helm, "template", "x", str(CHART), "--set", "flashsale.salesAddress=nope")
    assert done.returncode != 0
    assert "salesAddress" in done.stderr
