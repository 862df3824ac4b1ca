"""Nothing lost: a ``lesde`` command that fails, is interrupted (Ctrl-C) or is killed while it writes a result
leaves the previous file at that path intact; Ctrl-C anywhere, start-up included, exits 130 with one line.

The in-process cases make the writer fail after writing part of a file; the subprocess cases stop the real
command (SIGINT, SIGKILL) at a known moment: while it writes, and while its imports run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
import xarray as xr

import lesde.examples
from lesde import cli

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

SIMULATE = """
[model]
num_classes = 2
dim = 2
samples_per_class = 3
alpha = 1.0
beta = 0.0

[simulate]
t_end = 1.0
dt = 0.1
n_paths = 4
n_save = 3
method = "euler"
dtype = "float64"
"""


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(SIMULATE)
    return path


def _previous(path: Path) -> xr.Dataset:
    """A distinct previous result at ``path``, as a user's earlier run would have left it."""
    ds = xr.Dataset({"previous": ("t", np.arange(4.0))}, attrs={"kept": "yes"})
    ds.to_netcdf(path, engine="h5netcdf")
    return ds


def _assert_intact(path: Path, previous: xr.Dataset) -> None:
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        xr.testing.assert_identical(ds.load(), previous)


def _results(folder: Path) -> list[str]:
    """What a glob for results sees: temporary files start with a dot."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


# ----------------------------------------------------------------------------------------------------------------
# a writer that fails part-way (a full disk) leaves the previous file and no temporary


def _half_netcdf(self, path, *args, **kwargs):
    Path(path).write_bytes(b"\x89HDF\r\n\x1a\n half a file")
    raise OSError(28, "No space left on device")


def _half_figure(self, fname, *args, **kwargs):
    Path(fname).write_bytes(b"\x89PNG half a figure")
    raise OSError(28, "No space left on device")


def test_simulate_full_disk_keeps_the_previous_result(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run.nc"
    previous = _previous(out)
    monkeypatch.setattr(xr.Dataset, "to_netcdf", _half_netcdf)
    assert cli.main(["simulate", str(_config(tmp_path)), "--out", str(out), "--quiet"]) == 1
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.undo()
    _assert_intact(out, previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nc", "run.toml"]  # no temporary left behind


def test_compare_theory_full_disk_keeps_the_previous_result_and_figure(tmp_path, capsys, monkeypatch):
    src = tmp_path / "src.nc"
    assert cli.main(["simulate", str(_config(tmp_path)), "--out", str(src), "--quiet"]) == 0
    out, png = tmp_path / "th.nc", tmp_path / "th.png"
    previous = _previous(out)
    png.write_bytes(b"the previous figure")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _half_figure)
    assert cli.main(["compare-theory", str(src), "--out", str(out), "--plot", str(png)]) == 1
    assert png.read_bytes() == b"the previous figure"
    monkeypatch.undo()
    monkeypatch.setattr(xr.Dataset, "to_netcdf", _half_netcdf)
    assert cli.main(["compare-theory", str(src), "--out", str(out), "--plot", str(png)]) == 1
    monkeypatch.undo()
    capsys.readouterr()
    _assert_intact(out, previous)
    assert _results(tmp_path) == ["run.toml", "src.nc", "th.nc", "th.png"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_plot_full_disk_keeps_the_previous_figure(tmp_path, capsys, monkeypatch):
    src, png = tmp_path / "src.nc", tmp_path / "cos.png"
    assert cli.main(["simulate", str(_config(tmp_path)), "--out", str(src), "--quiet"]) == 0
    png.write_bytes(b"the previous figure")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _half_figure)
    assert cli.main(["plot", "cosines", str(src), "--out", str(png)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert png.read_bytes() == b"the previous figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cos.png", "run.toml", "src.nc"]
    monkeypatch.undo()  # the temporary name keeps the suffix, so matplotlib still chooses the format from it
    for suffix, magic in ((".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")):
        assert cli.main(["plot", "cosines", str(src), "--out", str(png.with_suffix(suffix))]) == 0
        assert png.with_suffix(suffix).read_bytes().startswith(magic)
    assert _results(tmp_path) == ["cos.pdf", "cos.png", "cos.svg", "run.toml", "src.nc"]


def test_example_copy_fails_part_way_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "simulate.toml"
    target.write_text("# my edited copy\n")

    def half_copy(src, dst, *args, **kwargs):
        Path(dst).write_text("[model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", half_copy)
    with pytest.raises(OSError, match="No space"):
        lesde.examples.copy("simulate", tmp_path, force=True)
    assert target.read_text() == "# my edited copy\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["simulate.toml"]


# ----------------------------------------------------------------------------------------------------------------
# the real command stopped while it writes: SIGKILL and SIGINT leave the previous file

# the command, with a NetCDF writer that writes part of the file, says so (a marker file) and waits to be stopped
_STALLED_WRITER = """
import pathlib, sys, time
import xarray as xr
def stalled(self, path, *args, **kwargs):
    pathlib.Path(path).write_bytes(b"\\x89HDF\\r\\n\\x1a\\n half a file")
    pathlib.Path(sys.argv[1]).touch()
    time.sleep(120)
xr.Dataset.to_netcdf = stalled
from lesde.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never started writing"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_a_command_stopped_while_it_writes_keeps_the_previous_file(tmp_path, sig):
    out, marker = tmp_path / "run.nc", tmp_path / "writing"
    previous = _previous(out)
    argv = [sys.executable, "-c", _STALLED_WRITER, marker, "simulate", _config(tmp_path), "--out", out, "--quiet"]
    proc = subprocess.Popen(list(map(str, argv)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    _wait_for(marker, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    _assert_intact(out, previous)
    assert _results(tmp_path) == ["run.nc", "run.toml", "writing"]
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert err.strip().splitlines() == ["lesde simulate: interrupted"], err
        assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # the temporary is removed
    else:
        assert proc.returncode == -signal.SIGKILL


# ----------------------------------------------------------------------------------------------------------------
# Ctrl-C during start-up, while the imports run, and during a run: 130 and one line, never 0


def _entry_points() -> list:
    script = Path(sys.executable).with_name("lesde")
    return [
        pytest.param(["-m", "lesde.cli"], id="python -m lesde.cli"),
        pytest.param(
            [str(script)], id="lesde script", marks=pytest.mark.skipif(not script.is_file(), reason="not installed")
        ),
    ]


@pytest.mark.parametrize("entry", _entry_points())
def test_ctrl_c_while_the_imports_run(entry):
    # -X importtime reports each import as it completes: the first line naming torch means lesde's own imports
    # have begun (torch is what lesde imports first and what takes the time)
    argv = [sys.executable, "-X", "importtime", *entry, "methods"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    for line in proc.stderr:
        if "torch" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if not line.startswith("import time:")]
    assert proc.returncode == 130, err[-2000:]
    assert lines == ["lesde: interrupted while starting"]
    assert out == ""


def test_the_demo_refuses_an_interrupted_simulation(tmp_path, monkeypatch):
    """simulate returns the completed part of an interrupted run (attrs["interrupted"]); the demo, which has no
    use for a part, ends as interrupted rather than drawing it and exiting 0."""
    from lesde.cli import cmd_demo

    real = lesde.simulate

    def interrupted(*args, **kwargs):
        ds = real(*args, **{**kwargs, "t_end": 0.1})
        ds.attrs["interrupted"] = "KeyboardInterrupt: kept 32 of 32 paths and 2 of 21 save times"
        return ds

    monkeypatch.setattr(lesde, "simulate", interrupted)
    with pytest.raises(KeyboardInterrupt, match="kept 32 of 32 paths"):
        cmd_demo.residual_demo(tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
