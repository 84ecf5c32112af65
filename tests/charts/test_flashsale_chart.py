"""charts/flashsale rendered by the real Helm: lint, Restricted Pod Security, labels, the names the services and
the operator agree on, the observability files embedded as they are, and the schema refusing bad values."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flashsale.common import topics
from flashsale_operator import decide

pytestmark = pytest.mark.charts

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flashsale"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
SERVICES = ("gateway", "user", "product", "sales", "order", "notification")
RECOMMENDED = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
               "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of", "helm.sh/chart")  # fmt: skip


def _helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)


def _render(helm: Path, *args: str, release: str = "flashsale") -> list[dict[str, Any]]:
    done = _helm(helm, "template", release, str(CHART), "--namespace", "shop", *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _of(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_the_chart_lints_strictly_and_renders_with_every_ci_values_file(helm: Path, values: Path) -> None:
    linted = _helm(helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert _render(helm, "-f", str(values))


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_pod_meets_restricted_pod_security(helm: Path, values: Path) -> None:
    deployments = _of(_render(helm, "-f", str(values)), "Deployment")
    assert sorted(d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments) == sorted(SERVICES)
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(container)


def test_every_object_carries_the_recommended_labels(helm: Path) -> None:
    for values in CI_VALUES:
        for obj in _render(helm, "-f", str(values)):
            missing = [key for key in RECOMMENDED if key not in obj["metadata"].get("labels", {})]
            assert not missing, f"{obj['kind']} {obj['metadata']['name']} lacks {missing}"


def test_the_services_dial_the_services_the_chart_creates(helm: Path) -> None:
    objects = _render(helm)
    (config,) = [c for c in _of(objects, "ConfigMap") if c["metadata"]["name"] == "flashsale-config"]
    ports = {s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in _of(objects, "Service")}
    for name in SERVICES[1:]:
        assert config["data"][f"FLASHSALE_{name.upper()}_ADDR"] == f"flashsale-{name}:{ports[f'flashsale-{name}']}"
    for deployment in _of(objects, "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        assert container["args"] == ["run", component]
        assert env["OTEL_SERVICE_NAME"] == f"flashsale-{component}"
        if component != "gateway":  # binds every interface on the port its Service targets
            assert env["FLASHSALE_GRPC_LISTEN"] == f"0.0.0.0:{ports[deployment['metadata']['name']]}"


def test_the_sales_deployment_is_the_one_the_operator_scales_by_default(helm: Path) -> None:
    names = {d["metadata"]["name"] for d in _of(_render(helm), "Deployment")}
    assert decide.Options().default_deployment in names


def test_a_config_change_rolls_the_pods(helm: Path) -> None:
    def checksums(*args: str) -> set[str]:
        return {
            d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for d in _of(_render(helm, *args), "Deployment")
        }

    before, after = checksums(), checksums("--set", "config.logLevel=DEBUG")
    assert len(before) == len(after) == 1 and before != after


def test_the_prometheus_rule_holds_the_repository_rule_files_as_they_are(helm: Path) -> None:
    objects = _render(helm, "--set", "metrics.prometheusRule.enabled=true")
    (rule,) = _of(objects, "PrometheusRule")
    files = sorted((ROOT / "observability" / "prometheus" / "rules").glob("*.yaml"))
    expected = [group for path in files for group in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"]["groups"] == expected  # annotations keep their Prometheus templates ({{ $labels.sale }})


def test_one_configmap_per_grafana_dashboard_for_the_sidecar(helm: Path) -> None:
    objects = _render(helm, "--set", "metrics.grafanaDashboards.enabled=true")
    maps = [c for c in _of(objects, "ConfigMap") if "-dashboard-" in c["metadata"]["name"]]
    files = sorted((ROOT / "observability" / "grafana" / "dashboards").glob("*.json"))
    assert len(maps) == len(files)
    for path in files:
        (found,) = [c for c in maps if path.name in c["data"]]
        assert found["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(found["data"][path.name]) == json.loads(path.read_text())


def test_a_service_monitor_per_service_with_the_configured_labels(helm: Path) -> None:
    args = ("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.release=kps")
    monitors = _of(_render(helm, *args), "ServiceMonitor")
    assert sorted(m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors) == sorted(SERVICES)
    assert all(m["metadata"]["labels"]["release"] == "kps" for m in monitors)


def test_kafka_topics_are_the_platforms_fixed_topics_and_their_dead_letters(helm: Path) -> None:
    found = {t["spec"]["topicName"] for t in _of(_render(helm), "KafkaTopic")}
    assert found == {*topics.ALL, *(topics.dead_letter(t) for t in topics.ALL)}
    objects = _render(helm, "-f", str(CHART / "ci" / "production-values.yaml"))
    pools = {p["metadata"]["name"]: p["spec"]["roles"] for p in _of(objects, "KafkaNodePool")}
    assert pools == {"controllers": ["controller"], "brokers": ["broker"]}
    assert all(
        p["metadata"]["labels"]["strimzi.io/cluster"] == "flashsale-kafka" for p in _of(objects, "KafkaNodePool")
    )


def test_existing_kafka_and_database_are_used_as_configured(helm: Path) -> None:
    objects = _render(helm, "-f", str(CHART / "ci" / "external-values.yaml"))
    assert not _of(objects, "Kafka") and not _of(objects, "Cluster") and not _of(objects, "Secret")
    (config,) = [c for c in _of(objects, "ConfigMap") if c["metadata"]["name"] == "flashsale-config"]
    assert config["data"]["FLASHSALE_KAFKA_BOOTSTRAP"] == "shared-kafka-kafka-bootstrap.kafka.svc:9092"
    assert {t["metadata"]["namespace"] for t in _of(objects, "KafkaTopic")} == {"kafka"}
    for deployment in _of(objects, "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        dsn = next(e for e in container["env"] if e["name"] == "FLASHSALE_POSTGRES_DSN")
        assert dsn["valueFrom"]["secretKeyRef"] == {"name": "flashsale-db", "key": "dsn"}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--set", "config.dbBackend=sqlite"), "dbBackend"),  # SQLite is for one machine: no such setting here
        (("--set", "image.pullPolicy=Sometimes"), "pullPolicy"),
        (("--set", "services.sales.port=70000"), "port"),
        (("--set", "postgresql.create=false"), "existingSecret"),
        (("--set", "services.payments.enabled=true"), "payments"),
    ],
)
def test_the_schema_refuses_bad_values_naming_the_field(helm: Path, args: tuple[str, ...], named: str) -> None:
    done = _helm(helm, "template", "flashsale", str(CHART), *args)
    assert done.returncode != 0
    assert named in done.stderr, done.stderr


def test_the_gateway_trusts_the_configured_proxies_only(helm: Path) -> None:
    def trusted(*args: str) -> str:
        objects = _render(helm, *args)
        (config,) = [c for c in _of(objects, "ConfigMap") if c["metadata"]["name"] == "flashsale-config"]
        return str(config["data"]["FLASHSALE_GATEWAY_TRUSTED_PROXIES"])

    assert trusted() == ""
    assert trusted("--set", "config.trustedProxies={10.0.0.0/8,192.168.0.0/16}") == "10.0.0.0/8,192.168.0.0/16"


def test_the_kind_load_test_pod_and_the_chart_agree_on_names(helm: Path) -> None:
    """The in-cluster load test of the e2e workflow reaches what the chart (dev + e2e values) creates: the gateway's
    Service and port, the settings ConfigMap, the database's app Secret; the chart's SMTP host is its Service."""
    kind = ROOT / "k8s" / "kind"
    rendered = _render(helm, "-f", str(kind / "values-dev.yaml"), "-f", str(kind / "values-e2e.yaml"))
    smtp, pod = yaml.safe_load_all((kind / "loadtest.yaml").read_text())
    container = pod["spec"]["containers"][0]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"] if "=" in a)
    host, port = args["gateway-url"].removeprefix("http://").split(":")
    (gateway,) = [s for s in _of(rendered, "Service") if s["metadata"]["name"] == host]
    assert [p["port"] for p in gateway["spec"]["ports"] if p["name"] == "http"] == [int(port)]
    (config,) = [
        c
        for c in _of(rendered, "ConfigMap")
        if c["metadata"]["name"] == container["envFrom"][0]["configMapRef"]["name"]
    ]
    assert config["data"]["FLASHSALE_SMTP_HOST"] == smtp["metadata"]["name"]
    assert config["data"]["FLASHSALE_SMTP_PORT"] == str(smtp["spec"]["ports"][0]["port"])
    assert args["mail-listen"] == f"0.0.0.0:{smtp['spec']['ports'][0]['port']}"
    (cluster,) = _of(rendered, "Cluster")
    dsn = container["env"][0]["valueFrom"]["secretKeyRef"]
    assert (dsn["name"], dsn["key"]) == (f"{cluster['metadata']['name']}-app", "uri")
    assert smtp["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
