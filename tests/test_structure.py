"""The package's shape: imports run one way between subpackages, torch stays under training/,
the inference path imports without torch, and no module grows past 400 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nuclick_core"
#: What each part of the package may import (besides itself, the package root's __version__
#: and errors); the same rules as the subpackages' __init__ docstrings.
ALLOWED = {
    "errors": set(),
    "slurm": set(),
    "io": set(),
    "inference": {"io"},
    "data": {"inference", "io"},
    "training": {"data", "inference", "io"},
    "evaluation": {"data", "inference", "io"},
    "registry": {"evaluation", "inference", "io"},
    "cli": {"registry", "training", "evaluation", "data", "inference", "io"},
}
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _part(module: str) -> str:
    """'nuclick_core.inference.engine' -> 'inference'; the package root -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of the package in ``path``, lazy ones too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "nuclick_core":  # from nuclick_core import x
                out += [(node.lineno, f"nuclick_core.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def _name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(p for p in rel.parts if p != "__init__")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path: Path) -> None:
    here = _part(_name(path))
    if here in ("", "__init__"):
        return
    allowed = ALLOWED[here] | {here, "errors", "__version__"}
    wrong = [
        f"line {line}: {mod}"
        for line, mod in _imports(path)
        if mod.startswith("nuclick_core.") and _part(mod) not in allowed
    ]
    assert not wrong, f"{path.name} ({here}) may import only {sorted(allowed)}: {wrong}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_torch_only_under_training(path: Path) -> None:
    torch = [line for line, mod in _imports(path) if mod.split(".")[0] == "torch"]
    assert not torch or _part(_name(path)) == "training", f"{path} imports torch at {torch}"


def test_rules_name_every_part() -> None:
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    parts |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert parts == set(ALLOWED)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path} has {lines} lines; split it by what its parts do"


def test_every_subpackage_says_what_it_may_import() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc or init.parent.name == "cli", f"{init} lacks its import rule"


def test_inference_and_io_import_without_torch() -> None:
    """Every module of inference/, io/, data/, evaluation/, the registry and the CLI imports
    in a Python where torch cannot be imported; `nuclick --help` runs there too."""
    names = [
        _name(p)
        for p in _modules()
        if _part(_name(p)) in ("io", "inference", "data", "evaluation", "registry", "cli")
    ]
    code = (
        "import importlib, sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is made unimportable for this test')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "assert 'torch' not in sys.modules\n"
        "from nuclick_core.cli.main import build_parser\n"
        "build_parser().format_help()\n"
        "print('ok', len(sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok")


def test_the_import_walk_sees_lazy_and_from_imports(tmp_path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from nuclick_core import registry\n"
        "def f():\n"
        "    from nuclick_core.training.train import train\n"
        "    import torch\n"
    )
    found = [mod for _, mod in _imports(source)]
    assert found == ["nuclick_core.registry", "nuclick_core.training.train", "torch"]
    assert _part("nuclick_core.training.train") == "training"
