"""lesde.plots: every figure function with and without ``ax=``/``fig=`` returns a Figure and leaves the backend
alone; the predicted phase is drawn; save_figure writes by extension; ``lesde plot`` for every kind."""

from __future__ import annotations

import json

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from lesde import cli, plots
from lesde.empirical.fitting import FitResult, ParamFit

PNG = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)
T = np.linspace(0.0, 4.0, 9)


def _sweep() -> xr.Dataset:
    p, c = np.array([0.5, 1.0, 2.0]), np.array([0.5, 1.0, 2.0, 4.0])
    shape = (3, 4, 2)
    P = np.broadcast_to((p[:, None, None] < 1) * 1.0, shape).copy()
    P[1, 3, :] = 1.0
    ds = xr.Dataset(
        {
            "p_all_separable": (("alpha_exponent", "alpha_scale", "time"), P),
            "p_all_separable_lower": (("alpha_exponent", "alpha_scale", "time"), np.clip(P - 0.1, 0, 1)),
            "p_all_separable_upper": (("alpha_exponent", "alpha_scale", "time"), np.clip(P + 0.1, 0, 1)),
            "done": (("alpha_exponent", "alpha_scale"), np.ones(shape[:2], np.int8)),
            "status": (("alpha_exponent", "alpha_scale"), np.full(shape[:2], "ok")),
        },
        coords={"alpha_exponent": p, "alpha_scale": c, "time": [10.0, 1e4]},
        attrs={"spec": json.dumps({"model": {"num_classes": 2, "dim": 2, "samples_per_class": 5}}), "n_paths": 8},
    )
    return ds


def _metrics() -> xr.Dataset:
    nc1 = np.exp(-T)[None] * (1 + RNG.random((4, len(T))))
    return xr.Dataset(
        {"nc1": (("path", "time"), nc1), "etf_error": (("path", "time"), nc1 / 2)},
        coords={"time": T},
        attrs={"spec": json.dumps({"num_classes": 3, "dim": 4, "samples_per_class": [5, 5, 5]})},
    )


def _sim() -> xr.Dataset:
    M = RNG.normal(size=(2, len(T), 3, 4))
    return xr.Dataset({"class_mean": (("path", "time", "class", "feature"), M)}, coords={"time": T})


def _estimate() -> xr.Dataset:
    t = np.linspace(0.5, 20, 12)
    a, b = 3 * (1 + t) ** -1.2, 2 * (1 + t) ** -1.1
    fit = FitResult(
        fits={
            q: ParamFit(q, "power", {"scale": s, "exponent": e}, {"scale": 0.1, "exponent": 0.05}, 1.0, 2.0, 12, 1.1)
            for q, s, e in (("alpha", 3.0, 1.2), ("beta", 2.0, 1.1))
        },
        noise=0.5,
    )
    data = {"alpha": a, "beta": b}
    for q, v in list(data.items()):
        data[f"{q}_lower"], data[f"{q}_upper"] = 0.8 * v, 1.2 * v
    return xr.Dataset(
        {k: (("step",), v) for k, v in data.items()},
        coords={"time": ("step", t)},
        attrs={"fit": fit.to_json(), "weighting": "increment", "num_classes": 3},
    )


def _imitation() -> xr.Dataset:
    M = RNG.normal(size=(2, 3, len(T), 3, 4)).cumsum(2)
    err = np.abs(RNG.normal(size=(3, len(T))))
    return xr.Dataset(
        {
            "class_mean": (("process", "run", "time", "class", "feature"), M),
            "relative_error": (("run", "time"), err),
            "nc1_quotient": (("process", "run", "time"), np.exp(-T) + np.zeros((2, 3, len(T)))),
        },
        coords={"process": ["network", "le-sde"], "time": T},
    )


def _compare() -> xr.Dataset:
    shape = (3, 4, len(T))
    loss = np.exp(-T) * (1 + 0.1 * RNG.random(shape))
    return xr.Dataset(
        {
            "loss": (("process", "run", "time"), loss),
            "accuracy": (("process", "run", "time"), 1 - loss / 2),
            "nc1": (("process", "run", "time"), loss),
        },
        coords={"process": ["sgd", "sme", "gradient_flow"], "time": T},
        attrs={"lr": 0.1, "batch_size": 4, "problem": json.dumps({"kind": "ufm", "num_classes": 4, "dim": 8})},
    )


def _theory() -> xr.Dataset:
    """An attached sgd.compare Dataset (what lesde.theory.attach returns for a regularised MSE UFM)."""
    ds = _compare()
    gap = ds["loss"] - 0.25
    ds["loss_predicted"] = ((), 0.25, {"prediction": "Tirer and Bruna 2022, Theorem 3.1: minimizer; c = 0.3"})
    ds["loss_gap"] = gap.assign_attrs(prediction=ds["loss_predicted"].attrs["prediction"])
    ds["tb_distance"] = (("process", "run", "time"), np.exp(-2 * T) * (1 + 0.1 * RNG.random(gap.shape)))
    ds["nc1_predicted"] = ((), 0.0)
    ds.attrs["theory_predictions"] = json.dumps(["loss_predicted", "loss_gap", "nc1_predicted", "tb_distance"])
    return ds


def _theory_sweep() -> xr.Dataset:
    ds = _sweep()
    ds["predicted_phase"] = (("alpha_exponent", "alpha_scale"), (ds["alpha_exponent"].values[:, None] < 1) * np.ones(4))
    ds.attrs["theory_predictions"] = json.dumps(["predicted_phase", "phase", "phase_agreement"])
    return ds


def _label_noise() -> xr.Dataset:
    rate = np.array([0.0, 0.4, 0.8])
    v = RNG.random((3, 2))
    return xr.Dataset(
        {k: (("rate", "run"), v + i) for i, k in enumerate(("tail_alpha", "tail_beta"))}
        | {k: (("rate", "run"), v) for k in ("validation_accuracy", "train_accuracy")},
        coords={"rate": rate},
        attrs={"num_classes": 3, "tail": 0.5, "dataset": "geomnist"},
    )


def _checks():
    steps = 5
    dc = xr.Dataset(
        {
            "velocity": (("run", "step", "class"), RNG.random((3, steps, 3)) + 1),
            "drift": (("run", "step", "class"), RNG.random((3, steps, 3)) + 1),
            "drift_error": (("run", "step"), RNG.random((3, steps))),
            "drift_cosine": (("run", "step"), RNG.random((3, steps))),
            "within_var": (("run", "step"), RNG.random((3, steps)) + 1),
            "within_var_model": (("step",), RNG.random(steps) + 1),
        },
        coords={"time": ("step", np.arange(1.0, steps + 1))},
        attrs={"noise": 0.3},
    )
    return {"estimate": dc}


#: (function, args, whether it takes ax= (one panel) or fig= (a grid))
CASES = {
    "phase": (plots.phase_plot, lambda: (_sweep(),), "fig"),
    "nc": (plots.plot_nc_metrics, lambda: (_metrics(),), "fig"),
    "nc-one": (lambda ds, **kw: plots.plot_nc_metrics(ds, names="nc1", **kw), lambda: (_metrics(),), "ax"),
    "cosines": (plots.plot_class_mean_cosines, lambda: (_sim(),), "ax"),
    "collapse": (plots.plot_collapse, lambda: (_metrics(), _sim()), "fig"),
    "elasticity": (plots.plot_elasticity, lambda: (_estimate(),), "fig"),
    "imitation": (plots.plot_imitation, lambda: (_imitation(),), "fig"),
    "diagnosis": (plots.plot_imitation_diagnosis, lambda: (_imitation(), _checks(), _estimate()), "fig"),
    "label-noise": (plots.plot_label_noise, lambda: (_label_noise(),), "fig"),
    "sgd": (plots.plot_compare, lambda: (_compare(),), "fig"),
    "theory": (plots.plot_theory, lambda: (_theory(),), "fig"),
    "theory-panel": (plots.plot_theory_panel, lambda: (_theory(), "tb_distance"), "ax"),
    "theory-sweep": (plots.plot_theory, lambda: (_theory_sweep(),), "fig"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_figure_with_and_without_ax_returns_a_figure_and_keeps_the_backend(case):
    fn, args, where = CASES[case]
    backend = matplotlib.get_backend()
    fig = fn(*args())
    assert isinstance(fig, Figure) and fig.axes
    assert all(
        ax.get_title() or ax.get_ylabel() for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"
    )
    plt.close(fig)
    given = plt.figure()
    target = {"ax": given.add_subplot()} if where == "ax" else {"fig": given}
    fig2 = fn(*args(), **target)
    assert fig2 is given
    assert (target["ax"] in fig2.axes) if where == "ax" else len(fig2.axes) >= 1
    plt.close(given)
    assert matplotlib.get_backend() == backend


def test_no_plot_module_calls_matplotlib_use():
    from pathlib import Path

    for path in Path(plots.__file__).parent.glob("*.py"):
        assert "matplotlib.use(" not in path.read_text(), path


def test_the_predicted_phase_is_hatched_over_its_cells():
    from matplotlib.patches import Rectangle

    ds = _sweep()
    bare = plots.phase_plot(ds)
    n_bare = sum(isinstance(p, Rectangle) and p.get_hatch() for p in bare.axes[0].patches)
    ds["predicted_phase"] = (("alpha_exponent", "alpha_scale"), np.array([[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0.0]]))
    ds["predicted_phase"][2, 0] = np.nan  # no prediction there: not hatched
    fig = plots.phase_plot(ds)
    hatched = [p for p in fig.axes[0].patches if isinstance(p, Rectangle) and p.get_hatch()]
    assert n_bare == 0 and len(hatched) == 6  # the cells predicted separable, nothing else
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "predicted separable (theory)" in labels and "theory: $p = 1$" in labels
    plt.close("all")


def test_dims_are_named_as_the_sweep_spells_them():
    """Sweep dims are spelled with underscores; the dotted spelling of lesde 0.1 stores is renamed when a store is
    opened (tests/test_sweep.py), so a figure asked for a dotted name says which dims exist."""
    fig = plots.phase_plot(_sweep(), x="alpha_exponent", y="alpha_scale")
    assert fig.axes[0].get_xlabel().startswith("exponent $p$")
    plt.close(fig)
    with pytest.raises(ValueError, match="'alpha.exponent' is not a swept dimension.*accepted: alpha_exponent"):
        plots.phase_plot(_sweep(), x="alpha.exponent")


def test_the_theory_line_is_visible_in_the_legend():
    fig = plots.phase_plot(_sweep())
    leg = fig.axes[0].get_legend()
    entry = [h for h, t in zip(leg.legend_handles, leg.get_texts()) if t.get_text() == "theory: $p = 1$"][0]
    assert matplotlib.colors.to_rgb(entry.get_color()) == (0.0, 0.0, 0.0)  # black on the white legend
    plt.close(fig)


def test_the_theory_figure_names_its_bands_lines_and_problem():
    ds = _theory()
    assert plots.theory_panels(ds) == ["loss", "tb_distance", "nc1"]
    fig = plots.plot_theory(ds)
    loss, dist, nc1 = [ax for ax in fig.axes if ax.get_visible()]  # a 2x2 grid, the fourth hidden
    texts = [t.get_text() for t in loss.get_legend().get_texts()]
    assert texts == ["SGD", "SME (first-order SDE)", "gradient flow", r"$\pm$1 s.d. over 4 runs", "theory: 0.25"]
    # the processes are named once; every other panel still explains its band and its theory line
    assert [t.get_text() for t in nc1.get_legend().get_texts()] == [r"$\pm$1 s.d. over 4 runs", "theory: 0"]
    assert dist.get_ylabel() == r"$\|WH - W^*H^*\|_F\, /\, \|Y\|_F$" and dist.get_yscale() == "log"
    assert dist.get_xlabel().startswith("training time")
    title = fig.get_suptitle()
    assert "$K=4$" in title and "SGD / SME (first-order SDE) / gradient flow, lr = 0.1" in title
    assert "theory: Tirer and Bruna 2022, Theorem 3.1 ($c = 0.3$)" in title
    plt.close(fig)
    one = plots.plot_theory(ds, names="tb_distance")
    assert len(one.axes) == 1
    plt.close(one)
    with pytest.raises(ValueError, match="not theory panels of this Dataset; accepted: loss, tb_distance, nc1"):
        plots.plot_theory(ds, names=["snr"])
    with pytest.raises(ValueError, match="call lesde.theory.attach"):
        plots.plot_theory(_compare())


def test_the_theory_figure_of_a_sweep_is_the_phase_plot_with_the_prediction_hatched():
    from matplotlib.patches import Rectangle

    fig = plots.plot_theory(_theory_sweep())
    hatched = [p for p in fig.axes[0].patches if isinstance(p, Rectangle) and p.get_hatch()]
    assert len(hatched) == 4 and fig.get_suptitle().startswith("Separability phase diagram")  # p = 0.5, 4 scales
    plt.close(fig)


@pytest.mark.parametrize("ext, magic", [("png", PNG), ("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_save_figure_by_extension(tmp_path, ext, magic):
    out = plots.save_figure(plots.plot_nc_metrics(_metrics()), tmp_path / "sub" / f"f.{ext}")
    assert out.read_bytes()[: len(magic)] == magic
    with pytest.raises(ValueError, match="accepted extensions are .*png"):
        plots.save_figure(plots.plot_nc_metrics(_metrics()), tmp_path / "f.docx")
    plt.close("all")


def test_a_dataset_lacking_variables_names_them():
    with pytest.raises(plots.MissingVariables, match="the sgd figure needs the variables loss, accuracy, process"):
        plots.plot_compare(_metrics())
    with pytest.raises(TypeError, match="the plots never open files"):
        plots.plot_elasticity("est.nc")


# ------------------------------------------------------------------------------------------------------------
# lesde plot KIND FILE


def _write(tmp_path, name, ds):
    path = tmp_path / name
    ds.to_netcdf(path, engine="h5netcdf")
    return path


FILES = {
    "nc": ("m.nc", _metrics),
    "cosines": ("s.nc", _sim),
    "elasticity": ("e.nc", _estimate),
    "imitation": ("i.nc", _imitation),
    "sgd": ("c.nc", _compare),
    "theory": ("t.nc", _theory),
}


@pytest.mark.parametrize("kind", list(FILES))
def test_lesde_plot_every_file_kind(tmp_path, capsys, kind):
    name, make = FILES[kind]
    src = _write(tmp_path, name, make())
    out = tmp_path / f"{kind}.png"
    assert cli.main(["plot", kind, str(src), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 10_000


def test_lesde_plot_phase_from_a_store(tmp_path, capsys):
    from test_sweep import OLD_STORE  # a store written by lesde 0.1, with dotted dims

    out = tmp_path / "phase.pdf"
    assert cli.main(["plot", "phase", str(OLD_STORE), "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"%PDF"
    capsys.readouterr()


def test_the_parser_knows_every_kind():
    from lesde.cli.cmd_plot import PLOT_KINDS

    assert PLOT_KINDS == tuple(plots.KINDS)


def test_lesde_plot_errors_are_one_line(tmp_path, capsys):
    src = _write(tmp_path, "m.nc", _metrics())
    with pytest.raises(SystemExit) as e:
        cli.main(["plot", "bogus", str(src), "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice: 'bogus'" in err
    assert "phase" in err and "nc" in err and "cosines" in err and "elasticity" in err and "sgd" in err
    for kind, needs in (
        ("sgd", "the sgd figure needs the variables loss, accuracy, process"),
        ("elasticity", "the elasticity figure needs the variables alpha, beta"),
        ("cosines", "the cosines figure needs the variables class_mean"),
        ("imitation", "the imitation figure needs the variables class_mean, relative_error"),
    ):
        assert cli.main(["plot", kind, str(src), "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"lesde plot: error: {needs}") and err.count("\n") == 1, err
    assert cli.main(["plot", "nc", str(_write(tmp_path, "s.nc", _sim())), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "the nc figure needs NC metrics over time (nc1, etf_error, ...)" in err and err.count("\n") == 1
    assert "save='metrics'" in err and "lesde.metrics.to_dataset" in err  # how to get them
    assert cli.main(["plot", "nc", str(src), "--out", str(tmp_path / "x.png"), "--time", "1"]) == 2
    assert "--time applies to the phase kind only" in capsys.readouterr().err
    assert cli.main(["plot", "theory", str(src), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "the theory figure needs the predictions" in err and "lesde compare-theory" in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()
