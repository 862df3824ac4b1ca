"""Per-item statistics the metrics share (class means, deviations, variances, classifier), the metric kernels and
their registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any

import torch

from . import geometry as geo
from .inputs import amax_scale, degenerate_ratio, pair_index


class MeansStats:
    """What the class-mean metrics need, in scale-normalised units; shared by every public kernel."""

    def __init__(self, means: torch.Tensor, class_var: torch.Tensor, counts: torch.Tensor, floor: float):
        self.means = means  # (..., K, m)
        self.class_var = class_var  # (..., K)
        self.counts = counts  # (K,), float
        self.K = means.shape[-2]
        self.floor = floor
        self.cap = degenerate_ratio(means.dtype)
        self.papyan = False  # nc1 without the / K

    @cached_property
    def centred(self) -> torch.Tensor:  # (..., K, m)
        return self.means - self.means.mean(-2, keepdim=True)

    @cached_property
    def gram(self) -> torch.Tensor:  # (..., K, K)  Mbar Mbar^T: nc1, equinorm, the cosines, etf_error
        return self.centred @ self.centred.mT

    @cached_property
    def cosines(self) -> torch.Tensor:  # (..., K(K-1)/2)  cos(mu_k - mu_G, mu_l - mu_G), k < l
        return geo.pair_cosines(self.gram, self.floor)

    @cached_property
    def tr_within(self) -> torch.Tensor:  # (...)  tr(Sigma_W) = sum_k n_k Var_k / N
        return (self.class_var * self.counts).sum(-1) / self.counts.sum()

    @cached_property
    def tr_between(self) -> torch.Tensor:  # (...)  tr(Sigma_B) = tr(Mbar Mbar^T) / K
        return self.gram.diagonal(dim1=-2, dim2=-1).sum(-1) / self.K


def class_split(
    feats: torch.Tensor, labels: torch.Tensor, onehot: torch.Tensor, counts: torch.Tensor, inplace: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means (..., K, m) and deviations h_i - mu_{y_i} (..., N, m) of normalised features.

    The one computation of both for `nc_metrics` and ``simulate(save="metrics")``: where the means dwarf
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


def class_var(dev: torch.Tensor, onehot: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Var_k = mean over class k of ||h_i - mu_k||^2, (..., K); one fused reduction, no (..., N, m) temporary."""
    return (torch.linalg.vector_norm(dev, dim=-1).square() @ onehot) / counts


class SampleStats(MeansStats):
    """Adds the within-class deviations h_i - mu_{y_i} (..., N, m), in the same normalised units."""

    def __init__(self, means: torch.Tensor, dev: torch.Tensor, var: torch.Tensor, counts: torch.Tensor, floor):
        super().__init__(means, var, counts, floor)
        self.dev = dev  # (..., N, m)

    @cached_property
    def proj(self) -> torch.Tensor:  # (..., N, K)  (h_i - mu_{y_i}) . (mu_k - mu_G)
        # shared by nc1 (Mbar Sigma_W Mbar^T = P^T P / N) and the ncm test of online_metrics; formed as
        # (Mbar Z^T)^T, a (K, m) x (m, N) product, measured 3x faster on CPU than Z Mbar^T for N >> K
        return (self.centred @ self.dev.mT).mT


class FullStats(SampleStats):
    """Adds the per-sample quantities and the classifier for `nc_metrics`."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor, floor: float, w_floor: float):
        # feats (..., N, m): normalised features, a buffer of the caller's that becomes the deviations (in place)
        K = counts.shape[0]
        self.labels = labels  # (N,)
        self.onehot = torch.nn.functional.one_hot(labels, K).to(feats.dtype)  # (N, K)
        means, dev = class_split(feats, labels, self.onehot, counts, inplace=True)
        super().__init__(means, dev, class_var(dev, self.onehot, counts), counts, floor)
        self.w_floor = w_floor
        self.W: torch.Tensor | None = None  # (..., K, m), normalised
        self.b: torch.Tensor | None = None  # (..., K), in the normalised logit units
        self.logit_scale: torch.Tensor | None = None  # (...)

    def set_classifier(self, W: torch.Tensor, b: torch.Tensor, feat_scale: torch.Tensor) -> None:
        self.feat_scale = feat_scale  # (...): the unit of the normalised features (gnc3_unnormalized needs it)
        w_scale = amax_scale(W, "classifier")
        self.W = W / w_scale[..., None, None]
        self.logit_scale = (w_scale * feat_scale).clamp(min=torch.finfo(W.dtype).tiny)
        self.b = b / self.logit_scale[..., None]

    @cached_property
    def _dev_products(self) -> torch.Tensor:  # (..., N, 2K)  deviations . [centred means; classifier rows]
        # one pass over the deviations serves nc1, ncc_mismatch (proj) and the logits: the per-sample products are
        # the costly part of the metrics for many small items (sgd's batched recorder)
        Mc, W = torch.broadcast_tensors(self.centred, self.W)
        return self.dev @ torch.cat([Mc, W], -2).mT  # (N, m) x (m, 2K): measured faster than the transpose here

    @cached_property
    def proj(self) -> torch.Tensor:  # (..., N, K)
        return SampleStats.proj.func(self) if self.W is None else self._dev_products[..., : self.K]

    @cached_property
    def logits(self) -> torch.Tensor:  # (..., N, K)  (mu_{y_i} + dev_i) . w_k + b_k
        own = (self.means @ self.W.mT + self.b[..., None, :]).index_select(-2, self.labels)  # mu_{y_i} . w_k + b_k
        return own.add_(self._dev_products[..., self.K :])

    @cached_property
    def unit_W(self) -> torch.Tensor:
        return geo.unit_rows(self.W, self.w_floor)

    @cached_property
    def gram_W(self) -> torch.Tensor:  # (..., K, K)  W W^T
        return self.W @ self.W.mT

    @cached_property
    def cosines_W(self) -> torch.Tensor:  # (..., K(K-1)/2)
        return geo.pair_cosines(self.gram_W, self.w_floor)


# --------------------------------------------------------------------------------------- metric kernels


def _contrasts(K: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(K, K-1) orthonormal basis of the complement of 1_K (Helmert): the span of the centred class means."""
    j = torch.arange(1, K, dtype=dtype, device=device)  # column j-1: (1, ..., 1, -j, 0, ...) / sqrt(j (j+1))
    k = torch.arange(K, device=device)[:, None]
    V = torch.where(k < j, 1.0, torch.where(k == j, -j, 0.0).to(dtype)).to(dtype)
    return V / torch.sqrt(j * (j + 1))


def _nc1_eigh(gram: torch.Tensor, A: torch.Tensor, m: int, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """K tr(A G^+^2) with G^+ from the top K-1 eigenpairs of G (pinv rule and noise floor); and whether none is kept."""
    K = gram.shape[-1]
    evals, evecs = torch.linalg.eigh(gram)  # ascending; (..., K), (..., K, K)
    evals, evecs = evals[..., 1:], evecs[..., 1:]  # top K-1 eigenpairs
    q = (evecs * (A @ evecs)).sum(-2)  # (..., K-1)  v_j^T A v_j
    keep = (evals > max(K, m) * torch.finfo(gram.dtype).eps * evals[..., -1:]) & (evals / K > floor)
    e = torch.where(keep, evals, torch.ones_like(evals))
    return K * torch.where(keep, q / (e * e), torch.zeros_like(q)).sum(-1), ~keep.any(-1)


def _nc1(s: SampleStats) -> torch.Tensor:
    """tr(Sigma_W Sigma_B^+) / K (without the / K with ``papyan``) via the K x K Gram G = Mc Mc^T.

    Sigma_B^+ = K Mc^T G^+^2 Mc, so tr(Sigma_W Sigma_B^+) = K tr(A G^+^2) with A = Mc Sigma_W Mc^T = P^T P / N. Where
    G restricted to the span of the centred means (G' = V^T G V, V the (K, K-1) contrasts) is certainly
    well conditioned (1 / ||G'^-1||_F, a lower bound on its smallest eigenvalue, above sqrt(eps) tr G' and the
    noise floor), G^+ = V G'^-1 V^T from one small inverse; elsewhere (rank-deficient or collapsed means) the
    top K-1 eigenpairs with the pinv rule. Both give the same value (the eigen path is 10x slower on the CPU).
    """
    K, N, m = s.K, s.dev.shape[-2], s.dev.shape[-1]
    P = s.proj  # (..., N, K)  projections of the within-class deviations
    A = P.mT @ P / N  # (..., K, K)  = Mc Sigma_W Mc^T
    V = _contrasts(K, A.dtype, A.device)
    G_r, A_r = V.mT @ s.gram @ V, V.mT @ A @ V  # (..., K-1, K-1)
    inv, info = torch.linalg.inv_ex(G_r)
    lower = torch.linalg.matrix_norm(inv).reciprocal()
    upper = G_r.diagonal(dim1=-2, dim2=-1).sum(-1)
    fast = (info == 0) & (lower > torch.finfo(A.dtype).eps ** 0.5 * upper) & (lower / K > s.floor)
    val = K * (inv * (A_r @ inv)).sum((-2, -1))  # K tr(A' G'^-2) (inv is symmetric)
    no_between = torch.zeros(val.shape, dtype=torch.bool, device=val.device)
    if not bool(fast.all()):
        slow = ~fast.expand(val.shape)
        val[slow], no_between[slow] = _nc1_eigh(s.gram.expand(*val.shape, K, K)[slow], A[slow], m, s.floor)
    # capped like every scatter ratio, then divided by K (so a degenerate nc1 is R / K, and R with papyan)
    val = torch.where(no_between, torch.full_like(val, s.cap), val.clamp(max=s.cap))
    val = torch.where(s.tr_within <= s.floor, torch.zeros_like(val), val)
    return val if s.papyan else val / K


def _nc1_quotient(s: MeansStats) -> torch.Tensor:
    return geo.safe_ratio(s.tr_within, s.tr_between, s.floor, s.cap)


def _equinorm(gram: torch.Tensor, floor: float) -> torch.Tensor:
    sq = gram.diagonal(dim1=-2, dim2=-1)  # squared row norms
    return geo.coefficient_of_variation(torch.where(sq > floor, sq, torch.zeros_like(sq)).sqrt(), floor)


def _cdnv(s: MeansStats) -> torch.Tensor:
    i, j = pair_index(s.K, s.means.device)
    diff = s.means[..., i, :] - s.means[..., j, :]  # (..., P, m)
    num = s.class_var[..., i] + s.class_var[..., j]
    den = 2 * (diff * diff).sum(-1)
    return geo.safe_ratio(num, den, s.floor, s.cap).mean(-1)


def _self_duality(s: FullStats) -> torch.Tensor:
    d = geo.unit_matrix(s.W, s.K * s.w_floor) - geo.unit_matrix(s.centred, s.K * s.floor)
    return (d * d).sum((-2, -1))


def _ncc_mismatch(s: FullStats) -> torch.Tensor:
    # ||h_i - mu_k||^2 = ||mu_y - mu_k||^2 - 2 proj_ik + (terms free of k), y = y_i: no product over the samples
    sq = s.gram.diagonal(dim1=-2, dim2=-1)
    between = sq[..., :, None] + sq[..., None, :] - 2 * s.gram  # (..., K, K)  ||mu_k - mu_l||^2
    score = between.index_select(-2, s.labels)  # (..., N, K), a fresh buffer
    z = s.logits
    if score.shape == s.proj.shape:
        score.add_(s.proj, alpha=-2.0)
    else:  # a batch of classifiers against fewer feature sets
        score = torch.add(score, s.proj, alpha=-2.0)
    far = score > score.amin(-1, keepdim=True)
    # the classifier disagrees where no nearest centre has the largest logit (amax: measured faster than argmin);
    # the score buffer is free again and takes the masked logits
    lowest = torch.tensor(-torch.inf, dtype=z.dtype, device=z.device)
    masked = torch.where(far, lowest, z, out=score) if score.shape == z.shape else torch.where(far, lowest, z)
    nearest_logit = masked.amax(-1)
    return (nearest_logit < z.amax(-1)).to(z.dtype).mean(-1)


def _nc_margin(s: FullStats) -> torch.Tensor:
    z = s.logits  # (..., N, K)
    own = z.gather(-1, s.labels.expand(z.shape[:-1])[..., None])[..., 0]  # (..., N)
    rest = z.masked_fill(s.onehot.bool(), -torch.inf).amax(-1)
    return (own - rest).amin(-1) * s.logit_scale


def _gnc3(s: FullStats) -> torch.Tensor:
    cos = (s.unit_W * geo.unit_rows(s.means, s.floor)).sum(-1)  # (..., K)
    return (1 - cos).mean(-1)


def _gnc3_unnormalized(s: FullStats) -> torch.Tensor:
    """The GNC paper's GNC3, (1/K) sum_k (1 - w_k^T mu_k / ||w_k||) with the class means as they are (unit
    features on the sphere make ||mu_k|| <= 1, so within-class spread adds to it; off the sphere it carries the
    features' scale)."""
    raw = s.means * s.feat_scale[..., None, None]  # (..., K, m) class means in the features' own units
    return (1 - (s.unit_W * raw).sum(-1)).mean(-1)


def _gnc1_uncentered(s: SampleStats) -> torch.Tensor:
    """The GNC paper's GNC1: tr(Sigma_W Sigma_B^+) / K with Sigma_B = (1/K) sum_k mu_k mu_k^T uncentred (rank K,
    all K eigenpairs of the Gram of the raw means), the same guards as nc1."""
    K, N, m = s.K, s.dev.shape[-2], s.dev.shape[-1]
    M = s.means  # (..., K, m), not centred
    P = s.dev @ M.mT  # (..., N, K)
    A = P.mT @ P / N  # M Sigma_W M^T
    evals, evecs = torch.linalg.eigh(M @ M.mT)  # (..., K), (..., K, K)
    q = (evecs * (A @ evecs)).sum(-2)
    keep = (evals > max(K, m) * torch.finfo(M.dtype).eps * evals[..., -1:]) & (evals / K > s.floor)
    e = torch.where(keep, evals, torch.ones_like(evals))
    val = K * torch.where(keep, q / (e * e), torch.zeros_like(q)).sum(-1)
    val = torch.where(~keep.any(-1), torch.full_like(val, s.cap), val.clamp(max=s.cap))
    val = torch.where(s.tr_within <= s.floor, torch.zeros_like(val), val)
    return val if s.papyan else val / K


# name -> (kernel, needs): "means" = class means + within variances suffice, "features" = needs every sample,
# "classifier" = needs W (given or least squares)
REGISTRY: dict[str, tuple[Callable[[Any], torch.Tensor], str]] = {
    "nc1": (_nc1, "features"),
    "nc1_quotient": (_nc1_quotient, "means"),
    "equinorm_means": (lambda s: _equinorm(s.gram, s.floor), "means"),
    "equiangular_means": (lambda s: geo.equiangular(s.cosines), "means"),
    "maxangle_means": (lambda s: geo.maxangle(s.cosines, s.K), "means"),
    "mean_cosine": (lambda s: s.cosines.mean(-1), "means"),
    "etf_error": (lambda s: geo.etf_error(s.gram, s.floor), "means"),
    "cdnv": (_cdnv, "means"),
    "equinorm_classifier": (lambda s: _equinorm(s.gram_W, s.w_floor), "classifier"),
    "equiangular_classifier": (lambda s: geo.equiangular(s.cosines_W), "classifier"),
    "maxangle_classifier": (lambda s: geo.maxangle(s.cosines_W, s.K), "classifier"),
    "etf_error_classifier": (lambda s: geo.etf_error(s.gram_W, s.w_floor), "classifier"),
    "self_duality": (_self_duality, "classifier"),
    "ncc_mismatch": (_ncc_mismatch, "classifier"),
    "nc_margin": (_nc_margin, "classifier"),
    "gnc2": (lambda s: geo.one_vs_rest_distance(s.unit_W), "classifier"),
    "gnc3": (_gnc3, "classifier"),
    "gnc3_unnormalized": (_gnc3_unnormalized, "classifier"),
    "gnc1_uncentered": (_gnc1_uncentered, "features"),
}
#: the GNC paper's own definitions of GNC1 and GNC3, beside lesde's defaults nc1 (centred Sigma_B) and gnc3 (cosine)
SEED_VARIANTS: tuple[str, ...] = ("gnc3_unnormalized", "gnc1_uncentered")

METRIC_NAMES: tuple[str, ...] = tuple(REGISTRY)
"""Every metric name `nc_metrics`, `online_metrics` and `to_dataset` accept (``names=``), in the order of the
table in `lesde.metrics`; `ALIASES` adds names for groups of them, `MEANS_METRICS` are those computed from the
class means alone and `SEED_VARIANTS` the GNC paper's own definitions."""
MEANS_METRICS: tuple[str, ...] = tuple(k for k, (_, need) in REGISTRY.items() if need == "means")
ONLINE_METRICS: tuple[str, ...] = (
    "nc1",
    "nc1_quotient",
    "equinorm_means",
    "equiangular_means",
    "maxangle_means",
    "etf_error",
    "cdnv",
)
#: Papyan et al.'s names for groups of metrics, accepted wherever metric names are (``names=["nc2"]``)
ALIASES: dict[str, tuple[str, ...]] = {
    "nc2": ("equinorm_means", "equiangular_means", "maxangle_means", "etf_error"),
    "nc3": ("self_duality",),
    "nc4": ("ncc_mismatch",),
}


def select(names: Iterable[str] | None, available: Iterable[str], why: str) -> list[str]:
    """The metric names to compute: ``names`` with aliases expanded (default: all ``available``)."""
    available = list(available)
    if names is None:
        return available
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in REGISTRY and n not in ALIASES]
    if unknown:
        raise ValueError(
            f"names={unknown!r} are not metrics; accepted names: {', '.join(METRIC_NAMES)} "
            f"and the aliases {', '.join(ALIASES)}"
        )
    expanded = list(dict.fromkeys(m for n in names for m in ALIASES.get(n, (n,))))
    missing = [n for n in expanded if n not in available]
    if missing:
        raise ValueError(f"names={missing!r} cannot be computed here ({why}); computable: {', '.join(available)}")
    return expanded
