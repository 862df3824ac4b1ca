"""SGD as an SDE (lesde.sgd, lesde.sgd.UFM): gradients, noise covariance, weak order, limits, Datasets."""

from __future__ import annotations

import copy
import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from torch.func import grad, vmap

import lesde
from lesde.cli.cmd_compare_sgd import compare_from_config
from lesde.sgd import SGDSDE, UFM, ModuleProblem, compare, gradient_flow, run_sgd, run_sme
from lesde.sgd.minibatch import batch_weights
from lesde.theory.closed_forms import tirer_bruna

ROOT = Path(__file__).resolve().parents[1]


def _reference_loss(W, H, b, y, loss, tau, sphere):
    """Plain per-sample loss of one sample (W (K,d), h (d,), b (K,)), written from the UFM definition."""
    if sphere:
        W = W / W.norm(dim=-1, keepdim=True)
        H = H / H.norm()
    z = W @ H + (0.0 if b is None else b)
    if loss == "ce":
        return torch.nn.functional.cross_entropy((z / tau).unsqueeze(0), y.unsqueeze(0))
    return 0.5 * ((z - (y == torch.arange(W.shape[0])).to(z.dtype)) ** 2).sum()


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("sphere", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_ufm_per_sample_grads_match_torch_func(gen, loss, sphere, bias):
    ufm = UFM(3, [2, 3, 1], 4, loss=loss, bias=bias, sphere=sphere, temperature=0.7)
    theta = torch.randn(2, ufm.num_params, generator=gen, dtype=torch.float64)
    W, H, b = ufm.split(theta)  # raw (R,K,d), (R,N,d), (R,K)
    y = ufm.labels
    # d l_i / d (W, h_i, b) by torch.func, vmapped over samples then runs
    if not bias:  # a zero bias that is not a parameter: its gradient is computed and dropped
        b = torch.zeros(2, 3, dtype=torch.float64)
    g_wb = vmap(
        vmap(grad(_reference_loss, argnums=(0, 1, 2)), in_dims=(None, 0, None, 0, None, None, None)),
        in_dims=(0, 0, 0, None, None, None, None),
    )
    gW, gh, gb = g_wb(W, H, b, y, loss, 0.7, sphere)  # (R,N,K,d), (R,N,d), (R,N,K)
    N = H.shape[1]
    gH = torch.eye(N, dtype=gh.dtype)[None, :, :, None] * gh[:, :, None, :]  # column i only
    parts = [gW.flatten(2), gH.flatten(2)] + ([gb] if bias else [])
    expected = torch.cat(parts, -1)
    G = ufm.per_sample_grads(theta)
    torch.testing.assert_close(G, expected, rtol=1e-12, atol=1e-12)
    # weighted contractions (one set, and several sets at once) equal sums of the per-sample gradients
    w = torch.rand(2, 4, N, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ufm.weighted_grad(theta, w), torch.einsum("rsn,rnp->rsp", w, G), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ufm.weighted_grad(theta, w[:, 0]), torch.einsum("rn,rnp->rp", w[:, 0], G))
    # the full gradient is the autograd gradient of the objective
    th = theta.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(ufm.loss(th).sum(), th)
    torch.testing.assert_close(ufm.grad(theta), auto, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("sphere", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_ufm_fused_steps_match_dense_reference(gen, loss, sphere, bias):
    # the fused kernels (class-major residuals, blocks written into one buffer, linear weight decay folded in)
    # against the dense per-sample gradient matrix and autograd, with a different decay per block
    ufm = UFM(3, [2, 3, 1], 4, loss=loss, bias=bias, sphere=sphere, temperature=0.7, weight_decay_W=0.1,
              weight_decay_H=0.2, weight_decay_b=0.3)  # fmt: skip
    R, N, lr, B, dt = 3, ufm.num_samples, 0.1, 2, 0.03
    theta = torch.randn(R, ufm.num_params, generator=gen, dtype=torch.float64)
    G = ufm.per_sample_grads(theta)  # (R, N, P), dense
    th = theta.clone().requires_grad_(True)
    (grad_L,) = torch.autograd.grad(ufm.loss(th).sum(), th)  # (R, P), includes the weight decay
    decay = grad_L - G.mean(1)  # gradient of the regulariser alone
    w = torch.randn(R, N, generator=gen, dtype=torch.float64)
    drift, noise = ufm.neg_grad_and_weighted_grad(theta, w)
    torch.testing.assert_close(drift, -grad_L, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(noise, torch.einsum("rn,rnp->rp", w, G), rtol=1e-12, atol=1e-12)
    step = ufm.explicit_step(theta, w, dt)
    torch.testing.assert_close(step, theta - dt * decay + torch.einsum("rn,rnp->rp", w, G), rtol=1e-12, atol=1e-12)
    # Euler-Maruyama of the SME in one contraction == y + f dt + G dW with the dense diffusion factor
    sme = SGDSDE(ufm, lr, B)
    dW = math.sqrt(dt) * torch.randn(R, N, generator=gen, dtype=torch.float64)
    ref = theta - dt * grad_L + torch.einsum("rpn,rn->rp", sme.g(0.0, theta), dW)
    torch.testing.assert_close(sme.euler_step(theta, dW, dt), ref, rtol=1e-12, atol=1e-12)
    # with autograd on, the differentiable reference path is taken and agrees
    with torch.enable_grad():
        g_auto = ufm.weighted_grad(th, w)
        assert g_auto.requires_grad
    torch.testing.assert_close(g_auto.detach(), noise, rtol=1e-12, atol=1e-12)


def test_run_sme_equals_contract_euler_loop():
    # run_sme (fused step, two swapped state buffers) against a plain loop over y + f dt + G dW through the
    # torchsde contract with the same Brownian increments; save="full" records views of the state, so this also
    # checks that recorded snapshots are not overwritten by later steps
    ufm = UFM(3, 2, 3, loss="ce", weight_decay_W=0.05, weight_decay_H=0.1, weight_decay_b=0.02, init_scale=0.5)
    sme = SGDSDE(ufm, lr=0.1, batch_size=2)
    R, dt, steps, seed = 4, 0.025, 6, 3
    ds = run_sme(sme, t_end=steps * dt, dt=dt, n_runs=R, seed=seed, record_every=1, save="full", metrics=False)
    theta = ufm.init(R, torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed + 2)  # run_sme's Brownian stream
    for s in range(steps + 1):
        W, H, b = ufm.split(theta)
        np.testing.assert_allclose(ds.classifier.isel(time=s).values, W.numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(ds.features.isel(time=s).values, H.numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(ds.bias.isel(time=s).values, b.numpy(), rtol=1e-12, atol=1e-13)
        dW = math.sqrt(dt) * torch.randn(R, ufm.num_samples, generator=gen, dtype=torch.float64)
        f, gdw = sme.f_and_g_prod(0.0, theta, dW)
        theta = theta + f * dt + gdw
    assert len(np.unique(ds.loss.values[:, -1])) == R  # the runs really are driven by different noise


def test_ufm_objective_equals_tirer_bruna(gen):
    K, n, d, lw, lh = 3, 4, 5, 0.3, 0.7
    ufm = UFM.from_tirer_bruna(K, n, d, lw, lh)
    assert ufm.tirer_bruna_parameters() == pytest.approx({"lambda_W": lw, "lambda_H": lh})
    theta = torch.randn(1, ufm.num_params, generator=gen, dtype=torch.float64)
    W, Ht, _ = ufm.split(theta)
    Wn, Hn = W[0].numpy(), Ht[0].numpy().T  # (K, d), (d, N)
    Y = np.kron(np.eye(K), np.ones((1, n)))
    tb = np.sum((Wn @ Hn - Y) ** 2) / (2 * K * n) + lw / (2 * K) * np.sum(Wn**2) + lh / (2 * K * n) * np.sum(Hn**2)
    assert ufm.loss(theta).item() == pytest.approx(tb, rel=1e-13)


def test_tirer_bruna_takes_the_ufm_argument_names():
    new = tirer_bruna(num_classes=3, samples_per_class=4, dim=5, lambda_W=0.3, lambda_H=0.7)
    assert torch.equal(new["W"], tirer_bruna(3, 4, 5, 0.3, 0.7)["W"])
    with pytest.raises(TypeError, match="unexpected keyword argument 'K'"):  # the 0.1 spellings K, n, d are gone
        tirer_bruna(K=3, n=4, d=5, lambda_W=0.3, lambda_H=0.7)
    # the same five arguments build the training problem with this objective
    ufm = UFM.from_tirer_bruna(num_classes=3, samples_per_class=4, dim=5, lambda_W=0.3, lambda_H=0.7)
    assert ufm.tirer_bruna_parameters() == pytest.approx({"lambda_W": 0.3, "lambda_H": 0.7})


def _mlp_problem(gen, loss="ce", weight_decay=0.0):
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
    x = torch.randn(9, 3, generator=gen, dtype=torch.float64)
    return ModuleProblem(net, x, torch.arange(9) % 3, loss=loss, weight_decay=weight_decay), net, x


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_module_problem_grads_match_autograd_loop(gen, loss):
    prob, net, x = _mlp_problem(gen, loss)
    theta = prob.init(2) + 0.1 * torch.randn(2, prob.num_params, generator=gen, dtype=torch.float64)
    G = prob.per_sample_grads(theta)  # (R, N, P)
    for r in range(2):  # independent reference: plain autograd on a module copy, one sample at a time
        ref = copy.deepcopy(net)
        torch.nn.utils.vector_to_parameters(theta[r], ref.parameters())
        for i in range(9):
            z = ref(x[i : i + 1])
            t = torch.nn.functional.one_hot(prob.labels[i : i + 1], 3).double()
            li = (
                torch.nn.functional.cross_entropy(z, prob.labels[i : i + 1])
                if loss == "ce"
                else 0.5 * ((z - t) ** 2).sum()
            )
            gi = torch.autograd.grad(li, list(ref.parameters()))
            torch.testing.assert_close(G[r, i], torch.cat([g.reshape(-1) for g in gi]), rtol=1e-12, atol=1e-12)
    w = torch.rand(2, 3, 9, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(prob.weighted_grad(theta, w), torch.einsum("rsn,rnp->rsp", w, G), rtol=1e-12, atol=1e-12)
    # features = head input, classifier = head weight
    h = torch.tanh(x @ theta[0, :15].view(5, 3).T + theta[0, 15:20])
    torch.testing.assert_close(prob.features(theta)[0], h)
    torch.testing.assert_close(prob.classifier(theta)[0], theta[0, 20:35].view(3, 5))


def _sigma(G):
    Gc = G - G.mean(0)
    return Gc.T @ Gc / G.shape[0]  # (P, P): (1/N) sum_i (g_i - gbar)(g_i - gbar)^T


@pytest.mark.parametrize("sampling", ["with-replacement", "shuffle"])
def test_sme_noise_covariance_matches_minibatch_covariance(gen, sampling):
    ufm = UFM(3, 2, 2, loss="ce", weight_decay_W=0.1, weight_decay_H=0.1)
    lr, B, M = 0.1, 2, 200_000
    theta = ufm.init(1, gen) * 10
    N = ufm.num_samples
    Sigma = _sigma(ufm.per_sample_grads(theta)[0])
    factor = (N - B) / (N - 1) if sampling == "shuffle" else 1.0
    target = lr**2 * factor * Sigma / B  # covariance of one SGD step's noise, lr * (g_batch - grad L)
    sme = SGDSDE(ufm, lr, B, sampling=sampling)
    # exact: G G^T of the dense diffusion factor, times dt = lr
    Gd = sme.g(0.0, theta)[0]  # (P, N)
    torch.testing.assert_close(lr * Gd @ Gd.T, target, rtol=1e-12, atol=1e-15)
    # empirical: one Euler increment G dW, dW ~ N(0, lr I), over M draws (never forming G)
    dW = math.sqrt(lr) * torch.randn(M, N, generator=gen, dtype=torch.float64)
    X = sme.g_prod(0.0, theta.expand(M, -1), dW)
    cov_sme = X.T @ X / M
    # empirical: the discrete process's minibatch noise
    if sampling == "with-replacement":
        idx = torch.randint(N, (M, B), generator=gen)
    else:
        idx = torch.rand(M, N, generator=gen).argsort(-1)[:, :B]
    Y = lr * ufm.weighted_grad(theta.expand(M, -1), batch_weights(idx, N, torch.float64))
    cov_sgd = torch.cov(Y.T, correction=1)
    scale = target.norm()
    # Monte Carlo error of a covariance from 2e5 draws is ~ sqrt(2 / M) ~ 0.3% of its norm; allow 2%
    assert (cov_sme - target).norm() / scale < 0.02
    assert (cov_sgd - target).norm() / scale < 0.02


def test_sme_under_torchsde_and_simulate(gen):
    import torchsde

    ufm = UFM(3, 2, 3, loss="mse", weight_decay_W=0.05, weight_decay_H=0.05, init_scale=0.5)
    sme = SGDSDE(ufm, lr=0.05, batch_size=2)
    y0 = sme.init(1, gen)
    ts = torch.tensor([0.0, 2.0], dtype=torch.float64)
    # torchsde's Euler (which calls f_and_g_prod) with zero Brownian motion is gradient descent with step dt
    zero = torchsde.BrownianInterval(
        0.0, 2.0, size=(1, sme.brownian_size), dtype=torch.float64, levy_area_approximation="none", entropy=0
    )
    ys = torchsde.sdeint(sme, y0, ts, dt=0.1, bm=_ZeroBM(zero), method="euler")
    th = y0.clone()
    for _ in range(20):
        th = th - 0.1 * ufm.grad(th)
    torch.testing.assert_close(ys[-1], th, rtol=1e-12, atol=1e-12)
    ds = lesde.simulate(sme, t_end=1.0, dt=0.05, n_paths=64, x0=y0[0], dtype=torch.float64, seed=1, progress=False)
    assert ds.state.dims == ("path", "time", "component")
    assert ds.state.shape[0] == 64 and ds.state.shape[-1] == ufm.num_params
    np.testing.assert_allclose(ds.state.isel(time=0).values, y0.expand(64, -1).numpy())
    final = torch.as_tensor(ds.state.isel(time=-1).values)
    # the same SDE through run_sme: mean final loss agrees within Monte Carlo error
    ours = run_sme(sme, 1.0, dt=0.05, n_runs=2000, theta0=y0[0], metrics=False, seed=3).loss.isel(time=-1).values
    theirs = ufm.loss(final).numpy()
    se = math.sqrt(ours.var() / ours.size + theirs.var() / theirs.size)
    assert abs(ours.mean() - theirs.mean()) < 4 * se + 1e-12


class _ZeroBM:
    """A Brownian motion that never moves (for a deterministic torchsde check)."""

    def __init__(self, bm):
        self.bm = bm

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        return torch.zeros_like(self.bm(ta, tb))

    def __getattr__(self, name):
        return getattr(self.bm, name)


def _weak_gaps(M, lrs, substeps=4):
    ufm = UFM(2, 2, 2, loss="mse", weight_decay_W=0.1, weight_decay_H=0.1, bias=False, init_scale=0.8)
    theta0 = ufm.init(1, torch.Generator().manual_seed(3))[0]
    T, gaps = 0.6, []
    for lr in lrs:
        steps = round(T / lr)
        a = run_sgd(ufm, lr, 1, steps, n_runs=M, seed=1, theta0=theta0, metrics=False, record_every=steps)
        b = run_sme(
            SGDSDE(ufm, lr, 1),
            T,
            dt=lr / substeps,
            n_runs=M,
            seed=2,
            theta0=theta0,
            metrics=False,
            record_every=steps * substeps,
        )
        la, lb = a.loss.isel(time=-1).values, b.loss.isel(time=-1).values
        gaps.append((la.mean() - lb.mean(), la.var() - lb.var(), math.sqrt(la.var() / M + lb.var() / M)))
    return np.array(gaps)


def test_weak_order_one_on_mse_ufm():
    """Mean of the loss at t = 0.6: |E L(SGD) - E L(SME)| ~ C lr (fitted slope in [0.6, 1.5]); the variance gap
    shrinks at least as fast (slope >= 0.8; theory: O(lr^2), since the O(lr) shift of the mean is deterministic
    and cancels in the variance). Measured on this seed: mean-gap slope 1.04, variance-gap slope 2.7."""
    lrs = np.array([0.1, 0.05, 0.025])
    gaps = _weak_gaps(6000, lrs)
    mean_gap, var_gap, se = np.abs(gaps[:, 0]), np.abs(gaps[:, 1]), gaps[:, 2]
    assert np.all(mean_gap > 3 * se)  # each gap is resolved above the Monte Carlo error
    slope_mean = np.polyfit(np.log(lrs), np.log(mean_gap), 1)[0]
    slope_var = np.polyfit(np.log(lrs), np.log(var_gap), 1)[0]
    assert 0.6 < slope_mean < 1.5, slope_mean
    assert slope_var > 0.8, slope_var
    assert mean_gap[0] > mean_gap[1] > mean_gap[2]


@pytest.mark.slow
def test_weak_order_one_many_runs():
    """Finer check: with 4e4 runs and 8 SME substeps the mean gap divided by lr is constant (measured 0.0916,
    0.0955, 0.0946 at lr = 0.04, 0.02, 0.01). At lr >= 0.08 the Euler SME paths of this superlinear (cubic-drift)
    SDE develop heavy tails and the gap jumps above the linear law, so the range stops at 0.04."""
    lrs = np.array([0.04, 0.02, 0.01])
    gaps = _weak_gaps(40_000, lrs, substeps=8)
    slope_mean = np.polyfit(np.log(lrs), np.log(np.abs(gaps[:, 0])), 1)[0]
    assert 0.85 < slope_mean < 1.15, slope_mean
    ratio = np.abs(gaps[:, 0]) / lrs
    assert ratio.max() / ratio.min() < 1.15, ratio


def test_gradient_flow_reaches_tirer_bruna_minimizer():
    K, n, d, lw, lh = 3, 2, 4, 0.5, 0.5
    ufm = UFM.from_tirer_bruna(K, n, d, lw, lh, init_scale=0.5)
    ds = gradient_flow(ufm, 150.0, dt=0.25, save="full", metrics=False, n_save=3)
    tb = tirer_bruna(K, n, d, lw, lh)
    H = torch.as_tensor(ds.features.isel(run=0, time=-1).values)  # (N, d)
    W = torch.as_tensor(ds.classifier.isel(run=0, time=-1).values)  # (K, d)
    Hbar = torch.stack([H[ufm.labels == k].mean(0) for k in range(K)], 1)  # (d, K)
    eye = torch.eye(K, dtype=torch.float64)
    rho_err = torch.linalg.norm(Hbar.T @ Hbar - tb["rho"] * eye) / torch.linalg.norm(tb["rho"] * eye)
    whb_err = torch.linalg.norm(W @ Hbar - (1 - tb["c"]) * eye) / torch.linalg.norm((1 - tb["c"]) * eye)
    assert rho_err < 1e-3 and whb_err < 1e-3, (rho_err, whb_err)
    # and the loss equals the minimum value of the Tirer-Bruna objective at their minimizer
    Wt, Ht = tb["W"].numpy(), tb["H"].numpy()
    Y = np.kron(np.eye(K), np.ones((1, n)))
    fmin = np.sum((Wt @ Ht - Y) ** 2) / (2 * K * n) + lw / (2 * K) * np.sum(Wt**2) + lh / (2 * K * n) * np.sum(Ht**2)
    assert ds.loss.values[0, -1] == pytest.approx(fmin, rel=1e-6)


def test_sgd_small_lr_collapses_on_ce_ufm():
    names = ["nc1", "nc1_quotient", "etf_error", "self_duality", "ncc_mismatch"]
    ufm = UFM(3, 4, 4, loss="ce", weight_decay_W=1e-2, weight_decay_H=1e-2)
    small = run_sgd(ufm, 0.05, 2, 2000, n_runs=4, metrics=names, record_every=500).mean("run")
    large = run_sgd(ufm, 0.2, 2, 500, n_runs=4, metrics=names, record_every=500).mean("run")
    start, end = small.isel(time=0), small.isel(time=-1)
    # measured at t = 100: nc1 1.5e-4, nc1_quotient 2.7e-3, etf_error 0.017, self_duality 7.8e-4, ncc 0
    assert end.nc1 < 1e-3 * start.nc1 and end.nc1 < 1e-3
    assert end.nc1_quotient < 1e-2 and end.etf_error < 0.05 and end.self_duality < 5e-3
    assert end.ncc_mismatch == 0 and end.accuracy == 1
    assert end.nc1 < large.nc1.isel(time=-1)  # the SGD noise floor shrinks with lr


def _loop_sgd_ufm(ufm, theta0, counts, lr):
    """Per-run reference: nn.Parameters and torch.optim.SGD(weight_decay) on the recorded minibatches."""
    losses = []
    for r in range(counts.shape[0]):
        W0, H0, b0 = (t[0] for t in ufm.split(theta0[r : r + 1]))
        W, H, b = (nn.Parameter(t.clone()) for t in (W0, H0, b0))
        opt = torch.optim.SGD(
            [
                {"params": [W], "weight_decay": ufm.weight_decay_W},
                {"params": [H], "weight_decay": ufm.weight_decay_H},
                {"params": [b], "weight_decay": ufm.weight_decay_b},
            ],
            lr=lr,
        )
        run = []
        for s in range(counts.shape[1]):
            with torch.no_grad():
                run.append(ufm.loss(torch.cat([W.reshape(-1), H.reshape(-1), b]).unsqueeze(0)).item())
            idx = torch.repeat_interleave(torch.arange(ufm.num_samples), torch.as_tensor(counts[r, s]).long())
            z = H[idx] @ W.T + b
            loss = torch.nn.functional.cross_entropy(z, ufm.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            run.append(ufm.loss(torch.cat([W.reshape(-1), H.reshape(-1), b]).unsqueeze(0)).item())
        losses.append(run)
    return np.array(losses)


@pytest.mark.parametrize("sampling", ["with-replacement", "shuffle"])
def test_batched_run_sgd_equals_per_run_loop(sampling):
    ufm = UFM(3, 2, 3, loss="ce", weight_decay_W=0.01, weight_decay_H=0.02, weight_decay_b=0.03, init_scale=0.5)
    ds = run_sgd(
        ufm, 0.3, 2, 12, n_runs=3, seed=5, record_every=1, sampling=sampling, metrics=False, record_batches=True
    )
    counts = ds.batch_counts.values  # (R, steps, N)
    assert np.all(counts.sum(-1) == 2)
    if sampling == "shuffle":  # 6 samples, batches of 2: every 3 steps visit each sample exactly once
        np.testing.assert_array_equal(counts.reshape(3, 4, 3, 6).sum(2), 1)
    theta0 = ufm.init(3, torch.Generator().manual_seed(5))
    ref = _loop_sgd_ufm(ufm, theta0, counts, 0.3)
    np.testing.assert_allclose(ds.loss.values, ref, rtol=1e-12, atol=1e-13)
    assert len(np.unique(ds.loss.values[:, -1])) == 3  # runs really are independent


def test_batched_module_sgd_equals_per_run_loop(gen):
    prob, net, x = _mlp_problem(gen, "ce", weight_decay=0.01)
    ds = run_sgd(prob, 0.2, 3, 8, n_runs=2, record_every=8, record_batches=True, save="full", metrics=False)
    counts = ds.batch_counts.values
    for r in range(2):
        ref = copy.deepcopy(net)
        opt = torch.optim.SGD(ref.parameters(), lr=0.2, weight_decay=0.01)
        for s in range(8):
            idx = torch.repeat_interleave(torch.arange(9), torch.as_tensor(counts[r, s]).long())
            loss = torch.nn.functional.cross_entropy(ref(x[idx]), prob.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            np.testing.assert_allclose(ds.classifier.values[r, -1], ref[2].weight.numpy(), rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(ds.features.values[r, -1], torch.tanh(ref[0](x)).numpy(), rtol=1e-12, atol=1e-13)


def test_compare_dataset_roundtrip_and_config(tmp_path):
    config = {
        "problem": {
            "kind": "ufm",
            "num_classes": 3,
            "samples_per_class": 3,
            "dim": 3,
            "loss": "mse",
            "weight_decay_W": 0.01,
            "weight_decay_H": 0.01,
        },
        "run": {
            "lr": 0.1,
            "batch_size": 2,
            "t_end": 2.0,
            "n_runs": 4,
            "n_save": 5,
            "substeps": 2,
            "metrics": ["nc1", "etf_error"],
        },
    }
    out = tmp_path / "cmp.nc"
    ds = compare_from_config(config, out)
    assert ds.loss.dims == ("process", "run", "time")
    assert list(ds.process.values) == ["sgd", "sme", "gradient_flow"]
    np.testing.assert_allclose(ds.time.values, np.linspace(0, 2.0, 5))
    # matched initialisation: identical at t = 0; gradient flow identical across runs
    np.testing.assert_allclose(ds.loss.isel(time=0).values, ds.loss.isel(time=0, process=0, run=0).item())
    assert np.ptp(ds.loss.sel(process="gradient_flow").values, axis=0).max() == 0
    assert np.ptp(ds.loss.sel(process="sgd").isel(time=-1).values) > 0
    back = xr.open_dataset(out, engine="h5netcdf").load()
    xr.testing.assert_identical(back, ds)
    assert out.with_suffix(".png").stat().st_size > 1000
    assert back.loss.attrs["long_name"] == "training loss"
    with pytest.raises(ValueError, match="kind"):
        compare_from_config({"problem": {"kind": "resnet"}, "run": config["run"]}, out)


def test_compare_on_module_problem(gen):
    prob, _, _ = _mlp_problem(gen, "ce")
    ds = compare(prob, lr=0.2, batch_size=3, t_end=1.0, n_runs=3, n_save=3, metrics=["nc1"])
    assert set(ds.data_vars) >= {"loss", "accuracy", "nc1"}
    # 5 steps, 3 records: steps round(linspace(0, 5, 3)) = 0, 2 (2.5 rounds to even), 5
    np.testing.assert_allclose(ds.time.values, [0.0, 0.4, 1.0])
    assert ds.nc1.shape == (3, 3, 3) and np.isfinite(ds.nc1.values).all()


def test_batched_metrics_equal_metrics_per_record(monkeypatch):
    """The recorder's NC metrics, batched over (run, time) or computed record by record, equal nc_metrics of the
    saved features and classifier, every metric."""
    from lesde.sgd import _record

    ufm = UFM(3, 3, 4, loss="ce", weight_decay_W=0.01, weight_decay_H=0.01)
    full = run_sgd(ufm, 0.2, 2, 30, n_runs=3, record_every=3, save="full", metrics="all", progress=False)
    monkeypatch.setattr(_record, "FLUSH_BYTES", 1)  # a budget below one snapshot: a call per record
    per_record = run_sgd(ufm, 0.2, 2, 30, n_runs=3, record_every=3, metrics="all", progress=False)
    assert set(lesde.metrics.METRIC_NAMES) <= set(full.data_vars) and per_record.sizes["time"] == 11
    # the default set: all but gnc2
    default = run_sgd(ufm, 0.2, 2, 30, n_runs=3, record_every=3, progress=False)
    assert set(default.data_vars) == {"loss", "accuracy", *lesde.sgd.DEFAULT_METRICS}
    assert set(lesde.sgd.DEFAULT_METRICS) == set(lesde.metrics.METRIC_NAMES) - {"gnc2", *lesde.metrics.SEED_VARIANTS}
    direct = lesde.metrics.nc_metrics(
        torch.from_numpy(full.features.values),
        ufm.labels,
        torch.from_numpy(full.classifier.values),
        torch.from_numpy(full.bias.values),
    )
    for name, value in direct.items():
        np.testing.assert_allclose(full[name].values, value.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)
        np.testing.assert_allclose(per_record[name].values, value.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)
    some = run_sgd(ufm, 0.2, 2, 30, n_runs=3, record_every=3, metrics=["nc1", "nc2"], progress=False)
    assert {"nc1", "etf_error", "maxangle_means"} <= set(some) and "self_duality" not in some
    assert some.time.attrs["long_name"] == "training time t = step x learning rate"
    with pytest.raises(ValueError, match="accepted names"):  # checked before any step is taken
        run_sgd(ufm, 0.2, 2, 10**9, metrics=["nc7"], progress=False)


def test_compare_shows_one_progress_bar(capsys):
    ufm = UFM(2, 2, 2, loss="mse")
    compare(ufm, lr=0.1, batch_size=2, t_end=0.5, n_runs=2, n_save=3, substeps=2, metrics=False)
    err = capsys.readouterr().err
    assert "compare" in err and "25/25" in err  # one bar: 5 SGD steps, 10 SME and 10 gradient-flow steps
    compare(ufm, lr=0.1, batch_size=2, t_end=0.5, n_runs=2, n_save=3, metrics=False, progress=False)
    assert capsys.readouterr().err == ""


def test_errors_name_the_parameter():
    with pytest.raises(ValueError, match="loss"):
        UFM(3, 2, 2, loss="hinge")
    ufm = UFM(3, 2, 2)
    with pytest.raises(ValueError, match="sampling"):
        run_sgd(ufm, 0.1, 2, 3, sampling="stratified")
    with pytest.raises(ValueError, match="batch_size"):
        SGDSDE(ufm, 0.1, 7, sampling="shuffle")
    with pytest.raises(ValueError, match="method"):
        gradient_flow(ufm, 1.0, method="leapfrog")
    with pytest.warns(UserWarning, match="1 of 1 runs diverged.*Lower lr"):
        ds = run_sgd(UFM(2, 2, 2, loss="mse", init_scale=10.0), 50.0, 1, 20, metrics=False)
    assert ds.attrs["n_diverged"] == 1 and np.isnan(ds.loss.isel(time=-1)).all()


def test_example_runs_tiny(tmp_path, monkeypatch):
    # in-process (runpy) rather than a subprocess: re-importing torch and scikit-learn would dominate the time
    monkeypatch.setenv("LESDE_TINY", "1")
    monkeypatch.setenv("LESDE_OUT", str(tmp_path))
    runpy.run_path(str(ROOT / "lesde" / "examples" / "sgd_vs_sde.py"), run_name="__main__")
    ds = xr.open_dataset(tmp_path / "sgd_vs_sde.nc", engine="h5netcdf")
    assert set(ds.problem.values) == {"ufm", "digits-mlp"} and "process" in ds.dims
    assert np.isfinite(ds.loss.sel(problem="ufm").dropna("time", how="all").values).all()
    assert (tmp_path / "sgd_vs_sde.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------- compare's defaults


def test_compare_records_exactly_n_save_times():
    """compare_sgd.toml's lr = 0.2, t_end = 20 (100 steps) with n_save = 41 records 41 times (every 2.5 steps,
    rounded), not the 51 of a fixed stride of 2; more than steps + 1 records are every step."""
    ufm = UFM(2, 2, 2, loss="mse")
    ds = compare(ufm, lr=0.2, batch_size=2, t_end=20.0, n_runs=2, n_save=41, metrics=False, progress=False)
    assert ds.sizes["time"] == 41 and ds.attrs["n_save"] == 41
    np.testing.assert_allclose(ds.time.values, np.rint(np.linspace(0, 100, 41)) * 0.2)
    assert np.diff(ds.time.values).min() == pytest.approx(0.4) and np.diff(ds.time.values).max() == pytest.approx(0.6)
    few = compare(ufm, lr=0.2, batch_size=2, t_end=1.0, n_runs=2, n_save=50, metrics=False, progress=False)
    np.testing.assert_allclose(few.time.values, np.arange(6) * 0.2)  # 5 steps: 6 records at most


def test_compare_default_sme_shows_its_own_weak_error():
    """The default SME step (lr / 8, ``sme_dt``) shows the SME's O(lr) weak error against SGD: on the 2x2x2 MSE
    UFM the gap in the mean loss at t = 0.6 over 6000 runs has a fitted slope in [0.7, 1.3] (measured 0.98) and is
    resolved above 3 Monte Carlo standard errors at each lr, while Euler-Maruyama at dt = lr (Gaussian-noise SGD,
    weak error O(lr^2)) is within 2 standard errors of SGD at each lr (measured 0.6, 0.2, 0.9)."""
    ufm = UFM(2, 2, 2, loss="mse", weight_decay_W=0.1, weight_decay_H=0.1, bias=False, init_scale=0.8)
    theta0 = ufm.init(1, torch.Generator().manual_seed(3))[0]
    lrs = np.array([0.1, 0.05, 0.025])

    def gaps(substeps):
        out = []
        for lr in lrs:
            kw = dict(n_runs=6000, n_save=2, theta0=theta0, metrics=False, progress=False, seed=1)
            ds = compare(ufm, lr=lr, batch_size=1, t_end=0.6, substeps=substeps, **kw)
            if substeps is None:
                assert ds.attrs["sme_dt"] == pytest.approx(lr / 8)
            L = ds.loss.isel(time=-1)
            a, b = L.sel(process="sgd").values, L.sel(process="sme").values
            out.append((a.mean() - b.mean(), math.sqrt((a.var() + b.var()) / a.size)))
        return np.array(out)

    default, gaussian = gaps(None), gaps(1)
    assert np.all(np.abs(default[:, 0]) > 3 * default[:, 1])
    slope = np.polyfit(np.log(lrs), np.log(np.abs(default[:, 0])), 1)[0]
    assert 0.7 < slope < 1.3, slope
    assert np.all(np.abs(gaussian[:, 0]) < 2 * gaussian[:, 1]), gaussian
    assert np.all(np.abs(default[:, 0] - gaussian[:, 0]) > 2 * np.hypot(default[:, 1], gaussian[:, 1]))


def test_diverging_sme_path_leaves_sgd_and_gradient_flow_intact():
    """At lr = 0.3 a few of 10^4 Euler paths of this cubic-drift SME escape (3 on this seed) while SGD stays
    bounded: the escaped paths are NaN from their divergence on and counted in n_diverged, with a warning; every
    SGD run, the gradient flow and the other SME paths are recorded."""
    ufm = UFM(2, 2, 2, loss="mse", weight_decay_W=0.1, weight_decay_H=0.1, bias=False, init_scale=0.8)
    with pytest.warns(UserWarning, match=r"sme: \d+ of 10000 runs diverged"):
        ds = compare(
            ufm, lr=0.3, batch_size=1, t_end=3.0, n_runs=10_000, n_save=5, metrics=False, progress=False, seed=1
        )
    n = ds.n_diverged.to_series()
    assert n["sgd"] == 0 and n["gradient_flow"] == 0 and 0 < n["sme"] < 20
    assert np.isfinite(ds.loss.sel(process=["sgd", "gradient_flow"]).values).all()
    sme = ds.loss.sel(process="sme")
    lost = np.isnan(sme).any("time")
    assert int(lost.sum()) == n["sme"] and np.isfinite(sme.isel(time=0)).all()
    assert np.isfinite(sme.sel(run=~lost)).all()
    assert (np.isnan(sme.sel(run=lost)).astype(int).diff("time") >= 0).all()  # NaN from the divergence on
