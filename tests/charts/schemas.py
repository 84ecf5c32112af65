"""JSON schemas for kubeconform, offline: Kubernetes' own from the kubernetes-validate wheel (their absolute
`/api/_definitions.json` references made file URLs), and the third-party CRDs' (Strimzi, CloudNativePG, Prometheus
Operator, FlashSale) converted from their openAPIV3Schema, strict (no property a schema does not name)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.36.0"


def kubernetes_schemas(into: Path, version: str = KUBERNETES_VERSION) -> Path:
    """The strict schemas of one Kubernetes version, written under `into`; their folder."""
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    target = into / f"v{version}-strict"
    target.mkdir(parents=True, exist_ok=True)
    definitions = f'"file://{target}/_definitions.json'
    for path in source.glob("*.json"):
        text = path.read_text().replace('"/api/_definitions.json', definitions)
        (target / path.name).write_text(text)
    return target


def _strict(schema: Any) -> Any:
    """The schema with additionalProperties false wherever it names properties and keeps no unknown fields."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_schemas(crd_files: list[Path], into: Path) -> Path:
    """One schema per served version of every CRD in the files, as <group>/<kind>_<version>.json under `into`."""
    for path in crd_files:
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"].lower()
            for version in crd["spec"]["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema is None or not version.get("served", True):
                    continue
                implicit = {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                }
                schema = {**schema, "properties": {**implicit, **schema.get("properties", {})}}  # every object has them
                folder = into / group
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{kind}_{version['name']}.json").write_text(json.dumps(_strict(schema)))
    return into
