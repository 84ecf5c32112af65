"""Every object both charts render (each ci values file, and the kind values) and the example FlashSales validated
by kubeconform, strictly, against Kubernetes' schemas and the CRDs' (Strimzi, CloudNativePG, Prometheus Operator,
FlashSale), offline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import schemas

pytestmark = pytest.mark.charts

ROOT = Path(__file__).resolve().parents[2]
CRDS = [*sorted((ROOT / "k8s" / "crds" / "third-party").rglob("*.yaml")), ROOT / "operator" / "crds" / "flashsale.yaml"]
CHARTS = ROOT / "charts"
KIND = ROOT / "k8s" / "kind"
RENDERS = [
    *(
        (CHARTS / chart, (values,))
        for chart in ("flashsale", "flashsale-operator")
        for values in sorted((CHARTS / chart / "ci").glob("*.yaml"))
    ),
    (CHARTS / "flashsale", (KIND / "values-dev.yaml",)),
    (CHARTS / "flashsale", (KIND / "values-dev.yaml", KIND / "values-e2e.yaml")),
    (CHARTS / "flashsale-operator", (KIND / "operator-values-dev.yaml",)),
]  # fmt: skip


@pytest.fixture(scope="module")
def schema_locations(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """kubeconform's -schema-location templates: Kubernetes', then the CRDs'."""
    folder = tmp_path_factory.mktemp("schemas")
    kubernetes = schemas.kubernetes_schemas(folder)
    crds = schemas.crd_schemas(CRDS, folder / "crds")
    return [
        f"{kubernetes}/{{{{.ResourceKind}}}}{{{{.KindSuffix}}}}.json",
        f"{crds}/{{{{.Group}}}}/{{{{.ResourceKind}}}}_{{{{.ResourceAPIVersion}}}}.json",
    ]


def _kubeconform(tool: Path, locations: list[str], manifests: str) -> dict[str, int]:
    flags = [arg for location in locations for arg in ("-schema-location", location)]
    done = subprocess.run(
        [str(tool), "-strict", "-summary", "-output", "json", *flags, "-"],
        input=manifests, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert done.returncode == 0, json.dumps(report["resources"], indent=1)
    return dict(report["summary"])


def _ids(param: Path | tuple[Path, ...]) -> str:
    files = (param,) if isinstance(param, Path) else param
    return "+".join(f"{p.parent.name}/{p.name}" for p in files)


@pytest.mark.parametrize(("chart", "values"), RENDERS, ids=_ids)
def test_every_rendered_object_is_valid(
    chart_tools: dict[str, Path], schema_locations: list[str], chart: Path, values: tuple[Path, ...]
) -> None:
    files = [arg for path in values for arg in ("-f", str(path))]
    rendered = subprocess.run(
        [str(chart_tools["HELM"]), "template", "flashsale", str(chart), "--namespace", "flashsale", *files],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    summary = _kubeconform(chart_tools["KUBECONFORM"], schema_locations, rendered)
    assert summary["invalid"] == summary["errors"] == summary["skipped"] == 0
    assert summary["valid"] == rendered.count("\nkind: ") > 0


def test_the_kind_load_test_pod_and_its_smtp_service_are_valid(
    chart_tools: dict[str, Path], schema_locations: list[str]
) -> None:
    summary = _kubeconform(chart_tools["KUBECONFORM"], schema_locations, (KIND / "loadtest.yaml").read_text())
    assert (summary["valid"], summary["invalid"], summary["errors"], summary["skipped"]) == (2, 0, 0, 0)


def test_the_example_flashsale_is_valid_and_the_invalid_one_is_not(
    chart_tools: dict[str, Path], schema_locations: list[str]
) -> None:
    good = (ROOT / "k8s" / "examples" / "flashsale.yaml").read_text()
    assert _kubeconform(chart_tools["KUBECONFORM"], schema_locations, good)["valid"] == 1
    bad = (ROOT / "k8s" / "examples" / "flashsale-invalid.yaml").read_text()
    flags = [arg for location in schema_locations for arg in ("-schema-location", location)]
    done = subprocess.run(
        [str(chart_tools["KUBECONFORM"]), "-strict", "-summary", *flags, "-"],
        input=bad, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "is invalid" in done.stdout, done.stdout
