"""Neural-collapse (NC) metrics, batched over any leading dims (path, time, run), and their xarray wrapper.

Two layers, xskillscore style: tensor kernels (:func:`nc_metrics`, :func:`means_metrics`,
:func:`least_squares_classifier`) that take ``(..., N, m)`` features and return one ``(...)`` tensor per metric,
on the input's device with no Python loop over the leading dims; and :func:`to_dataset`, which turns a simulation
Dataset (``save="full"`` or ``save="means"``) into a metrics Dataset over ``(path, time)``.

Notation (DESIGN.md section 5): K classes, class k holds n_k samples, N = sum n_k, pi_k = n_k / N; class means
mu_k; mu_G = the mean of the K class means (the unweighted mean, as in the Papyan code); centred means
Mbar = [mu_k - mu_G] (K, m); classifier W (K, m) with rows w_k and bias b (K,).

.. math::

    \\Sigma_W = \\frac{1}{N} \\sum_i (h_i - \\mu_{y_i})(h_i - \\mu_{y_i})^\\top, \\qquad
    \\Sigma_B = \\frac{1}{K} \\sum_k (\\mu_k - \\mu_G)(\\mu_k - \\mu_G)^\\top .

=========================  ===================================================================================
name                       definition
=========================  ===================================================================================
nc1                        tr(Sigma_W Sigma_B^+) / K; ``papyan=True`` drops the / K (the Papyan et al. code)
nc1_quotient               tr(Sigma_W) / tr(Sigma_B)  (Tirer et al.)
equinorm_means             std / mean of ||mu_k - mu_G|| over k (std with Bessel's correction, as the Papyan code)
equinorm_classifier        std / mean of ||w_k||
equiangular_means          std over pairs k < l of cos(mu_k - mu_G, mu_l - mu_G) (Bessel; 0 when K = 2)
equiangular_classifier     std over pairs k < l of cos(w_k, w_l)
maxangle_means             mean over k != l of |cos(mu_k - mu_G, mu_l - mu_G) + 1/(K-1)| (Papyan "coherence")
maxangle_classifier        mean over k != l of |cos(w_k, w_l) + 1/(K-1)|
mean_cosine                mean over k != l of cos(mu_k - mu_G, mu_l - mu_G)  (-1/(K-1) at a simplex ETF)
etf_error                  || G / ||G||_F - (I - 11^T/K) / sqrt(K-1) ||_F, G = Mbar Mbar^T  (Zhu et al.)
etf_error_classifier       the same with G = W W^T
self_duality               || W / ||W||_F - Mbar / ||Mbar||_F ||_F^2  (squared, as the Papyan code)
ncc_mismatch               fraction of samples where argmax_k (W h + b)_k != argmin_k ||h - mu_k||  (NC4)
cdnv                       mean over pairs k < l of (Var_k + Var_l) / (2 ||mu_k - mu_l||^2),
                           Var_k = mean over class k of ||h_i - mu_k||^2  (Galanti et al.)
nc_margin                  min_i (z_{i, y_i} - max_{j != y_i} z_{ij}), z = W h + b  (seed 001's q_min, plus bias)
gnc2                       min_k dist(w_k, conv{w_j : j != k}) of the row-normalised classifier (seed 004)
gnc3                       (1/K) sum_k (1 - cos(w_k, mu_k)), mu_k the raw (uncentred) class means (seed 004)
=========================  ===================================================================================

Decisions where the sources are silent (what a researcher comparing with published curves would expect):

* **Imbalanced classes.** Sigma_W averages over samples (each sample weighs 1/N); Sigma_B and mu_G weigh
  classes equally (1/K), as in the Papyan code. For balanced classes both are the textbook definitions.
* **Pseudo-inverse.** Sigma_B^+ uses the top K-1 eigenpairs of Sigma_B, obtained from ``torch.linalg.eigh`` of the
  K x K Gram Mbar Mbar^T (same non-zero spectrum, times K; cheaper than the m x m matrix when m > K), so
  tr(Sigma_W Sigma_B^+) = K sum_j v_j^T (Mbar Sigma_W Mbar^T) v_j / e_j^2. Of those eigenpairs, ones with
  e_j <= max(K, m) eps e_max (the ``torch.linalg.pinv`` rule) or below the noise floor (next point) are dropped.
* **Scale.** Features are divided by their largest absolute entry per item before anything is squared (and the
  classifier by its own), so features of magnitude 1e20 in float32 or 1e200 in float64 give the same answer as
  the rescaled state instead of overflowing. Every metric except ``nc_margin`` is scale-free; ``nc_margin`` is
  multiplied back by the two scales.
* **Noise floor.** A squared scatter (a trace, a squared norm) at or below
  ``floor = m * (4 sqrt(N) eps)^2`` in those normalised units (eps of the dtype; ``m * (4 eps)^2`` for the
  classifier) is round-off from centring, not signal, and is treated as exactly zero.
* **Degenerate inputs never give NaN or inf.** With ``R = 1 / eps`` of the dtype (4.5e15 for float64, 8.4e6 for
  float32; see :func:`degenerate_ratio`), every ratio of scatters (nc1, nc1_quotient, cdnv pairs) uses
  0 / anything -> 0 (collapsed within-class scatter: perfect NC1), positive / 0 -> R (means coincide: the worst
  case), and is clipped to at most R. A zero vector has unit direction 0, so its cosines are 0: identical class
  means give equinorm 0, equiangular 0, maxangle 1/(K-1), mean_cosine 0, etf_error 1, and self_duality
  ||W / ||W||_F||^2 = 1; a zero classifier likewise. ``gnc2`` uses the rows normalised to the unit sphere (the
  oblique manifold of seed 004), a zero row staying zero.
* **Classifier metrics** need ``classifier`` (``bias`` defaults to 0), or ``use_least_squares=True``, where the
  least-squares classifier W_LS, b_LS of the same features stands in (:func:`least_squares_classifier`).
  ``nc_margin`` and ``ncc_mismatch`` include the bias in the logits (seed 001 has none; with b = 0 they agree).
* **gnc2** solves the K small simplex-constrained QPs min_lambda ||w_k - sum_j lambda_j w_j||^2 by accelerated
  projected gradient (batched, fixed iteration count), then polishes each with the exact KKT solve on the
  detected support; accurate to ~1e-10 in float64 on the configurations tested.

Example
-------
>>> import torch, lesde.metrics as M
>>> labels = torch.arange(3).repeat_interleave(4)
>>> H = torch.randn(5, 12, 8, dtype=torch.float64)          # 5 paths, N = 12 samples, m = 8
>>> out = M.nc_metrics(H, labels, use_least_squares=True)
>>> out["nc1"].shape
torch.Size([5])
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any

import numpy as np
import torch
import xarray as xr

from ._attrs import finalize
from ._validate import check_positive_float

__all__ = [
    "ONLINE_METRICS",
    "MEANS_METRICS",
    "METRIC_NAMES",
    "nc_metrics",
    "online_metrics",
    "means_metrics",
    "least_squares_classifier",
    "degenerate_ratio",
    "to_dataset",
]

# iterations of the accelerated projected gradient in gnc2 (the KKT polish makes the answer exact afterwards)
_GNC2_ITERS = 300


def degenerate_ratio(dtype: torch.dtype) -> float:
    """Value of a positive scatter divided by a zero one (and the cap of every scatter ratio): ``1 / eps``.

    Beyond this ratio the denominator is below the dtype's resolution relative to the numerator, so the dtype
    cannot tell it from zero; a finite cap keeps means over paths and log-scale plots usable.

    >>> degenerate_ratio(torch.float64)
    4503599627370496.0
    """
    return 1.0 / torch.finfo(dtype).eps


# ----------------------------------------------------------------------------------------------- helpers


def _amax_scale(x: torch.Tensor) -> torch.Tensor:
    """Largest |entry| over the last two dims, 1 where everything is zero (so dividing is a no-op). (...)."""
    # max(amax, -amin) reads x twice but writes nothing: x.abs() would allocate a full-size copy
    s = torch.maximum(x.amax(dim=(-2, -1)), -x.amin(dim=(-2, -1)))
    return torch.where(s > 0, s, torch.ones_like(s))


def _unit_rows(v: torch.Tensor, floor: float) -> torch.Tensor:
    """Rows divided by their norm; rows with squared norm <= floor become exactly 0 (their cosines are 0)."""
    sq = (v * v).sum(-1, keepdim=True)
    ok = sq > floor
    return torch.where(ok, v / torch.where(ok, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(v))


def _unit_matrix(v: torch.Tensor, floor: float) -> torch.Tensor:
    """v / ||v||_F over the last two dims; 0 where ||v||_F^2 <= floor."""
    sq = (v * v).sum(dim=(-2, -1), keepdim=True)
    ok = sq > floor
    return torch.where(ok, v / torch.where(ok, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(v))


def _safe_ratio(num: torch.Tensor, den: torch.Tensor, floor: float, cap: float) -> torch.Tensor:
    """num / den for non-negative scatters: 0 when num <= floor, ``cap`` when only den <= floor, at most cap."""
    den_zero = den <= floor
    ratio = (num / torch.where(den_zero, torch.ones_like(den), den)).clamp(max=cap)
    out = torch.where(den_zero, torch.full_like(ratio, cap), ratio)
    return torch.where(num <= floor, torch.zeros_like(out), out)


def _cv(norms: torch.Tensor, floor: float) -> torch.Tensor:
    """Coefficient of variation std/mean over the last dim (Bessel std); 0 when the mean norm is ~0."""
    mean = norms.mean(-1)
    std = norms.std(-1, correction=1) if norms.shape[-1] > 1 else torch.zeros_like(mean)
    ok = mean * mean > floor
    return torch.where(ok, std / torch.where(ok, mean, torch.ones_like(mean)), torch.zeros_like(mean))


def _pair_index(K: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.triu_indices(K, K, offset=1, device=device).unbind(0)


def _cosines(unit: torch.Tensor) -> torch.Tensor:
    """Cosine matrix (..., K, K) of unit rows (zero rows give zero cosines)."""
    return unit @ unit.mT


def _equiangular(unit: torch.Tensor) -> torch.Tensor:
    K = unit.shape[-2]
    i, j = _pair_index(K, unit.device)
    cos = _cosines(unit)[..., i, j]  # (..., K(K-1)/2)
    if cos.shape[-1] < 2:
        return torch.zeros(cos.shape[:-1], dtype=cos.dtype, device=cos.device)
    return cos.std(-1, correction=1)


def _maxangle(unit: torch.Tensor) -> torch.Tensor:
    K = unit.shape[-2]
    i, j = _pair_index(K, unit.device)
    # |cos + 1/(K-1)| is symmetric, so the mean over k < l equals the mean over k != l
    return (_cosines(unit)[..., i, j] + 1.0 / (K - 1)).abs().mean(-1)


def _mean_cosine(unit: torch.Tensor) -> torch.Tensor:
    K = unit.shape[-2]
    i, j = _pair_index(K, unit.device)
    return _cosines(unit)[..., i, j].mean(-1)


def _etf_error(vectors: torch.Tensor, floor: float) -> torch.Tensor:
    K = vectors.shape[-2]
    gram = vectors @ vectors.mT  # (..., K, K)
    trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    fro = torch.linalg.matrix_norm(gram)[..., None, None]
    ok = trace > K * floor
    g = torch.where(ok, gram / torch.where(ok, fro, torch.ones_like(fro)), torch.zeros_like(gram))
    eye = torch.eye(K, dtype=vectors.dtype, device=vectors.device)
    etf = (eye - 1.0 / K) / math.sqrt(K - 1)
    return torch.linalg.matrix_norm(g - etf)


def _project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each last-dim vector onto the probability simplex (Duchi et al. 2008)."""
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1.0
    ind = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    rho = (u - css / ind > 0).sum(-1, keepdim=True).clamp(min=1)  # the condition holds on a prefix
    theta = css.gather(-1, rho - 1) / rho.to(v.dtype)
    return (v - theta).clamp(min=0)


def _one_vs_rest_distance(unit: torch.Tensor) -> torch.Tensor:
    """min_k dist(w_k, conv{w_j, j != k}) for rows ``unit`` (..., K, m), batched QPs on the Gram matrix."""
    K = unit.shape[-2]
    dev, dt = unit.device, unit.dtype
    gram = unit @ unit.mT  # (..., K, K)
    others = torch.stack([torch.cat([torch.arange(k), torch.arange(k + 1, K)]) for k in range(K)]).to(dev)
    A = gram[..., others[:, :, None], others[:, None, :]]  # (..., K, K-1, K-1)  Gram of the rest
    g = gram[..., torch.arange(K, device=dev)[:, None], others]  # (..., K, K-1)  <w_k, w_j>
    c = gram.diagonal(dim1=-2, dim2=-1)  # (..., K)  ||w_k||^2

    def objective(lam: torch.Tensor) -> torch.Tensor:  # ||w_k - sum_j lam_j w_j||^2
        return ((A @ lam[..., None])[..., 0] * lam).sum(-1) - 2 * (g * lam).sum(-1) + c

    # FISTA with step 1/L, L = 2 * Gershgorin bound on lambda_max(A)
    lip = 2 * A.abs().sum(-1).amax(-1, keepdim=True).clamp(min=torch.finfo(dt).tiny)  # (..., K, 1)
    lam = torch.full(g.shape, 1.0 / (K - 1), dtype=dt, device=dev)
    y, t = lam, 1.0
    for _ in range(_GNC2_ITERS):
        grad = 2 * ((A @ y[..., None])[..., 0] - g)
        new = _project_simplex(y - grad / lip)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = new + ((t - 1) / t_new) * (new - lam)
        lam, t = new, t_new
    best = objective(lam)

    # polish: on the detected support S, solve the equality-constrained KKT system exactly
    #   [2 A_SS 1; 1^T 0] [lam_S; nu] = [2 g_S; 1]; keep it where it is feasible and no worse
    n = K - 1
    eye = torch.eye(n, dtype=dt, device=dev)
    for tol in (1e-3, 1e-6, 1e-9):
        support = lam > tol * lam.amax(-1, keepdim=True)  # (..., K, n)
        both = support[..., :, None] & support[..., None, :]
        kkt = torch.zeros((*A.shape[:-2], n + 1, n + 1), dtype=dt, device=dev)
        kkt[..., :n, :n] = torch.where(both, 2 * A, eye.expand_as(A))
        kkt[..., :n, n] = support.to(dt)
        kkt[..., n, :n] = support.to(dt)
        rhs = torch.cat([torch.where(support, 2 * g, torch.zeros_like(g)), torch.ones_like(g[..., :1])], -1)
        sol, info = torch.linalg.solve_ex(kkt, rhs[..., None])
        cand = torch.where(support, sol[..., :n, 0], torch.zeros_like(g))
        finite = torch.isfinite(cand).all(-1) & (info == 0)
        feasible = finite & (cand >= -1e-12).all(-1)
        cand = torch.where(feasible[..., None], cand.clamp(min=0), lam)
        cand = cand / cand.sum(-1, keepdim=True)
        value = objective(cand)
        better = feasible & (value < best)
        best = torch.where(better, value, best)
    return best.clamp(min=0).sqrt().amin(-1)


# ------------------------------------------------------------------------------------------- statistics


class _MeansStats:
    """What the class-mean metrics need, in scale-normalised units; shared by nc_metrics and means_metrics."""

    def __init__(self, means: torch.Tensor, class_var: torch.Tensor, counts: torch.Tensor, floor: float):
        self.means = means  # (..., K, m)
        self.class_var = class_var  # (..., K)
        self.counts = counts  # (K,)
        self.K = means.shape[-2]
        self.floor = floor
        self.cap = degenerate_ratio(means.dtype)

    @cached_property
    def centred(self) -> torch.Tensor:  # (..., K, m)
        return self.means - self.means.mean(-2, keepdim=True)

    @cached_property
    def unit_centred(self) -> torch.Tensor:  # (..., K, m)
        return _unit_rows(self.centred, self.floor)

    @cached_property
    def tr_within(self) -> torch.Tensor:  # (...)  tr(Sigma_W) = sum_k n_k Var_k / N
        return (self.class_var * self.counts).sum(-1) / self.counts.sum()

    @cached_property
    def tr_between(self) -> torch.Tensor:  # (...)  tr(Sigma_B)
        return (self.centred * self.centred).sum((-2, -1)) / self.K


def _class_split(
    feats: torch.Tensor, labels: torch.Tensor, onehot: torch.Tensor, counts: torch.Tensor, inplace: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means (..., K, m) and deviations h_i - mu_{y_i} (..., N, m) of normalised features.

    The one computation of both for :func:`nc_metrics` and ``simulate(save="metrics")``: where the means dwarf
    the spread, the deviations are a cancellation and their rounding depends on how the class sums are ordered,
    so the two must sum the same way to agree beyond the dtype's eps (sweeps compare them to 1e-12).
    ``inplace=True`` overwrites ``feats`` with the deviations (same values, one full-size buffer fewer).
    """
    K, (N, m) = onehot.shape[-1], feats.shape[-2:]
    inplace = inplace and feats.is_contiguous()  # (a permuted state: reshape below would copy, not view)
    if N % K == 0 and torch.equal(labels, torch.arange(K, device=labels.device).repeat_interleave(N // K)):
        # samples ordered by class in equal blocks (every balanced LESDE): block sums and a broadcast, measured
        # 4x faster than the one-hot product and with no gathered copy of the means
        blocks = feats.reshape(*feats.shape[:-2], K, N // K, m)  # (..., K, n, m)
        means = blocks.sum(-2) / counts[:, None]  # (..., K, m)
        blocks = blocks.sub_(means[..., None, :]) if inplace else blocks - means[..., None, :]
        return means, blocks.reshape(feats.shape)
    means = (onehot.mT @ feats) / counts[:, None]  # (..., K, m)
    # index_select, not means[..., labels, :]: the same gather, measured 12x faster on CPU
    own = means.index_select(-2, labels)  # (..., N, m)
    return means, feats.sub_(own) if inplace else feats - own


def _class_var(dev: torch.Tensor, onehot: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Var_k = mean over class k of ||h_i - mu_k||^2, (..., K); one fused reduction, no (..., N, m) temporary."""
    return (torch.linalg.vector_norm(dev, dim=-1).square() @ onehot) / counts


class _SampleStats(_MeansStats):
    """Adds the within-class deviations h_i - mu_{y_i} (..., N, m), in the same normalised units."""

    def __init__(self, means: torch.Tensor, dev: torch.Tensor, class_var: torch.Tensor, counts: torch.Tensor, floor):
        super().__init__(means, class_var, counts, floor)
        self.dev = dev  # (..., N, m)

    @cached_property
    def proj(self) -> torch.Tensor:  # (..., N, K)  (h_i - mu_{y_i}) . (mu_k - mu_G)
        # shared by nc1 (Mbar Sigma_W Mbar^T = P^T P / N) and the ncm test of online_metrics; formed as
        # (Mbar Z^T)^T, a (K, m) x (m, N) product, measured 3x faster on CPU than Z Mbar^T for N >> K
        return (self.centred @ self.dev.mT).mT


class _FullStats(_SampleStats):
    """Adds the per-sample quantities and the classifier for :func:`nc_metrics`."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor, floor: float, w_floor: float):
        K = counts.shape[0]
        self.feats = feats  # (..., N, m), normalised
        self.labels = labels  # (N,)
        self.onehot = torch.nn.functional.one_hot(labels, K).to(feats.dtype)  # (N, K)
        means, self.dev = _class_split(feats, labels, self.onehot, counts)
        class_var = _class_var(self.dev, self.onehot, counts)  # (..., K)
        super().__init__(means, self.dev, class_var, counts, floor)
        self.w_floor = w_floor
        self.W: torch.Tensor | None = None  # (..., K, m), normalised
        self.b: torch.Tensor | None = None  # (..., K), in the normalised logit units
        self.logit_scale: torch.Tensor | None = None  # (...)

    def set_classifier(self, W: torch.Tensor, b: torch.Tensor, feat_scale: torch.Tensor) -> None:
        w_scale = _amax_scale(W)
        self.W = W / w_scale[..., None, None]
        self.logit_scale = (w_scale * feat_scale).clamp(min=torch.finfo(W.dtype).tiny)
        self.b = b / self.logit_scale[..., None]

    @cached_property
    def logits(self) -> torch.Tensor:  # (..., N, K)
        return self.feats @ self.W.mT + self.b[..., None, :]

    @cached_property
    def unit_W(self) -> torch.Tensor:
        return _unit_rows(self.W, self.w_floor)


# --------------------------------------------------------------------------------------- metric kernels


def _nc1_papyan(s: _SampleStats) -> torch.Tensor:
    """tr(Sigma_W Sigma_B^+) via the K x K Gram of the centred means (see the module docstring)."""
    K, N, m = s.K, s.dev.shape[-2], s.dev.shape[-1]
    Mc = s.centred  # (..., K, m)
    evals, evecs = torch.linalg.eigh(Mc @ Mc.mT)  # ascending; (..., K), (..., K, K)
    evals, evecs = evals[..., 1:], evecs[..., 1:]  # top K-1 eigenpairs
    P = s.proj  # (..., N, K)  projections of the within-class deviations
    A = P.mT @ P / N  # (..., K, K)  = Mbar Sigma_W Mbar^T
    q = (evecs * (A @ evecs)).sum(-2)  # (..., K-1)  v_j^T A v_j
    rtol = max(K, m) * torch.finfo(Mc.dtype).eps
    keep = (evals > rtol * evals[..., -1:]) & (evals / K > s.floor)
    e = torch.where(keep, evals, torch.ones_like(evals))
    val = K * torch.where(keep, q / (e * e), torch.zeros_like(q)).sum(-1)
    no_between = ~keep.any(-1)
    val = torch.where(no_between, torch.full_like(val, s.cap), val.clamp(max=s.cap))
    return torch.where(s.tr_within <= s.floor, torch.zeros_like(val), val)


def _nc1_quotient(s: _MeansStats) -> torch.Tensor:
    return _safe_ratio(s.tr_within, s.tr_between, s.floor, s.cap)


def _equinorm_means(s: _MeansStats) -> torch.Tensor:
    norms = (s.centred * s.centred).sum(-1)
    norms = torch.where(norms > s.floor, norms, torch.zeros_like(norms)).sqrt()
    return _cv(norms, s.floor)


def _equinorm_classifier(s: _FullStats) -> torch.Tensor:
    norms = (s.W * s.W).sum(-1)
    norms = torch.where(norms > s.w_floor, norms, torch.zeros_like(norms)).sqrt()
    return _cv(norms, s.w_floor)


def _cdnv(s: _MeansStats) -> torch.Tensor:
    i, j = _pair_index(s.K, s.means.device)
    diff = s.means[..., i, :] - s.means[..., j, :]  # (..., P, m)
    num = s.class_var[..., i] + s.class_var[..., j]
    den = 2 * (diff * diff).sum(-1)
    return _safe_ratio(num, den, s.floor, s.cap).mean(-1)


def _self_duality(s: _FullStats) -> torch.Tensor:
    d = _unit_matrix(s.W, s.K * s.w_floor) - _unit_matrix(s.centred, s.K * s.floor)
    return (d * d).sum((-2, -1))


def _ncc_mismatch(s: _FullStats) -> torch.Tensor:
    # ||h - mu_k||^2 up to the k-independent ||h||^2
    dist = (s.means * s.means).sum(-1)[..., None, :] - 2 * s.feats @ s.means.mT  # (..., N, K)
    return (s.logits.argmax(-1) != dist.argmin(-1)).to(s.feats.dtype).mean(-1)


def _nc_margin(s: _FullStats) -> torch.Tensor:
    z = s.logits  # (..., N, K)
    own = z[..., torch.arange(z.shape[-2], device=z.device), s.labels]  # (..., N)
    rest = z.masked_fill(s.onehot.bool(), -torch.inf).amax(-1)
    return (own - rest).amin(-1) * s.logit_scale


def _gnc3(s: _FullStats) -> torch.Tensor:
    cos = (s.unit_W * _unit_rows(s.means, s.floor)).sum(-1)  # (..., K)
    return (1 - cos).mean(-1)


# name -> (kernel, needs): "means" = class means + within variances suffice, "features" = needs every sample,
# "classifier" = needs W (given or least squares)
_REGISTRY: dict[str, tuple[Callable[[Any], torch.Tensor], str]] = {
    "nc1": (_nc1_papyan, "features"),  # divided by K in nc_metrics unless papyan=True
    "nc1_quotient": (_nc1_quotient, "means"),
    "equinorm_means": (_equinorm_means, "means"),
    "equiangular_means": (lambda s: _equiangular(s.unit_centred), "means"),
    "maxangle_means": (lambda s: _maxangle(s.unit_centred), "means"),
    "mean_cosine": (lambda s: _mean_cosine(s.unit_centred), "means"),
    "etf_error": (lambda s: _etf_error(s.centred, s.floor), "means"),
    "cdnv": (_cdnv, "means"),
    "equinorm_classifier": (_equinorm_classifier, "classifier"),
    "equiangular_classifier": (lambda s: _equiangular(s.unit_W), "classifier"),
    "maxangle_classifier": (lambda s: _maxangle(s.unit_W), "classifier"),
    "etf_error_classifier": (lambda s: _etf_error(s.W, s.w_floor), "classifier"),
    "self_duality": (_self_duality, "classifier"),
    "ncc_mismatch": (_ncc_mismatch, "classifier"),
    "nc_margin": (_nc_margin, "classifier"),
    "gnc2": (lambda s: _one_vs_rest_distance(s.unit_W), "classifier"),
    "gnc3": (_gnc3, "classifier"),
}

METRIC_NAMES: tuple[str, ...] = tuple(_REGISTRY)
MEANS_METRICS: tuple[str, ...] = tuple(k for k, (_, need) in _REGISTRY.items() if need == "means")
ONLINE_METRICS: tuple[str, ...] = (
    "nc1",
    "nc1_quotient",
    "equinorm_means",
    "equiangular_means",
    "maxangle_means",
    "etf_error",
    "cdnv",
)


# ----------------------------------------------------------------------------------------- input checks


def _check_features(name: str, x: Any, ndim: int = 2) -> torch.Tensor:
    if not torch.is_tensor(x):
        x = torch.as_tensor(np.asarray(x))
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < ndim:
        raise ValueError(f"{name} must have at least {ndim} dims, got shape {tuple(x.shape)}")
    return x


def _check_labels(labels: Any, n: int, device: torch.device, num_classes: int | None) -> tuple[torch.Tensor, int]:
    lab = labels if torch.is_tensor(labels) else torch.as_tensor(np.asarray(labels))
    if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
        raise TypeError(f"labels must hold integers, got dtype {lab.dtype}")
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match features (..., N={n}, m), got {tuple(lab.shape)}")
    lab = lab.to(device=device, dtype=torch.long)
    if n == 0 or int(lab.min()) < 0:
        raise ValueError("labels must be non-empty class indices >= 0")
    K = int(lab.max()) + 1 if num_classes is None else num_classes
    if int(lab.max()) >= K:
        raise ValueError(f"labels go up to {int(lab.max())} but the classifier has K={K} rows")
    if K < 2:
        raise ValueError(f"NC metrics need at least 2 classes, got K={K}")
    return lab, K


def _check_counts(counts: torch.Tensor) -> None:
    if bool((counts < 1).any()):
        empty = torch.nonzero(counts < 1).flatten().tolist()
        raise ValueError(f"every class needs at least one sample; classes {empty} are empty")


def _select(names: Iterable[str] | None, available: Iterable[str], why: str) -> list[str]:
    available = list(available)
    if names is None:
        return available
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"names={unknown!r} are not metrics; accepted names: {', '.join(METRIC_NAMES)}")
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(f"names={missing!r} cannot be computed here ({why}); computable: {', '.join(available)}")
    return names


# ------------------------------------------------------------------------------------------- public API


def least_squares_classifier(
    features: torch.Tensor, labels: torch.Tensor, weight_decay: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The MSE-optimal linear classifier with bias for fixed features (seed 002, Eq. 7), batched.

    With ``weight_decay = 0`` (Eq. 7, written for possibly imbalanced classes, pi_k = n_k / N, hbar the global
    sample mean):

    .. math::

        W_{LS} = C_{YH} \\Sigma_T^{+}, \\quad (C_{YH})_{k\\cdot} = \\pi_k (\\mu_k - \\bar h)^\\top, \\quad
        \\Sigma_T = \\frac{1}{N} \\sum_i (h_i - \\bar h)(h_i - \\bar h)^\\top, \\quad
        b_{LS} = \\pi - W_{LS} \\bar h,

    which is C^{-1} Mbar^T Sigma_T^{-1} and C^{-1} 1 - W_LS mu_G for balanced classes, with the pseudo-inverse
    (``torch.linalg.pinv``, hermitian) where Sigma_T is singular (collapsed features, m > N).
    With ``weight_decay = lambda > 0``: the ridge minimiser of seed 002's Eq. 2,
    (1/2N) ||W H + b 1^T - Y||^2 + (lambda/2)(||W||^2 + ||b||^2), i.e. with Htilde = [H; 1],
    [W, b] = (1/N) Y Htilde^T ((1/N) Htilde Htilde^T + lambda I)^{-1}. Both agree as lambda -> 0 when Sigma_T is
    invertible.

    Parameters
    ----------
    features : Tensor (..., N, m)
    labels : Tensor (N,) of ints in [0, K)
    weight_decay : float >= 0

    Returns
    -------
    W : Tensor (..., K, m)
    b : Tensor (..., K)

    >>> H = torch.eye(3, dtype=torch.float64); W, b = least_squares_classifier(H, torch.arange(3))
    >>> torch.allclose(H @ W.mT + b, torch.eye(3, dtype=torch.float64))
    True
    """
    lam = check_positive_float("weight_decay", weight_decay, allow_zero=True)
    H = _check_features("features", features)
    labels, K = _check_labels(labels, H.shape[-2], H.device, None)
    counts = torch.bincount(labels, minlength=K).to(H.dtype)
    _check_counts(counts)
    N = H.shape[-2]
    onehot = torch.nn.functional.one_hot(labels, K).to(H.dtype)  # (N, K)
    pi = counts / N  # (K,)
    if lam > 0:
        Ht = torch.cat([H, torch.ones_like(H[..., :1])], -1)  # (..., N, m+1)
        S = Ht.mT @ Ht / N + lam * torch.eye(Ht.shape[-1], dtype=H.dtype, device=H.device)  # (..., m+1, m+1)
        cross = onehot.mT @ Ht / N  # (..., K, m+1)
        Wt = torch.linalg.solve(S, cross.mT).mT  # S is symmetric
        return Wt[..., :-1], Wt[..., -1]
    # scale-normalise first so Sigma_T cannot overflow; W scales as 1/s, b is scale-free
    s = _amax_scale(H)  # (...)
    Hn = H / s[..., None, None]
    hbar = Hn.mean(-2, keepdim=True)  # (..., 1, m)
    Hc = Hn - hbar
    sigma_t = Hc.mT @ Hc / N  # (..., m, m)
    cross = (onehot.mT @ Hc) / N  # (..., K, m) = pi_k (mu_k - hbar)
    W = cross @ torch.linalg.pinv(sigma_t, hermitian=True)
    b = pi - (W @ hbar.mT)[..., 0]
    return W / s[..., None, None], b


def nc_metrics(
    features: torch.Tensor,
    labels: torch.Tensor,
    classifier: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    names: Iterable[str] | None = None,
    papyan: bool = False,
    use_least_squares: bool = False,
    weight_decay: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Every NC metric of DESIGN.md section 5 (table in the module docstring), batched over leading dims.

    Parameters
    ----------
    features : Tensor (..., N, m)
        Sample features; any leading dims (path, time, run).
    labels : Tensor (N,)
        Integer class of each sample, classes 0..K-1 each non-empty (imbalanced allowed).
    classifier : Tensor (..., K, m), optional
        Last-layer weights W (rows w_k); leading dims broadcast against the features'.
    bias : Tensor (..., K), optional
        Classifier bias; 0 when omitted.
    names : iterable of str, optional
        Subset of metrics to compute (default: all computable; the classifier ones need a classifier).
    papyan : bool
        nc1 without the / K (the Papyan et al. code convention).
    use_least_squares : bool
        Without ``classifier``: use the least-squares W_LS, b_LS of the same features
        (:func:`least_squares_classifier`) for the classifier metrics.
    weight_decay : float
        Ridge parameter of that least-squares classifier.

    Returns
    -------
    dict name -> Tensor of the broadcast leading shape, in the features' dtype and device.

    Raises
    ------
    ValueError
        Unknown names (the message lists the accepted ones), classifier metrics requested without a classifier,
        empty classes, shape mismatches.
    """
    H = _check_features("features", features)
    if classifier is not None and use_least_squares:
        raise ValueError("pass either classifier= or use_least_squares=True, not both")
    if classifier is not None:
        classifier = _check_features("classifier", classifier)
        if classifier.shape[-1] != H.shape[-1]:
            raise ValueError(f"classifier must have shape (..., K, m={H.shape[-1]}), got {tuple(classifier.shape)}")
    elif bias is not None:
        raise ValueError("bias= was given without classifier=")
    K_cls = None if classifier is None else classifier.shape[-2]
    labels, K = _check_labels(labels, H.shape[-2], H.device, K_cls)
    counts = torch.bincount(labels, minlength=K).to(H.dtype)
    _check_counts(counts)

    has_cls = classifier is not None or use_least_squares
    available = [n for n, (_, need) in _REGISTRY.items() if has_cls or need != "classifier"]
    chosen = _select(names, available, "classifier metrics need classifier= or use_least_squares=True")

    N, m = H.shape[-2:]
    eps = torch.finfo(H.dtype).eps
    scale = _amax_scale(H)  # (...)
    stats = _FullStats(
        H / scale[..., None, None], labels, counts, m * (4 * math.sqrt(N) * eps) ** 2, m * (4 * eps) ** 2
    )
    batch = H.shape[:-2]
    if any(_REGISTRY[n][1] == "classifier" for n in chosen):
        if classifier is None:
            classifier, bias = least_squares_classifier(H, labels, weight_decay)
        if bias is None:
            bias = torch.zeros(classifier.shape[:-1], dtype=H.dtype, device=H.device)
        bias = _check_features("bias", torch.as_tensor(bias, dtype=H.dtype, device=H.device), ndim=1)
        if bias.shape[-1] != K:
            raise ValueError(f"bias must have shape (..., K={K}), got {tuple(bias.shape)}")
        batch = torch.broadcast_shapes(batch, classifier.shape[:-2], bias.shape[:-1])
        stats.set_classifier(classifier.to(device=H.device, dtype=H.dtype), bias, scale)

    out = {}
    for name in chosen:
        value = _REGISTRY[name][0](stats)
        if name == "nc1" and not papyan:
            value = value / K
        out[name] = value.expand(batch).clone()
    return out


def online_metrics(
    class_means: torch.Tensor,
    deviations: torch.Tensor,
    labels: torch.Tensor,
    *,
    scale: torch.Tensor | float | None = None,
    papyan: bool = False,
) -> dict[str, torch.Tensor]:
    """``ONLINE_METRICS`` and ncm separability from class means and within-class deviations (``save="metrics"``).

    The same values as ``nc_metrics(H, labels, names=ONLINE_METRICS)`` and
    :func:`lesde.separability.pair_stats` ``(H, labels)`` on the features h_i = mu_{y_i} + z_i, without forming H:
    one pass over the deviations gives Var_k (from ||z_i||^2), and one product P = Z Mbar^T (..., N, K) serves both
    nc1 (Mbar Sigma_W Mbar^T = P^T P / N) and the ncm test (:func:`lesde.separability.ncm_from_parts`). Integrators
    that keep the means and deviations apart pass them, so at extreme scales (means ~ 1e170, where mu + z has lost
    z to rounding) the metrics see the accurate deviations.

    Every one of these metrics is translation-free, so the means are centred on mu_G first, and both inputs are
    divided by a per-item ``scale`` before anything is squared (default: max(max |mu_k - mu_G|, max |z_i|), the
    largest entry of the centred features up to a factor 2). The noise floor and the degenerate-value conventions
    of :func:`nc_metrics` (module docstring) apply in those units; nc_metrics divides by max |h_i| instead, so
    only values within a factor ~4 of the floor can be decided differently. Passing ``scale`` = max |h_i|
    reproduces nc_metrics' decisions exactly; ``scale=1.0`` means the inputs are already normalised (no division).

    Parameters
    ----------
    class_means : Tensor (..., K, m)
    deviations : Tensor (..., N, m)
        z_i = h_i - mu_{y_i}; taken to have zero mean within each class (not re-centred here).
    labels : Tensor (N,)
        Class of each sample, classes 0..K-1 each non-empty.
    scale : Tensor (...) or float, optional
        Per-item unit of the inputs (positive); see above.
    papyan : bool
        nc1 without the / K.

    Returns
    -------
    dict name -> Tensor (...): the ``ONLINE_METRICS``, ``separable_fraction`` (dtype of the inputs) and
    ``all_separable`` (bool).
    """
    from .separability import ncm_from_parts

    Mu = _check_features("class_means", class_means)
    Z = _check_features("deviations", deviations)
    if Z.dtype != Mu.dtype or Z.device != Mu.device or Z.shape[:-2] != Mu.shape[:-2] or Z.shape[-1] != Mu.shape[-1]:
        raise ValueError(
            f"deviations (..., N, m) must match class_means (..., K, m) in leading dims, m, dtype and device; got "
            f"{tuple(Z.shape)} {Z.dtype} {Z.device} and {tuple(Mu.shape)} {Mu.dtype} {Mu.device}"
        )
    (N, m), K = Z.shape[-2:], Mu.shape[-2]
    labels, _ = _check_labels(labels, N, Z.device, K)
    onehot = torch.nn.functional.one_hot(labels, K).to(Z.dtype)  # (N, K)
    counts = onehot.sum(0)  # (K,)
    _check_counts(counts)
    centred = Mu - Mu.mean(-2, keepdim=True)  # (..., K, m)
    if scale is None:
        scale = torch.maximum(_amax_scale(centred), _amax_scale(Z))
    if not (isinstance(scale, (int, float)) and scale == 1):
        scale = torch.as_tensor(scale, dtype=Z.dtype, device=Z.device)[..., None, None]  # (..., 1, 1)
        if not bool((scale > 0).all()):
            raise ValueError("scale must be positive (the per-item unit of class_means and deviations)")
        centred, Z = centred / scale, Z / scale  # the only full-size temporary
    class_var = _class_var(Z, onehot, counts)  # (..., K)
    eps = torch.finfo(Z.dtype).eps
    stats = _SampleStats(centred, Z, class_var, counts, m * (4 * math.sqrt(N) * eps) ** 2)
    out = {}
    for name in ONLINE_METRICS:
        out[name] = _REGISTRY[name][0](stats)
    if not papyan:
        out["nc1"] = out["nc1"] / K
    out["separable_fraction"], out["all_separable"] = ncm_from_parts(stats.proj, stats.centred, labels)
    return out


def means_metrics(
    class_means: torch.Tensor,
    within_var: torch.Tensor,
    counts: Any,
    *,
    names: Iterable[str] | None = None,
) -> dict[str, torch.Tensor]:
    """The metrics computable from class means and within-class variance traces alone (``save="means"``).

    Computes ``MEANS_METRICS`` = nc1_quotient, equinorm_means, equiangular_means, maxangle_means, mean_cosine,
    etf_error, cdnv with the same definitions and guards as :func:`nc_metrics`, using
    tr(Sigma_W) = sum_k n_k Var_k / N.

    Parameters
    ----------
    class_means : Tensor (..., K, m)
    within_var : Tensor (..., K)
        Var_k = mean over the samples of class k of ||h_i - mu_k||^2.
    counts : (K,) ints
        Samples per class n_k.
    names : iterable of str, optional

    Returns
    -------
    dict name -> Tensor (...)
    """
    M = _check_features("class_means", class_means)
    V = _check_features("within_var", within_var, ndim=1).to(device=M.device, dtype=M.dtype)
    K, m = M.shape[-2:]
    if V.shape[-1] != K:
        raise ValueError(f"within_var must have shape (..., K={K}), got {tuple(V.shape)}")
    counts = torch.as_tensor(np.asarray(counts) if not torch.is_tensor(counts) else counts)
    if counts.is_floating_point() or counts.shape != (K,):
        raise ValueError(f"counts must be {K} integers (samples per class), got {counts.tolist()}")
    counts = counts.to(device=M.device, dtype=M.dtype)
    _check_counts(counts)
    if K < 2:
        raise ValueError(f"NC metrics need at least 2 classes, got K={K}")
    chosen = _select(names, MEANS_METRICS, "only class means and within-class variances are available")
    eps = torch.finfo(M.dtype).eps
    # one scale for both inputs: the means' largest entry or the within-class spread, whichever is larger
    scale = torch.maximum(M.abs().amax((-2, -1)), V.clamp(min=0).amax(-1).sqrt())
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    N = float(counts.sum())
    floor = m * (4 * math.sqrt(N) * eps) ** 2
    stats = _MeansStats(M / scale[..., None, None], V / (scale * scale)[..., None], counts, floor)
    batch = torch.broadcast_shapes(M.shape[:-2], V.shape[:-1])
    return {name: _REGISTRY[name][0](stats).expand(batch).clone() for name in chosen}


# ------------------------------------------------------------------------------------------ xarray layer


def _lead(var: xr.DataArray, trailing: tuple[str, ...]) -> list[str]:
    missing = [d for d in trailing if d not in var.dims]
    if missing:
        raise ValueError(f"variable {var.name!r} lacks the dims {missing}; it has {var.dims}")
    return [d for d in var.dims if d not in trailing]


def to_dataset(sim_ds: xr.Dataset, names: Iterable[str] | None = None, use_least_squares: bool = False) -> xr.Dataset:
    """NC metrics of a simulation Dataset, as a Dataset over its leading dims (``path``, ``time``).

    Parameters
    ----------
    sim_ds : xarray.Dataset
        ``save="full"``: ``features(path, time, sample, feature)`` with coordinate ``label(sample)``; all metrics
        of :func:`nc_metrics` (the classifier ones only with ``use_least_squares``).
        ``save="means"``: ``class_mean(path, time, class, feature)``, ``within_var(path, time, class)`` and the
        attr ``samples_per_class`` (JSON list, or an int for balanced classes); :func:`means_metrics`.
    names : iterable of str, optional
        Subset of metrics.
    use_least_squares : bool
        Compute the classifier metrics with W_LS (needs ``save="full"``).

    Returns
    -------
    xarray.Dataset with one variable per metric over the leading dims, their coordinates, the input's attrs and
    ``metrics_source`` ("full" or "means") and ``metrics_classifier`` ("least_squares" or "none").
    """
    if not isinstance(sim_ds, xr.Dataset):
        raise TypeError(f"sim_ds must be an xarray.Dataset, got {type(sim_ds).__name__}")
    if "features" in sim_ds:
        feats = sim_ds["features"]
        lead = _lead(feats, ("sample", "feature"))
        if "label" not in sim_ds.coords and "label" not in sim_ds:
            raise ValueError("sim_ds has features but no label(sample) coordinate")
        x = torch.from_numpy(np.ascontiguousarray(feats.transpose(*lead, "sample", "feature").values))
        labels = torch.from_numpy(np.asarray(sim_ds["label"].values).astype(np.int64))
        values = nc_metrics(x, labels, names=names, use_least_squares=use_least_squares)
        source = "full"
    elif "class_mean" in sim_ds and "within_var" in sim_ds:
        if use_least_squares:
            raise ValueError("use_least_squares=True needs every sample (save='full'); this Dataset holds means")
        lead = _lead(sim_ds["class_mean"], ("class", "feature"))
        means = sim_ds["class_mean"].transpose(*lead, "class", "feature").values
        var = sim_ds["within_var"].transpose(*lead, "class").values
        if "samples_per_class" not in sim_ds.attrs:
            raise ValueError("a save='means' Dataset needs the attr samples_per_class (JSON list of ints)")
        spc = sim_ds.attrs["samples_per_class"]
        spc = json.loads(spc) if isinstance(spc, str) else spc
        K = means.shape[-2]
        counts = [int(spc)] * K if np.ndim(spc) == 0 else [int(c) for c in np.asarray(spc).ravel()]
        values = means_metrics(torch.from_numpy(means), torch.from_numpy(var), counts, names=names)
        source = "means"
    else:
        raise ValueError(
            "sim_ds must hold features(path, time, sample, feature) (save='full') or class_mean and within_var "
            f"(save='means'); it has {list(sim_ds.data_vars)}"
        )
    coords = {name: c for name, c in sim_ds.coords.items() if set(c.dims) <= set(lead)}
    data = {name: (lead, v.cpu().numpy()) for name, v in values.items()}
    ds = xr.Dataset(data, coords=coords)
    attrs = dict(sim_ds.attrs)
    attrs.update(
        metrics_source=source,
        metrics_classifier="least_squares" if use_least_squares else "none",
        # provenance() stores torch.__version__, a str subclass h5py cannot write; a plain str round-trips
        torch_version=str(torch.__version__),
    )
    return finalize(ds, **attrs)
