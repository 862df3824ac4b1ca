"""save="means" draws the within-class sums of squares in law (squared Bessel transitions): their moments against
the closed forms, jointly over save times, and against the per-sample path (issue 16).

With X_i(0) ~ N(0, s^2 I) and per-class noise sigma_k, S_k(t) = sum_{i in k} ||X_i - Xbar_k||^2 is
(s^2 + sigma_k^2 t) chi^2_{d_k}, d_k = m (n_k - 1), and Cov(S_k(t1), S_k(t2)) = Var S_k(t1) for t1 < t2
(E[S(t2) | S(t1)] = S(t1) + d sigma^2 (t2 - t1)). From a fixed start with sum of squares S0:
E S(t) = S0 + d sigma^2 t, Var S(t) = 2 d (sigma^2 t)^2 + 4 sigma^2 t S0.
"""

import math

import numpy as np
import pytest
import torch

import lesde

COUNTS, SIGMAS, M, SCALE = [2, 5, 9], [0.5, 1.0, 2.0], 3, 1.5
TIMES = [0.3, 1.7]
P = 20000


def model():
    return lesde.LESDE(3, M, COUNTS, alpha=1.0, beta=-0.2, noise=SIGMAS)


def run(method, save, paths=P, x0=None, seed=0):
    return lesde.simulate(model(), t_end=TIMES[-1], dt=0.1, n_paths=paths, save_times=TIMES, method=method,
                          save=save, dtype=torch.float64, x0=x0, x0_scale=SCALE, seed=seed, progress=False)  # fmt: skip


def z_mean_var(sample, mean, var, d):
    """(z of the sample mean, z of the sample variance) for a scaled chi^2_d sample (excess kurtosis 12 / d)."""
    n = len(sample)
    z_mean = (sample.mean() - mean) / math.sqrt(var / n)
    z_var = (sample.var(ddof=1) - var) / (var * math.sqrt((2 + 12 / d) / n))
    return z_mean, z_var


@pytest.mark.parametrize("method", ["euler", "exact"])
def test_in_law_within_variance_against_the_closed_form(method):
    ds = run(method, "means")
    assert ds.attrs["integrator_plan"].endswith("(within-class statistics in law)")
    n, sig = np.array(COUNTS, float), np.array(SIGMAS)
    d = M * (n - 1)
    wv = ds.within_var.values  # (P, T, K): S_k / n_k
    for i, t in enumerate([0.0, *TIMES]):
        c = SCALE**2 + sig**2 * t
        for k in range(3):
            zm, zv = z_mean_var(wv[:, i, k], d[k] * c[k] / n[k], 2 * d[k] * c[k] ** 2 / n[k] ** 2, d[k])
            assert abs(zm) < 5 and abs(zv) < 5, (t, k, zm, zv)
    # joint law over save times: Cov(S(t1), S(t2)) = Var S(t1)
    for k in range(3):
        c1 = SCALE**2 + sig[k] ** 2 * TIMES[0]
        var1 = 2 * d[k] * c1**2 / n[k] ** 2
        cov = np.cov(wv[:, 1, k], wv[:, 2, k])[0, 1]
        assert abs(cov - var1) < 5 * var1 * math.sqrt(4 / P), (k, cov, var1)


def test_in_law_equals_the_per_sample_path_in_distribution():
    a, b = run("euler", "means", seed=1), run("euler", "full", seed=2)
    assert "in law" in a.attrs["integrator_plan"] and "in law" not in b.attrs["integrator_plan"]
    for i in range(3):
        for k in range(3):
            x, y = a.within_var.values[:, i, k], b.within_var.values[:, i, k]
            z = (x.mean() - y.mean()) / math.sqrt(x.var() / P + y.var() / P)
            zv = (x.var() - y.var()) / (x.var() * math.sqrt(2 * (2 + 12 / (M * (COUNTS[k] - 1))) / P))
            assert abs(z) < 5 and abs(zv) < 5, (i, k, z, zv)
    # the class means (one Euler chain on the same law) agree too
    ma, mb = a.class_mean.values[:, -1], b.class_mean.values[:, -1]
    z = (ma.mean(0) - mb.mean(0)) / np.sqrt(ma.var(0) / P + mb.var(0) / P)
    assert np.abs(z).max() < 5


def test_in_law_from_a_fixed_start():
    x0 = torch.linspace(-2, 2, sum(COUNTS) * M, dtype=torch.float64).view(-1, M).cos()
    ds = run("exact", "means", x0=x0, seed=3)
    labels = np.repeat(np.arange(3), COUNTS)
    X = x0.numpy()
    S0 = np.array([((X[labels == k] - X[labels == k].mean(0)) ** 2).sum() for k in range(3)])
    n, sig = np.array(COUNTS, float), np.array(SIGMAS)
    d = M * (n - 1)
    np.testing.assert_allclose(ds.within_var.values[:, 0], np.broadcast_to(S0 / n, (P, 3)), rtol=1e-12)
    for i, t in enumerate(TIMES, start=1):
        mean, var = S0 + d * sig**2 * t, 2 * d * (sig**2 * t) ** 2 + 4 * sig**2 * t * S0
        for k in range(3):
            zm, _ = z_mean_var(ds.within_var.values[:, i, k] * n[k], mean[k], var[k], d[k])
            zv = (np.var(ds.within_var.values[:, i, k] * n[k], ddof=1) - var[k]) / (var[k] * math.sqrt(3 / P))
            assert abs(zm) < 5 and abs(zv) < 5, (t, k, zm, zv)


def test_covariance_noise_keeps_the_per_sample_path():
    m = lesde.LESDE(2, 2, 3, noise=torch.tensor([[1.0, 0.3], [0.3, 0.5]]))
    ds = lesde.simulate(m, t_end=0.5, dt=0.1, n_paths=4, progress=False)
    assert "in law" not in ds.attrs["integrator_plan"]
