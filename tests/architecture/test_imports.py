"""The layers of ADR 010 (update), checked on every run instead of hoped for.

The import graph of `services/` (tests/architecture/imports.py: every import statement,
function-local and `TYPE_CHECKING` ones included) must have:

- no cycles: no set of modules that import each other round, a package's `__init__`
  counting as a module;
- no service reaching into another service's private modules: from another service only
  its `domain` package, its `documents` and its `codec` may be imported (services: api,
  billing, gateway, sessions, smart_charging, simulator, stations);
- no service imported by the shared kernel, `services/common` (the CLI names its roles
  as "module:callable" strings and loads them with importlib);
- pure domains: a `domain/` module imports the standard library, the pure shared modules
  (`services.common.{events,decimals,timeutil,ocpp_version,kinds}`) and domain modules,
  nothing else.

Each test reports every violation of its rule at once, with the importing line, so one run
shows the whole of what is left to fix. Generated protobuf code (services/common/gen) is
not walked: nothing in it is written by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.architecture.imports import Graph, Import, cycles, read_graph

ROOT = Path(__file__).resolve().parents[2] / "services"
GENERATED = ("services.common.gen",)
SERVICES = ("api", "billing", "certificates", "gateway", "sessions", "smart_charging", "simulator", "stations")
PUBLIC_TO_OTHER_SERVICES = ("domain", "documents", "codec")
PURE_SHARED = tuple(f"services.common.{m}" for m in ("events", "decimals", "timeutil", "ocpp_version", "kinds"))


def graph() -> Graph:
    return read_graph(ROOT, exclude=GENERATED)


def service_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "services" and parts[1] in SERVICES else None


def is_domain(module: str) -> bool:
    return "domain" in module.split(".")[2:3]


def where(imp: Import) -> str:
    return f"{imp.importer}:{imp.line} imports {imp.target}"


def report(title: str, lines: list[str], count: int | None = None) -> str:
    return f"{len(lines) if count is None else count} {title}:\n" + "\n".join(f"  {line}" for line in lines)


# -- the rules --------------------------------------------------------------------------
def test_no_modules_import_each_other_round_in_a_cycle() -> None:
    g = graph()
    found = cycles(g.edges())
    lines = []
    for component in found:
        members = set(component)
        lines.append(" <-> ".join(component))
        inside = sorted({where(i) for i in g.imports if i.importer in members and i.target in members and i.importer != i.target})
        lines.extend(f"    {edge}" for edge in inside)
    assert not found, report("import cycle(s), each with the imports that close it", lines, len(found))


def test_a_service_imports_another_service_only_through_its_domain_documents_or_codec() -> None:
    bad = []
    for imp in graph().imports:
        mine, theirs = service_of(imp.importer), service_of(imp.target)
        if not imp.specific or mine is None or theirs is None or mine == theirs:
            continue
        inside = imp.target.split(".")[2:]
        if not inside or inside[0] not in PUBLIC_TO_OTHER_SERVICES or (inside[0] != "domain" and len(inside) > 1):
            bad.append(where(imp))
    assert not bad, report("import(s) of another service's private module", sorted(set(bad)))


def test_the_shared_kernel_imports_no_service() -> None:
    bad = [
        where(imp)
        for imp in graph().imports
        if imp.importer.startswith("services.common") and service_of(imp.target) is not None
    ]
    assert not bad, report("import(s) of a service from services/common", sorted(set(bad)))


def test_domain_modules_import_only_the_standard_library_pure_shared_modules_and_domains() -> None:
    def allowed(target: str) -> bool:
        top = target.split(".")[0]
        return (
            top in sys.stdlib_module_names
            or target in PURE_SHARED
            or (service_of(target) is not None and is_domain(target))
        )

    bad = [where(imp) for imp in graph().imports if imp.specific and is_domain(imp.importer) and not allowed(imp.target)]
    assert not bad, report("import(s) that make a domain module impure", sorted(set(bad)))


# -- the graph reader itself ------------------------------------------------------------
def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_reader_counts_function_local_and_type_checking_imports(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "pkg/b.py": "def f():\n    import pkg.a\n",
    })
    g = read_graph(root)
    assert g.edges()["pkg.a"] == {"pkg.b"} and g.edges()["pkg.b"] == {"pkg.a"}
    assert cycles(g.edges()) == [["pkg.a", "pkg.b"]]


def test_the_reader_resolves_relative_imports_and_sees_a_package_init_as_a_module(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "def make():\n    from .impl import Impl\n",
        "pkg/sub/impl.py": "from pkg.sub import metrics\nfrom ..other import x\n",
        "pkg/sub/metrics.py": "",
        "pkg/other.py": "",
    })
    g = read_graph(root)
    assert g.edges()["pkg.sub.impl"] == {"pkg.sub", "pkg.sub.metrics", "pkg.other"}
    assert cycles(g.edges()) == [["pkg.sub", "pkg.sub.impl"]]


def test_the_reader_finds_no_cycle_in_a_layered_tree(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import pkg.b\n",
        "pkg/b.py": "import pkg.c\nimport json\n",
        "pkg/c.py": "",
    })
    assert cycles(read_graph(root).edges()) == []
