"""deploy/check/k8s_schemas.py: kubernetes-validate's schemas made standalone for kubeconform.

kubeconform must find every definition a kind reaches inside the kind's own file (it never
goes to the network); a reference it cannot follow must fail the conversion, not turn into
a schema that accepts anything.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFS = "/api/_definitions.json#/$defs/"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_schemas", ROOT / "deploy" / "check" / "k8s_schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


DEFINITIONS: dict[str, Any] = {
    "io.k8s.api.apps.v1.DeploymentSpec": {
        "properties": {"template": {"$ref": DEFS + "io.k8s.api.core.v1.PodTemplateSpec"}},
        "additionalProperties": False,
    },
    "io.k8s.api.core.v1.PodTemplateSpec": {"properties": {"spec": {"$ref": "#/$defs/io.k8s.api.core.v1.PodSpec"}}},
    "io.k8s.api.core.v1.PodSpec": {"properties": {"containers": {"type": "array"}}},
    "io.k8s.api.core.v1.Unused": {"type": "string"},
}
DEPLOYMENT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://kubernetes.io/api/deployment/apps/v1",
    "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Deployment", "version": "v1"}],
    "properties": {"spec": {"$ref": DEFS + "io.k8s.api.apps.v1.DeploymentSpec"}},
}


def test_a_kind_carries_exactly_the_definitions_it_reaches() -> None:
    out = _module().standalone(DEPLOYMENT, DEFINITIONS)
    assert "$id" not in out
    assert out["$schema"] == DEPLOYMENT["$schema"]
    assert set(out["$defs"]) == {
        "io.k8s.api.apps.v1.DeploymentSpec", "io.k8s.api.core.v1.PodTemplateSpec", "io.k8s.api.core.v1.PodSpec",
    }
    refs = _refs(out)
    assert refs and all(r.startswith("#/$defs/") and r[len("#/$defs/"):] in out["$defs"] for r in refs)
    assert out["$defs"]["io.k8s.api.apps.v1.DeploymentSpec"]["additionalProperties"] is False


def test_an_unknown_reference_fails_the_conversion() -> None:
    broken = {**DEPLOYMENT, "properties": {"spec": {"$ref": DEFS + "io.k8s.api.apps.v1.Missing"}}}
    with pytest.raises(ValueError, match="Missing"):
        _module().standalone(broken, DEFINITIONS)
    remote = {**DEPLOYMENT, "properties": {"spec": {"$ref": "https://example.invalid/schema.json"}}}
    with pytest.raises(ValueError, match="unexpected"):
        _module().standalone(remote, DEFINITIONS)


def test_convert_dir_writes_kinds_only(tmp_path: Path) -> None:
    source, target = tmp_path / "v1.30.0-local-strict", tmp_path / "v1.30.0-standalone-strict"
    source.mkdir()
    (source / "_definitions.json").write_text(json.dumps({"$defs": DEFINITIONS}))
    (source / "deployment-apps-v1.json").write_text(json.dumps(DEPLOYMENT))
    (source / "podspec-v1.json").write_text(json.dumps(DEFINITIONS["io.k8s.api.core.v1.PodSpec"]))
    assert _module().convert_dir(source, target) == 1
    assert sorted(p.name for p in target.iterdir()) == ["deployment-apps-v1.json"]
    written = json.loads((target / "deployment-apps-v1.json").read_text())
    assert "io.k8s.api.core.v1.PodSpec" in written["$defs"]
