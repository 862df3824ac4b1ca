"""The ``lesde`` command: every failure is one stderr line naming the problem, exit code 2 (bad input), 1 (a failed
run) or 130 (interrupt), never a traceback unless --debug; outputs are checked before the run; --help and
--version; every config-driven command has an example TOML.

Most cases call ``lesde.cli.main`` in this process (the same code path as the console script); a few run the
real command in a subprocess.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from sweep_helpers import overflowing, small, to_toml

import lesde
import lesde.examples
from lesde import cli, sweep
from lesde.config import load_toml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = Path(lesde.examples.__file__).parent  # the shipped examples (lesde example list)

SIMULATE = """
[model]
num_classes = 2
dim = 2
samples_per_class = 3
alpha = {alpha}
beta = 0.0

[simulate]
t_end = {t_end}
dt = 0.1
n_paths = 4
n_save = 3
method = "euler"
dtype = "{dtype}"
"""


def config(tmp_path, alpha="1.0", t_end="1.0", dtype="float64", name="run.toml", text=None) -> str:
    path = tmp_path / name
    path.write_text(text if text is not None else SIMULATE.format(alpha=alpha, t_end=t_end, dtype=dtype))
    return str(path)


def run_main(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse: --help, --version and usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def fails(capsys, code: int, *argv) -> str:
    """Run the command, check it failed with ``code`` and one stderr line without a traceback; the line."""
    got, out, err = run_main(capsys, *argv)
    lines = err.strip().splitlines()
    assert got == code, (got, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A finished small() store, saved at t = 0, 10 and 100."""
    path = tmp_path_factory.mktemp("cli") / "small.zarr"
    sweep.run(small(), path, progress=False)
    return path


# ----------------------------------------------------------------------------------------------------------------
# help and version


def test_version(capsys):
    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and out.strip() == f"lesde {lesde.__version__}"


def test_every_subcommand_has_a_description_and_shows_every_default():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {
        "demo",
        "simulate",
        "sweep",
        "plot",
        "compare-sgd",
        "estimate",
        "imitate",
        "methods",
        "example",
        "compare-theory",
    }
    for name, p in sub.choices.items():
        assert p.description, name
        text = " ".join(p.format_help().split())
        assert p.description.split()[0] in text
        for action in p._actions:
            if not action.option_strings or action.default is argparse.SUPPRESS or action.required:
                continue
            if isinstance(action, argparse._HelpAction):
                continue
            shown = f"(default: {action.default})" in text or "default" in (action.help or "").lower()
            assert shown, (name, action.option_strings)


# ----------------------------------------------------------------------------------------------------------------
# failures: one line, an exit code, no traceback


def test_a_state_overflow_is_a_failed_run(tmp_path, capsys):
    line = fails(capsys, 1, "simulate", config(tmp_path, alpha="50.0", t_end="10.0", dtype="float32"), "--out",
                 tmp_path / "o.nc", "--quiet")  # fmt: skip
    assert line.startswith("lesde simulate: error: the state overflowed") or "overflowed" in line, line
    assert not (tmp_path / "o.nc").exists()


def test_a_floating_point_error_is_a_failed_run(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise FloatingPointError("invalid value encountered in the drift")

    monkeypatch.setattr(sys.modules["lesde.simulate"], "simulate", broken)
    line = fails(capsys, 1, "simulate", config(tmp_path), "--out", tmp_path / "o.nc")
    assert line == "lesde simulate: error: invalid value encountered in the drift"


@pytest.mark.parametrize(
    "out, match",
    [
        (
            "/proc/lesde-nowhere/run.nc",
            r"--out /proc/lesde-nowhere/run.nc: cannot create the folder /proc/lesde-nowhere",
        ),
        ("{tmp}", r"--out .* is a folder; give a file name"),
    ],
    ids=["unwritable", "a-folder"],
)
def test_bad_out_paths_are_refused_before_the_run(tmp_path, capsys, monkeypatch, out, match):
    monkeypatch.setattr(sys.modules["lesde.simulate"], "simulate", lambda *a, **k: pytest.fail("the run started"))
    line = fails(capsys, 2, "simulate", config(tmp_path), "--out", out.format(tmp=tmp_path))
    assert re.search(match, line), line


def test_missing_out_folders_are_created_before_the_run(tmp_path, capsys, monkeypatch):
    out = tmp_path / "new" / "deeper" / "run.nc"
    seen = []
    real = lesde.config.simulate

    def check(*args, **kwargs):
        seen.append(out.parent.is_dir())  # the folder is there before the simulation starts
        return real(*args, **kwargs)

    monkeypatch.setattr(sys.modules["lesde.simulate"], "simulate", check)
    code, stdout, err = run_main(capsys, "simulate", config(tmp_path), "--out", out)
    assert code == 0, err
    assert seen == [True] and out.is_file() and stdout.startswith(f"wrote {out}")
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds.sizes["path"] == 4


def test_a_sweep_store_in_an_unwritable_place(tmp_path, capsys):
    line = fails(capsys, 2, "sweep", _spec_file(tmp_path), "--store", "/proc/lesde-nowhere/s.zarr", "--quiet")
    assert "cannot create the folder /proc/lesde-nowhere" in line


def test_an_input_that_is_not_netcdf(tmp_path, capsys):
    bad = tmp_path / "est.nc"
    bad.write_text("this is not a NetCDF file\n")
    line = fails(capsys, 2, "imitate", bad, "--out", tmp_path / "imit.nc")
    assert line.startswith(f"lesde imitate: error: {bad} is not a NetCDF file readable by h5netcdf")
    line = fails(capsys, 2, "imitate", tmp_path / "missing.nc", "--out", tmp_path / "imit.nc")
    assert line == f"lesde imitate: error: {tmp_path / 'missing.nc'} does not exist"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec_file(tmp_path, spec=None) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(to_toml(spec or small()))
    return path


def test_an_unreachable_scheduler(tmp_path, capsys):
    import dask

    address = f"tcp://127.0.0.1:{_free_port()}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        line = fails(capsys, 2, "sweep", _spec_file(tmp_path), "--store", tmp_path / "s.zarr", "--scheduler",
                     address, "--quiet")  # fmt: skip
    assert line.startswith(f"lesde sweep: error: cannot reach the Dask scheduler at '{address}'")


@pytest.mark.parametrize("command", ["simulate", "sweep", "demo"])
def test_an_unknown_device(tmp_path, capsys, command):
    args = {
        "simulate": ["simulate", config(tmp_path), "--out", tmp_path / "o.nc"],
        "sweep": ["sweep", _spec_file(tmp_path), "--store", tmp_path / "s.zarr"],
        "demo": ["demo", "--out", tmp_path / "demo"],
    }[command]
    line = fails(capsys, 2, *args, "--device", "foo")
    assert line.startswith(f"lesde {command}: error: --device='foo' is not a torch device; accepted here: 'cpu'")
    if not torch.cuda.is_available():
        assert "CUDA is not available" in fails(capsys, 2, *args, "--device", "cuda")


def test_plot_time_not_finite_and_not_a_save_time(tmp_path, capsys, store):
    line = fails(capsys, 2, "plot", "phase", store, "--out", tmp_path / "p.png", "--time", "nan")
    assert line == "lesde plot: error: --time nan must be a finite time; the store has t = 0, 10, 100"
    code, out, err = run_main(capsys, "plot", "phase", store, "--out", tmp_path / "p.png", "--time", "60")
    assert code == 0 and out.strip() == f"wrote {tmp_path / 'p.png'}"
    assert err.strip() == (
        "lesde plot: warning: --time 60 is not a save time, used the nearest, t = 100 (store has t = 0, 10, 100)"
    )
    code, out, _ = run_main(capsys, "plot", "phase", store, "--out", tmp_path / "q.png", "--time", "10")
    assert code == 0 and out.strip() == f"wrote {tmp_path / 'q.png'}"
    line = fails(capsys, 2, "plot", "phase", tmp_path / "missing.zarr", "--out", tmp_path / "p.png")
    assert line == f"lesde plot: error: store {tmp_path / 'missing.zarr'} does not exist"
    (tmp_path / "notastore").mkdir()
    line = fails(capsys, 2, "plot", "phase", tmp_path / "notastore", "--out", tmp_path / "p.png")
    assert "is a zarr store but not a lesde sweep store" in line or "not a readable lesde sweep store" in line


@pytest.mark.parametrize(
    "text, match",
    [
        ("[model\nnum_classes = 2\n", r"{path}: not valid TOML: "),
        (
            "model = 3\n[simulate]\nt_end = 1.0\n",
            r"{path}: 'model' must be a table \(\[model\] section\), got an integer",
        ),
        (
            SIMULATE.format(alpha="1.0", t_end='"10"', dtype="float64"),
            r"{path}: \[simulate\] t_end = '10' must be a num",
        ),
        (SIMULATE.format(alpha="1.0", t_end="1.0", dtype="float16"), r"{path}: \[simulate\] dtype = 'float16' is not "),
        (SIMULATE.format(alpha="1.0", t_end="1.0", dtype="float64") + "seeds = 3\n", r"{path}: \[simulate\] has unkno"),
        (
            SIMULATE.format(alpha='{kind = "PowerLaw", scale = 1.0}', t_end="1.0", dtype="float64"),
            r"{path}: \[model\] "
            r"alpha \(PowerLaw\) needs exponent",
        ),
        (
            SIMULATE.format(alpha="1.0", t_end="1.0", dtype="float64").replace("num_classes = 2", "num_classes = 1"),
            r"{path}: \[model\] num_classes = 1 must be an integer >= 2",
        ),
    ],
    ids=["syntax", "model-not-a-table", "time-as-string", "dtype", "unknown-key", "schedule", "range"],
)
def test_toml_errors_name_the_file_and_the_key(tmp_path, capsys, text, match):
    path = config(tmp_path, text=text)
    line = fails(capsys, 2, "simulate", path, "--out", tmp_path / "o.nc")
    assert re.search("^lesde simulate: error: " + match.format(path=re.escape(path)), line), line


def test_sweep_spec_errors_name_the_file_and_the_key(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(to_toml(small(confidence=1.5)))
    line = fails(capsys, 2, "sweep", path, "--store", tmp_path / "s.zarr", "--quiet")
    assert line == f"lesde sweep: error: {path}: [sweep] confidence = 1.5 must lie in (0, 1), e.g. 0.95"
    assert not (tmp_path / "s.zarr").exists()
    line = fails(capsys, 2, "sweep", tmp_path / "none.toml", "--store", tmp_path / "s.zarr")
    assert line == f"lesde sweep: error: config file '{tmp_path / 'none.toml'}' does not exist"


def test_compare_sgd_config_errors(tmp_path, capsys):
    example = load_toml(EXAMPLES / "compare_sgd.toml")
    del example["run"]["lr"]
    path = tmp_path / "cmp.toml"
    path.write_text(to_toml(example))
    line = fails(capsys, 2, "compare-sgd", path, "--out", tmp_path / "cmp.nc")
    assert line == f"lesde compare-sgd: error: {path}: [run] is missing ['lr']"
    path.write_text('problem = "ufm"\n[run]\nlr = 0.1\n')
    line = fails(capsys, 2, "compare-sgd", path, "--out", tmp_path / "cmp.nc")
    assert (
        line == f"lesde compare-sgd: error: {path}: 'problem' must be a table ([problem] section), got a string 'ufm'"
    )


@pytest.mark.parametrize(
    "argv, match",
    [
        (
            ["sweep"],
            r"^lesde sweep: error: the following arguments are required: SPEC.toml, --store \(see lesde sweep --help",
        ),
        (["nope"], r"^lesde: error: argument COMMAND: invalid choice: 'nope'"),
        (["sweep", "s.toml", "--store", "s.zarr", "--workers", "two"], r"argument --workers: invalid int value"),
        (["plot", "phase", "s.zarr", "--out", "p.png", "--time", "soon"], r"argument --time: invalid float value"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, match):
    assert re.search(match, fails(capsys, 2, *argv))


def test_a_sweep_with_failed_cells_exits_1_naming_them(tmp_path, capsys):
    store = tmp_path / "o.zarr"
    code, out, err = run_main(capsys, "sweep", _spec_file(tmp_path, overflowing()), "--store", store, "--quiet")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(
        "lesde sweep: error: 1 of 4 cells failed: alpha.exponent=0.5, alpha.scale=8.0 (SimulationOver"
    )
    assert err.strip().endswith("; rerun with --retry-failed to retry them")
    assert out.strip() == "3 of 4 cells done (method: exact)"  # --quiet: no "wrote" line
    code, out, err = run_main(capsys, "sweep", _spec_file(tmp_path, overflowing()), "--store", store, "--quiet",
                              "--retry-failed")  # fmt: skip
    assert code == 1 and "1 of 4 cells failed" in err and "--retry-failed to retry" not in err


def test_a_store_in_use_or_damaged(tmp_path, capsys, store):
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    spec = sweep.load_spec(small())
    with sweep.store.open_store(copy, spec, np.array([0.0, 10.0, 100.0]), list(sweep.runner.ONLINE_METRICS)):
        line = fails(capsys, 2, "sweep", _spec_file(tmp_path), "--store", copy, "--quiet")
    assert line.startswith(f"lesde sweep: error: store {copy} is in use by another lesde sweep")
    (copy / "status" / "0.0").write_bytes(b"\xff")
    line = fails(capsys, 2, "plot", "phase", copy, "--out", tmp_path / "p.png")
    assert line.startswith(f"lesde plot: error: store {copy} is damaged: status cannot be read from chunk file")


def test_interrupts_and_unexpected_errors(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["lesde.simulate"], "simulate", interrupted)
    line = fails(capsys, 130, "simulate", config(tmp_path), "--out", tmp_path / "o.nc")
    assert line == "lesde simulate: interrupted"

    def bug(*args, **kwargs):
        raise RuntimeError("something nobody expected\nover two lines")

    monkeypatch.setattr(sys.modules["lesde.simulate"], "simulate", bug)
    line = fails(capsys, 1, "simulate", config(tmp_path), "--out", tmp_path / "o.nc")
    assert line == (
        "lesde simulate: error: RuntimeError: something nobody expected over two lines "
        "(rerun with --debug for the traceback)"
    )
    with pytest.raises(RuntimeError, match="something nobody expected"):
        cli.main(["simulate", config(tmp_path), "--out", str(tmp_path / "o.nc"), "--debug"])
    with pytest.raises(RuntimeError, match="something nobody expected"):
        cli.main(["--debug", "simulate", config(tmp_path), "--out", str(tmp_path / "o.nc")])


def test_the_real_command(tmp_path):
    """The console entry point in a subprocess: a failed run, bad input, and --debug's traceback."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def lesde_cmd(*args):
        return subprocess.run(
            [sys.executable, "-m", "lesde.cli", *map(str, args)], capture_output=True, text=True, cwd=REPO, env=env
        )

    overflow = config(tmp_path, alpha="50.0", t_end="10.0", dtype="float32")
    r = lesde_cmd("simulate", overflow, "--out", tmp_path / "o.nc", "--quiet")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "overflowed" in r.stderr
    r = lesde_cmd("simulate", overflow, "--out", tmp_path / "o.nc", "--quiet", "--device", "foo")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "lesde simulate: error: --device='foo' is not a torch device; accepted here: "
        + r.stderr.split("accepted here: ")[1].strip()
    ]
    r = lesde_cmd("--debug", "simulate", overflow, "--out", tmp_path / "o.nc", "--quiet")
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr
    assert "SimulationOverflowError" in r.stderr


# ----------------------------------------------------------------------------------------------------------------
# examples: one TOML per config-driven command, each runs


def test_every_config_driven_command_has_an_example():
    assert (EXAMPLES / "simulate.toml").is_file()  # lesde simulate
    assert (EXAMPLES / "phase_diagram.toml").is_file()  # lesde sweep
    assert (EXAMPLES / "compare_sgd.toml").is_file()  # lesde compare-sgd
    for name in ("simulate.toml", "phase_diagram.toml", "compare_sgd.toml"):
        text = (EXAMPLES / name).read_text()
        command = "sweep" if "phase" in name else name.split(".")[0].replace("_", "-")
        assert f"lesde example copy {name}" in text and f"lesde {command} {name}" in text
    sweep.load_spec(EXAMPLES / "phase_diagram.toml")
    cfg = load_toml(EXAMPLES / "simulate.toml")
    lesde.config.model_from_config(cfg["model"]), lesde.config.simulate_kwargs(cfg["simulate"])


def test_the_compare_sgd_example_runs(tmp_path, capsys):
    example = load_toml(EXAMPLES / "compare_sgd.toml")
    example["run"].update({"t_end": 1.0, "n_runs": 2, "n_save": 5})  # the example, shortened
    path = tmp_path / "cmp.toml"
    path.write_text(to_toml(example))
    out = tmp_path / "results" / "cmp.nc"
    code, _, err = run_main(capsys, "compare-sgd", path, "--out", out)
    assert code == 0, err
    assert out.is_file() and out.with_suffix(".png").is_file()
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert set(ds["process"].values) == {"sgd", "sme", "gradient_flow"}


def test_the_simulate_example_runs(tmp_path, capsys):
    example = load_toml(EXAMPLES / "simulate.toml")
    example["simulate"].update({"t_end": 0.2, "n_save": 3, "n_paths": 2})
    path = tmp_path / "sim.toml"
    path.write_text(to_toml(example))
    code, out, err = run_main(capsys, "simulate", path, "--out", tmp_path / "run.nc", "--quiet")
    assert code == 0, err
    assert out.startswith("t=0.2: rms centred class-mean norm") and "wrote" not in out  # --quiet drops "wrote"
