"""The shipped examples: `lesde example list / copy`, package data in the wheel, and runs outside the repository."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lesde.examples
from lesde import cli, sweep

REPO = Path(__file__).resolve().parents[1]
FILES = sorted(p.name for p in Path(lesde.examples.__file__).parent.iterdir() if p.suffix in (".toml", ".py"))
FILES = [f for f in FILES if not f.startswith("_")]


def test_every_shipped_file_is_listed_with_one_line(capsys):
    assert lesde.examples.names() == FILES
    assert {"phase_diagram.toml", "simulate.toml", "compare_sgd.toml", "sgd_vs_sde.py"} <= set(FILES)
    assert cli.main(["example", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == FILES
    for line in lines:
        name, description = line.split(maxsplit=1)
        assert description == lesde.examples.describe(name) and len(description) > 20, line
    assert lesde.examples.describe("phase_diagram") == (
        "Separability phase diagram of the LE-SDE: alpha_t = c (1 + t)^-p swept over (p, c)."
    )
    assert not (REPO / "examples").exists()  # one location: the package


def test_copy_refuses_to_overwrite_without_force(tmp_path, capsys):
    assert cli.main(["example", "copy", "simulate.toml", str(tmp_path)]) == 0
    target = tmp_path / "simulate.toml"
    with lesde.examples.path("simulate.toml") as src:
        assert target.read_text() == src.read_text()
    target.write_text("# edited\n")
    capsys.readouterr()
    assert cli.main(["example", "copy", "simulate", str(tmp_path)]) == 2  # the stem names it too
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and "--force" in err[0]
    assert target.read_text() == "# edited\n"
    assert cli.main(["example", "copy", "simulate", str(tmp_path), "--force"]) == 0
    assert target.read_text().startswith("# A residual-transform LE-SDE")
    # a file path keeps the given name; a missing folder is created
    assert lesde.examples.copy("sgd_vs_sde.py", tmp_path / "mine.py") == tmp_path / "mine.py"
    assert lesde.examples.copy("compare_sgd", tmp_path / "new" / "dir") == tmp_path / "new" / "dir" / "compare_sgd.toml"


def test_an_unknown_name_is_one_line_listing_the_names(capsys):
    assert cli.main(["example", "copy", "phase", "."]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lesde example: error: no example named 'phase'")
    assert err[0].endswith("the examples are: " + ", ".join(FILES))


def test_sweep_runs_outside_the_repository(tmp_path, monkeypatch, capsys):
    """Copy the phase-diagram example into an empty folder and run it there (shrunk to seconds)."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["example", "copy", "phase_diagram.toml"]) == 0
    spec = Path("phase_diagram.toml")
    text = spec.read_text()
    text = text.replace("n_paths = 500", "n_paths = 8").replace("t_end = 1e4", "t_end = 100.0")
    text = text.replace("save_times = [1e1, 1e2, 1e3, 1e4]", "save_times = [1e1, 1e2]").replace(
        "time = 1e4", "time = 1e2"
    )
    text = re.sub(r'"model.alpha.exponent" = \[.*\]', '"model.alpha.exponent" = [0.5, 2.0]', text)
    text = re.sub(r'"model.alpha.scale" = \[.*\]', '"model.alpha.scale" = [1.0]', text)
    spec.write_text(text)
    assert cli.main(["sweep", "phase_diagram.toml", "--store", "phase.zarr", "--quiet"]) == 0, capsys.readouterr().err
    ds = sweep.run("phase_diagram.toml", "phase.zarr", progress=False)  # resumes the finished store
    assert ds["p_all_separable"].sizes == {"alpha_exponent": 2, "alpha_scale": 1, "time": 3}
    p = ds["p_all_separable"].sel(time=1e2).values[:, 0]
    assert p[0] > p[1]  # p = 0.5 separates, p = 2 does not
    assert (tmp_path / "phase.zarr").is_dir() and (ds["status"] == "ok").all()


def test_the_examples_are_in_the_wheel(tmp_path):
    pytest.importorskip("setuptools")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("lesde-*.whl")
    inside = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("lesde/examples/")}
    assert {f"lesde/examples/{f}" for f in FILES} <= inside
