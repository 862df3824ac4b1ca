"""Empirical experiments as cells: seeds by key, a store that resumes to the uninterrupted result after Ctrl-C at
every moment and SIGINT/SIGKILL of the command, failed cells recorded and retried, other settings refused.

Every experiment here is the tiny label-corruption experiment (2 rates x 2 runs, geomnist 16 x 16) in float64,
or the command line's version of it on a Gaussian mixture. The Dask cluster tests are in
tests/test_experiments_dask.py.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from lesde.cells import StoreBusy, StoreError, failed_cells
from lesde.cli import main
from lesde.empirical import (
    DatasetLoader,
    Experiment,
    ExperimentIncomplete,
    ExperimentInterrupted,
    experiment_tracks,
    label_noise_experiment,
    mlp,
    open_experiment,
    run_experiment,
    track,
)
from lesde.empirical import experiment_cells as cells_mod
from lesde.empirical import experiment_store as store_mod
from lesde.empirical import experiments as experiments_mod
from lesde.empirical.experiments import require_complete
from lesde.empirical.tracks import tracking
from lesde.empirical.tracks.track_inputs import select_probes

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
OPTIONS = {"n_train": 24, "n_test": 12, "size": 16}


def tiny(**changes) -> Experiment:
    """What label_noise_experiment(rates=(0, 0.6), tiny=True, dtype="float64") runs: 2 rates x 2 runs."""
    fields = dict(
        data=DatasetLoader("geomnist", per_class=24, validation=True, options=OPTIONS),
        net=functools.partial(mlp, width=16, depth=2),
        lr=0.005,
        steps=120,
        settings=[{"label_noise": 0.0}, {"label_noise": 0.6}],
        n_runs=2,
        probes=36,
        validation_every=120,
        dtype="float64",
    )
    return Experiment(**{**fields, **changes})


def tracks_of(store: Path) -> dict[tuple[int, int], xr.Dataset]:
    status = open_experiment(store)["status"].values.astype(str)
    return {
        (i, r): xr.open_zarr(store / "tracks" / f"s{i}-r{r}", zarr_format=2, consolidated=False).load()
        for i, r in zip(*np.nonzero(status == "ok"))
    }


def assert_same_store(a: Path, b: Path) -> None:
    """Equal bit for bit: status, failure messages, attrs and every finished cell's track (but creation times
    and the cells' wall times)."""
    sa, sb = open_experiment(a), open_experiment(b)
    np.testing.assert_array_equal(sa["status"].values, sb["status"].values)
    skip = {"created"}
    assert {k: v for k, v in sa.attrs.items() if k not in skip} == {k: v for k, v in sb.attrs.items() if k not in skip}
    ta, tb = tracks_of(a), tracks_of(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        xr.testing.assert_identical(ta[key].drop_attrs(), tb[key].drop_attrs())
        assert {k: v for k, v in ta[key].attrs.items() if k not in skip} == {
            k: v for k, v in tb[key].attrs.items() if k not in skip
        }


def n_ok(store: Path) -> int:
    return int((open_experiment(store)["status"] == "ok").sum())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("reference") / "ref.zarr"
    run_experiment(tiny(), store, progress=False)
    return store


# ----------------------------------------------------------------------------------------------------------------
# cells and seeds


def test_a_cell_is_one_run_seeded_by_its_key(reference):
    """Cell (rate 0.6, run 1) is track(n_runs=1) under the cell's seed with the experiment's probes, and the same
    cell in an experiment of other rates and more runs has the same numbers."""
    exp = tiny()
    x, y, xv, yv = exp.data(label_noise=0.6)
    with torch.random.fork_rng():
        torch.manual_seed(123)  # reinit: the factory's own weights do not matter
        net = mlp(tuple(x.shape[1:]), 3, width=16, depth=2)
    direct = track(net, x, y, lr=0.005, steps=120, n_runs=1, probes=select_probes(y, 36, 0), seed=exp.cell_seed(1, 1),
                   validation=(xv, yv), validation_every=120, dtype=torch.float64, progress=False)  # fmt: skip
    stored = tracks_of(reference)[(1, 1)]
    for name in direct.data_vars:
        np.testing.assert_array_equal(stored[name].values, direct[name].values, err_msg=name)
    assert exp.cell_seed(1, 1) == stored.attrs["seed"] != exp.cell_seed(1, 0)
    other = tiny(settings=[{"label_noise": 0.6}, {"label_noise": 0.2}], n_runs=3)
    assert other.cell_seed(0, 1) == exp.cell_seed(1, 1)
    ds = experiment_tracks(reference, 1)
    assert ds.sizes["run"] == 2 and ds.attrs["n_runs"] == 2 and ds.attrs["seed"] == 0
    assert ds.attrs["run_seeds"] == f"[{exp.cell_seed(1, 0)}, {exp.cell_seed(1, 1)}]"
    assert ds.attrs["setting"] == "label_noise=0.6"


def test_label_noise_experiment_reads_its_store_and_resumes_it(tmp_path, reference, monkeypatch):
    """The tiny experiment through label_noise_experiment writes the reference store; a second call computes
    nothing and gives the same Dataset."""
    store = tmp_path / "ln.zarr"
    kw = dict(rates=(0.0, 0.6), tiny=True, dtype="float64", progress=False)
    first = label_noise_experiment(store=store, **kw)
    assert_same_store(store, reference)
    monkeypatch.setattr(experiments_mod, "run_cell", lambda cell: pytest.fail("a finished cell recomputed"))
    again = label_noise_experiment(store=store, **kw)
    xr.testing.assert_identical(first.drop_attrs(), again.drop_attrs())
    assert first.tail_alpha.dims == ("rate", "run") and np.isfinite(first.tail_alpha.values).all()
    assert first.attrs["seeding"].startswith("cell (setting, run): track(n_runs=1, seed=key_seed(seed")


def test_an_experiment_names_what_it_cannot_identify():
    with pytest.raises(ValueError, match="define it at module level"):
        tiny(net=lambda shape, k: mlp(shape, k))
    with pytest.raises(ValueError, match="settings lists a setting twice"):
        tiny(settings=[{"label_noise": 0.2}, {"label_noise": 0.2}])
    with pytest.raises(ValueError, match="dtype"):
        tiny(dtype="float16")


# ----------------------------------------------------------------------------------------------------------------
# Ctrl-C at every moment


def _sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def _at_creation(m):
    real = store_mod._fill

    def fill(*args, **kwargs):
        _sigint()  # held: creation completes first
        return real(*args, **kwargs)

    m.setattr(store_mod, "_fill", fill)


def _mid_cell(m):
    """SIGINT at step 60 of the second cell: track finishes the step and returns; the cell is not written."""
    real, seen = tracking._step, []

    def step(req, plan, prog, s):
        if s == 60:
            seen.append(s)
            if len(seen) == 2:
                _sigint()
        return real(req, plan, prog, s)

    m.setattr(tracking, "_step", step)


def _during_a_write(m):
    real, calls = store_mod.ExperimentStore.write, []

    def write(self, result):
        calls.append(result)
        if len(calls) == 3:
            _sigint()  # held until the write ends
        return real(self, result)

    m.setattr(store_mod.ExperimentStore, "write", write)


def _between_cells(m):
    real, calls = cells_mod.run_cell, []

    def run_cell(cell):
        calls.append(cell)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cell)

    m.setattr(experiments_mod, "run_cell", run_cell)


@pytest.mark.parametrize(
    "moment, ok_after",
    [
        pytest.param(_at_creation, 0, marks=pytest.mark.slow),
        (_mid_cell, 1),
        (_during_a_write, 3),
        pytest.param(_between_cells, 1, marks=pytest.mark.slow),
    ],
    ids=["during-creation", "mid-cell", "during-a-write", "between-cells"],
)
def test_sigint_then_rerun_equals_the_uninterrupted_store(tmp_path, monkeypatch, reference, moment, ok_after):
    store = tmp_path / "s.zarr"
    with monkeypatch.context() as m:
        moment(m)
        with pytest.raises(ExperimentInterrupted, match=f"{ok_after} of 4 cells are in .*rerun the same command"):
            run_experiment(tiny(), store, progress=False)
    assert n_ok(store) == ok_after and not list((store / "tracks").glob(".*.partial-*"))
    assert len(tracks_of(store)) == ok_after
    run_experiment(tiny(), store, progress=False)
    assert_same_store(store, reference)


# ----------------------------------------------------------------------------------------------------------------
# SIGINT and SIGKILL to the command

CLI_RATES = ["0", "0.6"]
CLI = dict(dataset="gaussian-mixture", width=16, steps=400, n_runs=2, probes=36)


def _cli(store: Path, out: Path, *extra: str) -> list[str]:
    args = ["estimate", "--dataset", CLI["dataset"], "--label-noise", *CLI_RATES, "--width", str(CLI["width"]),
            "--steps", str(CLI["steps"]), "--n-runs", str(CLI["n_runs"]), "--probes", str(CLI["probes"]),
            "--form", "means", "--quiet", "--store", str(store), "--out", str(out), *extra]  # fmt: skip
    return args


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory) -> tuple[Path, xr.Dataset]:
    store = tmp_path_factory.mktemp("cli") / "ref.zarr"
    ds = label_noise_experiment(rates=[float(p) for p in CLI_RATES], store=store, progress=False, **CLI)
    return store, ds


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGKILL, -9)], ids=["sigint", "sigkill"])
def test_signal_to_the_command_then_rerun_equals_the_uninterrupted_store(tmp_path, cli_reference, sig, code):
    """The signal lands at a random moment after the first cell is in (seeded: reproducible), mid-cell or
    mid-write; the rerun through the command line resumes and ends with the uninterrupted store and result."""
    ref_store, ref = cli_reference
    store, out = tmp_path / "s.zarr", tmp_path / "ln.nc"
    proc = subprocess.Popen([sys.executable, "-m", "lesde.cli", *_cli(store, out)], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if (store / "status").exists() and n_ok(store) >= 1:
            break
        time.sleep(0.02)
    time.sleep(random.Random(sig).uniform(0.0, 0.4))
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert 1 <= n_ok(store) < 4
    if sig == signal.SIGINT:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lesde estimate: interrupted: "), err
        assert "cells are in" in lines[0] and "rerun the same command to resume" in lines[0]
    assert main(_cli(store, out)) == 0
    assert_same_store(store, ref_store)
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        for name in ("tail_alpha", "tail_alpha_pooled", "validation_accuracy", "alpha_integrated"):
            np.testing.assert_array_equal(ds[name].values, ref[name].values, err_msg=name)


# ----------------------------------------------------------------------------------------------------------------
# failed cells, other settings, a store in use


class Cube(nn.Module):
    def forward(self, x):
        return x**3


def cubic_net(shape, num_classes):
    """A network whose steps grow with the cube of its inputs' scale: large inputs make its run diverge."""
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), 8), Cube(), nn.Linear(8, num_classes))


@dataclasses.dataclass(frozen=True)
class Scaled:
    """The tiny geomnist data with the inputs multiplied by the setting's ``scale``."""

    inner: DatasetLoader

    def __call__(self, scale: float = 1.0, **setting):
        x, y, *validation = self.inner(**setting)
        return (x * scale, y, *validation)


def test_a_diverging_run_fails_alone_and_is_retried_only_when_asked(tmp_path, monkeypatch):
    """Inputs x30 make the cubic network's runs diverge: those cells are failed with the message, the others
    ok; a rerun retries nothing unless asked, and the retried cells fail again the same way."""
    data = Scaled(DatasetLoader("geomnist", per_class=24, validation=True, options=OPTIONS))
    exp = tiny(data=data, net=cubic_net, settings=[{"scale": 1.0}, {"scale": 30.0}], steps=40, validation_every=40)
    store = tmp_path / "d.zarr"
    summary = run_experiment(exp, store, progress=False)
    assert summary["status"].values.tolist() == [["ok", "ok"], ["failed", "failed"]]
    failed = failed_cells(summary)
    assert sorted(failed) == [2, 3] and failed[2]["cell"] == "scale=30, run 0"
    assert failed[2]["error"].startswith("FloatingPointError: the run diverged: probe features are not finite from")
    assert np.isfinite(summary["seconds"].values).all() and (summary["cpu_seconds"].values > 0).all()
    with pytest.raises(ExperimentIncomplete, match=r"^2 of 4 cells failed: scale=30, run 0 \(FloatingPointError"):
        require_complete(summary)
    ran, real = [], experiments_mod.run_cell
    monkeypatch.setattr(experiments_mod, "run_cell", lambda cell: ran.append((cell.setting, cell.run)) or real(cell))
    again = run_experiment(exp, store, progress=False)
    assert ran == [] and again.attrs["failed_cells"] == summary.attrs["failed_cells"]
    retried = run_experiment(exp, store, progress=False, retry_failed=True)
    assert ran == [(1, 0), (1, 1)] and failed_cells(retried) == failed
    assert len(tracks_of(store)) == 2


def test_an_injected_failure_is_recorded_and_a_retry_repairs_it(tmp_path, monkeypatch, reference):
    exp = tiny()
    victim, real = exp.cell_seed(0, 1), cells_mod.track

    def flaky(*args, seed, **kwargs):
        if seed == victim:
            raise FloatingPointError("injected: invalid value in the step")
        return real(*args, seed=seed, **kwargs)

    store = tmp_path / "flaky.zarr"
    with monkeypatch.context() as m:
        m.setattr(cells_mod, "track", flaky)
        summary = run_experiment(exp, store, progress=False)
    assert failed_cells(summary) == {
        1: {"cell": "label_noise=0, run 1", "error": "FloatingPointError: injected: invalid value in the step"}
    }
    run_experiment(exp, store, progress=False, retry_failed=True)
    assert_same_store(store, reference)


def test_a_rerun_with_another_setting_is_refused_naming_the_difference(tmp_path, reference, capsys):
    store = tmp_path / "r.zarr"
    import shutil

    shutil.copytree(reference, store)
    with pytest.raises(StoreError, match=r"holds another experiment \(steps: 120 in the store, 60 here\); use a new"):
        run_experiment(tiny(steps=60), store, progress=False)
    with pytest.raises(StoreError, match=r"settings: \[\{\"label_noise\": 0.0\}, \{\"label_noise\": 0.6\}\] in the st"):
        run_experiment(tiny(settings=[{"label_noise": 0.0}, {"label_noise": 0.4}]), store, progress=False)
    with pytest.raises(StoreError, match=r"data\.per_class: 24 in the store, 12 here"):
        run_experiment(tiny(data=DatasetLoader("geomnist", per_class=12, validation=True, options=OPTIONS)), store)
    # the command line: one line, exit code 2, and the store untouched
    argv = ["estimate", "--dataset", "geomnist", "--label-noise", "0", "0.6", "--steps", "60", "--quiet",
            "--store", str(store), "--out", str(tmp_path / "x.nc")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lesde estimate: error: store {store} holds another experiment ("), err
    assert_same_store(store, reference)


def test_a_store_in_use_and_another_store_are_refused(tmp_path, reference):
    store = tmp_path / "busy.zarr"
    with store_mod.open_experiment_store(store, tiny()):
        with pytest.raises(StoreBusy, match=f"store {store} is in use by another lesde experiment"):
            run_experiment(tiny(), store, progress=False)
    other = tmp_path / "other.zarr"  # a zarr store of another kind (a sweep's has a spec_hash)
    xr.Dataset({"status": ("cell", ["ok"])}, attrs={"spec_hash": "0" * 64}).to_zarr(other, zarr_format=2)
    with pytest.raises(StoreError, match="exists but is not a lesde experiment store"):
        run_experiment(tiny(), other, progress=False)


def test_the_command_line_for_one_setting(tmp_path, capsys):
    """``lesde estimate --store`` for one setting: its runs are cells; the rerun computes nothing and writes the
    same estimate; --workers without --store is a usage error."""
    store, out = tmp_path / "one.zarr", tmp_path / "est.nc"
    argv = ["estimate", "--dataset", "gaussian-mixture", "--steps", "80", "--n-runs", "2", "--probes", "30",
            "--width", "8", "--depth", "1", "--lr", "0.05", "--window", "10", "--quiet", "--out", str(out),
            "--store", str(store)]  # fmt: skip
    assert main(argv) == 0  # the fit's warnings are console lines (lesde.cli.console), not Python warnings
    assert "tracked 2 runs x 80 steps x 30 probes" in capsys.readouterr().out
    summary = open_experiment(store)
    assert summary["status"].values.tolist() == [["ok", "ok"]] and summary["setting"].values.tolist() == [
        "label_noise=0"
    ]
    with xr.open_dataset(out, engine="h5netcdf") as est:
        first = est.load()
    assert main(argv) == 0
    with xr.open_dataset(out, engine="h5netcdf") as est:
        np.testing.assert_array_equal(est.alpha.values, first.alpha.values)
    assert main([*argv[:-2], "--workers", "2"]) == 2
    assert "--workers runs the runs as cells into a store: give --store PATH" in capsys.readouterr().err


def test_failed_cells_exit_1_with_the_retry_hint(tmp_path, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise FloatingPointError("injected")

    monkeypatch.setattr(cells_mod, "track", fail)
    argv = ["estimate", "--dataset", "gaussian-mixture", "--steps", "20", "--n-runs", "2", "--quiet", "--out",
            str(tmp_path / "e.nc"), "--store", str(tmp_path / "f.zarr")]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "lesde estimate: error: 2 of 2 cells failed: label_noise=0, run 0 (FloatingPointError: injected); "
        "label_noise=0, run 1 (FloatingPointError: injected); rerun with --retry-failed to retry them"
    )
    assert main([*argv, "--retry-failed"]) == 1
    assert capsys.readouterr().err.strip().endswith("run 1 (FloatingPointError: injected)")


def test_describe_names_callables_by_import_path_and_arguments():
    exp = tiny()
    d = exp.describe()
    assert d["net"] == {"partial": "lesde.empirical.nets.mlp", "args": [], "keywords": {"depth": 2, "width": 16}}
    assert d["data"]["class"] == "lesde.empirical.experiment_cells.DatasetLoader" and d["data"]["options"] == OPTIONS
    assert dataclasses.replace(exp, seed=1).describe()["seed"] == 1
