"""UFM predictions against independent computations: gradient descent, ODE integration, spectra, geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import lesde.theory.closed_forms as ufm
from lesde.theory.closed_forms import (
    central_path_snr,
    mse_decomposition,
    optimal_classifier,
    simplex_etf,
    tirer_bruna,
    ufm_mse_loss,
)
from lesde.theory.softmax_codes import one_vs_rest_distance, softmax_code

# ---------------------------------------------------------------------------------------------------------------
# simplex ETF


@pytest.mark.parametrize("K,m", [(2, 1), (3, 2), (5, 4), (5, 9)])
def test_simplex_etf_geometry(K, m):
    M = simplex_etf(K, m).numpy()
    assert M.shape == (K, m)
    gram = M @ M.T
    expected = np.full((K, K), -1.0 / (K - 1))
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(gram, expected, atol=1e-14)
    np.testing.assert_allclose(M.sum(0), 0.0, atol=1e-14)


def test_simplex_etf_needs_k_minus_1_dims():
    with pytest.raises(ValueError, match=r"K=5.*m=3"):
        simplex_etf(5, 3)


# ---------------------------------------------------------------------------------------------------------------
# Tirer-Bruna minimizer


def _gradient_descent(K, n, d, lw, lh, rng, iters=200_000):
    """Plain (alternating, block-wise) gradient descent on the regularized MSE UFM in numpy float64.

    Each block steps by 1/L with L its current gradient-Lipschitz constant, so the descent is stable for any
    regularization strengths.
    """
    W = 0.3 * rng.normal(size=(K, d))
    H = 0.3 * rng.normal(size=(d, K * n))
    Y = np.kron(np.eye(K), np.ones((1, n)))
    for it in range(iters):
        gW = (W @ H - Y) @ H.T / (K * n) + lw / K * W
        W = W - gW / (np.linalg.norm(H, 2) ** 2 / (K * n) + lw / K)
        gH = W.T @ (W @ H - Y) / (K * n) + lh / (K * n) * H
        H = H - gH / (np.linalg.norm(W, 2) ** 2 / (K * n) + lh / (K * n))
        if it % 200 == 0 and max(np.abs(gW).max(), np.abs(gH).max()) < 1e-13:
            break
    return W, H, Y


@pytest.mark.parametrize("K,n,d,lw,lh", [(3, 2, 4, 0.2, 0.05), (4, 3, 6, 0.01, 0.5), (2, 5, 3, 1.0, 0.3)])
def test_tirer_bruna_matches_gradient_descent(K, n, d, lw, lh):
    pred = tirer_bruna(K, n, d, lw, lh)
    W, H, Y = _gradient_descent(K, n, d, lw, lh, np.random.default_rng(7))
    Hbar = H.reshape(d, K, n).mean(-1)  # (d, K) class means (samples are class-major)
    rho_gd = np.diag(Hbar.T @ Hbar).mean()
    assert not pred["collapsed"] and pred["c"] == pytest.approx(math.sqrt(lw * lh))
    assert abs(rho_gd / pred["rho"] - 1) < 1e-3
    np.testing.assert_allclose(Hbar.T @ Hbar, pred["rho"] * np.eye(K), rtol=0, atol=1e-3 * pred["rho"])
    np.testing.assert_allclose(W @ Hbar, (1 - pred["c"]) * np.eye(K), rtol=0, atol=1e-3 * (1 - pred["c"]))
    np.testing.assert_allclose(H, np.repeat(Hbar, n, axis=1), atol=1e-6)  # NC1: features collapsed
    # the returned minimizer has the structure and the same (minimal) loss as the descent's end point
    P = {k: v.numpy() for k, v in pred.items() if torch.is_tensor(v)}
    np.testing.assert_allclose(P["W"] @ P["Hbar"], (1 - pred["c"]) * np.eye(K), atol=1e-14)
    np.testing.assert_allclose(P["Hbar"].T @ P["Hbar"], pred["rho"] * np.eye(K), atol=1e-14)
    np.testing.assert_allclose(P["H"], np.repeat(P["Hbar"], n, axis=1))
    loss_pred = ufm_mse_loss(pred["W"], pred["H"], torch.from_numpy(Y), lw, lh)
    loss_gd = ufm_mse_loss(torch.from_numpy(W), torch.from_numpy(H), torch.from_numpy(Y), lw, lh)
    assert float(loss_pred) == pytest.approx(float(loss_gd), rel=1e-9)


def test_tirer_bruna_collapsed_regime():
    K, n, d, lw, lh = 3, 2, 3, 2.0, 0.8  # c = sqrt(1.6) > 1
    pred = tirer_bruna(K, n, d, lw, lh)
    assert pred["collapsed"] and pred["rho"] == 0.0
    assert float(pred["W"].abs().max()) == 0.0 and float(pred["H"].abs().max()) == 0.0
    W, H, _ = _gradient_descent(K, n, d, lw, lh, np.random.default_rng(3), iters=20_000)
    assert np.abs(W).max() < 1e-4 and np.abs(H).max() < 1e-4
    with pytest.raises(ValueError, match="d >= K"):
        tirer_bruna(4, 2, 3, 0.1, 0.1)


def test_ufm_mse_loss_by_hand(gen):
    K, n, d = 3, 2, 4
    W = torch.randn(K, d, generator=gen, dtype=torch.float64)
    H = torch.randn(d, K * n, generator=gen, dtype=torch.float64)
    Y = torch.kron(torch.eye(K, dtype=torch.float64), torch.ones(1, n, dtype=torch.float64))
    w, h, y = W.numpy(), H.numpy(), Y.numpy()
    by_hand = np.sum((w @ h - y) ** 2) / (2 * K * n) + 0.3 / (2 * K) * np.sum(w**2) + 0.7 / (2 * K * n) * np.sum(h**2)
    assert float(ufm_mse_loss(W, H, Y, 0.3, 0.7)) == pytest.approx(by_hand, rel=1e-14)


@pytest.mark.parametrize("lw", [0.0, 0.05, 1.5])
def test_optimal_classifier_zeroes_the_gradient(gen, lw):
    K, n, d = 4, 3, 6
    H = torch.randn(2, d, K * n, generator=gen, dtype=torch.float64)  # batched
    Y = torch.kron(torch.eye(K, dtype=torch.float64), torch.ones(1, n, dtype=torch.float64))
    W = optimal_classifier(H, Y, lw).requires_grad_(True)
    ufm_mse_loss(W, H, Y, lw, 0.1).sum().backward()
    assert float(W.grad.abs().max()) < 1e-12
    # closed form with the factor n, written out in numpy
    h = H[0].numpy()
    expected = Y.numpy() @ h.T @ np.linalg.pinv(h @ h.T + n * lw * np.eye(d))
    np.testing.assert_allclose(W[0].detach().numpy(), expected, atol=1e-10)


# ---------------------------------------------------------------------------------------------------------------
# MSE decomposition (seed 002, Theorems 1-2)


def _numpy_loss(h, labels, W, b, lam):
    K = W.shape[0]
    Y = np.eye(K)[labels]
    return 0.5 * np.mean(np.sum((h @ W.T + b - Y) ** 2, -1)) + 0.5 * lam * (np.sum(W**2) + np.sum(b**2))


def _numpy_ridge(h, labels, lam):
    """Minimizer of _numpy_loss over (W, b) via an augmented least-squares problem."""
    N, m = h.shape
    K = labels.max() + 1
    X = np.hstack([h, np.ones((N, 1))]) / math.sqrt(N)
    Y = np.eye(K)[labels] / math.sqrt(N)
    if lam > 0:
        X = np.vstack([X, math.sqrt(lam) * np.eye(m + 1)])
        Y = np.vstack([Y, np.zeros((m + 1, K))])
    sol = np.linalg.lstsq(X, Y, rcond=None)[0].T  # (K, m+1), minimum norm when lam = 0
    return sol[:, :m], sol[:, m]


@pytest.mark.parametrize("lam", [0.0, 0.07])
@pytest.mark.parametrize("counts", [[6, 6, 6], [4, 9, 5]])
def test_mse_decomposition_parts_sum(gen, lam, counts):
    labels = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
    N, m = len(labels), 4
    H = torch.randn(2, 3, N, m, generator=gen, dtype=torch.float64) + 2.0 * torch.randn(
        2, 3, 1, m, generator=gen, dtype=torch.float64
    )
    W = torch.randn(2, 3, 3, m, generator=gen, dtype=torch.float64)
    b = torch.randn(2, 3, 3, generator=gen, dtype=torch.float64)
    out = mse_decomposition(H, labels, W, b, weight_decay=lam)
    assert out["L_NC1"].shape == (2, 3)
    torch.testing.assert_close(out["L_NC1"] + out["L_NC2_3"], out["L_LS"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["L_LS"] + out["L_perp"], out["total"], rtol=1e-10, atol=1e-12)
    assert (out["L_perp"] > 0).all() and (out["L_NC1"] > 0).all() and (out["L_NC2_3"] > 0).all()
    lab = labels.numpy()
    for i in range(2):
        for j in range(3):
            h, w, bb = H[i, j].numpy(), W[i, j].numpy(), b[i, j].numpy()
            assert float(out["total"][i, j]) == pytest.approx(_numpy_loss(h, lab, w, bb, lam), rel=1e-12)
            w_ls, b_ls = _numpy_ridge(h, lab, lam)
            np.testing.assert_allclose(out["W_LS"][i, j].numpy(), w_ls, atol=1e-9)
            np.testing.assert_allclose(out["b_LS"][i, j].numpy(), b_ls, atol=1e-9)
            assert float(out["L_LS"][i, j]) == pytest.approx(_numpy_loss(h, lab, w_ls, b_ls, lam), rel=1e-10)
    # on the central path the deviation term vanishes
    on_path = mse_decomposition(H, labels, out["W_LS"], out["b_LS"], weight_decay=lam)
    assert float(on_path["L_perp"].abs().max()) < 1e-12


def test_mse_decomposition_spectral_form(gen):
    # seed 002, Lemma 1 (lambda = 0, balanced): with omega_j the nonzero singular values of
    # SNR = Sigma_W^{-1/2} Mbar, L_NC1 = 1/2 sum w^2/(C+w^2)^2, L_NC2/3 = 1/2 sum (w^2/(w^2+C) - 1)^2 / C
    C, n, m = 4, 10, 5
    labels = torch.arange(C).repeat_interleave(n)
    H = (
        torch.randn(n * C, m, generator=gen, dtype=torch.float64)
        + 1.5 * torch.randn(C, m, generator=gen, dtype=torch.float64)[labels]
    )
    out = mse_decomposition(H, labels, torch.zeros(C, m, dtype=torch.float64), torch.zeros(C, dtype=torch.float64))
    h = H.numpy()
    mu = np.stack([h[labels.numpy() == c].mean(0) for c in range(C)])
    Mbar = (mu - mu.mean(0)).T  # (m, C)
    dev = h - mu[labels.numpy()]
    Sw = dev.T @ dev / len(h)
    evals, evecs = np.linalg.eigh(Sw)
    snr = evecs @ np.diag(evals**-0.5) @ evecs.T @ Mbar
    w2 = np.linalg.svd(snr, compute_uv=False)[: C - 1] ** 2
    assert float(out["L_NC1"]) == pytest.approx(0.5 * np.sum(w2 / (C + w2) ** 2), rel=1e-9)
    assert float(out["L_NC2_3"]) == pytest.approx(0.5 * np.sum((w2 / (w2 + C) - 1) ** 2) / C, rel=1e-9)
    assert float(out["L_LS"]) == pytest.approx(0.5 * np.sum(1 / (w2 + C)), rel=1e-9)


@pytest.mark.parametrize("lam", [0.0, 0.2])
def test_least_squares_classifier(gen, lam):
    from lesde.metrics import least_squares_classifier

    labels = torch.arange(3).repeat_interleave(7)
    H = torch.randn(21, 4, generator=gen, dtype=torch.float64)
    W, b = least_squares_classifier(H, labels, weight_decay=lam)
    w_ls, b_ls = _numpy_ridge(H.numpy(), labels.numpy(), lam)
    np.testing.assert_allclose(W.numpy(), w_ls, atol=1e-9)
    np.testing.assert_allclose(b.numpy(), b_ls, atol=1e-9)
    # the decomposition's own least-squares classifier is the same one
    out = mse_decomposition(H, labels, W, b, weight_decay=lam)
    assert float(out["L_perp"]) < 1e-14


# ---------------------------------------------------------------------------------------------------------------
# central path SNR dynamics


@pytest.mark.parametrize("C,N", [(3, 5), (10, 1), (2, 100)])
def test_central_path_snr_matches_ode(C, N):
    omega0 = np.array([0.03, 0.4, 1.0, 3.0, 20.0])
    ts = np.array([0.0, 0.01, 0.5, 3.0, 40.0, 1e3, 1e5])
    got = central_path_snr(omega0, C, N, ts).numpy()
    assert got.shape == (len(ts), len(omega0))
    for j, w in enumerate(omega0):
        sol = solve_ivp(
            lambda t, y: y / (N * (C + y**2) ** 2),
            (0.0, ts[-1]),
            [w],
            t_eval=ts,
            method="DOP853",
            rtol=1e-12,
            atol=1e-300,
        )
        np.testing.assert_allclose(got[:, j], sol.y[0], rtol=1e-8)
    assert (np.diff(got, axis=0) > 0).all()
    # the implicit equation itself, and the quartic asymptote omega ~ (4 t / N)^(1/4)
    F = lambda w: C**2 * N * np.log(w) + C * N * w**2 + N / 4 * w**4  # noqa: E731
    np.testing.assert_allclose(
        F(got) - F(omega0), np.broadcast_to(ts[:, None], got.shape), rtol=1e-10, atol=1e-14 * np.abs(F(got)).max()
    )
    far = central_path_snr(omega0, C, N, 1e12).numpy()
    np.testing.assert_allclose(far, (4e12 / N) ** 0.25, rtol=1e-2)
    assert far.max() / far.min() < 1 + 1e-3  # max/min ratio -> 1


def test_central_path_snr_extremes_and_errors():
    w = central_path_snr([1.0, 1e-8], 2, 1, [-1e3, 1e30])
    assert torch.isfinite(w).all() and (w > 0).all()
    with pytest.raises(ValueError, match="omega0"):
        central_path_snr([0.0, 1.0], 2, 1, [1.0])
    with pytest.raises(ValueError, match="C"):
        central_path_snr([1.0], -2, 1, [1.0])


# ---------------------------------------------------------------------------------------------------------------
# softmax code


def test_one_vs_rest_distance_known_configurations():
    angles = 2 * np.pi * np.arange(5) / 5
    pentagon = np.stack([np.cos(angles), np.sin(angles)], 1)
    # the hull of the other four faces w_0 with the chord between its neighbours at x = cos(72 deg)
    assert one_vs_rest_distance(pentagon) == pytest.approx(1 - np.cos(2 * np.pi / 5), abs=1e-9)
    for K in (3, 4, 6):
        assert one_vs_rest_distance(simplex_etf(K, K - 1)) == pytest.approx(K / (K - 1), abs=1e-9)
    # a point inside the hull of the others has distance 0
    inside = np.array([[1.0, 0.0], [-1.0, 1.0], [-1.0, -1.0], [-0.5, 0.0]])
    np.testing.assert_allclose(one_vs_rest_distance(inside, per_point=True)[3], 0.0, atol=1e-9)


def test_softmax_code_4_in_2d_is_a_square():
    res = softmax_code(4, 2, steps=600, restarts=2)
    code = res["code"].numpy()
    np.testing.assert_allclose(np.linalg.norm(code, axis=1), 1.0, atol=1e-12)
    assert res["one_vs_rest_distance"] == pytest.approx(1.0, abs=1e-6)
    angles = np.sort(np.arctan2(code[:, 1], code[:, 0]))
    gaps = np.diff(np.append(angles, angles[0] + 2 * np.pi))
    np.testing.assert_allclose(gaps, np.pi / 2, atol=1e-3)


@pytest.mark.parametrize("K,d", [(3, 2), (4, 5)])
def test_softmax_code_small_k_is_simplex_etf(K, d):
    for closed_form, tol in ((True, 1e-12), (False, 1e-6)):
        res = softmax_code(K, d, steps=1000, restarts=2, closed_form=closed_form)
        code = res["code"].numpy()
        gram = code @ code.T
        off = gram[~np.eye(K, dtype=bool)]
        np.testing.assert_allclose(np.diag(gram), 1.0, atol=1e-12)
        np.testing.assert_allclose(off, -1.0 / (K - 1), atol=tol)
        assert res["one_vs_rest_distance"] == pytest.approx(K / (K - 1), abs=tol)


def test_softmax_code_cross_polytope_regime():
    # seed 004, Theorem 3.3: d + 1 < K <= 2d gives maximal one-vs-rest distance exactly 1
    res = softmax_code(5, 3, steps=600, restarts=2)
    assert res["one_vs_rest_distance"] == pytest.approx(1.0, abs=1e-4)


def test_theory_holds_the_closed_forms_and_no_training_problem():
    """The closed forms live in lesde.theory (one home); the UFM training problem stays in lesde.sgd, and
    lesde.ufm (which re-exported it) is gone."""
    import importlib

    import lesde.sgd
    import lesde.theory

    assert lesde.theory.tirer_bruna is tirer_bruna and lesde.theory.softmax_code is softmax_code
    assert (
        not hasattr(ufm, "UFM")
        and not hasattr(lesde.theory, "UFM")
        and lesde.sgd.UFM.__module__ == "lesde.sgd.ufm_problem"
    )
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lesde.ufm")
