"""lesde.theory on cross-entropy UFM runs: the regularised minimizer (Zhu et al.) and the max-margin direction of
the unregularised model (Ji et al.), in every save mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from lesde import theory
from lesde.sgd import UFM, compare, gradient_flow
from lesde.theory import ce_ufm_minimizer


@pytest.mark.parametrize(("K", "n", "d", "lw", "lh", "tau"), [(4, 8, 8, 1e-2, 1e-2, 1.0), (3, 2, 3, 0.05, 0.2, 0.5)])
def test_ce_minimizer_minimises_the_objective_along_the_etf_family(K, n, d, lw, lh, tau):
    """The closed-form ||w_k||^2 against a bounded scalar minimisation of the objective written here with torch's
    cross_entropy (W = sqrt(x) ETF, h_ki = sqrt(lambda_W / (n lambda_H)) w_k), and its value."""
    sol = ce_ufm_minimizer(K, n, d, lw, lh, tau)
    etf = sol["W"] / math.sqrt(sol["x"])
    y = torch.arange(K).repeat_interleave(n)
    c = math.sqrt(lw / (n * lh))

    def objective(x):
        W = math.sqrt(x) * etf
        H = (c * W).repeat_interleave(n, 0)  # (N, d)
        ce = torch.nn.functional.cross_entropy(H @ W.T / tau, y)
        return float(ce + lw / 2 * (W**2).sum() + lh / 2 * (H**2).sum())

    ref = minimize_scalar(objective, bounds=(0.0, 10 * sol["x"] + 10), method="bounded", options={"xatol": 1e-10})
    assert sol["x"] == pytest.approx(ref.x, rel=1e-6)
    assert sol["loss"] == pytest.approx(ref.fun, rel=1e-12)
    assert ce_ufm_minimizer(K, n, d, 5.0, 5.0, tau)["collapsed"]  # strong decay: the zero solution, loss log K


def test_gradient_flow_reaches_the_regularised_ce_minimizer():
    """Gradient flow from a random start converges to the predicted minimizer: objective within 1e-10 of it and
    ||WH - W*H*|| / ||W*H*|| below 1e-6 at t = 300 (the minimizer is unique up to a rotation, which both
    distances ignore); compare_sgd.toml's kind of run (CE with weight decay) now has a prediction."""
    ufm = UFM(3, 2, 4, loss="ce", weight_decay_W=0.05, weight_decay_H=0.05, bias=False, init_scale=0.5)
    out = theory.attach(gradient_flow(ufm, 300.0, dt=0.25, n_save=7, save="full", progress=False))
    assert "Zhu et al." in out["ce_distance"].attrs["prediction"]
    end = out.isel(run=0, time=-1)
    assert 0 <= float(end["loss_gap"]) < 1e-10
    assert float(end["ce_distance"]) < 1e-6 < float(out["ce_distance"].isel(run=0, time=0))
    assert float(out["etf_error_classifier_predicted"]) == 0.0 and float(out["nc1_predicted"]) == 0.0


def test_max_margin_prediction_without_the_parameters():
    """An unregularised CE comparison recorded with the default save='metrics' gets the max-margin prediction: the
    collapse metrics it recorded are predicted 0, and the NC margin's slope against log t is measured where the
    loss is below log 2, without save='full'."""
    ds = compare(UFM(3, 2, 3, loss="ce", bias=False), lr=0.2, batch_size=2, t_end=40.0, n_runs=4, n_save=6,
                 progress=False)  # fmt: skip
    out = theory.attach(ds)
    for name in ("etf_error_classifier", "self_duality", "nc1", "ncc_mismatch"):
        assert float(out[f"{name}_predicted"]) == 0.0
    slope = out["nc_margin_log_slope"]
    assert slope.dims == ("process", "run", "time") and np.isfinite(slope.isel(time=-1)).all()
    assert np.isnan(slope.isel(time=0)).all()  # t = 0: no log t
    assert float(out["nc_margin_log_slope_predicted"]) == 1.0
    assert "nc_margin_log_slope_gap" in theory.summary(out)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_margin_grows_like_temperature_times_log_t(tau):
    """Gradient flow on the unregularised CE UFM (K = 3, n = 2, d = 3, no bias) to t = 1000: dq_min / dlog t falls
    towards the temperature from above (measured 1.19 tau at t = 1000, 1.15 tau at 4000); the normalised margin
    approaches its bound from below and the normalised logits approach the max-margin ones, both slowly."""
    ufm = UFM(3, 2, 3, loss="ce", bias=False, init_scale=0.5, temperature=tau)
    record = [0, *np.unique(np.rint(np.geomspace(1, 2000, 16)).astype(int))]
    out = theory.attach(gradient_flow(ufm, 1000.0, dt=0.5, record_every=record, save="full", progress=False))
    slope = out["nc_margin_log_slope"].isel(run=0).values / tau
    assert 1.0 < slope[-1] < 1.3 and (np.diff(slope[-5:]) < 0).all()
    gap, dist = out["nc_margin_gap"].isel(run=0).values, out["max_margin_distance"].isel(run=0).values
    assert (gap > 0).all() and (np.diff(gap[-6:]) < 0).all() and gap[-1] < 0.05
    assert (np.diff(dist[-6:]) < 0).all() and dist[-1] < dist[0] / 3
