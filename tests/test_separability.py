"""Separability tests: brute-force loops, Cover's counting theorem, scale invariance, Wilson intervals."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.stats import norm

from lesde.separability import pair_stats, separable, separable_from_dataset, summary, wilson_interval


def _brute(x: np.ndarray, labels: np.ndarray, delta: float) -> np.ndarray:
    """Python-loop ncm/margin test on one item: x (N, m)."""
    K = labels.max() + 1
    mu = np.stack([x[labels == k].mean(0) for k in range(K)])
    out = np.ones((K, K), dtype=bool)
    for k in range(K):
        for l in range(K):
            if k == l:
                continue
            ok = True
            for i in np.flatnonzero(labels == k):
                dk = np.sum((x[i] - mu[k]) ** 2)
                dl = np.sum((x[i] - mu[l]) ** 2)
                ok &= dl - dk > delta * np.sum((mu[k] - mu[l]) ** 2)
            out[k, l] &= ok
            out[l, k] &= ok
    return out


def _clouds(gen, batch, counts, m, spread):
    """Class clouds around random centres; spread controls how often pairs overlap."""
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    centres = torch.randn(*batch, len(counts), m, generator=gen, dtype=torch.float64)
    noise = spread * torch.randn(*batch, len(labels), m, generator=gen, dtype=torch.float64)
    return centres[..., labels, :] + noise, labels


@pytest.mark.parametrize("method,delta", [("ncm", 0.0), ("margin", 0.0), ("margin", 0.2), ("margin", 0.5)])
def test_ncm_and_margin_match_brute_force(gen, device, method, delta):
    x, labels = _clouds(gen, (3, 4), [5, 3, 6, 4], m=3, spread=0.45)
    sep = separable(x.to(device), labels.to(device), method=method, margin=delta)
    assert sep.shape == (3, 4, 4, 4) and sep.dtype == torch.bool and sep.device.type == device.type
    expected = np.stack([_brute(xi, labels.numpy(), delta) for xi in x.reshape(-1, *x.shape[-2:]).numpy()])
    np.testing.assert_array_equal(sep.cpu().numpy().reshape(expected.shape), expected)
    # the random cases must exercise both outcomes, or the comparison proves little
    off = expected[:, ~np.eye(4, dtype=bool)]
    assert off.any() and (~off).any()


def test_margin_is_monotone_and_zero_margin_is_ncm(gen):
    x, labels = _clouds(gen, (20,), [6, 6, 6], m=2, spread=0.3)
    ncm = separable(x, labels)
    np.testing.assert_array_equal(separable(x, labels, method="margin", margin=0.0).numpy(), ncm.numpy())
    previous = ncm
    for delta in (0.2, 0.5, 1.0, 2.0):
        current = separable(x, labels, method="margin", margin=delta)
        assert not (current & ~previous).any()  # a larger margin never creates separability
        previous = current


def test_scale_free_at_1e200(gen):
    x, labels = _clouds(gen, (6,), [4, 4, 4], m=3, spread=0.5)
    offset = torch.randn(3, generator=gen, dtype=torch.float64)
    for method, delta in (("ncm", 0.0), ("margin", 0.4), ("linear", 0.0)):
        ref = separable(x, labels, method=method, margin=delta)
        big = separable((x + offset) * 1e200, labels, method=method, margin=delta)
        tiny = separable(x * 1e-200, labels, method=method, margin=delta)
        np.testing.assert_array_equal(big.numpy(), ref.numpy())
        np.testing.assert_array_equal(tiny.numpy(), ref.numpy())
    with pytest.raises(ValueError, match="NaN or inf"):
        separable(x * 1e300 * 1e300, labels)


def _cover(P: int, dim: int) -> int:
    """Cover's count of dichotomies of P points in general position separable by hyperplanes through 0 in R^dim."""
    return 2 * sum(math.comb(P - 1, k) for k in range(dim))


@pytest.mark.parametrize("P,m", [(8, 2), (7, 3)])
def test_linear_matches_cover_count(gen, P, m):
    # affine hyperplanes in R^m = hyperplanes through 0 in R^(m+1) for the lifted points [x, 1]
    pts = torch.randn(P, m, generator=gen, dtype=torch.float64)
    n_sep = 0
    for bits in itertools.product([0, 1], repeat=P):
        if len(set(bits)) < 2:
            continue  # both classes must be present; the two trivial dichotomies are counted below
        order = np.argsort(bits, kind="stable")
        labels = torch.tensor(sorted(bits))
        n_sep += bool(separable(pts[order], labels, method="linear")[0, 1])
    assert n_sep + 2 == _cover(P, m + 1)


def test_linear_cover_fraction_random_points(gen):
    # P = 6 random points in m = 2 dims, random labelling: P(separable) = C(6, 3) / 2^6 = 32 / 64
    P, m, trials = 6, 2, 400
    hits = 0
    for _ in range(trials):
        pts = torch.randn(P, m, generator=gen, dtype=torch.float64)
        bits = torch.randint(0, 2, (P,), generator=gen)
        if bits.min() == bits.max():
            hits += 1  # a one-class labelling is a (trivially) separable dichotomy
            continue
        order = torch.argsort(bits, stable=True)
        hits += bool(separable(pts[order], bits[order], method="linear")[0, 1])
    p = _cover(P, m + 1) / 2**P
    # binomial standard error sqrt(p(1-p)/400) = 0.025: allow 4 standard errors
    assert abs(hits / trials - p) < 4 * math.sqrt(p * (1 - p) / trials)


def test_linear_cover_capacity_and_xor(gen):
    n = 3
    labels = torch.tensor([0] * n + [1] * n)
    # 2n points in general position in m >= 2n - 1 dims: every labelling is separable
    pts = torch.randn(40, 2 * n, 2 * n - 1, generator=gen, dtype=torch.float64)
    assert separable(pts, labels, method="linear")[:, 0, 1].all()
    # XOR in the plane is not linearly separable, and not ncm separable either
    xor = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    two = torch.tensor([0, 0, 1, 1])
    assert not separable(xor, two, method="linear")[0, 1]
    # a linearly separable (by x = 1) but not ncm-separable pair: an outlier drags class 0's mean upwards
    pts2 = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.5, 30.0], [2.0, 0.0], [2.0, 1.0], [2.0, -1.0]])
    lab2 = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    assert not separable(pts2, lab2)[0, 1]
    assert separable(pts2, lab2, method="linear")[0, 1]


def test_linear_agrees_with_ncm_implication_and_shape(gen, device):
    x, labels = _clouds(gen, (2, 3), [4, 4, 4], m=2, spread=0.6)
    lin = separable(x.to(device), labels.to(device), method="linear")
    ncm = separable(x.to(device), labels.to(device))
    assert lin.shape == (2, 3, 3, 3) and lin.device.type == device.type
    assert not (ncm & ~lin).any()
    assert torch.equal(lin, lin.transpose(-1, -2)) and lin.diagonal(dim1=-2, dim2=-1).all()


def test_pair_stats_reduces_upper_triangle(gen):
    x, labels = _clouds(gen, (50,), [4, 4, 4, 4], m=2, spread=0.4)
    sep = separable(x, labels).numpy()
    frac, all_sep = pair_stats(x, labels)
    iu = np.triu_indices(4, 1)
    np.testing.assert_allclose(frac.numpy(), sep[:, iu[0], iu[1]].mean(-1), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(all_sep.numpy(), sep[:, iu[0], iu[1]].all(-1))
    assert 0 < all_sep.sum() < 50


def test_wilson_interval_against_hand_formula():
    s = torch.tensor([0.0, 3.0, 17.0, 40.0], dtype=torch.float64)
    n = torch.tensor([40.0, 40.0, 40.0, 40.0], dtype=torch.float64)
    for conf in (0.9, 0.95, 0.99):
        lo, hi = wilson_interval(s, n, conf)
        z = norm.ppf(0.5 + conf / 2)
        for si, ni, l, h in zip(s.numpy(), n.numpy(), lo.numpy(), hi.numpy()):
            p = si / ni
            centre = (p + z**2 / (2 * ni)) / (1 + z**2 / ni)
            half = z / (1 + z**2 / ni) * math.sqrt(p * (1 - p) / ni + z**2 / (4 * ni**2))
            assert l == pytest.approx(max(centre - half, 0.0), abs=1e-14)
            assert h == pytest.approx(min(centre + half, 1.0), abs=1e-14)
    lo, hi = wilson_interval(torch.tensor([0.0, 40.0]), 40)
    assert lo[0] == 0.0 and hi[1] == 1.0  # exact, not up to rounding
    lo, hi = wilson_interval(0, 0)
    assert float(lo) == 0.0 and float(hi) == 1.0


def test_summary_tensor_and_dataarray(gen, tmp_path):
    x, labels = _clouds(gen, (30, 5), [4, 4, 4], m=2, spread=0.45)  # (path, time, N, m)
    sep = separable(x, labels)
    stats = summary(sep)
    iu = np.triu_indices(3, 1)
    pairs = sep.numpy()[..., iu[0], iu[1]]  # (30, 5, 3)
    np.testing.assert_allclose(stats["separable_fraction"].numpy(), pairs.mean((0, 2)), atol=1e-15)
    np.testing.assert_allclose(stats["p_all_separable"].numpy(), pairs.all(-1).mean(0), atol=1e-15)
    lo, hi = wilson_interval(torch.from_numpy(pairs.all(-1).sum(0)), 30)
    np.testing.assert_allclose(stats["p_all_separable_lower"].numpy(), lo.numpy())
    np.testing.assert_allclose(stats["p_all_separable_upper"].numpy(), hi.numpy())
    lo, hi = wilson_interval(torch.from_numpy(pairs.sum((0, 2))), 90)
    np.testing.assert_allclose(stats["separable_fraction_lower"].numpy(), lo.numpy())
    assert (stats["p_all_separable_lower"] <= stats["p_all_separable"]).all()

    da = xr.DataArray(sep.numpy(), dims=("path", "time", "class", "class_other"), coords={"time": np.linspace(0, 1, 5)})
    ds = summary(da)
    np.testing.assert_allclose(ds["separable_fraction"].values, stats["separable_fraction"].numpy())
    assert ds["p_all_separable"].dims == ("time",) and ds["p_all_separable"].attrs["units"] == "1"
    ds.to_netcdf(tmp_path / "s.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "s.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)


def test_separable_from_dataset(gen):
    x, labels = _clouds(gen, (4, 3), [3, 5], m=2, spread=0.5)
    ds = xr.Dataset(
        {"features": (("path", "time", "sample", "feature"), x.numpy())},
        coords={"label": ("sample", labels.numpy()), "time": [0.0, 0.5, 1.0], "path": np.arange(4)},
    )
    da = separable_from_dataset(ds.transpose("time", "sample", "path", "feature"))
    assert da.dims == ("path", "time", "class", "class_other")
    np.testing.assert_array_equal(da.values, separable(x, labels).numpy())
    with pytest.raises(ValueError, match="save='full'"):
        separable_from_dataset(ds.drop_vars("features"))


def test_errors_name_the_parameter(gen):
    x, labels = _clouds(gen, (2,), [3, 3], m=2, spread=0.1)
    with pytest.raises(ValueError, match="method"):
        separable(x, labels, method="svm")
    with pytest.raises(ValueError, match="margin"):
        separable(x, labels, method="ncm", margin=0.5)
    with pytest.raises(ValueError, match="margin"):
        separable(x, labels, method="margin", margin=-1.0)
    with pytest.raises(ValueError, match="labels"):
        separable(x, torch.tensor([0, 0, 0, 2, 2, 2]))
