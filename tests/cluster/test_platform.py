"""The platform on a real node, the way users run it: the image built from the Dockerfile, both charts installed by
Helm, every process in a pod behind its real probes, a FlashSale applied, the operator (in its pod, with its
ServiceAccount) scaling the sales Deployment before the start, a crowd buying through the gateway's Service while
one sales pod is force-deleted, the checker finding no violation, Prometheus discovering the pods through the API.

Kafka and PostgreSQL are the project's servers on the node's address (Strimzi's and CloudNativePG's images cannot be
pulled here: k8s/node/values.yaml), with a test-only stand-in for the Topic Operator. Figures go to
reports/cluster-e2e/ (summary.json, the load test's log)."""

from __future__ import annotations

import datetime
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_harness import COLD_BUILD_TIMEOUT_S, NODE_IP, POD_CIDR, REPO, Kubectl, cluster_sh
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from stand_in_topic_operator import StandInTopicOperator
from waiting import eventually_sync

from flashsale_tools.platform.kafka_broker import KafkaBroker
from flashsale_tools.platform.postgres_server import PostgresServer
from flashsale_tools.platform.prometheus_server import PrometheusServer

# a cold machine builds the node's parts (cluster.sh up) and the image in the fixtures; the sale itself takes minutes
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(COLD_BUILD_TIMEOUT_S + 1800)]

NAMESPACE = "flashsale"
STRIMZI_CLUSTER = "flashsale-kafka"
WORKER_GROUP = "flashsale-sales-workers"
REPORTS = REPO / "reports" / "cluster-e2e"
RELEASE_PODS = 7  # one each: gateway, user, product, sales, order, notification (k8s/kind/values-dev.yaml), operator
SHOPPERS = 300
STOCK = 200
PARTITIONS = 4
MAX_REPLICAS = 4
OPENS_AFTER_S = 100  # the load test onboards its shoppers (register, verify by e-mail, log in: 31 s seen) first
OPEN_FOR_S = 60
LEAD_TIME_S = 60  # the operator scales the sales Deployment this long before the opening
SPIKE_S = 6.0  # the crowd's purchases arrive over this long after the opening; a sales pod is killed within it


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A node of its own (scripts/cluster.sh up), put down afterwards; its state folder."""
    state = tmp_path_factory.mktemp("node") / "cluster"
    cluster_sh("up", state)
    try:
        yield state
    finally:
        cluster_sh("down", state)


@pytest.fixture(scope="module")
def kubectl(node: Path) -> Kubectl:
    return Kubectl(node)


@pytest.fixture(scope="module")
def image(node: Path) -> str:
    """The platform's image, built from the Dockerfile and loaded into the node's containerd."""
    return cluster_sh("image", node).strip().splitlines()[-1]


@pytest.fixture(scope="module")
def helm() -> str:
    script = REPO / "scripts" / "charts.sh"
    subprocess.run([script, "build"], cwd=REPO, check=True, timeout=1800, stdin=subprocess.DEVNULL)
    printed = subprocess.run([script, "paths"], cwd=REPO, check=True, capture_output=True, text=True, timeout=60)
    return dict(line.split("=", 1) for line in printed.stdout.splitlines())["HELM"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, node: Path) -> Iterator[KafkaBroker]:
    """The project's Kafka broker, its client listener on the node's address (the pods reach the host there)."""
    with KafkaBroker(tmp_path_factory.mktemp("kafka"), host=NODE_IP) as running:
        yield running


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory, node: Path) -> Iterator[PostgresServer]:
    """The project's PostgreSQL, also listening on the node's address, trusting the node's pod network only."""
    with PostgresServer(tmp_path_factory.mktemp("pg"), host=NODE_IP, clients=POD_CIDR) as running:
        yield running


def _kafka_bootstrap_service(broker: KafkaBroker) -> list[dict[str, Any]]:
    """Where Strimzi's bootstrap Service would be, a Service without selector sending to the broker on the host."""
    name = f"{STRIMZI_CLUSTER}-kafka-bootstrap"
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "tcp-clients", "port": 9092, "targetPort": broker.port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [NODE_IP]}],
            "ports": [{"name": "tcp-clients", "port": broker.port, "protocol": "TCP"}],
        },
    ]


def _prometheus(folder: Path, kubeconfig: str) -> PrometheusServer:
    """Prometheus finding the release's pods through the API server, each series labelled with its pod."""
    job = {
        "job_name": "flashsale-pods",
        "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": kubeconfig, "namespaces": {"names": [NAMESPACE]}}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics|http", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"], "target_label": "component"},
        ],
    }
    printed = subprocess.run(
        [REPO / "scripts" / "cluster.sh", "paths"], capture_output=True, text=True, check=True, timeout=60
    )  # Debian's Prometheus has no Kubernetes discovery: cluster.sh builds one from its module
    binary = Path(dict(line.split("=", 1) for line in printed.stdout.splitlines())["PROMETHEUS"])
    return PrometheusServer(folder, {}, scrape_interval_s=2.0, binary=binary, scrape_configs=[job])


def _pods(kubectl: Kubectl) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json("get", "pods", "-n", NAMESPACE)["items"]
    return items


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _all_ready(kubectl: Kubectl, expected: int) -> list[str]:
    pods = [p for p in _pods(kubectl) if p["metadata"].get("deletionTimestamp") is None]
    return sorted(p["metadata"]["name"] for p in pods) if len(pods) == expected and all(map(_ready, pods)) else []


def _sales_pods(kubectl: Kubectl) -> list[dict[str, Any]]:
    """The sales pods that are Ready and not being deleted."""
    pods = [p for p in _pods(kubectl) if p["metadata"]["labels"].get("app.kubernetes.io/component") == "sales"]
    return [p for p in pods if _ready(p) and p["metadata"].get("deletionTimestamp") is None]


def _helm(helm: str, kubeconfig: str, *args: str) -> None:
    done = subprocess.run(
        [helm, f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr[-3000:]}"


def _in_sales(kubectl: Kubectl, *argv: str) -> str:
    """A command in a sales pod's container (kubectl exec)."""
    return kubectl.run("exec", "-n", NAMESPACE, "deploy/flashsale-sales", "-c", "sales", "--", *argv, timeout=300)


def _make_product(kubectl: Kubectl) -> str:
    script = (
        "import os, grpc\n"
        "from flashsale_api.v1 import product_pb2, product_pb2_grpc\n"
        "with grpc.insecure_channel(os.environ['FLASHSALE_PRODUCT_ADDR']) as channel:\n"
        "    made = product_pb2_grpc.ProductServiceStub(channel).CreateProduct(\n"
        "        product_pb2.CreateProductRequest(name='Node sneaker', base_price_cents=9999), timeout=10)\n"
        "print(made.product_id)\n"
    )
    return _in_sales(kubectl, "python", "-c", script).strip()


def _flashsale(product: str, opens_at: datetime.datetime) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((REPO / "k8s" / "examples" / "flashsale.yaml").read_text())
    manifest["metadata"].update(name="node-drop", namespace=NAMESPACE)
    manifest["spec"].update(
        productId=product,
        stock=STOCK,
        partitions=PARTITIONS,
        leadTimeSeconds=LEAD_TIME_S,
        scaling={"minReplicas": 1, "maxReplicas": MAX_REPLICAS},
        startsAt=_rfc3339(opens_at),
        endsAt=_rfc3339(opens_at + datetime.timedelta(seconds=OPEN_FOR_S)),
    )
    return manifest


def _rfc3339(at: datetime.datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _loadtest(image: str, sale: str) -> list[dict[str, Any]]:
    """k8s/kind/loadtest.yaml (the in-cluster load test and its SMTP Service) for this sale, on this image."""
    docs = list(yaml.safe_load_all((REPO / "k8s" / "kind" / "loadtest.yaml").read_text()))
    for doc in docs:
        if doc["kind"] == "Pod":
            container = doc["spec"]["containers"][0]
            container["image"] = image
            args = container["args"]
            args[args.index("--sale=SALE_ID")] = f"--sale={sale}"
            args[args.index("--users=600")] = f"--users={SHOPPERS}"
            args.append(f"--spike-s={SPIKE_S}")
    return docs


def _group_members(broker: KafkaBroker, topic: str) -> dict[str, list[int]]:
    """The sales workers' consumer group: each member's client host → its partitions of ``topic``."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    described = admin.describe_consumer_groups([WORKER_GROUP])[WORKER_GROUP].result(timeout=10)
    return {
        member.host: sorted(p.partition for p in member.assignment.topic_partitions if p.topic == topic)
        for member in described.members
    }


def _replicas(kubectl: Kubectl) -> int:
    return int(kubectl.json("get", "deployment", "flashsale-sales", "-n", NAMESPACE)["spec"]["replicas"])


def _install(kubectl: Kubectl, helm: str, tag: str) -> None:
    """Both charts, as an SRE installs them (k8s/node/*values.yaml on top of the kind values)."""
    values = [REPO / "k8s" / "kind" / "values-dev.yaml", REPO / "k8s" / "kind" / "values-e2e.yaml"]
    values.append(REPO / "k8s" / "node" / "values.yaml")
    chart = REPO / "charts"
    files = [arg for path in values for arg in ("-f", str(path))]
    operator_values = str(REPO / "k8s" / "node" / "operator-values.yaml")
    at = ["-n", NAMESPACE, "--set", f"image.tag={tag}"]
    _helm(helm, kubectl.kubeconfig, "install", "flashsale", str(chart / "flashsale"), *at, *files)
    _helm(
        helm,
        kubectl.kubeconfig,
        "install",
        "flashsale-operator",
        str(chart / "flashsale-operator"),
        *at,
        "-f",
        operator_values,
    )


def _until(probe: Any, until: Any, within_s: float, what: str) -> Any:
    return eventually_sync(probe, until=until, within_s=within_s, every_s=1, ignoring=(KafkaException,), what=what)


def test_a_flashsale_sold_through_the_gateway_on_a_real_node_keeps_every_invariant(
    node: Path,
    kubectl: Kubectl,
    image: str,
    helm: str,
    broker: KafkaBroker,
    postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    REPORTS.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"image": image}
    kubectl.run("create", "namespace", NAMESPACE)
    kubectl.run("apply", "-f", str(REPO / "k8s" / "crds" / "third-party" / "strimzi-1.2.0" / "043-Crd-kafkatopic.yaml"))
    kubectl.apply(*_kafka_bootstrap_service(broker))
    db_secret = ["secret", "generic", "flashsale-db-app", "-n", NAMESPACE, f"--from-literal=uri={postgres.dsn}"]
    kubectl.run("create", *db_secret)

    with (
        StandInTopicOperator(kubectl.argv, broker.bootstrap_servers, STRIMZI_CLUSTER) as topics,
        _prometheus(tmp_path / "prometheus", kubectl.kubeconfig) as prometheus,
    ):
        installed = time.monotonic()
        _install(kubectl, helm, image.rsplit(":", 1)[1])
        summary["pods_ready"] = _until(lambda: _all_ready(kubectl, RELEASE_PODS), bool, 600, "every pod Ready")
        summary["install_to_ready_s"] = round(time.monotonic() - installed, 1)

        product = _make_product(kubectl)
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        opens_at = now + datetime.timedelta(seconds=OPENS_AFTER_S)
        kubectl.apply(_flashsale(product, opens_at))
        sale = _until(lambda: _status(kubectl).get("saleId"), bool, 120, "the operator's sale")
        kubectl.apply(*_loadtest(image, sale), namespace=NAMESPACE)

        # the operator scales the sales Deployment before the opening; every new pod joins the workers' group
        topic = _until(lambda: next((t for t in topics.reconciled if sale in t), ""), bool, 60, "the request topic")
        _until(lambda: _replicas(kubectl), lambda n: n == MAX_REPLICAS, OPENS_AFTER_S, "the sales Deployment scaled")
        members = _until(
            lambda: _group_members(broker, topic),
            lambda m: len(m) == MAX_REPLICAS and all(m.values()),
            180,
            f"{MAX_REPLICAS} workers holding partitions of {topic}",
        )
        summary["replicas_set_by_operator"] = _replicas(kubectl)
        summary["workers_before_opening"] = members
        summary["scaled_up_before_opening"] = datetime.datetime.now(datetime.UTC) < opens_at
        assert summary["scaled_up_before_opening"], f"the {MAX_REPLICAS} workers were not in place before the opening"
        summary["sales_pods"] = sorted(p["metadata"]["name"] for p in _sales_pods(kubectl))

        # one sales pod killed without grace while the crowd buys: the load test prints the sale's terms once its
        # shoppers are in, then sends from the opening (at once if onboarding outlasted the lead)
        _until(lambda: f"sale {sale}: stock" in _loadtest_log(kubectl), bool, OPENS_AFTER_S + 300, "shoppers onboard")
        summary["onboarded_before_opening"] = datetime.datetime.now(datetime.UTC) < opens_at
        time.sleep(max(0.0, (opens_at - datetime.datetime.now(datetime.UTC)).total_seconds()) + SPIKE_S / 2)
        victim = _sales_pods(kubectl)[0]["metadata"]["name"]
        summary["force_deleted"] = victim
        summary["delete_sent_after_opening_s"] = _seconds_since(opens_at)
        kubectl.run("delete", "pod", victim, "-n", NAMESPACE, "--grace-period=0", "--force")
        summary["deleted_after_opening_s"] = _seconds_since(opens_at)

        phase = _until(
            lambda: kubectl.json("get", "pod", "flashsale-loadtest", "-n", NAMESPACE)["status"]["phase"],
            lambda p: p in ("Succeeded", "Failed"),
            600,
            "the load test's end",
        )
        log = _loadtest_log(kubectl)
        (REPORTS / "loadtest.log").write_text(log)
        assert phase == "Succeeded", f"the load test ended {phase} (violations or undecided requests):\n{log[-4000:]}"

        _until(lambda: _status(kubectl).get("phase"), lambda p: p == "Ended", OPEN_FOR_S + 180, "the sale Ended")
        summary["replicas_after_end"] = _until(lambda: _replicas(kubectl), lambda n: n == 1, 120, "scaled back")
        checked = _in_sales(kubectl, "flashsale", "verify", "--sale", sale, "--wait-settled", "60", "--json")
        verdict = json.loads(checked)
        counts = {rule["name"]: rule["count"] for rule in verdict["violations"] if rule["applied"]}
        summary["verify"] = {**verdict, "violations": counts}
        assert verdict["ok"] and not any(counts.values()) and verdict["sale_finished"], verdict

        summary.update(_scraped_by_pod(prometheus, sale))
        assert summary["prometheus_decisions_by_pod"].get(victim, 0) > 0, "the killed pod was not deciding"

    _uninstall(kubectl, helm)
    (REPORTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _seconds_since(at: datetime.datetime) -> float:
    return round((datetime.datetime.now(datetime.UTC) - at).total_seconds(), 2)


def _loadtest_log(kubectl: Kubectl) -> str:
    return kubectl.run("logs", "-n", NAMESPACE, "pod/flashsale-loadtest", check=False)


def _status(kubectl: Kubectl) -> dict[str, Any]:
    status: dict[str, Any] = kubectl.json("get", "flashsale", "node-drop", "-n", NAMESPACE).get("status") or {}
    return status


def _scraped_by_pod(prometheus: PrometheusServer, sale: str) -> dict[str, Any]:
    """Prometheus found the pods through the API server and scraped them, each series labelled with its pod."""
    decided = _until(
        lambda: prometheus.query(f'sum by (pod) (max_over_time(flashsale_decisions_total{{sale="{sale}"}}[15m]))'),
        lambda series: len(series) >= 2,
        60,
        "the sales pods' decisions in Prometheus",
    )
    by_pod = {s["metric"]["pod"]: float(s["value"][1]) for s in decided}
    assert all(pod.startswith("flashsale-sales-") for pod in by_pod), by_pod
    components = sorted({s["metric"].get("component", "") for s in prometheus.query('up{job="flashsale-pods"} == 1')})
    assert {"gateway", "user", "product", "sales", "order", "notification"} <= set(components), components
    return {"prometheus_decisions_by_pod": by_pod, "prometheus_up_components": components}


def _uninstall(kubectl: Kubectl, helm: str) -> None:
    """helm uninstall of both releases (and the load test's pod) leaves no pod behind."""
    _helm(helm, kubectl.kubeconfig, "uninstall", "flashsale-operator", "-n", NAMESPACE, "--wait")
    _helm(helm, kubectl.kubeconfig, "uninstall", "flashsale", "-n", NAMESPACE, "--wait")
    kubectl.run("delete", "-n", NAMESPACE, "pod/flashsale-loadtest", "service/flashsale-loadtest-smtp")
    _until(lambda: _pods(kubectl), lambda pods: pods == [], 120, "no pod left after helm uninstall")
