"""The head and coreset modules import one way (no cycles, function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import padim_edge

ROOT = Path(padim_edge.__file__).parent


def imports_of(module: str) -> set[str]:
    """Every ``padim_edge`` module that ``module`` imports, anywhere in its source."""
    tree = ast.parse((ROOT.parent / (module.replace(".", "/") + ".py")).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("padim_edge"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("padim_edge")}
    return found


@pytest.mark.parametrize(
    "chain",
    [
        ["graph_head", "compact_head", "panel_nodes"],
        ["graph_head", "compact_head", "low_rank", "panel_quantize"],
        ["coreset", "fast_greedy", "lazy_greedy", "canonical_distances"],
    ],
)
def test_dependencies_run_one_way(chain: list[str]) -> None:
    package = "padim_edge.export.padim" if "graph_head" in chain else "padim_edge.export.patchcore"
    modules = [f"{package}.{name}" for name in chain]
    for index, module in enumerate(modules):
        later = set(modules[index + 1 :])
        earlier = set(modules[:index])
        imported = imports_of(module)
        assert not imported & earlier, f"{module} imports {imported & earlier}"
        if index + 1 < len(modules):
            assert modules[index + 1] in imported or later & imported, module
