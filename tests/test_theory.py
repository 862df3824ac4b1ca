"""lesde.theory.attach: predictions beside measurements (UFM runs, LE-SDE simulations, sweeps, the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import lesde
from lesde import theory
from lesde.sgd import UFM, compare, run_sgd
from lesde.theory.closed_forms import tirer_bruna

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tb_run():
    # c = sqrt(0.3 * 0.3) = 0.3 < 1; slowest rate of the flow near the minimizer ~ lambda_H / (K n) = 0.05
    ufm = UFM.from_tirer_bruna(3, 2, 4, lambda_W=0.3, lambda_H=0.3)
    # substeps=1: the minimizer is the point of this run, not the SME's own weak error (8000 steps, not 64000)
    ds = compare(ufm, lr=0.01, batch_size=2, t_end=80.0, n_runs=8, save="full", n_save=5, substeps=1, progress=False)
    return theory.attach(ds)


def test_tirer_bruna_minimizer_reached_by_sgd_sme_and_flow(tb_run):
    ds = tb_run
    sol = tirer_bruna(3, 2, 4, 0.3, 0.3)
    assert float(ds["tb_rho"]) == pytest.approx(sol["rho"])
    assert "Tirer and Bruna" in ds["tb_distance"].attrs["prediction"]
    end = ds.isel(time=-1)
    # gradient flow converges to the minimizer (exponentially; 80 time units ~ 4 e-foldings of the slowest mode
    # squared): within 1e-4 in ||WH - W*H*|| / ||Y|| and the objective within 1e-6 of its minimum
    gf = end.sel(process="gradient_flow")
    assert float(gf["tb_distance"].max()) < 1e-4
    assert float(gf["tb_gram_distance"].max()) < 1e-4
    assert 0 <= float(gf["loss_gap"].max()) < 1e-6
    # SGD and its SME hover around it: stationary fluctuations ~ sqrt(lr) (0.02 to 0.03 measured at lr = 0.02),
    # so at lr = 0.01 the run-averaged distance must be below 0.04 and the objective within 1e-3
    for proc in ("sgd", "sme"):
        e = end.sel(process=proc)
        assert float(e["tb_distance"].mean("run")) < 0.04, proc
        assert float(e["tb_gram_distance"].mean("run")) < 0.04, proc
        assert 0 < float(e["loss_gap"].mean("run")) < 1e-3, proc
    # the distance fell from the start (the initial point is far from the minimizer)
    assert float(ds["tb_distance"].isel(time=0).min()) > 0.3


def test_tirer_bruna_collapsed_regime_predicts_zero():
    ufm = UFM.from_tirer_bruna(3, 2, 4, lambda_W=2.0, lambda_H=2.0)  # c = 2 >= 1
    ds = compare(ufm, lr=0.05, batch_size=2, t_end=20.0, n_runs=2, save="full", n_save=3, progress=False)
    out = theory.attach(ds)
    assert float(out["tb_rho"]) == 0.0 and float(out["loss_predicted"]) == pytest.approx(0.5)
    assert "zero solution" in out["loss_gap"].attrs["prediction"]
    assert float(out["tb_distance"].sel(process="gradient_flow").isel(time=-1).max()) < 1e-3
    assert "nc1_predicted" not in out  # 0/0 at the zero solution


def test_metrics_only_run_gets_loss_gap_and_predicted_metrics():
    ufm = UFM.from_tirer_bruna(3, 2, 4, lambda_W=0.3, lambda_H=0.3)
    ds = run_sgd(ufm, 0.05, 2, 20, n_runs=2, progress=False)
    out = theory.attach(ds)
    assert "loss_gap" in out and "tb_distance" not in out
    assert out["nc1_predicted"].attrs["prediction"].startswith("Tirer and Bruna")
    assert float(out["nc1_predicted"]) == pytest.approx(0.0, abs=1e-12)
    assert out["loss_gap"].dims == ("run", "time")


def test_imbalanced_lesde_class_mean_variance_matches_closed_form():
    model = lesde.LESDE(3, 2, [4, 8, 16], alpha=0.6, beta=-0.1, noise=0.5)
    ds = lesde.simulate(model, t_end=3.0, dt=0.01, n_paths=2000, n_save=4, save="means", progress=False, seed=1)
    out = theory.attach(ds)
    assert out["class_mean_var_predicted"].dims == ("time", "class", "feature")
    assert "Section 3.2" in out["class_mean_var_predicted"].attrs["prediction"]
    assert out["n_paths_finite"].values.tolist() == [2000] * 4
    # closed form at t = 0: s^2 / n_k (x0 ~ N(0, 1))
    np.testing.assert_allclose(out["class_mean_var_predicted"].isel(time=0).values[:, 0], [1 / 4, 1 / 8, 1 / 16])
    # 2000 paths: the standard error of a sample variance is var sqrt(2 / 1999) ~ 3%; the largest of the 6
    # (class, feature) z-scores per time stays below 4 standard errors
    assert float(out["class_mean_var_zscore"].max()) < 4.0
    assert float(out["class_mean_zscore"].max()) < 4.0
    rel = out["class_mean_var"] / out["class_mean_var_predicted"] - 1
    assert float(abs(rel).max()) < 4 * np.sqrt(2 / 1999)


def test_class_mean_law_detects_a_wrong_model():
    # the same simulation compared with the law of another alpha is many standard errors off
    model = lesde.LESDE(3, 2, [4, 8, 16], alpha=0.6, beta=-0.1, noise=0.5)
    ds = lesde.simulate(model, t_end=3.0, dt=0.01, n_paths=2000, n_save=4, save="means", progress=False, seed=1)
    spec = json.loads(ds.attrs["spec"])
    spec["alpha"] = {"kind": "Constant", "value": 1.2}
    ds.attrs["spec"] = json.dumps(spec)
    assert float(theory.attach(ds)["class_mean_var_zscore"].isel(time=-1)) > 10


def test_residual_transform_gets_simplex_etf_angle():
    model = lesde.LESDE(4, 8, 20, alpha=1.0, beta=0.75, transform="residual", noise=0.5)
    ds = lesde.simulate(model, t_end=10.0, dt=0.01, n_paths=16, n_save=3, save="means", progress=False)
    out = theory.attach(ds)
    assert float(out["mean_cosine_predicted"]) == pytest.approx(-1 / 3)
    d = out["mean_cosine_distance"].mean("path")
    # centred random means already have mean cosine near -1/(K-1); the residual drift removes the rest
    assert float(d.isel(time=-1)) < 1e-3 and float(d.isel(time=-1)) < 0.1 * float(d.isel(time=0))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from lesde.sweep import demo_spec, run

    spec = demo_spec(exponents=[0.5, 1.0, 2.0], scales=[0.25, 4.0], simulate={"n_paths": 100})
    return run(spec, tmp_path_factory.mktemp("sweep") / "phase.zarr", progress=False)


def test_predicted_phase_agrees_with_measured_away_from_p_one(sweep):
    out = theory.attach(sweep)
    grid = tuple(d for d in sweep["p_all_separable"].dims if d != "time")
    assert out["predicted_phase"].dims == grid and out["p_separable_predicted"].dims == ("time", *grid)
    limit = out["predicted_phase_limit"]
    np.testing.assert_array_equal(limit.sel({"alpha_exponent": 0.5}).values, [1.0, 1.0])
    np.testing.assert_array_equal(limit.sel({"alpha_exponent": 2.0}).values, [0.0, 0.0])
    np.testing.assert_array_equal(limit.sel({"alpha_exponent": 1.0}).values, [0.0, 1.0])  # 2c/K = 0.25, 4
    # the finite-time phase at the summary time decides every cell of this grid, and the measurement agrees
    assert (out["phase_prediction_kind"] == 1).all()
    np.testing.assert_array_equal(out["phase"].values, out["predicted_phase"].values)
    assert float(out["phase_agreement"].min()) == 1.0


def test_lesde_plot_theory_of_an_attached_sweep_is_its_phase_plot(sweep, tmp_path, capsys):
    from lesde import cli

    src = tmp_path / "attached.nc"
    theory.attach(sweep).to_netcdf(src, engine="h5netcdf")
    png = tmp_path / "phase.png"
    assert cli.main(["plot", "theory", str(src), "--out", str(png)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {png}" and png.stat().st_size > 10_000


def test_limit_phase_is_nan_where_the_rule_does_not_apply():
    from lesde.theory.phase_predictions import limit_phase

    def model(**kw):
        return lesde.LESDE(**{"num_classes": 2, "dim": 2, "samples_per_class": 20, "beta": 0.0, **kw})

    power = lesde.schedules.PowerLaw
    assert np.isnan(limit_phase(model(alpha=power(1.0, 1.0)))[0])  # 2c/K = 1: the boundary
    assert limit_phase(model(alpha=1.0))[0] == 1.0  # constant contrast rate: separable
    assert limit_phase(model(alpha=power(1.0, 0.5), beta=0.5))[0] == 0.0  # alpha - beta -> -0.5: contracting
    value, why = limit_phase(model(alpha=power(4.0, 1.0), transform="residual"))
    assert np.isnan(value) and "identity" in why
    assert np.isnan(limit_phase(model(samples_per_class=[10, 20], alpha=power(4.0, 1.0)))[0])


def test_no_applicable_prediction_is_a_clear_error():
    ds = xr.Dataset({"x": ("time", [1.0, 2.0])}, coords={"time": [0.0, 1.0]})
    with pytest.raises(theory.NoPredictionError, match="did not produce.*predictions exist for"):
        theory.attach(ds)
    # a CE UFM with weight decay on W only: neither the max-margin nor the regularised minimizer applies
    ufm = UFM(3, 2, 4, loss="ce", weight_decay_W=1e-2)
    run = run_sgd(ufm, 0.05, 2, 5, n_runs=2, progress=False)
    with pytest.raises(theory.NoPredictionError, match="training run of problem"):
        theory.attach(run)
    # an unregularised MSE run without the parameters: says to record save='full'
    run = run_sgd(UFM(3, 2, 4, loss="mse"), 0.05, 2, 5, n_runs=2, progress=False)
    with pytest.raises(theory.NoPredictionError, match="save='full'"):
        theory.attach(run)
    # an LE-SDE with state-dependent noise and identity transform
    model = lesde.LESDE(2, 2, 4, alpha=1.0, beta=0.0, noise="sampling", lr=0.1)
    sim = lesde.simulate(model, t_end=0.2, dt=0.1, n_paths=2, save="means", progress=False)
    with pytest.raises(theory.NoPredictionError, match="sample-independent noise"):
        theory.attach(sim)


def test_central_path_and_margin_predictions():
    mse = run_sgd(UFM(3, 4, 6, loss="mse", init_scale=0.5), 0.05, 12, 100, n_runs=2, save="full", progress=False)
    out = theory.attach(mse)
    assert out["snr"].dims == ("run", "time", "snr_mode") and out.sizes["snr_mode"] == 2
    np.testing.assert_allclose(out["snr_predicted"].isel(time=0), out["snr"].isel(time=0))
    assert (out["snr_predicted"].diff("time") > 0).all()  # the central-path SNR grows
    assert "central path" in out["central_path_departure"].attrs["prediction"]
    ce = run_sgd(UFM(3, 4, 6, loss="ce", bias=False), 0.5, 12, 400, n_runs=1, save="full", progress=False)
    out = theory.attach(ce)
    bound = float(out["nc_margin_normalized_predicted"])
    assert bound == pytest.approx(1 / (2 * 2 * 2))
    q = out["nc_margin_normalized"].isel(run=0).values
    assert (q <= bound + 1e-12).all() and q[-1] > q[0]  # Lemma 3.1 bound, approached from below


def test_softmax_code_target_for_many_classes():
    ufm = UFM(6, 2, 2, loss="ce", sphere=True, temperature=0.1)  # K = 6 > d + 1 = 3
    run = run_sgd(ufm, 0.1, 4, 20, n_runs=2, save="full", progress=False)
    out = theory.attach(run)
    # six unit vectors in the plane: the regular hexagon, vertex to the chord of its neighbours 1 - cos(60 deg)
    assert float(out["gnc2_predicted"]) == pytest.approx(0.5, rel=1e-3)
    assert (out["gnc2_gap"] > -1e-6).all()  # no code beats the softmax code


def test_compare_theory_cli(tmp_path, capsys):
    src = tmp_path / "run.nc"
    ufm = UFM.from_tirer_bruna(3, 2, 4, lambda_W=0.3, lambda_H=0.3)
    compare(ufm, lr=0.05, batch_size=2, t_end=5.0, n_runs=2, save="full", n_save=6, progress=False).to_netcdf(
        src, engine="h5netcdf"
    )
    out, png = tmp_path / "t.nc", tmp_path / "t.png"
    cmd = [sys.executable, "-m", "lesde.cli", "compare-theory", str(src), "--out", str(out), "--plot", str(png)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)  # the real command line, once
    assert res.returncode == 0, res.stderr
    assert "tb_distance" in res.stdout and "largest" in res.stdout and "at the last time" in res.stdout
    back = xr.load_dataset(out, engine="h5netcdf")
    assert "Tirer and Bruna" in back["tb_distance"].attrs["prediction"] and png.stat().st_size > 10_000
    from lesde import cli

    # the written file plots again by itself: lesde plot theory FILE --out F
    pdf = tmp_path / "again.pdf"
    assert cli.main(["plot", "theory", str(out), "--out", str(pdf)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {pdf}" and pdf.read_bytes()[:4] == b"%PDF"

    assert cli.main(["compare-theory", str(tmp_path / "missing.nc"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    other = tmp_path / "other.nc"
    xr.Dataset({"x": ("t", [1.0])}).to_netcdf(other, engine="h5netcdf")
    assert cli.main(["compare-theory", str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no prediction applies" in err and "Traceback" not in err


def test_example_tiny(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "lesde" / "examples" / "theory_comparison.py"),
            "--tiny",
            "--out",
            str(tmp_path / "f.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "f.png").stat().st_size > 10_000 and "tb_distance" in res.stdout
