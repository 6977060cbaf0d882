"""Import direction: a module of ``fasr`` never imports from a layer above its own (read with ``ast``, nothing
is imported). The layers, lowest first: errors, heap <- data <- models <- config/pretrained/scoring <- checkpoint <-
training, evaluation <- inference <- bench <- cli <- __main__. Packages of one layer do not import each other."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fasr"

# Top-level module or package of fasr -> its layer. The package itself (``fasr/__init__.py``: the version and
# the public API) sits on top and may be imported from anywhere for ``__version__``.
LAYERS: dict[str, int] = {
    "errors": 0,
    "heap": 0,  # process-wide allocator settings (no fasr imports)
    "provenance": 0,  # command, commit, machine and date of a result (no fasr imports)
    "files": 0,  # writing result files whole (no fasr imports)
    "options": 0,  # command-line options shared by several parsers (no fasr imports, no torch)
    "data": 1,
    "models": 2,
    "config": 3,
    "pretrained": 3,
    "scoring": 3,
    "checkpoint": 4,
    "training": 5,
    "evaluation": 5,
    "inference": 6,
    "bench": 7,  # benchmarks measure every layer below, inference included
    "api": 7,  # the public Python API (fasr/api.py re-exports fasr.inference.api)
    "cli": 8,
    "__main__": 9,
}


def _unit(module: str) -> str:
    """The top-level part of a dotted ``fasr.x.y`` name (``fasr`` itself for the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "fasr"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported fasr module) for every import in ``path``, lazy ones in functions included."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return [(line, target) for line, target in found if target == "fasr" or target.startswith("fasr.")]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def backward_edges() -> list[str]:
    """``file:line: importer -> imported`` for every import that goes up or sideways between layers."""
    problems = []
    for path in _modules():
        source = _unit(_module_name(path))
        if source == "fasr":  # the package's public API re-exports from every layer
            continue
        for line, target in _imports(path):
            dest = _unit(target)
            if dest == source or dest == "fasr" or dest not in LAYERS:
                continue
            if LAYERS[dest] >= LAYERS[source]:
                where = f"{path.relative_to(PACKAGE.parent)}:{line}"
                problems.append(f"{where}: {source} (layer {LAYERS[source]}) imports {target} (layer {LAYERS[dest]})")
    return problems


def test_every_top_level_module_has_a_layer():
    units = {_unit(_module_name(p)) for p in _modules()} - {"fasr"}
    assert sorted(units - set(LAYERS)) == [], "add the new module or package to LAYERS in tests/test_layering.py"


def test_no_import_goes_up_or_sideways():
    assert backward_edges() == []


@pytest.mark.parametrize(
    ("importer", "statement", "expected"),
    [
        ("training/x.py", "from fasr.evaluation.evaluate import evaluate_model", 1),
        ("config.py", "from fasr.training import trainer", 1),
        ("data/x.py", "import fasr.models", 1),
        ("models/x.py", "def f():\n    from fasr.checkpoint import load_model", 1),
        ("training/x.py", "from fasr.checkpoint import load_model\nfrom fasr import __version__", 0),
        ("inference/x.py", "from fasr.evaluation.figures import residual_figure", 0),
    ],
)
def test_backward_edges_are_found(tmp_path, monkeypatch, importer, statement, expected):
    root = tmp_path / "fasr"
    path = root / importer
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(statement + "\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", root)
    assert len(backward_edges()) == expected
