"""Tests of lesde.sweep (batched, resumable, distributed phase sweeps) and lesde.plots.phase_plot.

The acceptance check of DESIGN.md section 2: alpha_t = c (1+t)^-p, beta = 0, T = identity, K = 2, n = 20, m = 2,
sigma = 1, at t = 10^4, 100 paths per cell. Thresholds: P(all pairs separable) >= 0.95 where theory says 1
(p = 0.5 at every c; p = 1 with c = 4, 2c/K = 4), P <= 0.05 where it says 0 (p = 1.5, 2) and P <= 0.1 on p = 1
with c <= 1 (2c/K <= 1: the borderline c = 1 converges slowly, hence the looser bound).
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.stats import binomtest

import lesde
from lesde import sweep

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "model": {
        "num_classes": 2,
        "dim": 2,
        "samples_per_class": 20,
        "alpha": {"kind": "PowerLaw", "scale": 1.0, "exponent": 1.0},
        "beta": 0.0,
        "noise": 1.0,
    },
    "simulate": {"t_end": 1e4, "dt": 1.0, "n_paths": 100, "save_times": [1e2, 1e4], "seed": 3},
    "grid": {"model.alpha.exponent": [0.5, 1.0, 1.5, 2.0], "model.alpha.scale": [0.5, 1.0, 2.0, 4.0]},
}


def small(**sweep_opts) -> dict:
    """A 3 x 2 grid with short runs: cheap enough to run several times per test."""
    spec = copy.deepcopy(BASE)
    spec["simulate"].update({"t_end": 100.0, "n_paths": 30, "save_times": [10.0, 100.0]})
    spec["grid"] = {"model.alpha.exponent": [0.5, 1.0, 2.0], "model.alpha.scale": [1.0, 4.0]}
    spec["sweep"] = {"cells_per_batch": 2, **sweep_opts}
    return spec


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """small() run uninterrupted and locally: what every resumed, interrupted or distributed run must equal."""
    store = tmp_path_factory.mktemp("reference") / "small.zarr"
    return sweep.run(small(), store, progress=False), store


@pytest.fixture(scope="module")
def phase(tmp_path_factory):
    store = tmp_path_factory.mktemp("phase") / "phase.zarr"
    return sweep.run(BASE, store, progress=False), store


def test_phase_transition(phase):
    ds, _ = phase
    P = ds["p_all_separable"].sel(time=1e4)
    assert ds.attrs["method"] == "exact" and (ds["method"] == "exact").all()
    assert bool((ds["done"] == 1).all())
    assert (P.sel({"alpha.exponent": 0.5}) >= 0.95).all(), P.values
    assert (P.sel({"alpha.exponent": [1.5, 2.0]}) <= 0.05).all(), P.values
    on_line = P.sel({"alpha.exponent": 1.0})
    assert (on_line.sel({"alpha.scale": [0.5, 1.0]}) <= 0.1).all(), on_line.values
    assert on_line.sel({"alpha.scale": 4.0}) >= 0.95, on_line.values
    # the largest mean separation: exp(A) with A = 4 * 2 (sqrt(10001) - 1) / 2 ~ 396 for the means, its square in
    # the metrics ~ e^792 > float64's 1.8e308; every stored number must be finite and separation certain
    cell = ds.sel({"alpha.exponent": 0.5, "alpha.scale": 4.0, "time": 1e4})
    assert float(cell["p_all_separable"]) == 1.0
    for name, var in cell.data_vars.items():
        if var.dtype.kind == "f":
            assert np.isfinite(var.values).all(), name


def test_wilson_intervals_match_scipy(phase):
    ds, _ = phase
    n = ds.attrs["n_paths"]
    for p, c, t in [(1.0, 2.0, 1e2), (1.0, 1.0, 1e2), (2.0, 4.0, 1e4), (0.5, 0.5, 1e4)]:
        cell = ds.sel({"alpha.exponent": p, "alpha.scale": c, "time": t})
        k = int(round(float(cell["p_all_separable"]) * n))
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert float(cell["p_all_separable_lower"]) == pytest.approx(ci.low, abs=1e-10)
        assert float(cell["p_all_separable_upper"]) == pytest.approx(ci.high, abs=1e-10)
        # K = 2: one pair per path, so the pooled pair fraction is P itself
        assert float(cell["separable_fraction"]) == pytest.approx(float(cell["p_all_separable"]), abs=1e-12)


def test_cells_are_the_right_paths_of_the_batch():
    """Recompute one batch with lesde.simulate directly and reduce each cell by selecting paths on its parameters."""
    spec = small()
    batch = sweep.plan(spec)[1]  # cells 2, 3: exponent 1.0, scales 1.0 and 4.0
    result = sweep.run_batch(batch)
    n = spec["simulate"]["n_paths"]
    scale = torch.tensor(batch.model["alpha"]["scale"], dtype=torch.float64).repeat_interleave(n)
    expo = torch.tensor(batch.model["alpha"]["exponent"], dtype=torch.float64).repeat_interleave(n)
    model = lesde.LESDE(2, 2, 20, alpha=lesde.schedules.PowerLaw(scale, expo), beta=0.0, noise=1.0)
    ref = lesde.simulate(
        model,
        t_end=100.0,
        dt=1.0,
        n_paths=len(scale),
        save_times=[10.0, 100.0],
        method="exact",
        save="metrics",
        dtype=torch.float64,
        seed=batch.seed,
        progress=False,
        chunk_size=len(scale),
    )
    for j, cell in enumerate(batch.cells):
        i_p, i_c = np.unravel_index(cell, (3, 2))
        c = spec["grid"]["model.alpha.scale"][i_c]
        p = spec["grid"]["model.alpha.exponent"][i_p]
        mine = ((scale == c) & (expo == p)).numpy()
        assert mine.sum() == n
        np.testing.assert_allclose(result.data["p_all_separable"][j], ref["all_separable"].values[mine].mean(0))
        np.testing.assert_allclose(
            result.data["nc1_quotient"][j], np.nanmean(ref["nc1_quotient"].values[mine], 0), rtol=1e-12
        )


def test_spec_errors_and_hash(tmp_path):
    bad = copy.deepcopy(BASE)
    bad["grid"] = {"alpha.exponent": [1.0]}
    with pytest.raises(ValueError, match="model."):
        sweep.load_spec(bad)
    bad["grid"] = {"simulate.t_end": [1.0, 2.0]}
    with pytest.raises(ValueError, match="cannot be swept"):
        sweep.load_spec(bad)
    bad = copy.deepcopy(BASE)
    bad["model"]["beta"] = 0.0
    bad["grid"] = {"model.beta.scale": [0.1]}
    with pytest.raises(ValueError, match="inline table"):
        sweep.load_spec(bad)
    bad = copy.deepcopy(BASE)
    bad["sweep"] = {"separability": "svm"}
    with pytest.raises(ValueError, match="ncm"):
        sweep.load_spec(bad)
    # defaults written out hash the same as defaults left implicit; any change of the spec changes the hash
    explicit = copy.deepcopy(BASE)
    explicit["sweep"] = {"separability": "ncm", "margin": 0.0}
    assert sweep.spec_hash(explicit) == sweep.spec_hash(BASE)
    changed = copy.deepcopy(BASE)
    changed["simulate"]["n_paths"] = 101
    assert sweep.spec_hash(changed) != sweep.spec_hash(BASE)


def test_groups_and_seeds():
    spec = copy.deepcopy(BASE)
    spec["grid"] = {"model.num_classes": [2, 3], "model.alpha.exponent": [0.5, 1.0, 2.0]}
    spec["sweep"] = {"cells_per_batch": 2}
    batches = sweep.plan(spec)
    # two shape groups of 3 cells each, cut into batches of <= 2 cells: [0, 1], [2], [3, 4], [5]
    assert [b.cells for b in batches] == [[0, 1], [2], [3, 4], [5]]
    assert [b.model["num_classes"] for b in batches] == [2, 2, 3, 3]
    assert batches[0].model["alpha"]["exponent"] == [0.5, 1.0]
    seeds = [b.seed for b in batches]
    assert len(set(seeds)) == 4 and seeds == [b.seed for b in sweep.plan(spec)]


def test_euler_fallback(tmp_path):
    spec = small()
    spec["model"].update({"transform": "softmax-residual"})  # state dependent: no exact sampler
    spec["simulate"].update({"t_end": 2.0, "dt": 0.05, "save_times": [1.0, 2.0]})
    spec["grid"] = {"model.alpha.scale": [1.0, 3.0]}
    ds = sweep.run(spec, tmp_path / "euler.zarr", progress=False)
    assert ds.attrs["method"] == "euler" and (ds["method"] == "euler").all()
    assert np.isfinite(ds["nc1_quotient"].sel(time=2.0).values).all()
    spec["simulate"]["method"] = "exact"  # asked for explicitly: no fallback, the core's reason is raised
    with pytest.raises(ValueError, match="exact"):
        sweep.run(spec, tmp_path / "exact.zarr", progress=False)


def test_margin_is_stricter_than_ncm(tmp_path, reference):
    spec = small()
    ncm, _ = reference
    spec["sweep"].update({"separability": "margin", "margin": 0.5})
    strict = sweep.run(spec, tmp_path / "margin.zarr", progress=False)  # same spec seed -> same paths
    assert strict.attrs["separability"] == "margin"
    diff = strict["p_all_separable"] - ncm["p_all_separable"]
    assert (diff <= 1e-12).all() and float(diff.sum()) < 0, diff.values
    np.testing.assert_allclose(strict["nc1_quotient"].values, ncm["nc1_quotient"].values, rtol=1e-12)


def test_store_refuses_other_spec_and_resumes_done(reference):
    first, store = reference
    spec = small()
    other = small()
    other["simulate"]["seed"] = 4
    with pytest.raises(ValueError, match="different sweep spec"):
        sweep.run(other, store, progress=False)
    # a rerun on a finished store computes nothing and returns the same numbers
    t0 = time.perf_counter()
    again = sweep.run(spec, store, progress=False)
    assert time.perf_counter() - t0 < 5.0
    xr.testing.assert_identical(first.drop_attrs(), again.drop_attrs())


def test_ctrl_c_stops_after_the_write_and_resumes(tmp_path, monkeypatch, reference):
    spec = small()
    reference, _ = reference
    real = sweep.run_batch

    def interrupted_on_third(batch, device="cpu"):
        if batch.batch_id == 2:
            raise KeyboardInterrupt
        return real(batch, device)

    monkeypatch.setattr(sweep, "run_batch", interrupted_on_third)
    with pytest.raises(KeyboardInterrupt):
        sweep.run(spec, tmp_path / "s.zarr", progress=False)
    partial = sweep.open_sweep(tmp_path / "s.zarr")
    assert partial["done"].values.ravel().tolist() == [1, 1, 1, 1, 0, 0]  # batches 0 and 1 of 2 cells each
    monkeypatch.setattr(sweep, "run_batch", real)
    resumed = sweep.run(spec, tmp_path / "s.zarr", progress=False)
    xr.testing.assert_identical(resumed.drop_attrs(), reference.drop_attrs())


def test_sigint_during_a_write_is_held_until_it_ends():
    order = []
    with pytest.raises(KeyboardInterrupt):
        with sweep._hold_sigint():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            order.append("write finished")
    assert order == ["write finished"]


def test_resume_after_sigkill(tmp_path, reference):
    spec = small()
    toml = tmp_path / "spec.toml"
    toml.write_text(_to_toml(spec))
    store = tmp_path / "killed.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lesde.sweep", str(toml), "--store", str(store), "--no-progress"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    n_done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists():
            try:
                n_done = int(sweep._done_cells(store).sum())
            except Exception:  # noqa: BLE001 - a store being created can be briefly unreadable
                n_done = 0
            if n_done >= 2:  # the first batch (2 cells) is in
                break
        time.sleep(0.02)
    assert proc.poll() is None, f"the sweep finished before it could be killed: {proc.stderr.read()!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = sweep.open_sweep(store)  # readable after the kill
    n_done = int(partial["done"].sum())
    assert 2 <= n_done < 6
    done = partial["done"].values == 1
    assert np.isfinite(partial["p_all_separable"].values[done]).all()
    resumed = sweep.run(toml, store, progress=False)
    xr.testing.assert_identical(resumed.drop_attrs(), reference[0].drop_attrs())


def _assert_same_numbers(a: xr.Dataset, b: xr.Dataset) -> None:
    assert (a["done"] == 1).all() and (b["done"] == 1).all()
    np.testing.assert_array_equal(a["p_all_separable"].values, b["p_all_separable"].values)
    for name in b.data_vars:
        if b[name].dtype.kind == "f":
            np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-12, atol=0, err_msg=name)


def test_dask_scheduler_matches_local(tmp_path, reference):
    """Join a running (in-process, 2 workers) cluster by address; results arrive out of order, numbers agree."""
    import distributed

    spec = small()
    local, _ = reference
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        dist = sweep.run(spec, tmp_path / "dask.zarr", scheduler=c.scheduler_address, progress=False)
    _assert_same_numbers(dist, local)


@pytest.mark.slow
def test_dask_local_cluster_processes_match_local(tmp_path, reference):
    """workers=2: a LocalCluster of 2 processes (~30 s on 2 loaded cores: each worker imports torch)."""
    spec = small()
    local, _ = reference
    dist = sweep.run(spec, tmp_path / "dask.zarr", executor="dask", workers=2, progress=False)
    _assert_same_numbers(dist, local)


def test_phase_plot_and_table(phase, tmp_path):
    import matplotlib.image as mpimg

    from lesde.plots import phase_plot

    ds, store = phase
    out = phase_plot(store, tmp_path / "phase.png", time=1e4)
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600
    assert img[..., :3].std() > 0.05  # not a blank canvas
    with pytest.raises(ValueError, match="alpha.exponent"):
        phase_plot(ds, tmp_path / "x.png", x="noise")
    table = sweep.format_table(ds, time=1e4)
    rows = {line.split("|")[0].strip(): line.split("|")[1].split() for line in table.splitlines()[3:]}
    assert rows["4"] == [f"{v:.2f}" for v in ds["p_all_separable"].sel({"alpha.scale": 4.0, "time": 1e4}).values]


def test_example_spec_runs_tiny(tmp_path):
    spec = sweep.load_spec(REPO / "examples" / "phase_diagram.toml")
    spec.simulate.update({"n_paths": 8, "t_end": 10.0, "save_times": [10.0]})
    spec.grid = {"model.alpha.exponent": [0.5, 2.0], "model.alpha.scale": [1.0]}
    ds = sweep.run(spec, tmp_path / "ex.zarr", progress=False)
    assert ds["p_all_separable"].dims == ("alpha.exponent", "alpha.scale", "time")
    assert list(ds["time"].values) == [0.0, 10.0]


def test_netcdf_round_trip(phase, tmp_path):
    ds, _ = phase
    ds.to_netcdf(tmp_path / "phase.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "phase.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)


def _to_toml(spec: dict) -> str:
    """Minimal TOML writer for the specs above (numbers, strings, lists, inline tables)."""

    def value(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, str):
            return f'"{v}"'
        return repr(v)

    lines = []
    for section, table in spec.items():
        lines.append(f"[{section}]")
        lines += [f'"{k}" = {value(v)}' for k, v in table.items()]
    return "\n".join(lines) + "\n"
