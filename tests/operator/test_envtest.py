"""The envtest control plane is a real API server: versions, installed CRDs, custom objects and their status."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import pytest

from flashsale_tools.platform import envtest

# A cold first build (module download + compile of kube-apiserver and kubectl) runs in the fixture's setup.
pytestmark = [pytest.mark.operator, pytest.mark.timeout(envtest.BUILD_TIMEOUT_S + 2 * envtest.UP_TIMEOUT_S)]


def kubectl(plane: envtest.ControlPlane, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run kubectl on the control plane; the caller checks the return code."""
    return subprocess.run(
        plane.kubectl_command(*args), input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def kubectl_json(plane: envtest.ControlPlane, *args: str) -> Any:
    """Run a kubectl call that must succeed and prints JSON."""
    result = kubectl(plane, *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def kafka_topic(name: str, partitions: int) -> str:
    """A Strimzi kafka.strimzi.io/v1 KafkaTopic manifest as JSON."""
    return json.dumps(
        {
            "apiVersion": "kafka.strimzi.io/v1",
            "kind": "KafkaTopic",
            "metadata": {"name": name, "namespace": "default", "labels": {"strimzi.io/cluster": "flashsale"}},
            "spec": {"partitions": partitions, "replicas": 1},
        }
    )


def test_server_answers_with_the_pinned_version(control_plane: envtest.ControlPlane) -> None:
    versions = kubectl_json(control_plane, "version")
    assert versions["serverVersion"]["gitVersion"].startswith("v1.")
    assert versions["serverVersion"]["gitVersion"] == versions["clientVersion"]["gitVersion"]
    assert control_plane.server.startswith("https://127.0.0.1:")
    assert control_plane.kubeconfig.is_file()


@pytest.mark.parametrize(
    "crd",
    [
        "kafkatopics.kafka.strimzi.io",
        "kafkas.kafka.strimzi.io",
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    ],
)
def test_third_party_crds_are_established(control_plane: envtest.ControlPlane, crd: str) -> None:
    conditions = kubectl_json(control_plane, "get", "crd", crd)["status"]["conditions"]
    assert {"type": "Established", "status": "True"}.items() <= next(
        c for c in conditions if c["type"] == "Established"
    ).items()


def test_kafka_topic_status_is_a_subresource(control_plane: envtest.ControlPlane) -> None:
    name = f"orders-{uuid.uuid4().hex[:8]}"
    created = kubectl(control_plane, "create", "-f", "-", stdin=kafka_topic(name, 4))
    assert created.returncode == 0, created.stderr

    # A write through the main resource leaves status alone: the CRD declares the status subresource.
    ignored = kubectl(control_plane, "patch", "kafkatopic", name, "--type=merge", "-p", '{"status": {"topicId": "x"}}')
    assert ignored.returncode == 0, ignored.stderr
    assert "status" not in kubectl_json(control_plane, "get", "kafkatopic", name)

    ready = {"conditions": [{"type": "Ready", "status": "True", "reason": "TopicCreated"}], "observedGeneration": 1}
    patched = kubectl(
        control_plane,
        "patch",
        "kafkatopic",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": ready}),
    )
    assert patched.returncode == 0, patched.stderr

    topic = kubectl_json(control_plane, "get", "kafkatopic", name)
    assert topic["spec"] == {"partitions": 4, "replicas": 1}
    assert topic["status"]["conditions"] == ready["conditions"]
    assert topic["status"]["observedGeneration"] == 1
    columns = kubectl(control_plane, "get", "kafkatopic", name, "--no-headers")
    assert columns.stdout.split() == [name, "flashsale", "4", "1", "True"]


def test_kafka_topic_schema_is_enforced(control_plane: envtest.ControlPlane) -> None:
    rejected = kubectl(control_plane, "create", "-f", "-", stdin=kafka_topic(f"bad-{uuid.uuid4().hex[:8]}", 0))
    assert rejected.returncode != 0
    assert "spec.partitions" in rejected.stderr
