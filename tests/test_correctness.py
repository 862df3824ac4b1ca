"""The correctness table (diffrax ``test_sde`` style): every method x noise x transform x class balance.

Each row simulates a K = 3, m = 3 LE-SDE from a fixed start to save times that are not multiples of dt and
compares, at the last save time, the mean and covariance of the (K m)-vector of class means and the mean
within-class variance against references computed here, independently of the package:

* fixed transforms: the moment ODEs of the linear SDE, with the drift operator built in numpy from the
  definitions (pi_l E_kl(t) T_kl blocks), solved by scipy to 1e-10; for ``noise="sampling"`` the noise is
  affine in the class means (the within-class deviations stay at their start), so the uncentred second moment
  obeys a closed linear ODE too;
* ``softmax-residual`` (nonlinear drift, no closed form): a fine-step Euler run (dt / 4) with 2x the paths;
* the within-class variance: E within_var_k(t) = within_var_k(0) + (1 - 1/n_k) t m sigma_k^2 (tr Sigma for a
  covariance; unchanged for sampling noise, which is the same for every sample of a class).

Tolerances, in the units of the reference covariance C (whitened): the mean within 5 standard errors, the
covariance W = C^{-1/2} C_hat C^{-1/2} within 5 standard errors of the identity (entrywise, and its trace,
whose standard error sqrt(2 / (P r)) makes a 5% error in the noise variance visible), nothing in C's null
space; the stepping methods get a bias allowance of 0.03 sd on the mean and 3% on the trace (measured with
10^5 paths at this dt ~ 0.045: euler -1.6%, torchsde euler -1.0%, srk +0.7%, exact +0.2% +- 0.15%). Combinations a
method cannot run must be refused up front with a message, and only the ones listed in ``REFUSED``.

A strong-order table fits the log-log slope of the strong error on coupled Brownian paths (``simulate(bm=)``)
against the order each method declares. The torchsde rows beyond one per method are marked slow.
"""

from __future__ import annotations

import functools
import math
import re
import zlib

import numpy as np
import pytest
import torch
import torchsde
from scipy.integrate import solve_ivp

import lesde
from lesde.integrators import REGISTRY, get

K, M = 3, 3
ALPHA0, ALPHA_P, BETA = 1.2, 0.5, -0.3
LR = 0.2
T_USER = np.array([[1.0, 0.3, 0.0], [0.3, 0.8, 0.1], [0.0, 0.1, 0.6]])
COV = np.array([[1.0, 0.4, 0.0], [0.4, 0.7, 0.2], [0.0, 0.2, 0.5]])
NOISES = {"scalar": 0.8, "per-class": [0.5, 0.9, 1.3], "covariance": COV, "sampling": "sampling"}
TRANSFORMS = ("identity", "residual", "residual-projection", "matrix", "softmax-residual")
COUNTS = {"balanced": 3, "imbalanced": [2, 3, 4]}
SAVE_TIMES = [0.13, 0.5]
DT = 0.05
PATHS = 3000  # torchsde methods
PATHS_NATIVE = 20000  # euler and exact
STOCHASTIC_STEPPERS = {name for name in REGISTRY if name != "exact"}
STRATONOVICH = {"torchsde:midpoint", "torchsde:heun", "torchsde:euler_heun", "torchsde:reversible_heun",
                "torchsde:log_ode"}  # fmt: skip
#: (method, noise, transform) refused up front; anything else must run
REFUSED = {
    *{("exact", "sampling", tr) for tr in TRANSFORMS},
    *{("exact", nz, "softmax-residual") for nz in NOISES},
    *{(m, "sampling", tr) for m in STRATONOVICH | {"torchsde:milstein", "torchsde:srk"} for tr in TRANSFORMS},
}
FAST_TORCHSDE = {"torchsde:euler"}  # the whole table in the default run; other torchsde methods: one row
EULER_CHAIN = {"euler", "torchsde:euler"}  # Euler-Maruyama on the same grid: compared with the chain's own moments


def make_model(noise, transform, balance):
    tr = torch.tensor(T_USER) if transform == "matrix" else transform
    nz = torch.tensor(COV) if noise == "covariance" else NOISES[noise]
    return lesde.LESDE(K, M, COUNTS[balance], alpha=lesde.schedules.PowerLaw(ALPHA0, ALPHA_P), beta=BETA,
                       transform=tr, noise=nz, lr=LR)  # fmt: skip


def start(model):
    N = model.num_samples
    return torch.linspace(-1.0, 1.5, N * M, dtype=torch.float64).view(N, M).sin() * 2


# ---------------------------------------------------------------------------------------------- the references
def blocks(transform):
    """T_kl as (K, K, m, m) from the definitions (residual: u_j = e_j - 1/K in the first K coordinates)."""
    d = np.eye(K) - 1.0 / K
    u = np.zeros((K, M))
    u[:, :K] = d
    c = (d * d).sum(1)
    if transform == "identity":
        return np.broadcast_to(np.eye(M), (K, K, M, M))
    if transform == "residual":
        return np.einsum("ki,lj->klij", u, u) / c[None, :, None, None]
    if transform == "residual-projection":
        return np.broadcast_to(np.einsum("li,lj->lij", u, u) / c[:, None, None], (K, K, M, M))
    return np.broadcast_to(T_USER, (K, K, M, M))


def elasticity(t):
    a = ALPHA0 * (1 + t) ** -ALPHA_P
    return (a - BETA) * np.eye(K) + BETA * np.ones((K, K))


def drift_operator(t, T, pi):
    """A(t) (K m, K m): d vec(Mbar) = A vec(Mbar) dt, vec row-major over (class, feature)."""
    return np.einsum("l,kl,klij->kilj", pi, elasticity(t), T).reshape(K * M, K * M)


class LinearMoments:
    """The class-mean SDE of a fixed transform, d vec(M) = A(t) vec(M) dt + G(t, M) dW, written from the
    definitions: A(t) from pi_l E_kl(t) T_kl, and E[G G^T] = Q for state-independent noise or, for
    noise="sampling", eta sum_j w_j (D_j M + c_j)(D_j M + c_j)^T (v^(j) - vbar affine in M, the deviations Z_j
    frozen at their start since that noise is the same for every sample of a class)."""

    def __init__(self, model, noise, transform, x0):
        n = np.asarray(model.counts, dtype=float)
        self.labels = np.repeat(np.arange(K), n.astype(int))
        self.pi, self.T, self.noise = n / n.sum(), blocks(transform), noise
        X0 = x0.numpy()
        self.mu0 = np.stack([X0[self.labels == k].mean(0) for k in range(K)]).ravel()
        self.Z = X0 - self.mu0.reshape(K, M)[self.labels]
        self.w = self.pi[self.labels] / n[self.labels]  # probability that a step trains on sample j
        if noise != "sampling":
            sig = {"scalar": np.full(K, 0.8), "per-class": np.array(NOISES["per-class"]), "covariance": np.ones(K)}
            Sigma = COV if noise == "covariance" else np.eye(M)
            self.Q = np.kron(np.diag(sig[noise] ** 2 / n), Sigma)

    def A(self, t):
        return drift_operator(t, self.T, self.pi)

    def GG(self, t, mu, S):
        """E[G G^T] given the mean mu and the uncentred second moment S of vec(M)."""
        if self.noise != "sampling":
            return self.Q
        E, A, Km = elasticity(t), self.A(t), K * M
        out = np.zeros((Km, Km))
        for j, lj in enumerate(self.labels):
            D, c = np.zeros((Km, Km)), np.zeros(Km)
            for k in range(K):
                D[k * M : (k + 1) * M, lj * M : (lj + 1) * M] = E[k, lj] * self.T[k, lj]
                c[k * M : (k + 1) * M] = E[k, lj] * self.T[k, lj] @ self.Z[j]
            D = D - A
            Dm = D @ mu
            out += self.w[j] * (D @ S @ D.T + np.outer(Dm, c) + np.outer(c, Dm) + np.outer(c, c))
        return LR * out

    def sde(self, t_end):
        """Mean and covariance at t_end of the SDE (moment ODEs by scipy, rtol 1e-10)."""
        Km = K * M

        def rhs(t, z):
            mu, S = z[:Km], z[Km:].reshape(Km, Km)
            A = self.A(t)
            return np.concatenate([A @ mu, (A @ S + S @ A.T + self.GG(t, mu, S)).ravel()])

        z0 = np.concatenate([self.mu0, np.outer(self.mu0, self.mu0).ravel()])
        z = solve_ivp(rhs, (0, t_end), z0, rtol=1e-10, atol=1e-12).y[:, -1]
        mu, S = z[:Km], z[Km:].reshape(Km, Km)
        return mu, S - np.outer(mu, mu)

    def euler(self, grid):
        """Mean and covariance of the Euler-Maruyama chain on the grid, exactly (the discrete moment recursion)."""
        mu, S = self.mu0.copy(), np.outer(self.mu0, self.mu0)
        for _, t0, _, steps, h in grid.intervals():
            for s in range(steps):
                t = t0 + s * h
                F = np.eye(K * M) + h * self.A(t)
                S = F @ S @ F.T + h * self.GG(t, mu, S)
                mu = F @ mu
        return mu, S - np.outer(mu, mu)


def reference_within_growth(model, noise, t):
    n = model.counts.numpy().astype(float)
    if noise == "sampling":
        return np.zeros(K)
    per_feature = np.trace(COV) if noise == "covariance" else M * np.asarray(
        np.broadcast_to(NOISES[noise], (K,)), dtype=float
    ) ** 2  # fmt: skip
    return (1 - 1 / n) * t * per_feature


def run(model, method, paths, seed, dt=DT, save="means"):
    return lesde.simulate(model, t_end=SAVE_TIMES[-1], dt=dt, n_paths=paths, save_times=SAVE_TIMES, method=method,
                          dtype=torch.float64, x0=start(model), seed=seed, save=save, progress=False)  # fmt: skip


def split_range(cov):
    """C^{-1/2} on C's well-conditioned range (eigenvalues > 1e-3 of the largest) and the projector on its null
    space (eigenvalues <= 1e-10 of the largest); directions in between are checked in absolute units only."""
    ev, V = np.linalg.eigh(0.5 * (cov + cov.T))
    good, null = ev > 1e-3 * ev.max(), ev <= 1e-10 * ev.max()
    return (V[:, good] / np.sqrt(ev[good])).T, V[:, null] @ V[:, null].T


def check_row(ds, mean_ref, cov_ref, wv_growth, allowance, ref_paths=None):
    """Mean within 5 standard errors per coordinate and, whitened by the reference covariance C on its
    well-conditioned range, within 5/sqrt(P) sd; covariance within 5 standard errors entrywise and its whitened
    trace within 5 sqrt(2 / (P r)) of 1 (a 5% error in the noise variance fails it); nothing in C's null space.
    ``allowance`` adds a stepping bias (mean in units of the scale, covariance relative) where the reference is
    the SDE rather than the method's own chain."""
    V = ds.class_mean.isel(time=-1).values.reshape(ds.sizes["path"], -1)  # (P, K m)
    P = V.shape[0]
    inflate = 1.0 if ref_paths is None else math.sqrt(1 + P / ref_paths)  # the reference is an estimate too
    scale = np.abs(mean_ref).max() + np.sqrt(np.trace(cov_ref))
    err = np.abs(V.mean(0) - mean_ref)
    assert np.all(err <= 5 * inflate * np.sqrt(np.diag(cov_ref) / P) + allowance * scale + 1e-12), err
    Wh, null = split_range(cov_ref)
    r = Wh.shape[0]
    d = Wh @ (V.mean(0) - mean_ref)  # (r,) in standard deviations
    assert np.abs(d).max() <= 5 * inflate / math.sqrt(P) + 10 * allowance, f"mean off by {d} sd"
    assert np.abs(null @ (V.mean(0) - mean_ref)).max() <= 1e-6 * scale
    C = np.cov(V.T)
    se_c = np.sqrt((cov_ref**2 + np.outer(np.diag(cov_ref), np.diag(cov_ref))) / P)
    errc = np.abs(C - cov_ref)
    assert np.all(errc <= 5 * inflate * se_c + 6 * allowance * np.abs(cov_ref).max() + 1e-12), errc.max()
    tr_err = abs(np.trace(Wh @ C @ Wh.T) / r - 1)
    assert tr_err <= 5 * inflate * math.sqrt(2 / (P * r)) + 6 * allowance, f"whitened trace off by {tr_err:.4f}"
    assert np.abs(null @ C @ null).max() <= 1e-8 * scale**2
    wv = ds.within_var.values  # (P, T, K)
    growth = wv[:, -1].mean(0) - wv[:, 0].mean(0)
    se_w = wv[:, -1].std(0) / math.sqrt(P) + 1e-12
    assert np.all(np.abs(growth - wv_growth) <= 5 * se_w + 1e-9), (growth, wv_growth)


# ---------------------------------------------------------------------------------------------- the table
def table():
    rows = []
    for method in REGISTRY:
        for noise in NOISES:
            for transform in TRANSFORMS:
                for balance in COUNTS:
                    marks = []
                    fast = method in ("euler", "exact") or method in FAST_TORCHSDE
                    smoke = (noise, transform, balance) == ("per-class", "residual", "imbalanced")
                    if not (fast or smoke) and (method, noise, transform) not in REFUSED:
                        marks.append(pytest.mark.slow)
                    rows.append(pytest.param(method, noise, transform, balance, marks=marks,
                                             id=f"{method}-{noise}-{transform}-{balance}"))  # fmt: skip
    return rows


@pytest.mark.parametrize("method, noise, transform, balance", table())
def test_moments_against_the_closed_form(method, noise, transform, balance):
    model = make_model(noise, transform, balance)
    reason = get(method).check(model)
    if (method, noise, transform) in REFUSED:
        assert reason, f"{method} should refuse noise={noise}, transform={transform}"
        with pytest.raises(ValueError, match=re.escape(reason)):
            run(model, method, 2, seed=0)
        return
    assert reason is None, reason
    seed = zlib.crc32(f"{method}-{noise}-{transform}-{balance}".encode())  # fixed across runs
    # save="full" once per row family checks the per-sample deviations as well as the in-law statistics
    save = "full" if balance == "imbalanced" and method in ("euler", "exact") else "means"
    paths = PATHS_NATIVE if method in ("euler", "exact") else PATHS
    ds = run(model, method, paths, seed=seed, save=save)
    ref_paths, allowance = None, 0.0
    if transform == "softmax-residual":  # no closed form: a fine-step euler run with more paths
        ref_paths, allowance = 2 * PATHS_NATIVE, 0.005
        mean_ref, cov_ref = softmax_reference(noise, balance, ref_paths)
    elif method in EULER_CHAIN:  # the exact moments of the Euler chain on the same grid: no bias to allow for
        mean_ref, cov_ref = LinearMoments(model, noise, transform, start(model)).euler(ds_grid())
    else:
        mean_ref, cov_ref = LinearMoments(model, noise, transform, start(model)).sde(SAVE_TIMES[-1])
        allowance = 0.005 if method in STOCHASTIC_STEPPERS else 0.0
    check_row(ds, mean_ref, cov_ref, reference_within_growth(model, noise, SAVE_TIMES[-1]), allowance, ref_paths)


@functools.cache
def softmax_reference(noise, balance, paths):
    """Moments of a dt / 4 euler run (shared by every method's row of this noise and balance)."""
    model = make_model(noise, "softmax-residual", balance)
    ref = run(model, "euler", paths, seed=zlib.crc32(f"reference-{noise}-{balance}".encode()), dt=DT / 4)
    V = ref.class_mean.isel(time=-1).values.reshape(paths, -1)
    return V.mean(0), np.cov(V.T)


def ds_grid():
    from lesde.simulate import save_times_for

    return lesde.integrators.Grid.make(save_times_for(SAVE_TIMES[-1], DT, SAVE_TIMES), DT)


def test_the_table_covers_every_known_method():
    assert {p.values[0] for p in table()} == set(lesde.integrators.known_methods())


# ---------------------------------------------------------------------------------------------- strong orders
ORDER_ROWS = [
    pytest.param(name, "additive", marks=[] if name in ("euler", "torchsde:euler", "torchsde:srk") else
                 [pytest.mark.slow], id=f"{name}-additive")  # fmt: skip
    for name in REGISTRY
    if name != "exact"
] + [pytest.param("euler", "sampling", id="euler-sampling"), pytest.param("torchsde:euler", "sampling",
                                                                         id="torchsde:euler-sampling")]  # fmt: skip


def coupled_final(model, method, y0, dt, bm):
    B = y0.shape[0]
    ds = lesde.simulate(model, t_end=1.0, dt=dt, n_paths=B, n_save=2, x0=y0.view(B, model.num_samples, -1), bm=bm,
                        method=method, save="full", dtype=torch.float64, progress=False)  # fmt: skip
    return torch.from_numpy(ds.features.isel(time=-1).values).reshape(B, -1)


@pytest.mark.parametrize("method, noise", ORDER_ROWS)
def test_strong_order_matches_the_declared_order(method, noise):
    """Fitted slope of E|X_h(1) - X_ref(1)| against h on shared Brownian paths (reference: the method at h/16)."""
    integ = get(method)
    if noise == "sampling":
        model = lesde.LESDE(2, 2, 2, alpha=1.5, beta=-0.5, transform="residual-projection", noise="sampling", lr=0.5)
    else:
        model = lesde.LESDE(2, 2, 1, alpha=lesde.schedules.PowerLaw(3.0, 0.5), beta=-1.0, noise=1.0)
    declared = integ.orders(model)[0]
    B = 64
    gen = torch.Generator().manual_seed(3)
    y0 = torch.randn(B, model.num_samples * 2, generator=gen, dtype=torch.float64)
    levy = {"torchsde:srk": "space-time", "torchsde:log_ode": "foster"}.get(method, "none")
    bm = torchsde.BrownianInterval(0.0, 1.0, size=(B, model.brownian_size), dtype=torch.float64, entropy=5,
                                   levy_area_approximation=levy, dt=2**-10)  # fmt: skip
    dts = [2**-k for k in (2, 3, 4, 5)]
    ref = coupled_final(model, method, y0, 2**-9, bm)
    errs = [float((coupled_final(model, method, y0, dt, bm) - ref).norm(dim=1).mean()) for dt in dts]
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    # the declared order is what the method guarantees; on this linear additive-noise model srk shows ~2.0 (its
    # error is led by its second-order deterministic part), the order-1 methods 0.9-1.1, euler on sampling ~0.5
    assert declared - 0.25 < slope < declared + 0.6, (method, noise, declared, slope, errs)
