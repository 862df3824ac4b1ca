"""Bad input to the public functions around the engine (plots, theory, sgd, sweep, metrics, examples, config):
one clear error naming the parameter and what is accepted, never a silent result or an AttributeError, KeyError,
JSONDecodeError or RuntimeError from deep inside. Grouped by category; each case failed (ran silently, or raised an
obscure error) before the check that now refuses it."""

from __future__ import annotations

import json

import matplotlib
import matplotlib.collections
import matplotlib.figure
import numpy as np
import pytest
import torch
import xarray as xr

import lesde
import lesde.examples
from lesde import plots, sgd, theory
from lesde.config import load_toml
from lesde.metrics import to_dataset
from lesde.sweep import format_table, open_sweep
from lesde.sweep import run as run_sweep

matplotlib.use("Agg", force=False)


@pytest.fixture(scope="module")
def sim():
    """A small save='means' simulation of the LE-SDE."""
    model = lesde.LESDE(2, 2, 3, alpha=1.0, beta=0.0)
    return lesde.simulate(model, t_end=1.0, dt=0.1, n_paths=4, n_save=3, save="means", progress=False)


def _sweep(exponents=(2.0, 0.5, 1.0), scales=(4.0, 1.0), failed=()) -> xr.Dataset:
    """A sweep result as lesde.sweep.open_sweep returns it, on the grid in the order given (unsorted by default),
    with P(all separable) = (10 p + c) / 100 in every cell so that each cell's value says where it belongs."""
    p, c, t = np.asarray(exponents), np.asarray(scales), np.array([10.0, 100.0])
    P = (10 * p[None, :, None] + c[None, None, :]) / 100 + 0 * t[:, None, None]  # (time, p, c)
    dims = ("time", "alpha_exponent", "alpha_scale")
    status = np.full((len(p), len(c)), "ok", dtype=object)
    for i, j in failed:
        status[i, j] = "failed"
    return xr.Dataset(
        {
            "p_all_separable": (dims, P),
            "p_all_separable_lower": (dims, P - 0.01),
            "p_all_separable_upper": (dims, P + 0.01),
            "done": (dims[1:], np.ones((len(p), len(c)))),
            "status": (dims[1:], status.astype(str)),
        },
        coords={"time": t, "alpha_exponent": p, "alpha_scale": c},
        attrs={"n_paths": 30},
    )


# ------------------------------------------------------------------------------------------ plots: ax, fig, paths


@pytest.mark.parametrize("bad", ["axes", 3, 1.5])
def test_plot_functions_refuse_an_ax_or_fig_that_is_not_matplotlibs(sim, bad):
    with pytest.raises(TypeError, match=r"^ax must be a matplotlib Axes or None"):
        plots.plot_class_mean_cosines(sim, ax=bad)
    with pytest.raises(TypeError, match=r"^fig must be a matplotlib Figure \(or SubFigure\) or None"):
        plots.phase_plot(_sweep(), fig=bad)


def test_save_figure_refuses_a_bad_figure_path_or_dpi(tmp_path):
    fig = matplotlib.figure.Figure()
    for path in (None, 3, ""):
        with pytest.raises(TypeError, match=r"^path must be a file name \(str or Path\)"):
            plots.save_figure(fig, path, close=False)
    for not_a_figure in ("fig.png", None):
        with pytest.raises(TypeError, match=r"^fig must be a matplotlib Figure"):
            plots.save_figure(not_a_figure, tmp_path / "f.png")
    for dpi in ("high", -1, float("nan")):
        with pytest.raises(ValueError, match=r"^dpi must be a positive number"):
            plots.save_figure(fig, tmp_path / "f.png", dpi=dpi, close=False)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ plots: selections


def test_phase_plot_places_the_cells_of_an_unsorted_grid(tmp_path):
    """Every coloured cell, written value and failed-cell cross sits at its own (p, c), whatever the grid order."""
    fig = plots.phase_plot(_sweep(failed=[(0, 1)]))  # the failed cell: p = 2, c = 1
    ax = fig.axes[0]
    mesh = next(c for c in ax.collections if isinstance(c, matplotlib.collections.QuadMesh))
    heat = np.asarray(mesh.get_array()).reshape(2, 3)  # rows c = 1, 4; columns p = 0.5, 1, 2
    expected = (10 * np.array([0.5, 1.0, 2.0])[None, :] + np.array([1.0, 4.0])[:, None]) / 100
    np.testing.assert_allclose(heat, expected)
    written = {(t.get_position()[0], t.get_position()[1]): float(t.get_text()) for t in ax.texts}
    for (x, y), v in written.items():
        assert v == pytest.approx((10 * x + y) / 100, abs=0.005)
    cross = next(line for line in ax.lines if line.get_marker() == "x")
    assert (cross.get_xdata().tolist(), cross.get_ydata().tolist()) == ([2.0], [1.0])
    assert format_table(_sweep(), time=100.0).splitlines()[1].split("|")[1].split() == ["0.5", "1", "2"]


def test_phase_plot_and_format_table_refuse_bad_selections():
    ds = _sweep()
    with pytest.raises(ValueError, match=r"'beta' not among the other swept dims; accepted: none"):
        plots.phase_plot(ds, select={"beta": 1.0})
    with pytest.raises(TypeError, match=r"^select must be a dict"):
        plots.phase_plot(ds, select=["alpha_scale"])
    with pytest.raises(ValueError, match=r"^time=nan must be a finite number"):
        plots.phase_plot(ds, time=float("nan"))
    with pytest.raises(ValueError, match=r"^x and y must be two different swept dims"):
        plots.phase_plot(ds, x="alpha_scale", y="alpha_scale")
    with pytest.raises(ValueError, match=r"^curve_times must be an integer >= 1"):
        plots.phase_plot(ds, curve_times=0)
    with pytest.raises(ValueError, match=r"^time=nan must be a finite number"):
        format_table(ds, time=float("nan"))


def test_plot_imitation_refuses_a_run_out_of_range():
    t, runs = np.arange(3.0), 2
    mean = np.zeros((2, runs, 3, 2, 2))  # (process, run, time, class, feature)
    imit = xr.Dataset(
        {
            "class_mean": (("process", "run", "time", "class", "feature"), mean),
            "relative_error": (("run", "time"), np.zeros((runs, 3))),
        },
        coords={"process": ["network", "le-sde"], "time": t},
    )
    with pytest.raises(ValueError, match=r"^run=5 is out of range: the imitation's run dim has 2, so run must be in"):
        plots.plot_imitation(imit, run=5)
    with pytest.raises(TypeError, match=r"^run must be an integer"):
        plots.plot_imitation(imit, run=0.5)
    with pytest.raises(ValueError, match=r"^qs must be quantiles in \[0, 1\]"):
        plots.path_quantiles(imit["relative_error"], qs=(0.5, float("nan")))


def test_plots_refuse_an_empty_time_axis_and_metrics_they_cannot_draw(sim):
    ufm = sgd.UFM.from_tirer_bruna(3, 2, 4, lambda_W=0.01, lambda_H=0.01)
    cmp = sgd.compare(ufm, lr=0.1, t_end=0.2, batch_size=2, n_runs=2, n_save=3, progress=False)
    with pytest.raises(ValueError, match=r"^ds has an empty time axis: the sgd figure has nothing to draw"):
        plots.plot_compare(cmp.isel(time=slice(0, 0)))
    with pytest.raises(ValueError, match=r"^sim_ds has an empty time axis"):
        plots.plot_class_mean_cosines(sim.isel(time=slice(0, 0)))
    with pytest.raises(ValueError, match=r"^metrics=\['nc_one'\] are not in ds; it has loss, accuracy"):
        plots.plot_compare(cmp, metrics=("nc_one",))
    with pytest.raises(TypeError, match=r"^metrics must be a tuple of variable names, e.g. \('nc1',\)"):
        plots.plot_compare(cmp, metrics="nc1")


# ------------------------------------------------------------------------------------------ theory.attach


def test_attach_refuses_an_empty_time_axis(sim):
    with pytest.raises(ValueError, match=r"^ds has an empty time axis"):
        theory.attach(sim.isel(time=slice(0, 0)))


@pytest.mark.parametrize("spec", ["{not json", "[1, 2]", 5], ids=["truncated", "a list", "a number"])
def test_attach_refuses_a_damaged_spec_attr(sim, spec):
    with pytest.raises(ValueError, match=r"^ds.attrs\['spec'\] is damaged: lesde writes a JSON object there"):
        theory.attach(sim.assign_attrs(spec=spec))


def test_attach_refuses_a_spec_that_does_not_rebuild_the_model(sim):
    with pytest.raises(ValueError, match=r"^ds.attrs\['spec'\] does not describe an LE-SDE lesde can rebuild"):
        theory.attach(sim.assign_attrs(spec=json.dumps({"model": "LESDE"})))
    with pytest.raises(TypeError, match=r"^summary needs the xarray.Dataset"):
        theory.summary(None)


# ------------------------------------------------------------------------------------------ theory: closed forms


@pytest.fixture(scope="module")
def tb():
    K, n, d = 3, 2, 4
    sol = theory.tirer_bruna(K, n, d, 0.01, 0.01)
    return sol["W"], sol["H"], torch.eye(K, dtype=torch.float64).repeat_interleave(n, 1)


def test_closed_forms_refuse_nan_features(tb):
    W, H, Y = tb
    nan = H * float("nan")
    with pytest.raises(ValueError, match=r"^H contains NaN or inf"):
        theory.ufm_mse_loss(W, nan, Y, 0.01, 0.01)
    with pytest.raises(ValueError, match=r"^H contains NaN or inf"):
        theory.optimal_classifier(nan, Y, 0.01)
    labels = torch.arange(3).repeat_interleave(2)
    with pytest.raises(ValueError, match=r"^features contains NaN or inf"):
        theory.mse_decomposition(nan.T, labels, W, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^code contains NaN or inf"):
        theory.one_vs_rest_distance(torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match=r"^lambda_W must be finite"):
        theory.ufm_mse_loss(W, H, Y, float("nan"), 0.01)


def test_closed_forms_name_mismatched_shapes(tb):
    W, H, Y = tb
    with pytest.raises(
        ValueError, match=r"^expected W \(\.\.\., K, d\), H \(\.\.\., d, N\), Y \(K, N\); got W \(3, 4\)"
    ):
        theory.ufm_mse_loss(W, H[:3], Y, 0.01, 0.01)
    with pytest.raises(ValueError, match=r"^expected H \(\.\.\., d, N\) and Y \(K, N\) with the same N"):
        theory.optimal_classifier(H, Y[:, :4], 0.01)
    labels = torch.arange(3).repeat_interleave(2)
    with pytest.raises(ValueError, match=r"^expected W \(\.\.\., K=3, m=4\) and b \(\.\.\., K=3\)"):
        theory.mse_decomposition(H.T, labels, W[:, :2], torch.zeros(3, dtype=torch.float64))


def test_closed_forms_convert_integer_arrays_and_refuse_complex(tb):
    """Integers are converted to float64 (and give what their float64 values give); complex is refused, saying
    which dtypes are accepted."""
    W, H, Y = tb
    Wi, Hi = W.round().long(), (H * 3).round().long()
    expected = theory.ufm_mse_loss(Wi.double(), Hi.double(), Y, 0.01, 0.01)
    got = theory.ufm_mse_loss(Wi, Hi, Y.long(), 0.01, 0.01)
    assert got.dtype == torch.float64 and float(got) == pytest.approx(float(expected))
    W_star = theory.optimal_classifier(Hi, Y.long(), 0.01)
    torch.testing.assert_close(W_star, theory.optimal_classifier(Hi.double(), Y, 0.01))
    with pytest.raises(TypeError, match=r"accepted dtypes: float32, float64 and integers \(converted to float64\)"):
        theory.optimal_classifier(H.to(torch.complex128), Y, 0.01)


# ------------------------------------------------------------------------------------------ sgd.compare


@pytest.fixture(scope="module")
def ufm():
    return sgd.UFM.from_tirer_bruna(3, 2, 4, lambda_W=0.01, lambda_H=0.01)


RUN = {"batch_size": 2, "n_runs": 2, "n_save": 3, "metrics": False, "progress": False}


def test_compare_never_runs_past_t_end(ufm):
    with pytest.raises(ValueError, match=r"^t_end=0.04 is shorter than one step \(lr=0.1\)"):
        sgd.compare(ufm, lr=0.1, t_end=0.04, **RUN)
    ds = sgd.compare(ufm, lr=0.1, t_end=0.26, **RUN)  # two whole steps end by 0.26; a third would end at 0.3
    assert float(ds["time"][-1]) == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"^t_end=0.05 is shorter than one step \(dt=0.1\)"):
        sgd.gradient_flow(ufm, 0.05, dt=0.1, progress=False)


@pytest.mark.parametrize(
    "theta0, error, match",
    [
        (float("nan"), ValueError, r"^theta0 contains NaN or inf"),
        (float("inf"), ValueError, r"^theta0 contains NaN or inf"),
        ("complex", TypeError, r"^theta0 must be real; complex values are not supported"),
        ("zeros", TypeError, r"^theta0 must be a number or an array of numbers, got str"),
    ],
)
def test_compare_refuses_a_bad_theta0(ufm, theta0, error, match):
    if theta0 == "complex":
        theta0 = torch.zeros(ufm.num_params, dtype=torch.complex128)
    elif isinstance(theta0, float):
        theta0 = torch.full((ufm.num_params,), theta0, dtype=torch.float64)
    with pytest.raises(error, match=match):
        sgd.compare(ufm, lr=0.1, t_end=0.2, theta0=theta0, **RUN)


def test_compare_refuses_what_is_not_a_training_problem(ufm):
    with pytest.raises(TypeError, match=r"^problem is an LESDE, a model of feature dynamics to integrate with"):
        sgd.compare(lesde.LESDE(2, 2, 3), lr=0.1, t_end=0.2, **RUN)
    for other in (None, "ufm", torch.nn.Linear(2, 2)):
        with pytest.raises(TypeError, match=r"^problem must be a lesde.sgd.Problem"):
            sgd.compare(other, lr=0.1, t_end=0.2, **RUN)
    with pytest.raises(TypeError, match=r"^theta must be a float32 or float64 tensor"):
        ufm.loss(ufm.init(1).long())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_compare_refuses_an_absent_device(ufm):
    with pytest.raises(ValueError, match=r"^device='cuda' but CUDA is not available here; accepted: 'cpu'"):
        sgd.compare(ufm, lr=0.1, t_end=0.2, device="cuda", **RUN)
    with pytest.raises(ValueError, match=r"^device='tpu7' is not a torch device"):
        sgd.compare(ufm, lr=0.1, t_end=0.2, device="tpu7", **RUN)


# ------------------------------------------------------------------------------------------ metrics


def test_to_dataset_refuses_an_empty_axis(sim):
    with pytest.raises(ValueError, match=r"^sim_ds has an empty 'time' axis"):
        to_dataset(sim.isel(time=slice(0, 0)))
    with pytest.raises(ValueError, match=r"^sim_ds has an empty 'path' axis"):
        to_dataset(sim.isel(path=slice(0, 0)))
    with pytest.raises(ValueError, match=r"samples_per_class'\] is damaged"):
        to_dataset(sim.assign_attrs(samples_per_class="[3, 3"))


# ------------------------------------------------------------------------------------------ paths and flags


def test_paths_and_flags_are_checked_up_front(tmp_path):
    with pytest.raises(TypeError, match=r"^store must be a path \(str or pathlib.Path\)"):
        run_sweep(lesde.sweep.DEMO_SPEC, None)
    with pytest.raises(TypeError, match=r"^store must be a path"):
        open_sweep(3)
    with pytest.raises(TypeError, match=r"^path must be a path"):
        load_toml(None)
    with pytest.raises(TypeError, match=r"^dest must be a path"):
        lesde.examples.copy("simulate", None)


def test_example_copy_never_overwrites_without_a_real_force(tmp_path):
    target = lesde.examples.copy("simulate", tmp_path)
    target.write_text("# my edits\n")
    with pytest.raises(lesde.examples.ExampleExists, match="exists; pass --force"):
        lesde.examples.copy("simulate", tmp_path)
    with pytest.raises(TypeError, match=r"^force must be True or False, got 'no'"):
        lesde.examples.copy("simulate", tmp_path, force="no")
    assert target.read_text() == "# my edits\n"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"is a file, not a folder; give a folder or a file name ending"):
        lesde.examples.copy("simulate", tmp_path / "afile")


# ------------------------------------------------------------------------------------------ the command line


@pytest.mark.parametrize("kind", ["sgd", "cosines", "theory"])
def test_plot_on_a_zarr_store_of_another_kind_is_one_error_line(tmp_path, capsys, kind):
    """lesde writes its stores without consolidated metadata: reading one must not add xarray's RuntimeWarning
    about it to the one error line."""
    from lesde import cli

    store = tmp_path / "s.zarr"
    xr.Dataset({"p_all_separable": (("time",), np.zeros(2))}, coords={"time": [0.0, 1.0]}).to_zarr(
        store, consolidated=False
    )
    assert cli.main(["plot", kind, str(store), "--out", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lesde plot: error: "), err
    assert cli.main(["plot", "sgd", str(tmp_path), "--out", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lesde plot: error: {tmp_path} is not a readable zarr store ("), err
