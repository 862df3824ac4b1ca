"""Tests for lesde.metrics: known values (simplex ETF zeros), independent numpy/scipy references for a random
perturbation, batching against a per-item loop, conventions (Papyan / Zhu), imbalance, degenerate inputs,
means_metrics vs nc_metrics, and the xarray wrapper's netCDF round trip."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from lesde import metrics as M

# ------------------------------------------------------------------------------- independent references


def simplex_etf(K: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """K unit rows in R^m with pairwise cosine -1/(K-1), randomly rotated (m >= K)."""
    base = np.sqrt(K / (K - 1)) * (np.eye(K) - 1.0 / K)  # (K, K), rows of norm 1
    Q, _ = np.linalg.qr(rng.standard_normal((m, m)))
    return np.hstack([base, np.zeros((K, m - K))]) @ Q.T


def np_stats(H: np.ndarray, y: np.ndarray):
    K = y.max() + 1
    mu = np.stack([H[y == k].mean(0) for k in range(K)])
    Mc = mu - mu.mean(0)  # mu_G = mean of class means
    Z = H - mu[y]
    Sw = Z.T @ Z / len(y)  # sample-weighted
    Sb = Mc.T @ Mc / K
    var = np.array([np.mean(np.sum(Z[y == k] ** 2, axis=1)) for k in range(K)])
    return K, mu, Mc, Sw, Sb, var


def np_cos(V: np.ndarray) -> np.ndarray:
    U = V / np.linalg.norm(V, axis=1, keepdims=True)
    return U @ U.T


def np_dist_to_hull(v: np.ndarray, pts: np.ndarray) -> float:
    """Exact distance from v to conv(pts) by enumerating supports (affine projections, keep feasible ones)."""
    best = np.inf
    for r in range(1, len(pts) + 1):
        for S in itertools.combinations(range(len(pts)), r):
            P = pts[list(S)]
            # minimise ||v - P^T lam||^2 s.t. sum lam = 1: KKT system
            A = np.block([[2 * P @ P.T, np.ones((r, 1))], [np.ones((1, r)), np.zeros((1, 1))]])
            rhs = np.concatenate([2 * P @ v, [1.0]])
            sol = np.linalg.lstsq(A, rhs, rcond=None)[0][:r]
            if np.all(sol >= -1e-12) and abs(sol.sum() - 1) < 1e-9:
                best = min(best, float(np.linalg.norm(v - P.T @ sol)))
    return best


def np_reference(H, y, W, b):
    """Every metric from its textbook formula, loops and numpy/scipy only."""
    K, mu, Mc, Sw, Sb, var = np_stats(H, y)
    evals, evecs = np.linalg.eigh(Sb)
    V, e = evecs[:, -(K - 1) :], evals[-(K - 1) :]
    Sb_pinv = V @ np.diag(1 / e) @ V.T
    pairs = [(k, l) for k in range(K) for l in range(K) if k != l]
    upper = [(k, l) for k, l in pairs if k < l]
    cm, cw = np_cos(Mc), np_cos(W)
    etf = (np.eye(K) - 1.0 / K) / np.sqrt(K - 1)
    Gm, Gw = Mc @ Mc.T, W @ W.T
    logits = H @ W.T + b
    ncc = [np.argmax(logits[i]) != np.argmin(np.linalg.norm(H[i] - mu, axis=1)) for i in range(len(y))]
    margins = [logits[i, y[i]] - max(logits[i, j] for j in range(K) if j != y[i]) for i in range(len(y))]
    Wu = W / np.linalg.norm(W, axis=1, keepdims=True)
    return {
        "nc1": np.trace(Sw @ Sb_pinv) / K,
        "nc1_quotient": np.trace(Sw) / np.trace(Sb),
        "equinorm_means": np.std(np.linalg.norm(Mc, axis=1), ddof=1) / np.mean(np.linalg.norm(Mc, axis=1)),
        "equiangular_means": np.std([cm[k, l] for k, l in upper], ddof=1) if len(upper) > 1 else 0.0,
        "maxangle_means": np.mean([abs(cm[k, l] + 1 / (K - 1)) for k, l in pairs]),
        "mean_cosine": np.mean([cm[k, l] for k, l in pairs]),
        "etf_error": np.linalg.norm(Gm / np.linalg.norm(Gm) - etf),
        "cdnv": np.mean([(var[k] + var[l]) / (2 * np.sum((mu[k] - mu[l]) ** 2)) for k, l in upper]),
        "equinorm_classifier": np.std(np.linalg.norm(W, axis=1), ddof=1) / np.mean(np.linalg.norm(W, axis=1)),
        "equiangular_classifier": np.std([cw[k, l] for k, l in upper], ddof=1) if len(upper) > 1 else 0.0,
        "maxangle_classifier": np.mean([abs(cw[k, l] + 1 / (K - 1)) for k, l in pairs]),
        "etf_error_classifier": np.linalg.norm(Gw / np.linalg.norm(Gw) - etf),
        "self_duality": np.linalg.norm(W / np.linalg.norm(W) - Mc / np.linalg.norm(Mc)) ** 2,
        "ncc_mismatch": np.mean(ncc),
        "nc_margin": min(margins),
        "gnc2": min(np_dist_to_hull(Wu[k], np.delete(Wu, k, axis=0)) for k in range(K)),
        "gnc3": np.mean([1 - W[k] @ mu[k] / (np.linalg.norm(W[k]) * np.linalg.norm(mu[k])) for k in range(K)]),
        # the GNC paper's GNC3 (unit classifier rows, class means as they are) and GNC1 (uncentred Sigma_B)
        "gnc3_unnormalized": np.mean([1 - W[k] @ mu[k] / np.linalg.norm(W[k]) for k in range(K)]),
        "gnc1_uncentered": np.trace(Sw @ np.linalg.pinv(mu.T @ mu / K, hermitian=True)) / K,
    }


def etf_problem(K, m, counts, rng, noise=0.0, w_noise=0.0):
    """Features collapsed on a simplex ETF (plus noise), an aligned classifier (plus noise), zero bias."""
    E = simplex_etf(K, m, rng)
    y = np.repeat(np.arange(K), counts)
    H = 3.0 * E[y] + noise * rng.standard_normal((len(y), m))
    W = 2.0 * E + w_noise * rng.standard_normal((K, m))
    return H, y, W, np.zeros(K)


def t(x):
    return torch.as_tensor(np.asarray(x))


# ------------------------------------------------------------------------------------------ known values

ZERO_AT_ETF = [
    "nc1",
    "nc1_quotient",
    "cdnv",
    "etf_error",
    "etf_error_classifier",
    "self_duality",
    "maxangle_means",
    "maxangle_classifier",
    "ncc_mismatch",
    "equinorm_means",
    "equinorm_classifier",
    "equiangular_means",
    "equiangular_classifier",
    "gnc3",
]


@pytest.mark.parametrize("K,m,counts", [(3, 5, [4, 4, 4]), (5, 5, [1, 3, 2, 5, 2]), (4, 9, [2, 2, 2, 2])])
def test_simplex_etf_gives_zeros(K, m, counts, device):
    rng = np.random.default_rng(0)
    H, y, W, b = etf_problem(K, m, counts, rng)
    out = M.nc_metrics(t(H).to(device), t(y).to(device), t(W).to(device), t(b).to(device))
    for name in ZERO_AT_ETF:
        assert abs(out[name].item()) < 1e-12, (name, out[name].item())
    # non-zero known values at the ETF: unit rows' one-vs-rest distance K/(K-1), margin 2*3*K/(K-1)
    assert out["gnc2"].item() == pytest.approx(K / (K - 1), abs=1e-10)
    assert out["nc_margin"].item() == pytest.approx(6.0 * K / (K - 1), rel=1e-12)
    assert out["mean_cosine"].item() == pytest.approx(-1.0 / (K - 1), abs=1e-12)
    assert out["nc1"].device.type == device.type


def test_least_squares_classifier_is_self_dual_at_the_etf():
    rng = np.random.default_rng(1)
    H, y, _, _ = etf_problem(4, 6, [3, 1, 2, 4], rng)
    out = M.nc_metrics(t(H), t(y), use_least_squares=True)
    for name in ("self_duality", "ncc_mismatch", "etf_error_classifier", "equinorm_classifier", "gnc3"):
        assert abs(out[name].item()) < 1e-10, (name, out[name].item())


# ------------------------------------------------------------------------- random perturbation vs numpy


@pytest.mark.parametrize(
    "K,m,counts",
    [(3, 6, [5, 5, 5]), (4, 4, [2, 7, 3, 5]), (2, 3, [4, 6]), (5, 3, [3, 3, 4, 3, 3])],  # incl. imbalanced, m < K
)
def test_perturbation_matches_numpy_reference(K, m, counts):
    rng = np.random.default_rng(K * 100 + m)
    if m >= K:
        H, y, W, b = etf_problem(K, m, counts, rng, noise=0.7, w_noise=0.4)
    else:  # no simplex ETF fits: plain random means and classifier
        y = np.repeat(np.arange(K), counts)
        H = 2.0 * rng.standard_normal((K, m))[y] + 0.6 * rng.standard_normal((len(y), m))
        W = rng.standard_normal((K, m))
    b = 0.3 * rng.standard_normal(K)
    ref = np_reference(H, y, W, b)
    if m < K - 1:  # Sigma_B has rank m < K-1: the reference pseudo-inverse keeps the m non-zero eigenpairs
        K_, _, _, Sw, Sb, _ = np_stats(H, y)
        ref["nc1"] = np.trace(Sw @ np.linalg.pinv(Sb, hermitian=True)) / K_
    out = M.nc_metrics(t(H), t(y), t(W), t(b))
    assert set(out) == set(ref)
    for name, value in ref.items():
        tol = 1e-8 if name == "gnc2" else 1e-10
        assert out[name].item() == pytest.approx(value, rel=tol, abs=tol), name


def test_papyan_and_zhu_conventions():
    rng = np.random.default_rng(7)
    H, y, W, _ = etf_problem(4, 7, [6, 6, 6, 6], rng, noise=0.5, w_noise=0.3)
    K, _, Mc, Sw, Sb, _ = np_stats(H, y)
    # Papyan code: tr(Sw @ inv_Sb) with inv_Sb from the top C-1 eigenpairs (scipy svds), no / K
    from scipy.sparse.linalg import svds

    u, s, _ = svds(Sb, k=K - 1)
    papyan = np.trace(Sw @ (u @ np.diag(1 / s) @ u.T))
    out_p = M.nc_metrics(t(H), t(y), names=["nc1"], papyan=True)["nc1"].item()
    out_k = M.nc_metrics(t(H), t(y), names=["nc1"])["nc1"].item()
    assert out_p == pytest.approx(papyan, rel=1e-9)
    assert out_k == pytest.approx(papyan / K, rel=1e-9)
    # Zhu et al.: || G/||G||_F - (I - 11^T/K)/sqrt(K-1) ||_F for centred means and for W W^T
    etf = (np.eye(K) - 1 / K) / np.sqrt(K - 1)
    zhu_h = np.linalg.norm(Mc @ Mc.T / np.linalg.norm(Mc @ Mc.T, "fro") - etf, "fro")
    zhu_w = np.linalg.norm(W @ W.T / np.linalg.norm(W @ W.T, "fro") - etf, "fro")
    out = M.nc_metrics(t(H), t(y), t(W), names=["etf_error", "etf_error_classifier"])
    assert out["etf_error"].item() == pytest.approx(zhu_h, rel=1e-12)
    assert out["etf_error_classifier"].item() == pytest.approx(zhu_w, rel=1e-12)


def test_least_squares_classifier_matches_lstsq_and_ridge():
    rng = np.random.default_rng(3)
    K, m = 3, 4
    y = np.repeat(np.arange(K), [4, 6, 5])
    H = rng.standard_normal((K, m))[y] + 0.5 * rng.standard_normal((len(y), m)) + 2.0
    Y = np.eye(K)[y]
    Ht = np.hstack([H, np.ones((len(y), 1))])
    sol = np.linalg.lstsq(Ht, Y, rcond=None)[0].T  # (K, m+1)
    W, b = M.least_squares_classifier(t(H), t(y))
    np.testing.assert_allclose(W.numpy(), sol[:, :m], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.numpy(), sol[:, m], rtol=1e-10, atol=1e-12)
    lam, N = 0.1, len(y)
    ridge = np.linalg.solve(Ht.T @ Ht / N + lam * np.eye(m + 1), Ht.T @ Y / N).T
    W, b = M.least_squares_classifier(t(H), t(y), weight_decay=lam)
    np.testing.assert_allclose(W.numpy(), ridge[:, :m], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.numpy(), ridge[:, m], rtol=1e-10, atol=1e-12)
    # seed 002 Eq. 7 for balanced classes: W = C^{-1} Mbar^T Sigma_T^{-1}, b = C^{-1} 1 - W mu_G
    yb = np.repeat(np.arange(K), 5)
    Hb = rng.standard_normal((15, m))
    _, mu, Mc, _, _, _ = np_stats(Hb, yb)
    Hc = Hb - Hb.mean(0)
    W7 = Mc @ np.linalg.inv(Hc.T @ Hc / 15) / K
    W, b = M.least_squares_classifier(t(Hb), t(yb))
    np.testing.assert_allclose(W.numpy(), W7, rtol=1e-10)
    np.testing.assert_allclose(b.numpy(), 1 / K - W7 @ mu.mean(0), rtol=1e-10, atol=1e-12)


def test_gnc2_square_and_random_codes(gen):
    square = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    y = torch.arange(4)
    out = M.nc_metrics(square, y, 3 * square, names=["gnc2"])
    assert out["gnc2"].item() == pytest.approx(1.0, abs=1e-10)
    W = torch.randn(6, 5, 3, generator=gen, dtype=torch.float64)  # 6 random codes, K=5 > d+1
    H = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    got = M.nc_metrics(H, torch.arange(10) % 5, W, names=["gnc2"])["gnc2"]
    for i in range(6):
        U = (W[i] / W[i].norm(dim=1, keepdim=True)).numpy()
        ref = min(np_dist_to_hull(U[k], np.delete(U, k, axis=0)) for k in range(5))
        assert got[i].item() == pytest.approx(ref, abs=1e-8)


# ------------------------------------------------------------------------------------------- batching


def test_batched_equals_per_item_loop(gen):
    B1, B2, K, m = 2, 3, 4, 5
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 3, 3])
    H = torch.randn(B1, B2, len(y), m, generator=gen, dtype=torch.float64) + torch.randn(K, m, generator=gen)[y]
    W = torch.randn(B1, B2, K, m, generator=gen, dtype=torch.float64)
    b = torch.randn(B1, B2, K, generator=gen, dtype=torch.float64)
    for kwargs in ({"classifier": W, "bias": b}, {"use_least_squares": True, "weight_decay": 0.05}):
        batched = M.nc_metrics(H, y, **kwargs)
        for i, j in itertools.product(range(B1), range(B2)):
            item = {k: (v[i, j] if k in ("classifier", "bias") else v) for k, v in kwargs.items()}
            single = M.nc_metrics(H[i, j], y, **item)
            for name, value in single.items():
                assert batched[name].shape == (B1, B2)
                torch.testing.assert_close(batched[name][i, j], value, rtol=1e-9, atol=1e-9, msg=name)
    # a single classifier broadcasts over the features' leading dims
    shared = M.nc_metrics(H, y, W[0, 0], b[0, 0])
    single = M.nc_metrics(H[1, 2], y, W[0, 0], b[0, 0])
    for name, value in single.items():
        torch.testing.assert_close(shared[name][1, 2], value, rtol=1e-9, atol=1e-9, msg=name)


# ------------------------------------------------------------------------------------- degenerate inputs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_degenerate_inputs_give_documented_values(dtype):
    K, m, y = 3, 4, torch.tensor([0, 0, 1, 1, 1, 2])
    R = M.degenerate_ratio(dtype)
    W = torch.randn(K, m, generator=torch.Generator().manual_seed(0), dtype=dtype)

    # everything identical (0 within, 0 between): ratios 0, zero directions
    same = torch.full((len(y), m), 0.1, dtype=dtype)
    out = M.nc_metrics(same, y, W)
    assert all(torch.isfinite(v).all() for v in out.values())
    for name in ("nc1", "nc1_quotient", "cdnv", "equinorm_means", "equiangular_means", "mean_cosine"):
        assert out[name].item() == 0.0, name
    assert out["maxangle_means"].item() == pytest.approx(1 / (K - 1))
    assert out["etf_error"].item() == pytest.approx(1.0)
    assert out["self_duality"].item() == pytest.approx(1.0, rel=1e-5)

    # positive within, coinciding means: ratios at the sentinel R
    offsets = [[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, -2.0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    spread = 5.0 + torch.tensor(offsets, dtype=dtype)  # every class mean is exactly (5, 5, 5, 5)
    out = M.nc_metrics(spread, y, names=["nc1", "nc1_quotient", "cdnv", "etf_error", "equinorm_means"])
    for name in ("nc1", "nc1_quotient", "cdnv"):
        assert out[name].item() == pytest.approx(R / (K if name == "nc1" else 1)), name
    assert out["etf_error"].item() == pytest.approx(1.0)
    assert out["equinorm_means"].item() == 0.0

    # collapsed but separated (0 within, positive between): NC1 ratios exactly 0
    collapsed = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 3.0, 0]], dtype=dtype)[y] * 1e3
    out = M.nc_metrics(collapsed, y, names=["nc1", "nc1_quotient", "cdnv"])
    assert all(v.item() == 0.0 for v in out.values())

    # zero classifier and zero-norm class mean: finite, documented
    out = M.nc_metrics(collapsed, y, torch.zeros(K, m, dtype=dtype))
    assert all(torch.isfinite(v).all() for v in out.values())
    assert out["equinorm_classifier"].item() == 0.0
    assert out["maxangle_classifier"].item() == pytest.approx(1 / (K - 1))
    assert out["gnc3"].item() == pytest.approx(1.0)
    assert out["gnc2"].item() == 0.0
    assert out["nc_margin"].item() == 0.0


@pytest.mark.parametrize("dtype,scale", [(torch.float64, 1e150), (torch.float64, 1e-150), (torch.float32, 1e18)])
def test_scale_free(dtype, scale, gen):
    y = torch.arange(4).repeat_interleave(3)
    H = (torch.randn(4, 5, generator=gen, dtype=torch.float64)[y] + 0.3 * torch.randn(12, 5, generator=gen)).to(dtype)
    W = torch.randn(4, 5, generator=gen).to(dtype)
    base = M.nc_metrics(H, y, W)
    big = M.nc_metrics(H * scale, y, W)
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    for name, value in base.items():
        # nc_margin scales with the features; gnc3_unnormalized's w_k^T mu_k too (only the cosine gnc3 is scale-free)
        expect = (
            value * scale if name == "nc_margin" else 1 - (1 - value) * scale if name == "gnc3_unnormalized" else value
        )
        assert torch.isfinite(big[name]).all(), name
        torch.testing.assert_close(big[name], expect, rtol=rtol, atol=rtol * abs(expect.item()) + 1e-12, msg=name)


def test_errors_name_the_problem(gen):
    H = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="accepted names: nc1, nc1_quotient"):
        M.nc_metrics(H, y, names=["nc7"])
    with pytest.raises(ValueError, match="use_least_squares"):
        M.nc_metrics(H, y, names=["self_duality"])
    with pytest.raises(ValueError, match="empty"):
        M.nc_metrics(H, torch.tensor([0, 0, 1, 1, 3, 3]))
    with pytest.raises(TypeError, match="labels"):
        M.nc_metrics(H, y.double())
    with pytest.raises(ValueError, match="weight_decay"):
        M.least_squares_classifier(H, y, weight_decay=-1.0)
    assert "self_duality" not in M.nc_metrics(H, y)  # skipped without a classifier
    assert set(M.ONLINE_METRICS) <= set(M.METRIC_NAMES)


# --------------------------------------------------------------------------------- means_metrics, xarray


def test_means_metrics_agree_with_nc_metrics(gen):
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3])
    counts = torch.bincount(y)
    H = torch.randn(2, 3, len(y), 6, generator=gen, dtype=torch.float64) + 2 * torch.randn(4, 6, generator=gen)[y]
    means = torch.stack([H[..., y == k, :].mean(-2) for k in range(4)], -2)  # (2, 3, K, m)
    var = torch.stack([((H[..., y == k, :] - means[..., k, None, :]) ** 2).sum(-1).mean(-1) for k in range(4)], -1)
    full = M.nc_metrics(H, y)
    from_means = M.means_metrics(means, var, counts.tolist())
    assert set(from_means) == set(M.MEANS_METRICS)
    for name, value in from_means.items():
        torch.testing.assert_close(value, full[name], rtol=1e-10, atol=1e-12, msg=name)


def _sim_full(gen, P=2, T=3, counts=(3, 4, 2), m=5, dtype=torch.float32):
    y = torch.arange(len(counts)).repeat_interleave(torch.tensor(counts))
    centres = 2 * torch.randn(len(counts), m, generator=gen, dtype=torch.float64)
    X = (centres[y] + torch.randn(P, T, len(y), m, generator=gen, dtype=torch.float64)).to(dtype)
    return xr.Dataset(
        {"features": (("path", "time", "sample", "feature"), X.numpy())},
        coords={"path": np.arange(P), "time": np.linspace(0, 1, T), "label": ("sample", y.numpy())},
        attrs={"samples_per_class": json.dumps(list(counts)), "save": "full", "dt": 0.01, "seed": 3},
    )


def test_to_dataset_full_and_means_round_trip(gen, tmp_path):
    sim = _sim_full(gen)
    ds = M.to_dataset(sim, use_least_squares=True)
    assert set(ds.data_vars) == set(M.METRIC_NAMES)
    assert ds["nc1"].dims == ("path", "time") and ds["nc1"].dtype == np.float32
    assert ds.attrs["metrics_source"] == "full" and ds.attrs["dt"] == 0.01
    assert ds["gnc2"].attrs["long_name"].startswith("GNC2")
    X = torch.from_numpy(sim["features"].values)
    direct = M.nc_metrics(X, torch.from_numpy(sim["label"].values), use_least_squares=True)
    for name, value in direct.items():
        np.testing.assert_array_equal(ds[name].values, value.numpy())
    ds.to_netcdf(tmp_path / "full.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "full.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)

    # the same simulation saved as means gives the same means metrics
    y = sim["label"].values
    feats = sim["features"].values.astype(np.float64)
    cm = np.stack([feats[:, :, y == k].mean(2) for k in range(3)], axis=2)
    wv = np.stack([((feats[:, :, y == k] - cm[:, :, k, None]) ** 2).sum(-1).mean(-1) for k in range(3)], axis=2)
    sim_means = xr.Dataset(
        {
            "class_mean": (("path", "time", "class", "feature"), cm),
            "within_var": (("path", "time", "class"), wv),
        },
        coords={"path": sim.path, "time": sim.time},
        attrs={"samples_per_class": "[3, 4, 2]", "save": "means"},
    )
    dm = M.to_dataset(sim_means)
    assert set(dm.data_vars) == set(M.MEANS_METRICS) and dm.attrs["metrics_source"] == "means"
    for name in M.MEANS_METRICS:
        np.testing.assert_allclose(dm[name].values, ds[name].values, rtol=2e-4, atol=1e-6, err_msg=name)
    dm.to_netcdf(tmp_path / "means.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "means.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), dm)
    with pytest.raises(ValueError, match="save='full'"):
        M.to_dataset(sim_means, use_least_squares=True)


# ------------------------------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    counts=st.lists(st.integers(1, 3), min_size=2, max_size=4),
    m=st.integers(1, 5),
    mode=st.sampled_from(["none", "given", "ls"]),
    seed=st.integers(0, 2**16),
)
def test_property_shapes_and_finiteness(lead, counts, m, mode, seed):
    g = torch.Generator().manual_seed(seed)
    K = len(counts)
    y = torch.arange(K).repeat_interleave(torch.tensor(counts))
    H = torch.randn(*lead, len(y), m, generator=g, dtype=torch.float64)
    kwargs = {"given": {"classifier": torch.randn(K, m, generator=g, dtype=torch.float64)}, "ls": {}}.get(mode, {})
    out = M.nc_metrics(H, y, use_least_squares=mode == "ls", **kwargs)
    features_only = (*M.MEANS_METRICS, "nc1", "gnc1_uncentered")  # what needs no classifier
    expected = M.METRIC_NAMES if mode != "none" else [n for n in M.METRIC_NAMES if n in features_only]
    assert list(out) == list(expected)
    for name, value in out.items():
        assert value.shape == tuple(lead), name
        assert torch.isfinite(value).all(), name
        assert value.dtype == torch.float64
    assert 0.0 <= float(out["nc1"].min()) and float(out["nc1"].max()) <= M.degenerate_ratio(torch.float64)
    assert math.isfinite(float(out["etf_error"].sum()))


# ------------------------------------------------------------------------- online_metrics (save="metrics")


@pytest.mark.parametrize(
    "counts,dtype,scale",
    [
        ((40,) * 12, torch.float32, 1.0),  # balanced, ordered by class: the blocked fast paths
        ((3, 9, 2, 6, 5), torch.float32, 1.0),  # imbalanced: the gather / scatter paths
        ((3, 9, 2, 6, 5), torch.float64, 1.0),
        ((7, 4, 11), torch.float64, 1e150),  # would overflow float64 if squared unnormalised
    ],
)
def test_online_metrics_equal_nc_metrics_and_pair_stats(counts, dtype, scale, gen):
    """online_metrics(means, deviations) == nc_metrics + pair_stats on H = mu_y + z, for every path."""
    from lesde.separability import pair_stats

    K, m = len(counts), 16  # m >= K: Sigma_B has full rank K-1
    y = torch.arange(K).repeat_interleave(torch.tensor(counts))
    perm = torch.randperm(len(y), generator=gen)
    y = y[perm] if counts[0] != counts[1] else y  # imbalanced cases also shuffle the sample order
    mu = 1.5 * torch.randn(6, K, m, generator=gen, dtype=torch.float64) + 4.0  # (B, K, m), translated
    Z = torch.randn(6, len(y), m, generator=gen, dtype=torch.float64)
    Z = Z - torch.stack([Z[:, y == k].mean(1) for k in range(K)], 1)[:, y]  # zero class means
    mu, Z = (scale * mu).to(dtype), (scale * Z).to(dtype)
    H = mu[:, y] + Z  # (B, N, m)
    got = M.online_metrics(mu, Z, y)
    want = M.nc_metrics(H, y, names=M.ONLINE_METRICS)
    frac, all_sep = pair_stats(H, y)
    # float32: nc1 goes through eigh and 1/e^2 (measured agreement 6e-6); the rest agree to a few ulp
    tol = {torch.float32: 1e-6, torch.float64: 1e-12}[dtype]
    for name in M.ONLINE_METRICS:
        rtol = 30 * tol if name == "nc1" else 3 * tol
        torch.testing.assert_close(got[name], want[name], rtol=rtol, atol=0.0, msg=name)
    assert 0 < float(frac.min()) and float(frac.max()) <= 1  # a mix of separable and overlapping pairs
    torch.testing.assert_close(got["separable_fraction"], frac, rtol=0, atol=0)
    assert torch.equal(got["all_separable"], all_sep)
    # the features' own unit reproduces nc_metrics' scale exactly
    again = M.online_metrics(mu, Z, y, scale=H.abs().amax((-2, -1)))
    for name in M.ONLINE_METRICS:
        torch.testing.assert_close(again[name], want[name], rtol=30 * tol, atol=0.0, msg=name)


def test_online_metrics_degenerate_and_errors(gen):
    """Collapsed deviations and coincident means give nc_metrics' documented values; bad inputs are named."""
    y = torch.arange(3).repeat_interleave(4)
    mu = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    zero = torch.zeros(2, 12, 5, dtype=torch.float64)
    out = M.online_metrics(mu, zero, y)
    assert torch.equal(out["nc1"], torch.zeros(2, dtype=torch.float64))
    assert torch.equal(out["cdnv"], torch.zeros(2, dtype=torch.float64))
    assert bool(out["all_separable"].all())
    same = M.online_metrics(torch.zeros(2, 3, 5, dtype=torch.float64), torch.randn(2, 12, 5, generator=gen).double(), y)
    cap = M.degenerate_ratio(torch.float64)
    assert torch.equal(same["nc1_quotient"], torch.full((2,), cap, dtype=torch.float64))
    assert torch.equal(same["separable_fraction"], torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="deviations"):
        M.online_metrics(mu, zero[..., :4], y)
    with pytest.raises(ValueError, match="empty"):
        M.online_metrics(torch.zeros(2, 4, 5, dtype=torch.float64), zero, y)
    with pytest.raises(ValueError, match="scale"):
        M.online_metrics(mu, zero, y, scale=0.0)


# ----------------------------------------------------------------------------- lazy xarray layer (dask, zarr)


def test_to_dataset_is_lazy_on_zarr_and_equals_the_kernel(gen, tmp_path, monkeypatch):
    """Kernel vs wrapper on a zarr store opened lazily: no kernel call until compute, then one per block."""
    import dask.array as da

    from lesde.metrics import dataset as wrapper

    sim = _sim_full(gen, P=6, T=4, dtype=torch.float64)
    sim.to_zarr(tmp_path / "sim.zarr", zarr_format=2)
    lazy = xr.open_zarr(tmp_path / "sim.zarr").chunk({"path": 2, "time": 2})
    calls = []
    kernel = wrapper.nc_metrics
    monkeypatch.setattr(wrapper, "nc_metrics", lambda *a, **k: calls.append(a[0].shape) or kernel(*a, **k))

    out = M.to_dataset(lazy, use_least_squares=True)
    assert calls == []  # nothing computed yet
    assert all(isinstance(out[n].data, da.Array) for n in out.data_vars)
    assert out["nc1"].chunks == ((2, 2, 2), (2, 2))
    got = out.compute()
    assert len(calls) == 6 and set(calls) == {(2, 2, 9, 5)}  # one call per (path, time) block, all metrics at once
    direct = M.nc_metrics(
        torch.from_numpy(sim["features"].values), torch.from_numpy(sim["label"].values), use_least_squares=True
    )
    assert set(got.data_vars) == set(direct)
    for name, value in direct.items():
        np.testing.assert_allclose(got[name].values, value.numpy(), rtol=1e-12, atol=1e-300, err_msg=name)
    assert got.attrs["metrics_source"] == "full" and got.attrs["dt"] == 0.01

    # save="means": class means and variances, chunked over path only; lazy too
    means = xr.Dataset(
        {
            "class_mean": (("path", "time", "class", "feature"), np.abs(sim["features"].values[:, :, :3])),
            "within_var": (("path", "time", "class"), np.ones((6, 4, 3))),
        },
        attrs={"samples_per_class": 3},
    ).chunk({"path": 3})
    out = M.to_dataset(means, names=["nc2", "cdnv"])
    assert list(out.data_vars) == ["equinorm_means", "equiangular_means", "maxangle_means", "etf_error", "cdnv"]
    assert isinstance(out["cdnv"].data, da.Array)
    direct = M.means_metrics(torch.from_numpy(means["class_mean"].values), torch.ones(6, 4, 3), [3, 3, 3])
    for name in out.data_vars:
        np.testing.assert_allclose(out[name].values, direct[name].numpy(), rtol=1e-12, err_msg=name)


def test_to_dataset_keeps_coordinates_and_time_description(gen):
    sim = _sim_full(gen)
    sim["time"].attrs.update(long_name="SDE time t", units="1")
    out = M.to_dataset(sim, names=["nc1"], papyan=True)
    assert out["time"].attrs["long_name"] == "SDE time t" and "units" not in out["path"].attrs
    direct = M.nc_metrics(
        torch.from_numpy(sim["features"].values), torch.from_numpy(sim["label"].values), names=["nc1"], papyan=True
    )
    np.testing.assert_array_equal(out["nc1"].values, direct["nc1"].numpy())
    with pytest.raises(ValueError, match="labels must cover every class"):  # checked now, not at compute time
        M.to_dataset(sim.assign_coords(label=("sample", np.array([0, 0, 0, 2, 2, 2, 2, 3, 3]))).chunk({"path": 1}))


# ------------------------------------------------------------------------------------ aliases, bad inputs


def test_papyan_aliases(gen):
    rng = np.random.default_rng(3)
    H, y, W, b = etf_problem(4, 6, [3, 3, 3, 3], rng, noise=0.3, w_noise=0.2)
    full = M.nc_metrics(t(H), t(y), t(W), t(b))
    assert M.ALIASES == {
        "nc2": ("equinorm_means", "equiangular_means", "maxangle_means", "etf_error"),
        "nc3": ("self_duality",),
        "nc4": ("ncc_mismatch",),
    }
    for alias, members in M.ALIASES.items():
        out = M.nc_metrics(t(H), t(y), t(W), t(b), names=[alias])
        assert tuple(out) == members
        for name in members:
            assert torch.equal(out[name], full[name]), name
    both = M.nc_metrics(t(H), t(y), t(W), names=["nc1", "nc2", "etf_error", "nc4"])
    assert list(both) == ["nc1", "equinorm_means", "equiangular_means", "maxangle_means", "etf_error", "ncc_mismatch"]
    assert list(M.means_metrics(t(H[None, :4]), torch.ones(1, 4), [3, 3, 3, 3], names="nc2")) == list(M.ALIASES["nc2"])
    with pytest.raises(ValueError, match="aliases nc2, nc3, nc4"):
        M.nc_metrics(t(H), t(y), names=["nc5"])
    with pytest.raises(ValueError, match="self_duality"):  # nc3 needs a classifier
        M.nc_metrics(t(H), t(y), names=["nc3"])


def test_nan_inf_and_float16_give_clear_errors(gen):
    from lesde import separability

    H = torch.randn(3, 8, 4, generator=gen, dtype=torch.float64)
    y = torch.arange(2).repeat_interleave(4)
    W = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    bad = H.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"features contains NaN or inf \(1 of 3 items"):
        M.nc_metrics(bad, y)
    bad[1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="features contains NaN or inf"):
        M.nc_metrics(bad, y)
    with pytest.raises(ValueError, match="features contains NaN or inf"):
        M.least_squares_classifier(bad, y)
    with pytest.raises(ValueError, match="features contains NaN or inf"):
        separability.separable(bad, y)
    with pytest.raises(ValueError, match="classifier contains NaN or inf"):
        M.nc_metrics(H, y, W * float("inf"))
    with pytest.raises(ValueError, match="bias contains NaN or inf"):
        M.nc_metrics(H, y, W, torch.tensor([0.0, float("nan")], dtype=torch.float64))
    mu, Z = H[:, :2], H - H.mean(-2, keepdim=True)
    with pytest.raises(ValueError, match="deviations contains NaN or inf"):
        M.online_metrics(mu, bad, y)
    with pytest.raises(ValueError, match="deviations contains NaN or inf"):
        M.online_metrics(mu, bad, y, scale=1.0)  # pre-normalised inputs: caught on the reduced statistics
    with pytest.raises(ValueError, match="class_means contains NaN or inf"):
        M.online_metrics(mu * float("inf"), Z, y)
    with pytest.raises(ValueError, match="within_var contains NaN or inf"):
        M.means_metrics(mu, torch.tensor([[1.0, float("nan")]] * 3, dtype=torch.float64), [4, 4])
    for low in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=f"features has dtype {low}; accepted dtypes: float32, float64"):
            M.nc_metrics(H.to(low), y)
        # a separability test only compares distances: half-precision features are tested in float32
        assert torch.equal(separability.separable(H.to(low), y), separability.separable(H.to(low).float(), y))
    with pytest.raises(TypeError, match="classifier has dtype torch.float16"):
        M.nc_metrics(H, y, W.half())
    # integer features are exact in float64 and accepted by both
    Hi = torch.randint(-5, 5, (8, 4), generator=gen)
    assert M.nc_metrics(Hi, y, names=["nc1"])["nc1"].dtype == torch.float64
    assert separability.separable(Hi, y).shape == (2, 2)


def test_metrics_and_separability_share_the_label_check_and_the_scale(gen):
    """The same bad labels fail with the same message in both; the same scale makes both answers scale-free."""
    from lesde import separability

    H = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
    for labels in (torch.tensor([0, 0, 1, 1, 3, 3]), torch.tensor([0, 0, 1, 1, 1]), torch.zeros(6, dtype=torch.long)):
        errors = []
        for fn in (M.nc_metrics, separability.separable, M.least_squares_classifier):
            with pytest.raises(ValueError) as info:
                fn(H, labels)
            errors.append(str(info.value))
        assert len(set(errors)) == 1, errors
    with pytest.raises(TypeError, match="labels must hold integers"):
        separability.separable(H, torch.zeros(6))
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    for scale in (1e-200, 1e200):
        torch.testing.assert_close(M.nc_metrics(H * scale, y), M.nc_metrics(H, y), rtol=1e-12, atol=0)
        assert torch.equal(separability.separable(H * scale, y), separability.separable(H, y))


def test_one_vs_rest_distance_batched_against_the_enumeration_reference(gen):
    """gnc2 and lesde.theory.closed_forms.one_vs_rest_distance are one solver: batched, certified, equal to the exact enumeration."""
    from lesde.theory.softmax_codes import one_vs_rest_distance

    codes = torch.randn(4, 5, 6, 3, generator=gen, dtype=torch.float64)  # (4, 5) batch of K=6 codes in R^3
    got = one_vs_rest_distance(codes, per_point=True)  # (4, 5, 6)
    assert got.shape == (4, 5, 6)
    for idx in [(0, 0), (1, 3), (3, 4), (2, 2)]:
        W = codes[idx].numpy()
        ref = [np_dist_to_hull(W[k], np.delete(W, k, axis=0)) for k in range(6)]
        np.testing.assert_allclose(got[idx], ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(one_vs_rest_distance(codes), got.min(-1))
    assert isinstance(one_vs_rest_distance(codes[0, 0]), float)
    unit = codes / codes.norm(dim=-1, keepdim=True)
    H = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    gnc2 = M.nc_metrics(H, torch.arange(12) % 6, codes, names=["gnc2"])["gnc2"]
    np.testing.assert_allclose(gnc2.numpy(), one_vs_rest_distance(unit), rtol=1e-12)


def test_classifier_batch_broadcasts_against_one_feature_set(gen):
    """A batch of classifiers (5, K, m) against one feature set (N, m): every metric, as a loop over classifiers."""
    H = torch.randn(12, 4, generator=gen, dtype=torch.float64)
    y = torch.arange(3).repeat_interleave(4)
    W = torch.randn(5, 3, 4, generator=gen, dtype=torch.float64)
    b = torch.randn(3, generator=gen, dtype=torch.float64)
    batched = M.nc_metrics(H, y, W, b)
    for i in range(5):
        one = M.nc_metrics(H, y, W[i], b)
        for name, value in one.items():
            torch.testing.assert_close(batched[name][i], value, rtol=1e-12, atol=1e-14, msg=name)


def test_nc1_fast_and_eigen_paths_agree(gen, monkeypatch):
    """nc1 takes one small inverse where the means' Gram is well conditioned and the eigen path elsewhere; in one
    batch mixing both (random, two coincident means, rank m < K-1) every item equals the eigen path and numpy."""
    from lesde.metrics import kernels
    from lesde.metrics import statistics as _stats

    K, n, m = 4, 5, 6
    y = torch.arange(K).repeat_interleave(n)
    H = (
        torch.randn(6, K * n, m, generator=gen, dtype=torch.float64)
        + 3 * torch.randn(6, K, m, generator=gen, dtype=torch.float64)[:, y]
    )
    H[1, y == 1] += H[1, y == 0].mean(0) - H[1, y == 1].mean(0)  # class 1's mean on class 0's: rank K - 2
    H[2, :, 2:] = 0.0  # m_eff = 2 < K - 1
    eigen_items = []
    eigen = _stats._nc1_eigh
    monkeypatch.setattr(_stats, "_nc1_eigh", lambda g, *a: eigen_items.append(g.shape[0]) or eigen(g, *a))
    got = M.nc_metrics(H, y, names=["nc1"])["nc1"]
    assert eigen_items == [2]  # items 1 and 2; the other four took the inverse
    floor = kernels._floor(K * n, m, torch.float64)
    stats = _stats.FullStats(H / H.abs().amax((-2, -1), keepdim=True), y, torch.bincount(y).double(), floor, floor)
    eig, _ = _stats._nc1_eigh(stats.gram, stats.proj.mT @ stats.proj / (K * n), m, stats.floor)
    torch.testing.assert_close(got, eig / K, rtol=1e-10, atol=0)
    for i in (0, 3, 4, 5):
        _, _, _, Sw, Sb, _ = np_stats(H[i].numpy(), y.numpy())
        evals, evecs = np.linalg.eigh(Sb)
        pinv = evecs[:, -(K - 1) :] @ np.diag(1 / evals[-(K - 1) :]) @ evecs[:, -(K - 1) :].T
        assert got[i].item() == pytest.approx(np.trace(Sw @ pinv) / K, rel=1e-9)


def test_gnc_paper_variants_on_the_sphere():
    """Unit features spread around unit class directions, unit classifier rows along them: the paper's GNC3
    (1 - w_k^T mu_k, mu_k of unit features, so ||mu_k|| < 1) exceeds lesde's default cosine gnc3, which is 0 here;
    the paper's GNC1 uses the uncentred Sigma_B (numpy pinv reference) and differs from nc1's centred one."""
    rng = np.random.default_rng(3)
    K, m, n = 4, 6, 5
    E = np.eye(m)[:K] + 0.5  # class directions, uncentred (their mean is far from 0)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    y = np.repeat(np.arange(K), n)
    noise = 0.3 * rng.standard_normal((K * n, m))
    noise -= noise.reshape(K, n, m).mean(1).repeat(n, 0)  # class means stay along E
    H = E[y] + noise
    H /= np.linalg.norm(H, axis=1, keepdims=True)
    mu = np.stack([H[y == k].mean(0) for k in range(K)])
    W = mu / np.linalg.norm(mu, axis=1, keepdims=True)
    out = M.nc_metrics(t(H), t(y), t(W), names=["gnc3", "gnc3_unnormalized", "gnc1_uncentered", "nc1"])
    assert out["gnc3"].item() == pytest.approx(0.0, abs=1e-12)
    assert out["gnc3_unnormalized"].item() == pytest.approx(np.mean(1 - np.linalg.norm(mu, axis=1)), rel=1e-12)
    assert out["gnc3_unnormalized"].item() > 0.01
    Sw = sum(np.outer(h - mu[k], h - mu[k]) for h, k in zip(H, y)) / len(y)
    ref = np.trace(Sw @ np.linalg.pinv(mu.T @ mu / K, hermitian=True)) / K
    assert out["gnc1_uncentered"].item() == pytest.approx(ref, rel=1e-10)
    assert abs(out["gnc1_uncentered"].item() - out["nc1"].item()) > 0.01 * out["nc1"].item()  # 1.161 vs 1.112
    assert set(M.SEED_VARIANTS) == {"gnc3_unnormalized", "gnc1_uncentered"}
