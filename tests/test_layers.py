"""The import graph of src/genlab points one way (issue #17, section 4).

Every `import` / `from ... import` statement counts, at module level and inside
functions alike. Two checks:
(a) no cycles between modules;
(b) layers: low-level utilities -> data, nn, diffusion -> models -> train, metrics
    -> figures -> cli, lab, bench. A module belongs to the layer of its package; a
    module may import its own layer or lower ones, never a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = [
    # writing image files, plots and text (genlab.viz) is a low-level utility any layer may use
    ("low-level utilities", {"genlab", "genlab.errors", "genlab.rng", "genlab.fmt", "genlab.pixels", "genlab.device",
                             "genlab.color",
                             "genlab.viz"}),
    ("data, nn, diffusion, gan", {"genlab.data", "genlab.nn", "genlab.diffusion", "genlab.gan"}),
    ("models", {"genlab.models"}),
    ("train, metrics", {"genlab.train", "genlab.metrics"}),
    ("figures", {"genlab.figures"}),  # pictures that know about a model
    ("cli, lab, bench", {"genlab.cli", "genlab.lab", "genlab.bench", "genlab.__main__"}),
]

# edges that still point up, each with the reason and the fix agreed on; the test below fails when one
# of them is gone, so that it is also removed from here (none left)
PENDING: set[tuple[str, str]] = set()


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "genlab").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(name: str, mods: dict) -> str | None:
    """The genlab module an imported dotted name refers to (the longest existing prefix)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the genlab modules it imports (anywhere in the file)."""
    mods = modules()
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                # `from pkg import mod` imports the module pkg.mod; `from mod import name` the module mod
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for name in names:
                target = _imported(name, mods) if name.startswith("genlab") else None
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def layer_of(module: str) -> int:
    best = None
    for i, (_, packages) in enumerate(LAYERS):
        for p in packages:
            inside = module == p or (p != "genlab" and module.startswith(p + "."))
            if inside and (best is None or len(p) > len(best[1])):
                best = (i, p)
    assert best is not None, f"{module} belongs to no layer: add its package to LAYERS in tests/test_layers.py"
    return best[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_graph_sees_module_and_function_level_imports():
    graph = import_graph()
    assert "genlab.errors" in graph["genlab.data.base"]                      # from ..errors import (module level)
    assert "genlab.models" in graph["genlab.train.checkpoint"]               # from ..models import (in a function)
    assert {"genlab.data.cifar", "genlab.data.words"} <= graph["genlab.data"]  # from . import cifar, ...


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_has_a_layer():
    for m in modules():
        layer_of(m)


def test_no_module_imports_a_higher_layer():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {n} ({LAYERS[layer_of(n)][0]})"
              for m, targets in import_graph().items() for n in sorted(targets)
              if layer_of(n) > layer_of(m) and (m, n) not in PENDING]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


@pytest.mark.parametrize("edge", sorted(PENDING))
def test_pending_exceptions_still_exist(edge):
    m, n = edge
    assert n in import_graph()[m], f"{m} no longer imports {n}: remove the edge from PENDING"
