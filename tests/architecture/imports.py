"""The import graph of a source tree, read with `ast` (nothing is imported or executed).

Every `import` and `from ... import` statement counts: at module level, inside functions,
and under `if TYPE_CHECKING:` (a type-only import is still a dependency a reader has to
follow, and a cycle through one is still a cycle). A package's `__init__.py` is a module
of its own, named after the package.

For `from pkg import name` the statement depends on `pkg` (its `__init__` runs and `name`
is looked up in it) and, when `name` is a submodule, on `pkg.name` too: that is how a
package that imports its submodules ends up in a cycle with a submodule that reaches a
sibling "through" the package. `import a.b.c` and `from a.b.c import x` depend on `a.b.c`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Import", "Graph", "read_graph", "cycles"]


@dataclass(frozen=True)
class Import:
    importer: str
    target: str      # the module imported, resolved (may be outside the tree: stdlib, a library)
    line: int
    specific: bool   # False for the package half of `from pkg import submodule`


@dataclass
class Graph:
    modules: dict[str, Path] = field(default_factory=dict)
    imports: list[Import] = field(default_factory=list)

    def edges(self) -> dict[str, set[str]]:
        """importer -> the modules of this tree it imports (self-imports left out)."""
        out: dict[str, set[str]] = {m: set() for m in self.modules}
        for imp in self.imports:
            if imp.target in self.modules and imp.target != imp.importer:
                out[imp.importer].add(imp.target)
        return out


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_graph(root: Path, exclude: tuple[str, ...] = ()) -> Graph:
    """Every module under the package directory `root` (its parent is the import root),
    except those named in `exclude` (and their submodules)."""
    graph = Graph()
    for path in sorted(root.rglob("*.py")):
        name = module_name(root, path)
        if any(name == e or name.startswith(e + ".") for e in exclude):
            continue
        graph.modules[name] = path
    for name, path in graph.modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                graph.imports.extend(Import(name, alias.name, node.lineno, True) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.module, node.level)
                submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in graph.modules]
                graph.imports.append(Import(name, base, node.lineno, not submodules))
                graph.imports.extend(Import(name, sub, node.lineno, True) for sub in submodules)
    return graph


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    """The absolute name of `from <level dots><module> import ...` written in `importer`."""
    if level == 0:
        return module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    if level > 1:
        package = package[: len(package) - (level - 1)]
    return ".".join(package + ([module] if module else []))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm),
    each sorted, in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)
