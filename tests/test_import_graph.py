"""The package's modules import each other without a cycle.

Every module of ``mivolo_lite`` is parsed with ``ast``; every import statement counts, at any level
(inside functions and ``try`` blocks too: a lazy import only hides a cycle until it runs). An edge
goes from a module to each package-internal module that the statement makes Python execute:

- the imported module itself, or for ``from M import name`` the submodule ``M.name`` when one
  exists, else ``M`` (the name is read from M's namespace);
- every package on the way to it (``from .pkg.mod import x`` runs ``pkg/__init__.py`` first),
  except the importer's own enclosing packages, which are already being imported when it runs.

So an ``__init__`` that re-exports its submodules is fine, while a submodule that reads a name from
its own package's ``__init__`` (or any module that imports back into a module importing it) is a
cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "mivolo_lite"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE


def module_names(package_dir: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``package_dir``."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _enclosing_packages(module: str, is_package: bool) -> list[str]:
    """The packages already being imported while ``module`` runs (itself too when a package)."""
    parts = module.split(".")
    own = parts if is_package else parts[:-1]
    return [".".join(own[:i]) for i in range(1, len(own) + 1)]


def _executed(target: str, modules: dict[str, Path], enclosing: set[str]) -> set[str]:
    """``target`` and the packages on its way that importing it runs (inside our package only)."""
    parts = target.split(".")
    chain = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return {name for name in chain if name in modules and name not in enclosing}


def import_edges(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package-internal modules that ``module`` imports, per the rules in this file's docstring."""
    is_package = path.name == "__init__.py"
    enclosing = set(_enclosing_packages(module, is_package))
    current_package = module if is_package else module.rpartition(".")[0]
    edges: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                edges |= _executed(alias.name, modules, enclosing)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = current_package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            edges |= _executed(source, modules, enclosing)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                # `from pkg import name`: the submodule when there is one, else pkg's own namespace
                edges.add(submodule if submodule in modules else source)
    edges.discard(module)
    return {edge for edge in edges if edge in modules}


def import_graph(package_dir: Path = PACKAGE_DIR, package: str = PACKAGE) -> dict[str, set[str]]:
    modules = module_names(package_dir, package)
    return {name: import_edges(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other (Tarjan's algorithm; small graph, recursive)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in sorted(graph.get(node, ())):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle ``[a, b, ..., a]`` per group of mutually importing modules, through the
    group's first module in sorted order."""
    cycles = []
    for group in strongly_connected(graph):
        if len(group) < 2:
            continue
        start, members = group[0], set(group)
        previous = {start: None}
        frontier = [start]
        while start not in previous or previous[start] is None:
            next_frontier = []
            for node in frontier:
                for child in sorted(graph[node] & members):
                    if child == start and previous[start] is None:
                        previous[start] = node
                    elif child not in previous:
                        previous[child] = node
                        next_frontier.append(child)
            frontier = next_frontier
        cycle = [start]
        node = previous[start]
        while node != start:
            cycle.append(node)
            node = previous[node]
        cycles.append([start, *reversed(cycle[1:]), start])
    return sorted(cycles)


def test_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and "mivolo_lite.predictor" in graph
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


@pytest.mark.parametrize("files, cycle", [
    # a lazy import inside a function still closes a circle
    ({"pkg/__init__.py": "", "pkg/a.py": "from .b import f\n",
      "pkg/b.py": "def f():\n    from .a import g\n"}, ["pkg.a", "pkg.b", "pkg.a"]),
    # a base module building its own subclasses
    ({"pkg/__init__.py": "", "pkg/sub/__init__.py": "",
      "pkg/sub/base.py": "def build():\n    from .impl import Impl\n",
      "pkg/sub/impl.py": "from .base import Base\n"}, ["pkg.sub.base", "pkg.sub.impl", "pkg.sub.base"]),
    # a submodule reading a name back from its own package's __init__
    ({"pkg/__init__.py": "from .a import A\n", "pkg/a.py": "from . import VERSION\n"}, ["pkg", "pkg.a", "pkg"]),
    # absolute imports, and `from pkg import sub` that resolves to the submodule
    ({"pkg/__init__.py": "", "pkg/a.py": "import pkg.b\n", "pkg/b.py": "from pkg import a\n"},
     ["pkg.a", "pkg.b", "pkg.a"]),
    # importing pkg.x.y runs pkg/x/__init__.py, which imports back
    ({"pkg/__init__.py": "", "pkg/x/__init__.py": "from ..a import A\n", "pkg/x/y.py": "",
      "pkg/a.py": "def f():\n    from .x.y import Y\n"}, ["pkg.a", "pkg.x", "pkg.a"]),
])
def test_cycles_are_found(tmp_path, files, cycle):
    graph = import_graph(_write(tmp_path, files), "pkg")
    assert import_cycles(graph) == [cycle]


def test_reexporting_init_and_sibling_imports_are_not_cycles(tmp_path):
    package = _write(tmp_path, {
        "pkg/__init__.py": "from .a import A\nfrom .sub import B\n",
        "pkg/a.py": "from . import b\nfrom .sub.impl import B\nimport numpy\n",
        "pkg/b.py": "import os\n",
        "pkg/sub/__init__.py": "from .impl import B\n",
        "pkg/sub/impl.py": "from ..b import x\n",
    })
    graph = import_graph(package, "pkg")
    assert graph["pkg.a"] == {"pkg.b", "pkg.sub", "pkg.sub.impl"}
    assert import_cycles(graph) == []
