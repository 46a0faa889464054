"""The layering docs/ARCHITECTURE.md draws holds: each layer imports only the layers below it,
library code never imports a command-line module, and the modules the workflow loads at parse
time stay torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "unilearn"

# layer -> the layers its library modules may import (besides itself). A layer is a subpackage
# or a top-level module of unilearn.
BELOW = {
    "catalogue": set(),
    # every path of data, runs and results: below all that read or write them
    "layout": {"catalogue"},
    "atomic": set(),
    "errors": set(),
    "config": {"catalogue", "atomic", "layout"},
    "models": {"catalogue", "atomic", "config"},
    "data": {"catalogue", "atomic", "errors", "__version__", "layout"},
    "doctor": {"catalogue", "atomic", "errors", "data", "layout"},
    "launch": {"catalogue", "config", "errors", "layout"},
    "report": {"catalogue", "atomic", "config", "models", "layout"},
    "predict": {"catalogue", "atomic", "errors", "data", "models", "layout"},
    "progress": {"atomic", "models", "layout"},
    "plan": {"catalogue", "config", "report", "layout"},
    "engine": {
        "catalogue",
        "atomic",
        "errors",
        "config",
        "models",
        "data",
        "launch",
        "report",
        "predict",
        "progress",
        "layout",
    },  # fmt: skip
    "status": {"config", "report", "progress", "layout"},
}


def _is_cli(module: str) -> bool:
    """Command-line modules: `unilearn.cli`, `*.cli`, `*_cli`, the stages' argument module and
    the stages themselves (they sit on top and may import anything)."""
    last = module.rsplit(".", 1)[-1]
    return (
        last in ("cli", "__main__", "cli_args")
        or last.endswith("_cli")
        or module in ("unilearn.engine.pretrain", "unilearn.engine.finetune")
        or module.startswith("unilearn.engine.evaluate")
    )


def _imports() -> list[tuple[str, str]]:
    """(importing module, imported unilearn module) for every import in the package, lazy
    imports inside functions included."""
    pairs = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(p for p in parts if p != "__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "unilearn":
                    pairs += [(module, f"unilearn.{a.name}") for a in node.names]
                elif node.module.startswith("unilearn."):
                    pairs.append((module, node.module))
            elif isinstance(node, ast.Import):
                pairs += [(module, a.name) for a in node.names if a.name.startswith("unilearn.")]
    return pairs


def _layer(module: str) -> str:
    return module.split(".")[1]


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for importer, imported in _imports():
        layer, target = _layer(importer), imported.split(".", 1)[1]
        if layer not in BELOW or _is_cli(importer) or _layer(imported) == layer:
            continue
        allowed = BELOW[layer]
        if not any(target == a or target.startswith(a + ".") for a in allowed):
            wrong.append(f"{importer} imports {imported}")
    assert not wrong, "imports across the layering:\n" + "\n".join(sorted(wrong))


def test_library_code_never_imports_a_command_line_module():
    wrong = [
        f"{importer} imports {imported}"
        for importer, imported in _imports()
        if not _is_cli(importer) and _is_cli(imported) and imported != "unilearn.engine.cli_args"
    ]
    assert not wrong, "\n".join(sorted(wrong))


@pytest.mark.parametrize(
    "module",
    [
        "unilearn.catalogue",
        "unilearn.config",
        "unilearn.plan.jobs",
        "unilearn.report.runs",
        "unilearn.launch.estimate",
    ],  # fmt: skip
)
def test_modules_the_workflow_loads_at_parse_time_are_torch_free(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
