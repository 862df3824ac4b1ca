"""The README's quick tour runs as written (slow: about a minute)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_readme_tour_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    tour = re.search(r"## A quick tour.*?```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "tour.py").write_text(tour)
    # no copy of the repository's files: the tour copies the shipped example it needs itself
    res = subprocess.run([sys.executable, "tour.py"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "run.nc").exists() and (tmp_path / "phase.zarr").exists()
    assert (tmp_path / "phase_diagram.toml").is_file()
