"""The answer of an estimate: alpha - beta and alpha / beta from the joint (alpha, beta) covariance, by direct
computation, Fieller's interval, the summary attrs, and the coverage of both intervals on the discrete LE process
with a known E (run-clustered and single-run block errors)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import lesde
from lesde.empirical import estimate, simulate_discrete
from lesde.empirical.estimation import _pooling as pool
from lesde.empirical.estimation.answer import fieller


def _quiet(ds, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return estimate(ds, **kw)


def _per_run_sums(ds):
    """Per (run, step): n and d of alpha (probes of the sampled class) and beta (the others), as the increment
    estimand pools them, computed here from the track's arrays."""
    lr = float(ds.attrs["lr"])
    v = lr * ds.sampled_feature.values[:, 1:]  # (R, S, m)
    D = ds.increment.values[:, 1:]  # (R, S, P, m)
    L = ds.sampled_label.values[:, 1:]
    keep = ds.sample_index.values[None, None] != ds.sampled_index.values[:, 1:, None]
    own = (ds.label.values[None, None] == L[..., None]) & keep
    other = (ds.label.values[None, None] != L[..., None]) & keep
    dots = np.einsum("rspm,rsm->rsp", D, v)
    vv = (v * v).sum(-1)
    return {q: ((dots * m).sum(-1), vv * m.sum(-1)) for q, m in (("alpha", own), ("beta", other))}


def test_difference_covariance_and_ratio_by_direct_computation():
    """Run-clustered: Cov(alpha, beta) = R/(R-1) sum_r psi_a psi_b with psi = (n_r - theta d_r) / sum d; the
    difference's variance is Va + Vb - 2C; the per-weighting differences are alpha - beta of that weighting."""
    model = lesde.LESDE(3, 3, 8, alpha=1.0, beta=0.4, noise=0.2)
    ds = simulate_discrete(model, lr=0.01, steps=120, n_runs=5, seed=11)
    est = estimate(ds, window=120)
    sums = _per_run_sums(ds)
    psi = {}
    for q, (n, d) in sums.items():
        theta = n.sum() / d.sum()
        psi[q] = (n.sum(1) - theta * d.sum(1)) / d.sum()
        np.testing.assert_allclose(est[q].values[0], theta, rtol=1e-12)
        np.testing.assert_allclose(est[f"{q}_se"].values[0], np.sqrt(5 / 4 * (psi[q] ** 2).sum()), rtol=1e-10)
    cov = 5 / 4 * (psi["alpha"] * psi["beta"]).sum()
    np.testing.assert_allclose(est.alpha_beta_cov.values[0], cov, rtol=1e-10)
    var = est.alpha_se.values[0] ** 2 + est.beta_se.values[0] ** 2 - 2 * cov
    np.testing.assert_allclose(est.alpha_minus_beta_se.values[0], np.sqrt(var), rtol=1e-10)
    np.testing.assert_allclose(est.alpha_minus_beta.values, est.alpha.values - est.beta.values, rtol=1e-14)
    bw = est.alpha_by_weighting - est.beta_by_weighting
    np.testing.assert_allclose(est.alpha_minus_beta_by_weighting.values, bw.values, rtol=1e-14)
    # Fieller's bounds solve (a - rho b)^2 = q^2 (Va - 2 rho C + rho^2 Vb) and hold the ratio
    a, b = est.alpha.values[0], est.beta.values[0]
    va, vb = est.alpha_se.values[0] ** 2, est.beta_se.values[0] ** 2
    q = pool.t_quantile(0.95, est.dof.values[0])
    lo, hi = est.alpha_over_beta_ci_low.values[0], est.alpha_over_beta_ci_high.values[0]
    for rho in (lo, hi):
        np.testing.assert_allclose((a - rho * b) ** 2, q**2 * (va - 2 * rho * cov + rho**2 * vb), rtol=1e-9)
    assert lo < a / b < hi and est.alpha_over_beta.values[0] == pytest.approx(a / b, rel=1e-14)


def test_fieller_is_unbounded_when_the_denominator_is_not_significant():
    lo, hi = fieller(1.0, np.array([0.5, 0.05]), 0.01, 0.01, 0.0, 1.96)
    assert np.isfinite(lo[0]) and np.isfinite(hi[0]) and lo[0] < 2 < hi[0]
    assert lo[1] == -np.inf and hi[1] == np.inf
    assert np.isnan(fieller(1.0, 0.5, np.nan, 0.01, 0.0, 1.96)[0])


def test_answer_attrs_and_single_run_blocks():
    model = lesde.LESDE(3, 3, 10, alpha=1.0, beta=0.25, noise=0.05)
    est = estimate(simulate_discrete(model, lr=0.01, steps=200, n_runs=4, seed=3), window=50)
    assert est.attrs["windows_alpha_above_beta"] == 4 and est.attrs["windows_alpha_below_beta"] == 0
    assert est.attrs["answer"].startswith("alpha > beta in 4 of 4 windows at 95% (alpha < beta in 0)")
    lo, hi = est.attrs["pooled_alpha_minus_beta_ci"]
    assert lo < 0.75 < hi and hi - lo < 0.05
    assert "errors clustered by run (4 runs)" in est.attrs["answer"]
    with pytest.warns(UserWarning, match="one run: standard errors come from blocks"):
        one = estimate(simulate_discrete(model, lr=0.01, steps=400, n_runs=1, seed=3), window=100)
    assert one.attrs["se_cluster"] == "block" and "Politis-White" in one.attrs["se_block_rule"]
    b = one.block_length.values
    assert ((b >= 1) & (b <= 25)).all()
    # the degrees of freedom are the blocks of the window less one
    np.testing.assert_array_equal(one.dof.values, [len(pool.window_starts(100, int(k))) - 1 for k in b])


def _coverage(model, truth, reps, R, steps, window, seed):
    ds = simulate_discrete(model, lr=0.01, steps=steps, n_runs=reps * R, seed=seed)
    hits = {"difference": [], "ratio": [], "alpha": []}
    for i in range(reps):
        est = _quiet(ds.isel(run=slice(i * R, (i + 1) * R)), window=window)
        hits["difference"].append(
            (est.alpha_minus_beta_lower.values <= truth[0]) & (truth[0] <= est.alpha_minus_beta_upper.values)
        )
        hits["ratio"].append(
            (est.alpha_over_beta_ci_low.values <= truth[1]) & (truth[1] <= est.alpha_over_beta_ci_high.values)
        )
        hits["alpha"].append((est.alpha_lower.values <= truth[2]) & (truth[2] <= est.alpha_upper.values))
    return {k: float(np.mean(v)) for k, v in hits.items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "alpha,beta,noise,R",
    [
        (1.0, 0.3, 0.3, 4),  # run-clustered errors, Student t on 3 degrees of freedom
        (1.0, 0.3, 0.3, 1),  # one run: block errors
        (1.0, 0.08, 0.6, 4),  # beta within a few errors of 0: Fieller's interval is often unbounded
    ],
)
def test_coverage_of_difference_and_ratio_intervals(alpha, beta, noise, R):
    """Nominal 95% intervals of alpha - beta and alpha / beta contain the truth in 90-98% of 300 repetitions."""
    model = lesde.LESDE(3, 3, 10, alpha=alpha, beta=beta, noise=noise)
    cov = _coverage(model, (alpha - beta, alpha / beta, alpha), reps=300, R=R, steps=200, window=100, seed=21)
    for k, c in cov.items():
        assert 0.90 <= c <= 0.98, (k, c)


def test_means_form_has_the_comparison_from_per_run_slopes():
    model = lesde.LESDE(3, 3, 10, alpha=1.0, beta=0.25, noise=0.02)
    ds = simulate_discrete(model, lr=0.01, steps=300, n_runs=4, seed=8, dtype=torch.float64)
    est = estimate(ds, form="means", window=100)
    per = [estimate(ds.isel(run=[r]), form="means", window=100) for r in range(4)]
    a = np.stack([p.alpha.values for p in per])
    b = np.stack([p.beta.values for p in per])
    np.testing.assert_allclose(est.alpha_minus_beta.values, (a - b).mean(0), rtol=1e-10)
    np.testing.assert_allclose(est.alpha_minus_beta_se.values, (a - b).std(0, ddof=1) / 2, rtol=1e-8)
    assert "form=means" in est.attrs["answer"]
