"""The residual-collapse example at its tiny size, and the NC plot helpers it uses (lesde.plots.nc).

The example's expected behaviour comes from the residual transform's mean dynamics (see its docstring): at late
times the centred class means grow like the common mode, by (1 + h (alpha + (K-1) beta) / K) per Euler step,
while tr(Sigma_W) = m (1 - 1/n) (x0_scale^2 + sigma^2 t) grows linearly, so nc1_quotient shrinks by a factor
computed here in closed form.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.spatial.distance import cdist

from lesde.plots import nc as plots_nc

EXAMPLE = Path(__file__).resolve().parents[1] / "lesde" / "examples" / "residual_collapse.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load_example():
    spec = importlib.util.spec_from_file_location("residual_collapse", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """Run the script's main() once (--tiny) into a temporary folder; return (module, out dir, stdout, ds, png)."""
    import contextlib
    import io

    mod = _load_example()
    out = tmp_path_factory.mktemp("residual_collapse")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ds, png = mod.main(["--tiny", "--out", str(out)])
    return mod, out, buf.getvalue(), ds, png


@pytest.fixture(scope="module")
def metrics_ds(example_run):
    out = example_run[1]
    with xr.open_dataset(out / "residual_collapse.nc", engine="h5netcdf") as ds:
        return ds.load()


def test_writes_nc_and_png(example_run):
    mod, out, stdout, _, png = example_run
    assert png == out / "residual_collapse.png"
    assert (out / "residual_collapse.nc").is_file()
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 20_000  # eight drawn panels, not an empty canvas
    # the printed table: a header and one row per table time, starting at t = 0 and ending at T_END
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    header = next(i for i, ln in enumerate(lines) if ln.split()[0] == "time")
    rows = lines[header + 1 : header + 1 + mod.TABLE_TIMES]
    assert float(rows[0].split()[0]) == 0.0 and float(rows[-1].split()[0]) == mod.T_END
    assert lines[header].split()[1:] == list(mod.TABLE_METRICS)


def test_nc_metrics_fall(metrics_ds, example_run):
    mod = example_run[0]
    med = metrics_ds.median("path")
    first, last = med.isel(time=0), med.isel(time=-1)
    assert metrics_ds.sizes == {"path": mod.TINY_PATHS, "time": mod.TINY_SAVE}
    # stated factors (measured: nc1 13.2 -> 0.0086, etf_error 0.58 -> 0.049, maxangle 0.25 -> 0.017)
    assert float(last.nc1) < float(first.nc1) / 100
    assert float(last.cdnv) < float(first.cdnv) / 100
    assert float(last.etf_error) < float(first.etf_error) / 4
    assert float(last.maxangle_means) < float(first.maxangle_means) / 4
    # class means at a simplex ETF: mean pairwise cosine -1/(K-1), every pair separable
    assert abs(float(last.mean_cosine) + 1 / (mod.K - 1)) < 0.01
    # separation grows like the common mode; a path whose initial common-mode coefficient is near zero may lag,
    # so the tiny run (8 paths) asserts the bulk: at least 3/4 of all pairs separable at the end, fewer at t = 0
    assert float(metrics_ds.separable_fraction.isel(time=-1).mean()) >= 0.75
    assert float(metrics_ds.separable_fraction.isel(time=0).mean()) < 0.5


def test_nc1_quotient_rate_matches_mean_dynamics(metrics_ds, example_run):
    """Late-time decay of tr(Sigma_W)/tr(Sigma_B) against the common-mode Euler growth and linear within-var."""
    mod = example_run[0]
    h = float(metrics_ds.attrs["dt"])
    t1, t2 = float(metrics_ds.time[-3]), float(metrics_ds.time[-1])
    steps = round((t2 - t1) / h)
    rate = (mod.ALPHA + (mod.K - 1) * mod.BETA) / mod.K
    between = (1 + h * rate) ** (2 * steps)  # tr(Sigma_B) ~ s^2, s the common-mode coefficient
    within = (1 + mod.SIGMA**2 * t2) / (1 + mod.SIGMA**2 * t1)  # x0 ~ N(0, 1): m (1 - 1/n) (1 + sigma^2 t)
    expected = between / within
    q = metrics_ds.nc1_quotient
    measured = float((q.sel(time=t1) / q.sel(time=t2)).median("path"))
    print(f"nc1_quotient({t1:g}) / nc1_quotient({t2:g}): measured {measured:.4g}, expected {expected:.4g}")
    # the closed form leaves out the contrast modes' share of tr(Sigma_B): over 12 seeds the ratio measured / expected
    # of this 8-path median was 0.980 +- 0.015 (min 0.949)
    assert measured == pytest.approx(expected, rel=0.08), (measured, expected)


def test_metrics_roundtrip_netcdf(example_run, metrics_ds, tmp_path):
    ds = example_run[3]  # what run() returned: the Dataset the lead's `lesde demo` gets
    xr.testing.assert_identical(metrics_ds, ds)  # the file written by the script
    ds.to_netcdf(tmp_path / "again.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "again.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)
    assert ds.nc1.attrs["long_name"] and ds.nc1.attrs["units"] == "1"
    assert ds.separable_fraction.attrs["long_name"] and ds.all_separable.dtype == np.int8
    assert ds.attrs["metrics_classifier"] == "least_squares" and ds.attrs["save"] == "full"


# ------------------------------------------------------------------------------------------ lesde.plots.nc


def test_path_quantiles_match_numpy(gen):
    vals = torch.randn(7, 5, 3, generator=gen, dtype=torch.float64).numpy()  # (path, time, run)
    vals[0, 1, 0] = np.nan
    vals[2, 3, 1] = np.inf
    da = xr.DataArray(vals, dims=("path", "time", "run"))
    got = plots_nc.path_quantiles(da, (0.1, 0.5, 0.9))
    flat = np.where(np.isfinite(vals), vals, np.nan).transpose(1, 0, 2).reshape(5, -1)
    want = np.stack([[np.quantile(row[~np.isnan(row)], q) for row in flat] for q in (0.1, 0.5, 0.9)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    all_nan = xr.DataArray(np.full((3, 2), np.nan), dims=("path", "time"))
    assert np.isnan(plots_nc.path_quantiles(all_nan)).all()


def _means_dataset(M: np.ndarray) -> xr.Dataset:
    return xr.Dataset(
        {"class_mean": (("path", "time", "class", "feature"), M)},
        coords={"time": np.arange(M.shape[1], dtype=float)},
    )


def test_class_mean_cosines_against_scipy(gen):
    P, T, K, m = 3, 4, 5, 7
    M = torch.randn(P, T, K, m, generator=gen, dtype=torch.float64).numpy() * 1e150  # no overflow
    cos = plots_nc.class_mean_cosines(_means_dataset(M))
    assert cos.dims == ("path", "time", "pair") and cos.sizes["pair"] == K * (K - 1) // 2
    i, j = np.triu_indices(K, 1)
    for p, t in [(0, 0), (2, 3)]:
        C = M[p, t] - M[p, t].mean(0)
        want = 1 - cdist(C, C, "cosine")
        np.testing.assert_allclose(cos.values[p, t], want[i, j], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(cos.k.values, i)
    np.testing.assert_array_equal(cos.l.values, j)


def test_class_mean_cosines_etf_and_features(gen):
    """A rotated, scaled, shifted simplex ETF gives -1/(K-1); features + label give the class-mean route."""
    K, m, n = 4, 6, 3
    etf = np.hstack([np.eye(K), np.zeros((K, m - K))])  # (K, m): centred, e_k - 1/K is a simplex ETF
    Q, _ = np.linalg.qr(torch.randn(m, m, generator=gen, dtype=torch.float64).numpy())
    means = 3.0 * etf @ Q + 5.0  # (K, m)
    labels = np.repeat(np.arange(K), n)
    noise = torch.randn(K * n, m, generator=gen, dtype=torch.float64).numpy()
    noise -= np.stack([noise[labels == k].mean(0) for k in range(K)])[labels]  # zero class means
    feats = (means[labels] + 0.1 * noise)[None, None]  # (1, 1, N, m)
    ds = xr.Dataset(
        {"features": (("path", "time", "sample", "feature"), feats)},
        coords={"time": [0.0], "label": ("sample", labels)},
    )
    cos = plots_nc.class_mean_cosines(ds)
    np.testing.assert_allclose(cos.values, -1 / (K - 1), rtol=0, atol=1e-12)
    collapsed = plots_nc.class_mean_cosines(_means_dataset(np.ones((1, 1, K, m))))
    assert np.isnan(collapsed.values).all()  # no direction: NaN, which the plots ignore


def test_plots_write_png_and_reject_bad_input(tmp_path, gen):
    T = 6
    rng = torch.rand(4, T, generator=gen, dtype=torch.float64).numpy()
    ds = xr.Dataset(
        {
            "nc1": (("path", "time"), np.exp(-np.arange(T)) * (1 + rng)),
            "mean_cosine": (("path", "time"), -rng),
            "label_only": (("path",), np.arange(4.0)),  # no time dim: not plottable
        },
        coords={"time": np.linspace(0, 1, T)},
    )
    from lesde.plots import save_figure

    out = save_figure(plots_nc.plot_nc_metrics(ds, title="t"), tmp_path / "sub" / "m.png")
    assert out == tmp_path / "sub" / "m.png" and out.read_bytes()[:8] == PNG_MAGIC
    M = torch.randn(2, T, 3, 4, generator=gen, dtype=torch.float64).numpy()
    cos_png = save_figure(plots_nc.plot_class_mean_cosines(_means_dataset(M)), tmp_path / "c.png")
    assert cos_png.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(TypeError, match="positional argument"):  # the figures write no files: no (ds, out) form
        plots_nc.plot_nc_metrics(ds, tmp_path / "old.png")
    assert not (tmp_path / "old.png").exists()
    with pytest.raises(ValueError, match="accepted: \\['nc1', 'mean_cosine'\\]"):
        plots_nc.plot_nc_metrics(ds, names=["label_only"])
    with pytest.raises(TypeError, match="metrics_ds"):
        plots_nc.plot_nc_metrics(ds.nc1)
    with pytest.raises(ValueError, match="class_mean"):
        plots_nc.plot_class_mean_cosines(ds)
