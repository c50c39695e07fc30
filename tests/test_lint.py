"""Static checks run with the suite, so CI enforces them: ruff (lint) and mypy (types)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


def test_ruff_is_clean() -> None:
    run = _run(str(BIN / "ruff"), "check", "nuclick_core", "tests", "bench")
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_is_clean() -> None:
    run = _run(str(BIN / "mypy"), "--config-file", "pyproject.toml")
    assert run.returncode == 0, run.stdout + run.stderr
