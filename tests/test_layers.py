"""The house's layering, checked on the source: imports only go down, no circles, scoring stays light.

Layers, bottom to top: common -> extractors -> lake -> model -> reports -> flows -> cli. Every import of a
``flowhawk`` module (at module top or inside a function) is an arrow; none may point to a higher layer, and
the module graph has no cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("common", "extractors", "lake", "model", "reports", "flows", "cli")


def _modules() -> dict[str, Path]:
    out = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(("flowhawk", *parts[:-1])) if parts[-1] == "__init__" else ".".join(("flowhawk", *parts))
            out[name] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """flowhawk modules imported anywhere in ``path`` (``from a import b`` counts a.b when b is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("flowhawk.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flowhawk"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            found |= subs or {node.module}
    return {m for m in found if m in modules}


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def test_imports_only_go_down():
    modules = _modules()
    upward = [f"{m} -> {t}" for m, p in modules.items() for t in _imports(p, modules) if _layer(t) > _layer(m)]
    assert not upward, "imports pointing to a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", ["flowhawk.model.registry", "flowhawk.model.scoring"])
def test_loading_a_model_to_score_imports_neither_sklearn_nor_the_optimiser(module):
    code = (f"import sys, {module}; bad = sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn' "
            "or m in ('flowhawk.model.train', 'flowhawk.model.lifecycle')); print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
