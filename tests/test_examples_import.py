"""Importing an example module runs nothing: each ``lesde.examples`` script keeps its work under
``if __name__ == "__main__":``, so ``import lesde.examples.NAME`` (documentation tools, ``help()``, a test
collector) returns at once and writes no file."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lesde.examples

FOLDER = Path(lesde.examples.__file__).parent
MODULES = sorted(p.stem for p in FOLDER.glob("*.py") if not p.stem.startswith("_"))


def _guarded(name: str) -> bool:
    tree = ast.parse((FOLDER / f"{name}.py").read_text())
    return any(isinstance(s, ast.If) and "__main__" in ast.unparse(s.test) for s in tree.body)


def test_there_are_example_modules():
    assert {"cnn_on_arrays", "label_noise", "residual_collapse", "sgd_vs_sde", "theory_comparison"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_importing_an_example_runs_nothing(name, tmp_path):
    assert _guarded(name), f"{name}.py runs at import: put the run behind if __name__ == '__main__'"
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", f"import lesde.examples.{name}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "MPLBACKEND": "Agg"},
    )
    seconds = time.perf_counter() - start
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == "", run.stdout[-2000:]
    assert list(tmp_path.iterdir()) == [], "importing wrote files"
    assert seconds < 60, f"importing took {seconds:.0f} s"
