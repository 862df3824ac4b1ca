"""What a reader of lesde's figures sees: the house style on every figure (paper sizes, legible legends, no empty
slot, names not variable names, reference lines under the data, axis limits from the data) and the labels and
data of each figure (long_names, titles from the real parameters, the hatching, sorted grids, panel counts)."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import to_rgb
from matplotlib.patches import Rectangle
from test_plots import CASES, _compare, _estimate, _sweep

import lesde
from lesde import plots
from lesde.plots import nc as plots_nc
from lesde.schema import VARIABLE_ATTRS

T = np.linspace(0.0, 4.0, 9)


def _luminance(colour) -> float:
    r, g, b = to_rgb(colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _panels(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


# ----------------------------------------------------------------------------------------------------------------
# the house style, on every figure function


@pytest.mark.parametrize("case", list(CASES))
def test_every_figure_fits_a_page_with_legible_legends_and_no_empty_slot(case):
    fn, args, _ = CASES[case]
    fig = fn(*args())
    width, height = fig.get_size_inches()
    assert width <= 7.0 + 1e-9 and height <= 9.6 + 1e-9, (width, height)  # two columns, one page at most
    for ax in _panels(fig):
        assert ax.get_visible(), "a hidden axes is an empty slot of the grid"
        leg = ax.get_legend()
        if leg is not None:
            assert min(t.get_fontsize() for t in leg.get_texts()) >= 7, [t.get_text() for t in leg.get_texts()]
        assert ax.title.get_fontsize() >= 8 and ax.xaxis.label.get_fontsize() >= 8
    spec = _panels(fig)[0].get_subplotspec()
    if spec is not None and len(_panels(fig)) > 1:
        grid = spec.get_gridspec()
        covered = np.zeros(grid.get_geometry(), bool)
        for ax in _panels(fig):
            s = ax.get_subplotspec()
            covered[s.rowspan, s.colspan] = True
        assert covered.all(), "every slot of the grid holds a panel"
    plt.close(fig)


def _all_metrics() -> xr.Dataset:
    rng = np.random.default_rng(1)
    names = [n for n in VARIABLE_ATTRS if n in plots_nc.METRICS]
    data = {n: (("path", "time"), np.exp(-T) * (1 + rng.random((3, len(T))))) for n in names}
    return xr.Dataset(data, coords={"time": T}, attrs={"num_classes": 3})


def test_plot_nc_draws_six_panels_by_default_named_in_words():
    ds = _all_metrics()
    assert len(ds.data_vars) >= 16
    fig = plots.plot_nc_metrics(ds)
    assert len(fig.axes) == 6 and fig.get_size_inches()[1] <= 9.6
    assert [ax.get_title() for ax in fig.axes][:3] == [
        "NC1: within-class variability",
        "NC2: class means to simplex ETF",
        "NC2: equinorm of class means",
    ]
    plt.close(fig)
    every = plots.plot_nc_metrics(ds, metrics=list(ds.data_vars))  # metrics= picks others: all of them
    for ax, name in zip(every.axes, ds.data_vars):
        assert ax.get_title() and "_" not in ax.get_title().replace("$W$", ""), (name, ax.get_title())
        assert name not in ax.get_title()
    plt.close(every)
    one = plots.plot_nc_metrics(ds, metrics=["gnc2", "nc_margin"])
    assert [ax.get_title() for ax in one.axes] == ["GNC2: one-vs-rest distance of $W$", "neural-collapse margin"]
    plt.close(one)


def test_the_angle_gap_panel_says_it_is_a_mean_over_pairs():
    fig = plots.plot_nc_metrics(_all_metrics(), metrics="maxangle_means")
    ax = fig.axes[0]
    assert "max" not in ax.get_title().lower() and r"\mathrm{mean}_{k<l}" in ax.get_ylabel()
    plt.close(fig)


def test_plot_nc_of_a_comparison_has_one_line_per_process():
    ds = _compare()  # 3 processes x 4 runs
    fig = plots.plot_nc_metrics(ds, metrics=["nc1"])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["SGD", "SME (first-order SDE)", "gradient flow"] and "10-90% of 4 runs" in labels
    assert not any("12" in text for text in labels)  # the processes' runs are not pooled
    plt.close(fig)


def test_gradient_flow_is_drawn_under_sgd_and_the_sme():
    fig = plots.plot_compare(_compare())
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    flow = lines["gradient flow"]
    assert (
        flow.get_zorder() < lines["SGD"].get_zorder()
        and flow.get_zorder() < lines["SME (first-order SDE)"].get_zorder()
    )
    assert flow.get_linewidth() < lines["SGD"].get_linewidth()
    plt.close(fig)


def test_reference_lines_lie_under_the_data():
    from test_plots import _theory

    fig = plots.plot_theory(_theory(), names="loss")
    ax = fig.axes[0]
    theory = [line for line in ax.lines if line.get_label().startswith("theory:")]
    data = [line for line in ax.lines if line.get_label() in ("SGD", "SME (first-order SDE)", "gradient flow")]
    assert theory and data and max(t.get_zorder() for t in theory) < min(d.get_zorder() for d in data)
    plt.close(fig)


def test_log_axis_limits_come_from_the_lines_and_bands_are_clipped_to_them():
    rng = np.random.default_rng(2)
    vals = np.exp(-2 * T) * (1 + rng.random((20, len(T))))
    vals[:3] = 0.0  # a few paths at 0: the 10% quantile is 0, the band reaches 0
    fig = plots.plot_nc_metrics(xr.Dataset({"nc1": (("path", "time"), vals)}, coords={"time": T}))
    ax = fig.axes[0]
    med = np.median(vals, 0)
    bottom, top = ax.get_ylim()
    assert ax.get_yscale() == "log" and med.min() / 10 < bottom < med.min() and top > med.max()
    for band in ax.collections:
        for path in band.get_paths():
            y = path.vertices[:, 1]
            assert (y >= bottom * (1 - 1e-9)).all() and (y <= top * (1 + 1e-9)).all()
    plt.close(fig)


def test_the_elasticity_axes_come_from_the_estimate_not_the_other_weightings_bars():
    est = _estimate()
    del est.attrs["fit"]  # no fit: the estimate alone sets the axes
    t = est["time"].values
    est["beta"] = ("step", 0.5 * np.cos(t))  # changes sign: a linear axis
    est["beta_lower"], est["beta_upper"] = est["beta"] - 0.1, est["beta"] + 0.1
    big = np.full((2, len(t)), 1.0)
    est = est.assign_coords(weighting=["increment", "step"])
    est["beta_by_weighting"] = (("weighting", "step"), np.stack([est["beta"].values, 3 * est["beta"].values]))
    est["beta_by_weighting_se"] = (("weighting", "step"), big * [[0.1], [40.0]])  # the step estimand's bars: +-80
    est["dof"] = ("step", np.full(len(t), 10.0))
    est.attrs.update(weighting="increment", num_classes=3)
    fig = plots.plot_elasticity(est)
    beta = fig.axes[1]
    lo, hi = beta.get_ylim()
    assert beta.get_yscale() == "linear" and -0.8 < lo < -0.4 and 0.4 < hi < 0.8, (lo, hi)
    plt.close(fig)
    from lesde.empirical.fitting import FitResult

    est = _estimate()
    est["alpha_lower"] = est["alpha"] - 3 * est["alpha"]  # a CI reaching below 0
    alpha = plots.plot_elasticity(est, FitResult.from_json(est.attrs["fit"])).axes[0]  # a power fit: log-log
    a = est["alpha"].values
    assert alpha.get_yscale() == "log" and alpha.get_ylim()[0] > a.min() / 10
    plt.close("all")


def test_the_cosine_panel_shows_the_extreme_pairs_not_medians_at_the_etf_value():
    rng = np.random.default_rng(3)
    K = 4
    M = rng.normal(size=(16, len(T), K, 6))  # random class means: far from a simplex ETF
    fig = plots.plot_class_mean_cosines(xr.Dataset({"class_mean": (("path", "time", "class", "feature"), M)},
                                                   coords={"time": T}))  # fmt: skip
    lines = {line.get_label(): line.get_ydata() for line in fig.axes[0].lines}
    largest, smallest = lines["largest pair cosine, median"], lines["smallest pair cosine, median"]
    etf = -1 / (K - 1)
    assert (largest > etf + 0.2).all() and (smallest < etf - 0.2).all()
    assert not any(label.startswith("pair (") for label in lines)
    plt.close(fig)


def test_the_label_noise_legends_sit_below_their_panels():
    from test_plots import _label_noise

    fig = plots.plot_label_noise(_label_noise())
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        assert ax.get_legend().get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y0
    plt.close(fig)


def test_the_imitation_error_band_and_runs_are_drawn():
    from test_plots import _imitation

    fig = plots.plot_imitation(_imitation())
    ax = next(a for a in fig.axes if a.get_title() == "relative error of the class means")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "min-max over 3 runs" in labels and "each run" in labels
    assert sum(1 for line in ax.lines if line.get_linewidth() < 1) == 3  # one thin line per run
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# the phase figure


def test_an_unsorted_grid_draws_every_cell_at_its_value():
    ds = _sweep()
    shuffled = ds.isel(alpha_exponent=[1, 0, 2], alpha_scale=[2, 0, 3, 1])
    a, b = plots.phase_plot(ds), plots.phase_plot(shuffled)
    mesh_a, mesh_b = (f.axes[0].collections[0] for f in (a, b))
    np.testing.assert_array_equal(mesh_a.get_array(), mesh_b.get_array())
    np.testing.assert_array_equal(mesh_a.get_coordinates(), mesh_b.get_coordinates())
    plt.close("all")


def test_predicted_cells_are_hatched_in_a_colour_that_shows_on_the_cell():
    ds = _sweep()
    P = ds["p_all_separable"].values
    P[1, 2, :] = 0.98  # p = 1, c = 2: light, as a cell a run nearly always separates
    ds["p_all_separable"] = (ds["p_all_separable"].dims, P)
    pred = (ds["alpha_exponent"].values[:, None] <= 1) * np.ones(4)
    ds["predicted_phase"] = (("alpha_exponent", "alpha_scale"), pred)
    fig = plots.phase_plot(ds)
    ax = fig.axes[0]
    mesh = ax.collections[0]
    hatched = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch()]
    assert len(hatched) == int(pred.sum())
    for patch in hatched:  # each on its cell: the cell's colour from the mesh at the patch's centre
        x, y = patch.get_x() + patch.get_width() / 2, patch.get_y() + patch.get_height() / 2
        col = np.argmin(np.abs(ds["alpha_exponent"].values - x))
        row = np.argmin(np.abs(np.log(ds["alpha_scale"].values) - np.log(y)))
        value = mesh.get_array().reshape(4, 3)[row, col]
        cell = mesh.get_cmap()(mesh.norm(value))
        assert abs(_luminance(patch.get_edgecolor()) - _luminance(cell)) > 0.45, (x, y, value)
    plt.close(fig)


def test_the_theory_marks_are_thin_and_the_colour_bar_label_clears_the_curves():
    ds = _sweep()
    fig = plots.phase_plot(ds)
    ax, ax2 = fig.axes[0], fig.axes[1]
    for line in ax.lines:
        if line.get_label().startswith("theory"):
            assert line.get_linewidth() <= 1.6, line.get_label()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bar = next(a for a in fig.axes if a.get_label() == "<colorbar>")
    assert bar.yaxis.label.get_window_extent(renderer).x1 < ax2.yaxis.label.get_window_extent(renderer).x0 - 5
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# labels and titles from the data


def test_metric_long_names_come_from_the_table_not_the_features():
    sim = lesde.simulate(lesde.LESDE(3, 4, 5), t_end=0.2, dt=0.1, n_paths=2, n_save=2, save="full", progress=False)
    for chunked in (False, True):
        met = lesde.metrics.to_dataset(sim.chunk({"path": 1}) if chunked else sim)
        for name, var in met.data_vars.items():
            assert var.attrs["long_name"] == VARIABLE_ATTRS[name]["long_name"], name
            assert var.attrs["long_name"] != sim["features"].attrs["long_name"]
        assert met["time"].attrs["long_name"] == "SDE time t"  # the coordinates keep theirs


def test_titles_state_the_weight_decay_the_problem_was_posed_with():
    from lesde.sgd import UFM, compare

    ufm = UFM.from_tirer_bruna(4, 3, 6, lambda_W=0.3, lambda_H=0.3)
    ds = compare(ufm, lr=0.02, batch_size=3, t_end=0.04, n_runs=2, n_save=2, progress=False)
    fig = plots.plot_compare(ds)
    title = fig.get_suptitle()
    assert r"$\lambda_W=0.3$, $\lambda_H=0.3$ (Tirer-Bruna)" in title and "0.075" not in title
    plt.close(fig)
    ce = compare(UFM(4, 2, 4, loss="ce", weight_decay_W=0.01, weight_decay_H=0.02), lr=0.1, batch_size=2, t_end=0.2,
                 n_runs=2, n_save=2, progress=False)  # fmt: skip
    fig = plots.plot_compare(ce)
    assert "weight decay 0.01 ($W$), 0.02 ($H$)" in fig.get_suptitle() and "lambda" not in fig.get_suptitle()
    plt.close(fig)


def test_missing_variables_say_how_to_get_them():
    sim = xr.Dataset({"class_mean": (("path", "time", "class", "feature"), np.zeros((1, 2, 2, 2)))})
    for fn, kind, how in (
        (plots.plot_compare, "sgd", "lesde compare-sgd"),
        (plots.plot_elasticity, "elasticity", "lesde estimate"),
        (plots.plot_imitation, "imitation", "lesde imitate"),
        (plots.phase_plot, "phase", "lesde sweep"),
    ):
        with pytest.raises(plots.MissingVariables, match=f"the {kind} figure needs .*; .*{how}"):
            fn(sim)
    with pytest.raises(plots.MissingVariables, match="save='means' or save='full'"):
        plots.plot_class_mean_cosines(xr.Dataset({"nc1": ("time", [1.0])}))


def test_describe_reads_the_spec_it_is_given():
    from lesde.plots._titles import describe

    ds = xr.Dataset(attrs={"spec": json.dumps({"model": {"num_classes": 2, "noise": 0.5, "beta": 0.0}})})
    assert describe(ds) == r"$K=2$, $\beta=0$, $\sigma=0.5$"
