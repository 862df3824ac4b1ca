"""Issue 11: data (mnist1d standardisation, geomnist, splits), the label-corruption experiment (tiny mode, the
example script, the tail index) and the CLI options of ``lesde estimate`` / ``imitate`` / ``label-noise``."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from lesde.cli import main
from lesde.empirical import load_dataset, tail_index
from lesde.schema import VARIABLE_ATTRS

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- data


def test_mnist1d_standardised_by_training_statistics():
    from mnist1d.data import get_dataset_args, make_dataset

    raw = make_dataset(get_dataset_args())  # seed 42: the loader's default
    x, y = data = load_dataset("mnist1d")
    mean, std = data.info["standardize_mean"], data.info["standardize_std"]
    np.testing.assert_allclose([mean, std], [raw["x"].mean(), raw["x"].std()], rtol=1e-6)
    np.testing.assert_allclose(x.double().mean().item(), 0.0, atol=1e-6)
    np.testing.assert_allclose(x.double().std(unbiased=False).item(), 1.0, atol=1e-5)
    xt, yt = test = load_dataset("mnist1d", split="test")  # the test split uses the training statistics
    assert len(yt) == 1000 and test.info["standardize_mean"] == mean
    order = np.argsort(raw["y_test"], kind="stable")
    np.testing.assert_allclose(xt[:, 0].numpy(), ((raw["x_test"] - mean) / std)[order], atol=1e-5)
    off = load_dataset("mnist1d", standardize=False)
    assert off.info["standardize"] == "none"
    np.testing.assert_allclose(off[0][:, 0].numpy(), raw["x"][np.argsort(raw["y"], kind="stable")], atol=1e-6)
    d = load_dataset("digits", standardize=True)  # any data set can opt in
    np.testing.assert_allclose(d[0].double().mean().item(), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="no test split"):
        load_dataset("digits", split="test")
    with pytest.raises(ValueError, match="test split stays clean"):
        load_dataset("mnist1d", split="test", label_noise=0.2)


def test_geomnist_shapes_areas_and_splits():
    x, y = data = load_dataset("geomnist", n_train=60, n_test=20)
    assert tuple(x.shape) == (180, 1, 32, 32) and y.bincount().tolist() == [60, 60, 60]
    assert float(x.min()) >= 0 and float(x.max()) <= 1 and data.info["dataset"] == "geomnist"
    # blur preserves the ink: pixel sums are the shapes' areas times the size factor squared (mean 1 + 0.1^2/3),
    # up to the 2 x 2 supersampled rasterisation of the edges (a few percent for the triangle's long perimeter)
    area = np.array([0.5 * 20 * (8 + 8 * np.sqrt(3)), 8 * 16, np.pi * 6 * 12]) * (1 + 0.01 / 3)
    sums = x.double().sum((1, 2, 3)).numpy()
    np.testing.assert_allclose([sums[y.numpy() == k].mean() for k in range(3)], area, rtol=0.05)
    again = load_dataset("geomnist", n_train=60, n_test=20)[0]
    np.testing.assert_array_equal(x.numpy(), again.numpy())  # generated deterministically
    xt, yt = load_dataset("geomnist", split="test", n_train=60, n_test=20)
    assert len(yt) == 60 and not np.isclose(xt[0].numpy(), x[0].numpy()).all()  # an independent stream
    small = load_dataset("geomnist", n_train=5, size=16)[0]
    assert tuple(small.shape[1:]) == (1, 16, 16)


def test_tail_index_of_a_power_law():
    """A(t) = c t^(1-q) with t = s * lr: r = 1 - mean(log|A| / log s) -> q (up to log(c lr^(1-q)) / log s)."""
    s = np.arange(100, 100_001, 100)
    lr, q, c = 0.01, 0.4, 1.0
    A = c * (s * lr) ** (1 - q)
    est = xr.Dataset({"alpha_integrated": ("step", A)}, coords={"step": s})
    expect = 1 - np.mean(np.log(A[-250:]) / np.log(s[-250:]))
    assert tail_index(est, "alpha", tail=0.25) == pytest.approx(expect)
    assert abs(tail_index(est, "alpha", tail=0.25) - q) < (1 - q) * abs(np.log(lr)) / np.log(75_000) + 1e-9
    with pytest.raises(ValueError, match="tail"):
        tail_index(est, "alpha", tail=2.0)


def test_label_noise_tiny_mode_example_script(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ln.nc"
    monkeypatch.setattr(
        sys, "argv", ["label_noise.py", "--tiny", "--quiet", "--out", str(out), "--rates", "0", "0.6666667"]
    )
    runpy.run_path(str(ROOT / "lesde" / "examples" / "label_noise.py"), run_name="__main__")
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds.rate.values.tolist() == pytest.approx([0, 0.2, 0.4, 0.6, 2 / 3, 0.8])
        for v in ("tail_alpha", "tail_beta", "validation_accuracy", "train_accuracy"):
            assert ds[v].dims == ("rate", "run") and np.isfinite(ds[v].values).all()
        acc = ds.validation_accuracy.values
        assert ((acc >= 0) & (acc <= 1)).all() and ds.attrs["tiny"] == 1
        for v in ds.variables:  # every variable described by the one schema table
            if v not in ("run", "step", "time"):
                assert ds[v].attrs == VARIABLE_ATTRS[v], v
        # the tail index is the one tail_index computes from the stored integrated elasticity
        sub = ds[["alpha_integrated"]].isel(rate=0).assign_coords(step=ds.step)
        assert float(ds.tail_alpha_pooled[0]) == pytest.approx(tail_index(sub, "alpha", ds.attrs["tail"]))
    assert (tmp_path / "ln.png").stat().st_size > 10_000
    assert "r(alpha)" in capsys.readouterr().out and (tmp_path / "ln.png").exists()


def test_tail_statistics_and_the_figure_draw_the_same_numbers():
    """The mean over runs of the tail index, its standard error s / sqrt(R) and its Student-t interval; the
    label-noise figure draws exactly those (and the pooled index beside them)."""
    from scipy.stats import t as student_t

    from lesde.empirical import tail_statistics
    from lesde.plots import plot_label_noise

    r = np.array([[0.6, 0.7, 0.8, np.nan], [1.0, 1.2, 1.1, 1.3]])
    ds = xr.Dataset(
        {
            "tail_alpha": (("rate", "run"), r),
            "tail_beta": (("rate", "run"), r + 0.1),
            "tail_alpha_pooled": ("rate", [0.75, 1.32]),
            "tail_beta_pooled": ("rate", [0.8, 1.4]),
            "validation_accuracy": (("rate", "run"), np.full((2, 4), 0.9)),
            "train_accuracy": (("rate", "run"), np.full((2, 4), 0.8)),
        },
        coords={"rate": [0.0, 0.6]},
        attrs={"num_classes": 3, "tail": 0.25},
    )
    out = tail_statistics(ds)
    se = np.array([np.std([0.6, 0.7, 0.8], ddof=1) / np.sqrt(3), np.std([1.0, 1.2, 1.1, 1.3], ddof=1) / 2])
    np.testing.assert_allclose(out.tail_alpha_mean.values, [0.7, 1.15], rtol=1e-12)
    np.testing.assert_allclose(out.tail_alpha_se.values, se, rtol=1e-12)
    half = student_t.ppf(0.975, [2, 3]) * se
    np.testing.assert_allclose(out.tail_alpha_ci_high.values - out.tail_alpha_mean.values, half, rtol=1e-12)
    assert out.tail_runs.values.tolist() == [3, 4]
    one = tail_statistics(ds.isel(run=[0]))
    assert np.isnan(one.tail_alpha_se.values).all() and one.tail_alpha_mean.values.tolist() == [0.6, 1.0]
    fig = plot_label_noise(out)
    drawn = [line.get_ydata() for line in fig.axes[0].lines]
    assert any(np.allclose(y, out.tail_alpha_mean.values) for y in drawn)
    assert any(np.allclose(y, out.tail_alpha_pooled.values) for y in drawn)


# ----------------------------------------------------------------------------------------------- CLI


@pytest.mark.filterwarnings("ignore::UserWarning")  # short noisy tracks: chi2/dof, imitation warnings
def test_cli_estimate_options_and_imitate(tmp_path, capsys):
    out = tmp_path / "est.nc"
    argv = [
        "estimate",
        "--dataset",
        "gaussian-mixture",
        "--steps",
        "120",
        "--n-runs",
        "2",
        "--probes",
        "30",
        "--width",
        "12",
        "--depth",
        "1",
        "--lr",
        "0.05",
        "--window",
        "10",
        "--record-every",
        "2",
        "--weighting",
        "step",
        "--no-standardize",
        "--init",
        "keep",
        "--dtype",
        "float64",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "alpha (increment)" in text and "alpha (step)" in text and "median alpha/beta" in text
    answer = next(line for line in text.splitlines() if line.startswith("answer: "))
    assert " windows at 95% (alpha < beta in " in answer and "alpha - beta = " in answer and "(Fieller)" in answer
    with xr.open_dataset(out, engine="h5netcdf") as est:
        assert est.attrs["weighting"] == "step" and est.attrs["window"] == 10 and est.attrs["init"] == "keep"
        assert est.attrs["data_standardize"] == "none" and "alpha_by_weighting" in est
    with xr.open_dataset(out, engine="h5netcdf", group="track") as tr:
        assert tr.attrs["record_every"] == 2 and tr.attrs["n_runs"] == 2 and tr.attrs["init"] == "keep"
        assert "Linear(in_features=12, out_features=3" in tr.attrs["net"]  # width 12, depth 1
        np.testing.assert_allclose(tr.features.values[0, 0], tr.features.values[1, 0])  # init keep
        assert tr.attrs["dtype"] == "float64" and tr.features.dtype == np.float64
    assert main(["imitate", str(out), "--out", str(tmp_path / "im.nc"), "--quiet", "--paths-per-run", "1"]) == 0
    text = capsys.readouterr().out
    assert "median relative error of the class means" in text
    for c in ("class_mean_error", "centred_cosine", "gram_distance", "nc1", "ncm_accuracy", "separation_time"):
        assert f"  {c}: LE-SDE " in text and "paper LE-ODE" in text, c  # one verdict line per comparison
    with xr.open_dataset(tmp_path / "im.nc", engine="h5netcdf") as im:
        assert im.attrs["elasticity"] == "tabulated" and im.attrs["transform"] == "identity"
    # --runs, the 0.1 spelling of --n-runs, is gone: a usage error
    with pytest.raises(SystemExit) as exc:
        main(["estimate", "--dataset", "gaussian-mixture", "--runs", "2", "--out", str(tmp_path / "e2.nc")])
    assert exc.value.code == 2 and not (tmp_path / "e2.nc").exists()
    # several --label-noise rates run the label-corruption experiment
    argv = [
        "estimate",
        "--dataset",
        "geomnist",
        "--label-noise",
        "0",
        "0.6667",
        "--steps",
        "60",
        "--n-runs",
        "2",
        "--probes",
        "30",
        "--width",
        "8",
        "--form",
        "means",
        "--quiet",
        "--out",
        str(tmp_path / "ln.nc"),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "r(alpha)" in text and (tmp_path / "ln.png").exists()
    with xr.open_dataset(tmp_path / "ln.nc", engine="h5netcdf") as ln:
        assert ln.rate.values.tolist() == pytest.approx([0, 0.6667]) and ln.attrs["steps"] == 60
        # the table prints the mean over runs with its interval: the numbers the figure draws
        d = ln.isel(rate=1)
        m, lo, hi = (float(d[f"tail_alpha_{k}"]) for k in ("mean", "ci_low", "ci_high"))
        assert f"{m:6.3f} [{lo:6.3f}, {hi:6.3f}]" in text
        assert m == pytest.approx(float(d.tail_alpha.mean())) and lo < m < hi
