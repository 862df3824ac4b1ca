"""The documentation site: every tutorial runs at its tiny size and writes the figures its page embeds, the
embedded figures are committed, every page in the nav exists, and nothing on the site names a file a user does
not have. (``mkdocs build --strict`` itself runs in CI after the tests: .ci/run.)"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.py"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _embedded(script: Path) -> list[str]:
    """The figure files a tutorial's page embeds (``![...](../figures/NAME.png)`` in its markdown cells)."""
    return re.findall(r"\]\(\.\./figures/([\w.-]+\.png)\)", script.read_text())


def test_there_are_five_tutorials_each_embedding_committed_figures():
    assert [p.stem for p in TUTORIALS] == ["elasticity", "integrators", "nc_metrics", "phase_sweep", "sgd_vs_sde"]
    for script in TUTORIALS:
        figures = _embedded(script)
        assert figures, script.name
        for name in figures:
            png = DOCS / "figures" / name
            assert png.is_file() and png.read_bytes()[:8] == PNG_MAGIC, png
            assert png.stat().st_size > 20_000, f"{png} looks empty"


# what each tiny run must have written besides its figures, and a check of its values
def _phase(out: Path) -> None:
    import lesde.sweep

    ds = lesde.sweep.open_sweep(out / "phase_sweep.zarr")
    p = ds["p_all_separable"].isel(time=-1)
    assert (p.sel(alpha_exponent=0.5) >= 0.9).all() and (p.sel(alpha_exponent=2.0) <= 0.1).all()


def _nc(out: Path) -> None:
    with xr.open_dataset(out / "nc_metrics.nc", engine="h5netcdf") as ds:
        assert {"nc1", "etf_error", "self_duality", "ncc_mismatch", "cdnv", "fraction_separable"} <= set(ds)
        assert np.isfinite(ds.nc1.values).all() and ds.sizes["step"] >= 5
        assert float(ds.train_accuracy[-1]) > float(ds.train_accuracy[0])


def _sgd(out: Path) -> None:
    with xr.open_dataset(out / "sgd_vs_sde_ufm.nc", engine="h5netcdf") as ds:
        assert set(ds.process.values) == {"sgd", "sme", "gradient_flow"} and np.isfinite(ds.loss.values).all()


CHECKS = {"phase_sweep": _phase, "nc_metrics": _nc, "sgd_vs_sde": _sgd}
PRINTS = {  # a line of each script's output, with real values
    "phase_sweep": r"P at p = 0.5: \[1\. 1\.\]; at p = 2: \[0\. 0\.\]",
    "elasticity": r"median relative error of the class means: first half [0-9.e+]+",
    "sgd_vs_sde": r"UFM +sgd: loss [0-9.]+, nc1 [0-9.e+-]+",
    "nc_metrics": r"features \(\d+, 200, 32\)",
    "integrators": r"torchsde:srk: errors \[.*\]; fitted order [0-9.]+",
}


@pytest.mark.parametrize("script", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_tiny(script, tmp_path):
    env = {**os.environ, "LESDE_TUTORIAL_TINY": "1", "LESDE_TUTORIAL_OUT": str(tmp_path), "MPLBACKEND": "Agg"}
    res = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    # the tutorials teach the current API: no deprecated call (an output path given to a plot function, ...)
    assert "DeprecationWarning" not in res.stderr, res.stderr[-3000:]
    assert re.search(PRINTS[script.stem], res.stdout), res.stdout[-2000:]
    for name in _embedded(script):
        png = tmp_path / name
        assert png.is_file() and png.read_bytes()[:8] == PNG_MAGIC, f"{script.name} did not write {name}"
    if script.stem in CHECKS:
        CHECKS[script.stem](tmp_path)


def test_tutorial_pages_are_generated_from_the_scripts():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)  # needs the docs extra (part of the test extra)
    text = (DOCS / "tutorials" / "phase_sweep.py").read_text()
    page = hooks.script_to_markdown(text, "phase_sweep.py")
    assert page.startswith("# Tutorial 1: a separability phase transition")
    assert "[Download the script](phase_sweep.py)" in page
    assert "```python\nimport os" in page and "# %%" not in page
    assert "![Phase diagram" in page


def test_every_nav_page_exists():
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.M)
    assert len(nav) >= 24
    generated = {f"tutorials/{p.stem}.md" for p in TUTORIALS} | {"cli.md"}  # written by docs/hooks.py
    for page in nav:
        assert (DOCS / page).is_file() or page in generated, page
    assert "decisions.md" in nav and "benchmarks.md" in nav
    assert '--8<-- "benchmarks/RESULTS.md"' in (DOCS / "benchmarks.md").read_text()


# ----------------------------------------------------------------------------------------------------------------
# nothing on the site names a file a user does not have

FORBIDDEN = re.compile(r"DESIGN\.md|STYLE\.md|\bissues? ?#?\d+|\bissue-\d+|/work/|shared/seeds|\bseeds? \d{3}\b", re.I)


def _docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return [d for n in nodes if (d := ast.get_docstring(n))]


def _site_texts() -> dict[str, str]:
    """What the site renders: its pages, the files they include, the tutorials, the README (the home of the
    repository) and the docstrings of every lesde module (the API reference)."""
    texts = {str(p.relative_to(REPO)): p.read_text() for p in DOCS.rglob("*.md")}
    texts |= {str(p.relative_to(REPO)): p.read_text() for p in TUTORIALS}
    texts["README.md"] = (REPO / "README.md").read_text()
    texts["benchmarks/RESULTS.md"] = (REPO / "benchmarks" / "RESULTS.md").read_text()
    for p in (REPO / "lesde").rglob("*"):
        if p.suffix == ".py":
            texts[str(p.relative_to(REPO))] = "\n".join(_docstrings(p))
        elif p.suffix == ".toml":  # the shipped example configs
            texts[str(p.relative_to(REPO))] = p.read_text()
    return texts


def test_the_checker_finds_what_it_forbids():
    for bad in (
        "see DESIGN.md section 2",
        "(issue 12)",
        "issues 9 and 16",
        "branch issue-11",
        "/work/shared",
        "seed 002",
    ):
        assert FORBIDDEN.search(bad), bad
    for fine in ("an issue with the estimate", "seed = 0", "seeds the draw", "issued"):
        assert not FORBIDDEN.search(fine), fine


def test_no_page_names_a_file_a_user_does_not_have():
    hits = [
        f"{name}: ...{text[max(0, m.start() - 40) : m.end() + 20]!r}..."
        for name, text in _site_texts().items()
        for m in FORBIDDEN.finditer(text)
    ]
    assert not hits, "\n".join(hits)
