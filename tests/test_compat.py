"""Files written by lesde 0.1 still open and draw in 0.2 (sweep stores: tests/test_sweep.py)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import lesde  # noqa: E402
from lesde import plots  # noqa: E402
from lesde.cli import main  # noqa: E402
from lesde.cli.cmd_plot import _open  # noqa: E402
from lesde.empirical import FitResult, estimate, fit, simulate_discrete  # noqa: E402


@pytest.fixture(scope="module")
def estimate_01(tmp_path_factory):
    """An estimate file as lesde 0.1 wrote it: the fit as JSON in attr ``fit``, no fitted curves."""
    model = lesde.LESDE(3, 3, 6, alpha=lesde.schedules.PowerLaw(2.0, 0.5), beta=0.3, noise=0.05)
    est = estimate(simulate_discrete(model, lr=0.02, steps=400, n_runs=3, seed=1), window=40)
    fr = fit(est, model="power")
    est.attrs["fit"] = fr.to_json()
    path = tmp_path_factory.mktemp("compat") / "est01.nc"
    est.to_netcdf(path, engine="h5netcdf")
    return path, fr


def test_an_estimate_file_of_01_gets_its_fitted_curves_when_opened(estimate_01):
    path, fr = estimate_01
    with xr.open_dataset(path, engine="h5netcdf") as raw:
        assert "alpha_fit" not in raw and "fit" in raw.attrs
    ds = _open("elasticity", path)
    t = ds["fit_time"].values
    want = fr.fits["alpha"].schedule(t).numpy()
    np.testing.assert_allclose(ds["alpha_fit"].values, want, rtol=1e-12)
    assert np.all(ds["alpha_fit_lower"].values <= ds["alpha_fit"].values + 1e-12)
    fig = plots.plot_elasticity(ds)
    fit_lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label().startswith("fit ")]
    assert len(fit_lines) == 2  # alpha and beta, drawn from the Dataset's curves
    plt.close(fig)


def test_lesde_plot_elasticity_on_an_01_file(estimate_01, tmp_path, capsys):
    path, _ = estimate_01
    assert main(["plot", "elasticity", str(path), "--out", str(tmp_path / "e.png")]) == 0
    assert (tmp_path / "e.png").stat().st_size > 10_000 and "wrote" in capsys.readouterr().out


def test_fit_result_curves_round_trip(estimate_01, tmp_path):
    path, fr = estimate_01
    with xr.open_dataset(path, engine="h5netcdf") as raw:
        est = fr.curves(raw.load())
    est.to_netcdf(tmp_path / "e.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "e.nc", engine="h5netcdf") as back:
        xr.testing.assert_allclose(back["beta_fit"], est["beta_fit"])
        assert FitResult.from_json(back.attrs["fit"]).fits["beta"].model == "power"
