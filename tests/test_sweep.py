"""Tests of lesde.sweep: batched phase sweeps, per-cell seeds, spec checks, the phase plot and the table.

The acceptance check of DESIGN.md section 2: alpha_t = c (1+t)^-p, beta = 0, T = identity, K = 2, n = 20, m = 2,
sigma = 1, at t = 10^4, 100 paths per cell. Thresholds: P(all pairs separable) >= 0.95 where theory says 1
(p = 0.5 at every c; p = 1 with c = 4, 2c/K = 4), P <= 0.05 where it says 0 (p = 1.5, 2) and P <= 0.1 on p = 1
with c <= 1 (2c/K <= 1: the borderline c = 1 converges slowly, hence the looser bound).

Interrupts, failed cells, the store's safety and Dask are in tests/test_sweep_safety.py; the command line in
tests/test_cli.py. Every spec here derives from lesde.sweep.DEMO_SPEC.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.stats import binomtest
from sweep_helpers import small

import lesde
from lesde import sweep
from lesde.config import ConfigError
from lesde.sweep import DEMO_SPEC, demo_spec

REPO = Path(__file__).resolve().parents[1]
OLD_STORE = REPO / "tests" / "data" / "sweep_v0_1.zarr"

#: the acceptance grid: 4 x 4 cells of 100 paths to t = 10^4 (exact sampling)
BASE = demo_spec([0.5, 1.0, 1.5, 2.0], [0.5, 1.0, 2.0, 4.0], simulate={"n_paths": 100, "save_times": [1e2, 1e4]})


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
    assert bool((ds["status"] == "ok").all()) and bool((ds["done"] == 1).all())
    assert (P.sel({"alpha_exponent": 0.5}) >= 0.95).all(), P.values
    assert (P.sel({"alpha_exponent": [1.5, 2.0]}) <= 0.05).all(), P.values
    on_line = P.sel({"alpha_exponent": 1.0})
    assert (on_line.sel({"alpha_scale": [0.5, 1.0]}) <= 0.1).all(), on_line.values
    assert on_line.sel({"alpha_scale": 4.0}) >= 0.95, on_line.values
    # the largest mean separation: exp(A) with A = 4 * 2 (sqrt(10001) - 1) / 2 ~ 396 for the means, its square in
    # the metrics ~ e^792 > float64's 1.8e308; every stored number must be finite and separation certain
    cell = ds.sel({"alpha_exponent": 0.5, "alpha_scale": 4.0, "time": 1e4})
    assert float(cell["p_all_separable"]) == 1.0
    for name, var in cell.data_vars.items():
        if var.dtype.kind == "f":
            assert np.isfinite(var.values).all(), name


def test_counts_are_integers_behind_the_fractions_and_wilson_matches_scipy(phase):
    ds, _ = phase
    n = ds.attrs["n_paths"]
    assert ds["separable_pairs"].dtype == np.int64 and ds["all_separable_paths"].dtype == np.int64
    k_all = ds["all_separable_paths"].values
    assert ((k_all >= 0) & (k_all <= n)).all()
    np.testing.assert_array_equal(ds["p_all_separable"].values, k_all / n)  # K = 2: one pair per path
    np.testing.assert_array_equal(ds["separable_pairs"].values, k_all)
    np.testing.assert_array_equal(ds["separable_fraction"].values, ds["separable_pairs"].values / n)
    for p, c, t in [(1.0, 2.0, 1e2), (1.0, 1.0, 1e2), (2.0, 4.0, 1e4), (0.5, 0.5, 1e4)]:
        cell = ds.sel({"alpha_exponent": p, "alpha_scale": c, "time": t})
        ci = binomtest(int(cell["all_separable_paths"]), n).proportion_ci(confidence_level=0.95, method="wilson")
        assert float(cell["p_all_separable_lower"]) == pytest.approx(ci.low, abs=1e-10)
        assert float(cell["p_all_separable_upper"]) == pytest.approx(ci.high, abs=1e-10)


def test_cell_paths_are_a_run_of_their_own():
    """Each cell of a batch is lesde.simulate on that cell alone with the cell's seed: batching is invisible
    (separability exactly, NC metrics to rounding)."""
    spec = small()
    batch = sweep.plan(spec)[1]  # cells 2, 3: exponent 1.0, scales 1.0 and 4.0
    result = sweep.run_batch(batch)
    n = spec["simulate"]["n_paths"]
    for j, cell in enumerate(batch.cells):
        p, c = (float(v) for v in sweep.spec.cell_values(sweep.load_spec(spec), cell).values())
        assert (p, c) == (1.0, [1.0, 4.0][j])
        alpha = lesde.schedules.PowerLaw(torch.full((n,), c, dtype=torch.float64), torch.full((n,), p))
        model = lesde.LESDE(2, 2, 20, alpha=alpha, beta=0.0, noise=1.0)
        ref = lesde.simulate(
            model,
            t_end=100.0,
            dt=1.0,
            n_paths=n,
            save_times=[10.0, 100.0],
            method="exact",
            save="metrics",
            dtype=torch.float64,
            seed=sweep.cell_seed(sweep.load_spec(spec), cell),
            progress=False,
        )
        np.testing.assert_array_equal(result.counts["all_separable_paths"][j], ref["all_separable"].values.sum(0))
        np.testing.assert_array_equal(result.data["p_all_separable"][j], ref["all_separable"].values.mean(0))
        # the metrics to rounding: paths may vectorise differently in batches of other sizes
        np.testing.assert_allclose(
            result.data["nc1_quotient"][j], np.nanmean(ref["nc1_quotient"].values, 0), rtol=1e-13
        )


def test_plan_groups_seeds_and_methods():
    spec = demo_spec(sweep={"cells_per_batch": 2})
    spec["grid"] = {"model.num_classes": [2, 3], "model.alpha.exponent": [0.5, 1.0, 2.0]}
    batches = sweep.plan(spec)
    # two shape groups of 3 cells each, cut into batches of <= 2 cells: [0, 1], [2], [3, 4], [5]
    assert [b.cells for b in batches] == [[0, 1], [2], [3, 4], [5]]
    assert [b.model["num_classes"] for b in batches] == [2, 2, 3, 3]
    assert batches[0].model["alpha"]["exponent"] == [0.5, 1.0]
    assert [b.method for b in batches] == ["exact"] * 4  # "auto" resolved per group with integrators.check
    seeds = [s for b in batches for s in b.seeds]
    assert len(set(seeds)) == 6
    # a cell's seed follows from the spec seed and its own grid values: not its batch, not the other cells
    one_by_one = sweep.plan({**spec, "sweep": {"cells_per_batch": 1}})
    assert [s for b in one_by_one for s in b.seeds] == seeds
    fewer = {**spec, "grid": {"model.num_classes": [3], "model.alpha.exponent": [2.0]}}
    assert sweep.plan(fewer)[0].seeds == [seeds[5]]
    reseeded = {**spec, "simulate": {**spec["simulate"], "seed": 1}}
    assert set(s for b in sweep.plan(reseeded) for s in b.seeds).isdisjoint(seeds)


def test_euler_fallback(tmp_path):
    spec = small()
    spec["model"].update({"transform": "softmax-residual"})  # state dependent: no exact sampler
    spec["simulate"].update({"t_end": 2.0, "dt": 0.05, "save_times": [1.0, 2.0]})
    spec["grid"] = {"model.alpha.scale": [1.0, 3.0]}
    ds = sweep.run(spec, tmp_path / "euler.zarr", progress=False)
    assert ds.attrs["method"] == "euler" and (ds["method"] == "euler").all()
    assert np.isfinite(ds["nc1_quotient"].sel(time=2.0).values).all()
    spec["simulate"]["method"] = "exact"  # asked for explicitly: refused before any work, with the core's reason
    with pytest.raises(ConfigError, match="method = 'exact' cannot run this cell.*transform"):
        sweep.run(spec, tmp_path / "exact.zarr", progress=False)
    assert not (tmp_path / "exact.zarr").exists()


def test_margin_is_stricter_than_ncm(tmp_path, reference):
    spec = small()
    ncm, _ = reference
    spec["sweep"].update({"separability": "margin", "margin": 0.5})
    strict = sweep.run(spec, tmp_path / "margin.zarr", progress=False)  # same cell seeds -> same paths
    assert strict.attrs["separability"] == "margin"
    diff = strict["p_all_separable"] - ncm["p_all_separable"]
    assert (diff <= 1e-12).all() and float(diff.sum()) < 0, diff.values
    np.testing.assert_allclose(strict["nc1_quotient"].values, ncm["nc1_quotient"].values, rtol=1e-12)


def test_store_refuses_other_spec_and_resumes_done(reference, monkeypatch):
    first, store = reference
    other = small()
    other["simulate"]["seed"] = 4
    with pytest.raises(sweep.StoreError, match="different sweep spec"):
        sweep.run(other, store, progress=False)
    # a rerun on a finished store computes nothing and returns the same numbers
    monkeypatch.setattr(sweep.runner, "run_batch", lambda *a, **k: pytest.fail("a finished store recomputed"))
    again = sweep.run(small(), store, progress=False)
    xr.testing.assert_identical(first.drop_attrs(), again.drop_attrs())


# ----------------------------------------------------------------------------------------------------------------
# spec checks: every key, type and range, before any work, naming the file and the key


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


GOOD = """
[model]
num_classes = 2
dim = 2
samples_per_class = 5
alpha = {{kind = "PowerLaw", scale = 1.0, exponent = 1.0}}
beta = 0.0

[simulate]
t_end = 10.0
dt = 1.0
n_paths = 4
{simulate}

[grid]
{grid}

[sweep]
{sweep}
{extra}
"""


NOT_A_TABLE = 'model = 3\n[simulate]\nt_end = 10.0\ndt = 1.0\nn_paths = 4\n[grid]\n"model.alpha.exponent" = [0.5]\n'


def _spec(simulate="", grid='"model.alpha.exponent" = [0.5, 2.0]', sweep_="", extra="") -> str:
    return GOOD.format(simulate=simulate, grid=grid, sweep=sweep_, extra=extra)


@pytest.mark.parametrize(
    "text, match",
    [
        (_spec().replace("t_end = 10.0", 't_end = "10"'), r"\[simulate\] t_end = '10' must be a number, got a string"),
        (_spec(sweep_="time = '10'"), r"\[sweep\] time = '10' must be a number"),
        (_spec(sweep_="confidence = 1.5"), r"\[sweep\] confidence = 1.5 must lie in \(0, 1\)"),
        (_spec(sweep_="confidence = 0.0"), r"confidence = 0.0 must lie in \(0, 1\)"),
        (_spec(simulate="chunk_size = 0"), r"\[simulate\] chunk_size = 0 must be an integer >= 1"),
        (_spec(simulate="n_paths_ = 3"), r"\[simulate\] has unknown key\(s\) \['n_paths_'\]"),
        (_spec(simulate="save = 'full'"), r"must not set 'save'"),
        (_spec(sweep_="cells = 3"), r"\[sweep\] has unknown key\(s\) \['cells'\]"),
        (_spec(extra="[sweeps]\nx = 1"), r"unknown section\(s\) \['sweeps'\]"),
        (_spec(grid='"model.alpha.exponnt" = [1.0]'), r"names no parameter of PowerLaw: accepted: kind, scale"),
        (_spec(grid='"model.elastic" = [1.0]'), r"'model.elastic'.* names no parameter: 'elastic' is not an LESDE"),
        (_spec(grid='"simulate.dtt" = [1.0]'), r"'simulate.dtt'.* names no parameter"),
        (_spec(grid='"alpha.exponent" = [1.0]'), r"must be a dotted path starting with 'model.'"),
        (_spec(grid='"simulate.t_end" = [1.0, 2.0]'), r"cannot be swept"),
        (_spec(grid='"model.beta.scale" = [0.1]'), r"beta is 0.0, not a table; write it as an inline table"),
        (_spec(grid='"model.alpha.exponent" = []'), r"needs a non-empty array"),
        (_spec(grid='"model.alpha.exponent" = [1, 1.0]'), r"repeated values"),
        (_spec(sweep_="separability = 'svm'"), r"separability = 'svm' is not supported; accepted: 'ncm'"),
        (_spec(sweep_="margin = 0.5"), r"margin = 0.5 needs separability = 'margin'"),
        (_spec(sweep_="time = 20.0"), r"time = 20 is after t_end = 10"),
        (_spec(grid='"model.alpha.offset" = [1.0, -1.0]'), r"cell alpha.offset=-1.0:.*offset must be > 0"),
        (_spec(grid='"model.num_classes" = [2, 2.5]'), r"cell num_classes=2.5: \[model\] num_classes = 2.5 must be an"),
        (_spec(simulate="method = 'heun2'"), r"method = 'heun2' is not supported; accepted: 'auto', 'euler'"),
        (NOT_A_TABLE, r"'model' must be a table \(\[model\] section\), got an integer 3"),
        (_spec().replace("dt = 1.0", "dt = 20.0"), r"dt=20.0 must not exceed t_end=10.0"),
        (_spec().replace("[grid]", "[grid\n"), r"not valid TOML"),
    ],
)
def test_spec_errors_name_the_file_and_key(tmp_path, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as err:
        sweep.load_spec(path)
    assert str(err.value).startswith(str(path)), err.value
    with pytest.raises(ConfigError):  # and run refuses it before creating anything
        sweep.run(path, tmp_path / "s.zarr", progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_spec_dict_errors_and_canonical_hash():
    with pytest.raises(ConfigError, match=r"^spec: \[simulate\] t_end = '1e4' must be a number"):
        sweep.load_spec(demo_spec(simulate={"t_end": "1e4"}))
    with pytest.raises(TypeError, match="TOML path, a dict or a SweepSpec"):
        sweep.load_spec(3)
    # t_end = 10 and t_end = 10.0 are the same spec, as are grid values 1 and 1.0 and defaults written out
    a = demo_spec(simulate={"t_end": 10, "save_times": [1, 10]}, sweep={"margin": 0})
    b = demo_spec(simulate={"t_end": 10.0, "save_times": [1.0, 10.0], "method": "auto", "dtype": "float64"})
    a["grid"]["model.alpha.scale"] = [1, 2]
    b["grid"]["model.alpha.scale"] = [1.0, 2.0]
    b["sweep"].update({"separability": "ncm", "confidence": 0.95, "cells_per_batch": None})
    assert sweep.spec_hash(a) == sweep.spec_hash(b)
    assert sweep.load_spec(a).to_json() == sweep.load_spec(b).to_json()
    assert sweep.spec_hash(DEMO_SPEC) == sweep.spec_hash(sweep.load_spec(DEMO_SPEC))
    changed = demo_spec(simulate={"n_paths": 201})
    assert sweep.spec_hash(changed) != sweep.spec_hash(DEMO_SPEC)
    # integer parameters stay integers
    with pytest.raises(ConfigError, match=r"n_paths = 100.0 must be an integer >= 1, got a number"):
        sweep.load_spec(demo_spec(simulate={"n_paths": 100.0}))


# ----------------------------------------------------------------------------------------------------------------
# reading, the plot, the table


def test_old_stores_stay_readable_but_are_not_resumed(tmp_path):
    ds = sweep.open_sweep(OLD_STORE)  # written by lesde 0.1: no status, counts or store_version
    assert ds["status"].values.ravel().tolist() == ["ok", "pending"]
    assert ds["done"].values.ravel().tolist() == [1, 0]
    assert float(ds["p_all_separable"].isel(time=-1).values.ravel()[0]) == 0.625
    old_spec = json.loads(ds.attrs["spec"])
    copy = tmp_path / "old.zarr"
    shutil.copytree(OLD_STORE, copy)
    with pytest.raises(sweep.StoreError, match="written by lesde 0.1.*cannot be resumed; rerun into a new store"):
        sweep.run(old_spec, copy, progress=False)
    from lesde.plots import phase_plot, save_figure

    assert ds["p_all_separable"].dims[:2] == ("alpha_exponent", "alpha_scale")  # dotted dims renamed on reading
    assert save_figure(phase_plot(ds), tmp_path / "old.png").stat().st_size > 10_000


def test_phase_plot_and_table(phase, tmp_path):
    import matplotlib.image as mpimg

    from lesde.plots import phase_plot, save_figure

    ds, store = phase
    out = save_figure(phase_plot(sweep.open_sweep(store), time=1e4), tmp_path / "phase.png")
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600
    assert img[..., :3].std() > 0.05  # not a blank canvas
    with pytest.raises(ValueError, match="'noise' is not a swept dimension.*accepted: alpha_exponent, alpha_scale"):
        phase_plot(ds, x="noise")
    with pytest.raises(TypeError, match="open a sweep store with lesde.sweep.open_sweep"):
        phase_plot(store)  # the plots never open files
    table = sweep.format_table(ds, time=1e4)
    rows = {line.split("|")[0].strip(): line.split("|")[1].split() for line in table.splitlines()[3:]}
    assert rows["4"] == [f"{v:.2f}" for v in ds["p_all_separable"].sel({"alpha_scale": 4.0, "time": 1e4}).values]


def test_example_spec_runs_tiny(tmp_path):
    spec = sweep.load_spec(REPO / "lesde" / "examples" / "phase_diagram.toml")
    spec.simulate.update({"n_paths": 8, "t_end": 10.0, "save_times": [10.0]})
    spec.grid = {"model.alpha.exponent": [0.5, 2.0], "model.alpha.scale": [1.0]}
    spec.sweep["time"] = None
    ds = sweep.run(spec, tmp_path / "ex.zarr", progress=False)
    assert ds["p_all_separable"].dims == ("alpha_exponent", "alpha_scale", "time")
    assert list(ds["time"].values) == [0.0, 10.0]


def test_netcdf_round_trip(phase, tmp_path):
    ds, _ = phase
    ds.to_netcdf(tmp_path / "phase.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "phase.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)


def test_the_command_line_names_live_in_the_application_layer_only():
    """sweep_cli and the demo are applications: lesde.cli holds them, lesde.sweep has no alias of them (the demo's
    spec is the library's example phase diagram, lesde.sweep.DEMO_SPEC)."""
    from lesde.cli import cmd_demo, cmd_sweep

    assert callable(cmd_sweep.sweep_cli) and callable(cmd_demo.phase_demo) and sweep.DEMO_SPEC["grid"]
    for name in ("demo", "phase_demo", "sweep_cli", "main_cli"):
        with pytest.raises(AttributeError):
            getattr(sweep, name)


def test_the_sweep_package_imports_neither_plots_nor_cli_nor_demo():
    code = "import sys, lesde.sweep; print([m for m in ('lesde.plots', 'lesde.cli') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    for path in (REPO / "lesde" / "sweep").glob("*.py"):
        text = path.read_text()
        for other in ("plots", "cli"):
            assert f"from ..{other}" not in text and f"import lesde.{other}" not in text, (path.name, other)
