"""The local node of scripts/cluster.sh as a user meets it: `up` gives a Ready node whose pods run (CoreDNS answers
through its Service and kube-proxy), `kubectl logs` reaches the kubelet, and `down` puts the host back as it was."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from cluster_harness import COLD_BUILD_TIMEOUT_S, cluster_sh

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(COLD_BUILD_TIMEOUT_S + 600)]  # up builds what is missing

HOST_SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops", "net.ipv4.ip_forward")
HOST_PATHS = ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni", "/etc/cni", "/run/containerd")


def _sysctls() -> dict[str, str]:
    return {key: Path("/proc/sys", *key.split(".")).read_text().strip() for key in HOST_SYSCTLS}


def _resolve(name: str, server: str) -> list[str]:
    """The A records a DNS server answers for name (one UDP query, no recursion asked)."""
    query = struct.pack(">HHHHHH", 0x2A2A, 0, 1, 0, 0, 0)
    query += b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    query += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query, (server, 53))
        reply = sock.recv(1500)
    answers = struct.unpack(">H", reply[6:8])[0]
    found, offset = [], len(query)
    for _ in range(answers):  # each answer: its name, type, class, ttl, length, data
        offset = _past_name(reply, offset)
        kind, _klass, _ttl, length = struct.unpack(">HHIH", reply[offset : offset + 10])
        if kind == 1:
            found.append(socket.inet_ntoa(reply[offset + 10 : offset + 10 + length]))
        offset += 10 + length
    return found


def _past_name(reply: bytes, offset: int) -> int:
    """The offset after a name in a DNS message: labels up to an empty one, or up to a 2-byte pointer."""
    while reply[offset]:
        if reply[offset] >= 0xC0:
            return offset + 2
        offset += 1 + reply[offset]
    return offset + 1


def test_a_node_comes_up_runs_pods_and_goes_down_leaving_the_host_as_it_was(tmp_path: Path) -> None:
    before_sysctls = _sysctls()
    before_paths = {path for path in HOST_PATHS if Path(path).exists()}
    state = tmp_path / "cluster"
    printed = cluster_sh("up", state)
    kubeconfig = printed.strip().splitlines()[-1].removeprefix("KUBECONFIG=")
    exported = dict(line.removeprefix("export ").split("=", 1) for line in cluster_sh("env", state).splitlines())
    binaries = exported["PATH"].split(":")[0]  # the cached kubectl of this Kubernetes version, first on PATH
    kubectl = [str(Path(binaries) / "kubectl"), f"--kubeconfig={kubeconfig}"]
    try:
        node = json.loads(subprocess.check_output([*kubectl, "get", "node", "flashsale-node", "-o", "json"]))
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert ready == "True" and addresses["InternalIP"] == "10.244.0.1"

        pods = json.loads(
            subprocess.check_output(
                [*kubectl, "-n", "kube-system", "get", "pods", "-l", "app.kubernetes.io/name=coredns", "-o", "json"]
            )
        )["items"]
        assert [p["status"]["phase"] for p in pods] == ["Running"]
        assert pods[0]["status"]["podIP"].startswith("10.244.0.")

        # the kube-dns Service's ClusterIP, DNAT-ed by kube-proxy's rules to the pod on the bridge
        assert _resolve("kubernetes.default.svc.cluster.local", "10.96.0.10") == ["10.96.0.1"]
        assert _resolve("kube-dns.kube-system.svc.cluster.local", "10.96.0.10") == ["10.96.0.10"]

        logs = subprocess.check_output([*kubectl, "-n", "kube-system", "logs", pods[0]["metadata"]["name"]], text=True)
        assert "CoreDNS-1.15.0" in logs
        running = {name: (state / f"{name}.pid").read_text() for name in ("kube-apiserver", "kubelet", "containerd")}
        assert cluster_sh("up", state).strip().endswith(kubeconfig)  # up again: the same node, nothing restarted
        assert {name: (state / f"{name}.pid").read_text() for name in running} == running
    finally:
        cluster_sh("down", state)

    assert _sysctls() == before_sysctls
    assert {path for path in HOST_PATHS if Path(path).exists()} == before_paths
    assert subprocess.run(["ip", "link", "show", "fs0"], capture_output=True, check=False).returncode != 0
    assert not state.exists()
