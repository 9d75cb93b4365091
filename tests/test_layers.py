"""Imports point one way (docs/design.md §10): the import graph of the package, function-level imports included, has
no circle and no import up the layers. Checked on a synthetic package first, so the checker itself can fail."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "diffcrit"

# docs/design.md §10, lowest first: a module may import its own layer and the ones below (longest prefix wins).
LAYERS = [
    ["diffcrit.errors", "diffcrit.frame", "diffcrit.resources", "diffcrit.io", "diffcrit.progress",
     "diffcrit.distributed", "diffcrit.config", "diffcrit.config_file"],
    ["diffcrit.spectral"],
    ["diffcrit.report.document", "diffcrit.report.table"],
    ["diffcrit.models"],
    ["diffcrit.sampling"],
    ["diffcrit.probing"],
    ["diffcrit.analysis"],
    ["diffcrit.guidance", "diffcrit.diffusers", "diffcrit.release", "diffcrit.report", "diffcrit.reproduction"],
    ["diffcrit.__init__"],
    ["diffcrit.cli", "diffcrit.__main__"],
    ["diffcrit.training"],
]
# The package root's metadata may be read from anywhere (it imports nothing at import time: PEP 562).
ROOT_METADATA = {"__version__"}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path) -> dict[str, set[str]]:
    """{module: the package's modules it imports}, every import statement counted (in functions too); a package is
    named by its ``__init__`` module; ``from pkg import sub`` is an import of ``pkg.sub`` where that is a module."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    modules = set(files)
    top = root.name

    def target(name: str) -> str | None:
        if name in modules:
            return name
        if f"{name}.__init__" in modules:
            return f"{name}.__init__"
        return None

    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges = graph.setdefault(name, set())
        is_package = path.name == "__init__.py"
        owner = name.rsplit(".", 1)[0] if is_package else name
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found = [target(alias.name) for alias in node.names if alias.name.split(".")[0] == top]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(owner if is_package else name, is_package, node)
                if source.split(".")[0] != top:
                    continue
                subs = [target(f"{source}.{alias.name}") for alias in node.names]
                found = [sub for sub in subs if sub is not None]
                plain = [alias.name for alias, sub in zip(node.names, subs, strict=True) if sub is None]
                if plain and not (source == top and set(plain) <= ROOT_METADATA):
                    found.append(target(source))
            else:
                continue
            edges.update(f for f in found if f is not None and f != name)
    return graph


def layer_of(module: str, layers: list[list[str]]) -> int:
    best, level = -1, None
    for index, prefixes in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), index
    if level is None:
        raise AssertionError(f"{module} is in no layer of docs/design.md §10")
    return level


def upward_imports(graph: dict[str, set[str]], layers: list[list[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if layer_of(b, layers) > layer_of(a, layers))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def synthetic(tmp_path):
    """pkg: low <- mid <- high, with one circle (mid.a <-> mid.b, one side inside a function) and one import up the
    layers (low.base imports high.leaf inside a function)."""
    return write_package(tmp_path / "pkg", {
        "__init__.py": "__version__ = '1'\n",
        "low/__init__.py": "",
        "low/base.py": "from .. import __version__\n\ndef f():\n    from ..high import leaf\n",
        "mid/__init__.py": "",
        "mid/a.py": "from . import b\nfrom ..low.base import f\n",
        "mid/b.py": "def g():\n    from .a import f\n",
        "high/__init__.py": "",
        "high/feature.py": "import pkg.mid.a\nfrom pkg.low import base\n",
        "high/leaf.py": "",
    })


SYNTHETIC_LAYERS = [["pkg.low"], ["pkg.mid"], ["pkg.high", "pkg.__init__"]]


def test_the_checker_finds_a_circle_and_an_upward_import(synthetic):
    graph = import_graph(synthetic)
    assert graph["pkg.high.feature"] == {"pkg.mid.a", "pkg.low.base"}
    assert graph["pkg.low.base"] == {"pkg.high.leaf"}  # __version__ from the root is not an edge
    assert circles(graph) == [["pkg.mid.a", "pkg.mid.b"]]
    assert upward_imports(graph, SYNTHETIC_LAYERS) == ["pkg.low.base -> pkg.high.leaf"]


def test_the_checker_passes_a_clean_package(synthetic):
    (synthetic / "mid" / "b.py").write_text("def g():\n    return 1\n")
    (synthetic / "low" / "base.py").write_text("def f():\n    return 2\n")
    graph = import_graph(synthetic)
    assert circles(graph) == [] and upward_imports(graph, SYNTHETIC_LAYERS) == []


def test_every_module_has_a_layer():
    for module in import_graph(PACKAGE):
        layer_of(module, LAYERS)


def test_no_import_circle():
    assert circles(import_graph(PACKAGE)) == []


def test_imports_point_down_the_layers():
    assert upward_imports(import_graph(PACKAGE), LAYERS) == []


def test_nothing_imports_training_at_run_time():
    graph = import_graph(PACKAGE)
    assert [f"{a} -> {b}" for a, targets in graph.items() for b in targets
            if b.startswith("diffcrit.training") and not a.startswith("diffcrit.training")] == []
