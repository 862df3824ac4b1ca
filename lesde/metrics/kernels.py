"""The tensor kernels: NC metrics of features (`nc_metrics`), of class means and deviations
(`online_metrics`), of class means and variances (`means_metrics`), the least-squares classifier, and
the ncm separability test from the same parts (`ncm_from_parts`). Conventions: `lesde.metrics`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ..validation import check_positive_float
from .inputs import amax_scale, check_features, check_finite, check_labels, upper_pairs
from .statistics import MEANS_METRICS, ONLINE_METRICS, REGISTRY, FullStats, MeansStats, SampleStats, class_var, select


def _floor(N: float, m: int, dtype: torch.dtype) -> float:
    """Squared scatter at or below which a normalised trace is round-off from centring (module docstring)."""
    return m * (4 * math.sqrt(N) * torch.finfo(dtype).eps) ** 2


def least_squares_classifier(
    features: torch.Tensor, labels: torch.Tensor, weight_decay: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The MSE-optimal linear classifier with bias for fixed features (Han, Papyan and Donoho 2022, Eq. 7), batched.

    With ``weight_decay = 0`` (Eq. 7, written for possibly imbalanced classes, pi_k = n_k / N, hbar the global
    sample mean):

    $$ W_{LS} = C_{YH} \\Sigma_T^{+}, \\quad (C_{YH})_{k\\cdot} = \\pi_k (\\mu_k - \\bar h)^\\top, \\quad
    \\Sigma_T = \\frac{1}{N} \\sum_i (h_i - \\bar h)(h_i - \\bar h)^\\top, \\quad
    b_{LS} = \\pi - W_{LS} \\bar h, $$

    which is C^{-1} Mbar^T Sigma_T^{-1} and C^{-1} 1 - W_LS mu_G for balanced classes, with the pseudo-inverse
    (``torch.linalg.pinv``, hermitian) where Sigma_T is singular (collapsed features, m > N).
    With ``weight_decay = lambda > 0``: the ridge minimiser of Han, Papyan and Donoho 2022, Eq. 2,
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
    tuple[torch.Tensor, torch.Tensor]
        W : Tensor (..., K, m)
        b : Tensor (..., K)

        ```pycon
        >>> import torch
        >>> from lesde.metrics import least_squares_classifier
        >>> H = torch.eye(3, dtype=torch.float64); W, b = least_squares_classifier(H, torch.arange(3))
        >>> torch.allclose(H @ W.mT + b, torch.eye(3, dtype=torch.float64))
        True

        ```
    """
    lam = check_positive_float("weight_decay", weight_decay, allow_zero=True)
    H = check_features("features", features)
    labels, K, counts = check_labels(labels, H.shape[-2], H.device)
    s = amax_scale(H, "features")  # (...)
    N = H.shape[-2]
    onehot = torch.nn.functional.one_hot(labels, K).to(H.dtype)  # (N, K)
    pi = counts.to(H.dtype) / N  # (K,)
    if lam > 0:
        Ht = torch.cat([H, torch.ones_like(H[..., :1])], -1)  # (..., N, m+1)
        S = Ht.mT @ Ht / N + lam * torch.eye(Ht.shape[-1], dtype=H.dtype, device=H.device)  # (..., m+1, m+1)
        cross = onehot.mT @ Ht / N  # (..., K, m+1)
        Wt = torch.linalg.solve(S, cross.mT).mT  # S is symmetric
        return Wt[..., :-1], Wt[..., -1]
    # scale-normalise first so Sigma_T cannot overflow; W scales as 1/s, b is scale-free
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
    """Every NC metric (table in `lesde.metrics`), batched over leading dims.

    Parameters
    ----------
    features : Tensor (..., N, m)
        Sample features (float32 or float64, finite); any leading dims (path, time, run).
    labels : Tensor (N,)
        Integer class of each sample, classes 0..K-1 each non-empty (imbalanced allowed).
    classifier : Tensor (..., K, m), optional
        Last-layer weights W (rows w_k); leading dims broadcast against the features'.
    bias : Tensor (..., K), optional
        Classifier bias; 0 when omitted.
    names : iterable of str, optional
        Subset of metrics to compute, or the aliases ``nc2``, ``nc3``, ``nc4`` (default: all computable; the
        classifier ones need a classifier).
    papyan : bool
        nc1 without the / K (the Papyan et al. code convention).
    use_least_squares : bool
        Without ``classifier``: use the least-squares W_LS, b_LS of the same features
        (`least_squares_classifier`) for the classifier metrics.
    weight_decay : float
        Ridge parameter of that least-squares classifier.

    Returns
    -------
    dict[str, torch.Tensor]
        dict name -> Tensor of the broadcast leading shape, in the features' dtype and device.

    Raises
    ------
    ValueError
        Unknown names (the message lists the accepted ones), classifier metrics requested without a classifier,
        empty classes, shape mismatches, NaN or inf in the features or classifier.
    TypeError
        Features of an unsupported dtype (float16, bfloat16, complex), non-integer labels.
    """
    H = check_features("features", features)
    if classifier is not None and use_least_squares:
        raise ValueError("pass either classifier= or use_least_squares=True, not both")
    if classifier is not None:
        classifier = check_features("classifier", classifier)
        if classifier.shape[-1] != H.shape[-1]:
            raise ValueError(f"classifier must have shape (..., K, m={H.shape[-1]}), got {tuple(classifier.shape)}")
    elif bias is not None:
        raise ValueError("bias= was given without classifier=")
    K_cls = None if classifier is None else classifier.shape[-2]
    labels, K, counts = check_labels(labels, H.shape[-2], H.device, K_cls)
    counts = counts.to(H.dtype)

    has_cls = classifier is not None or use_least_squares
    available = [n for n, (_, need) in REGISTRY.items() if has_cls or need != "classifier"]
    chosen = select(names, available, "classifier metrics need classifier= or use_least_squares=True")

    N, m = H.shape[-2:]
    scale = amax_scale(H, "features")  # (...)
    # H / scale is a fresh buffer: FullStats turns it into the deviations in place
    stats = FullStats(H / scale[..., None, None], labels, counts, _floor(N, m, H.dtype), _floor(1, m, H.dtype))
    stats.papyan = papyan
    batch = H.shape[:-2]
    if any(REGISTRY[n][1] == "classifier" for n in chosen):
        if classifier is None:
            classifier, bias = least_squares_classifier(H, labels, weight_decay)
        if bias is None:
            bias = torch.zeros(classifier.shape[:-1], dtype=H.dtype, device=H.device)
        bias = check_features("bias", torch.as_tensor(bias, dtype=H.dtype, device=H.device), ndim=1)
        if bias.shape[-1] != K:
            raise ValueError(f"bias must have shape (..., K={K}), got {tuple(bias.shape)}")
        check_finite("bias", bias)
        batch = torch.broadcast_shapes(batch, classifier.shape[:-2], bias.shape[:-1])
        stats.set_classifier(classifier.to(device=H.device, dtype=H.dtype), bias, scale)
    return {name: REGISTRY[name][0](stats).expand(batch).clone() for name in chosen}


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
    `lesde.separability.pair_stats` ``(H, labels)`` on the features h_i = mu_{y_i} + z_i, without forming H:
    one pass over the deviations gives Var_k (from ||z_i||^2), and one product P = Z Mbar^T (..., N, K) serves both
    nc1 (Mbar Sigma_W Mbar^T = P^T P / N) and the ncm test (`ncm_from_parts`). Integrators that keep the
    means and deviations apart pass them, so at extreme scales (means ~ 1e170, where mu + z has lost z to
    rounding) the metrics see the accurate deviations.

    Every one of these metrics is translation-free, so the means are centred on mu_G first, and both inputs are
    divided by a per-item ``scale`` before anything is squared (default: max(max |mu_k - mu_G|, max |z_i|), the
    largest entry of the centred features up to a factor 2). The noise floor and the degenerate-value conventions
    of `nc_metrics` apply in those units; nc_metrics divides by max |h_i| instead, so only values within a
    factor ~4 of the floor can be decided differently. Passing ``scale`` = max |h_i| reproduces nc_metrics'
    decisions exactly; ``scale=1.0`` means the inputs are already normalised (no division).

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
    dict[str, torch.Tensor]
        dict name -> Tensor (...): the ``ONLINE_METRICS``, ``separable_fraction`` (dtype of the inputs) and
        ``all_separable`` (bool).
    """
    Mu = check_features("class_means", class_means)
    Z = check_features("deviations", deviations)
    if Z.dtype != Mu.dtype or Z.device != Mu.device or Z.shape[:-2] != Mu.shape[:-2] or Z.shape[-1] != Mu.shape[-1]:
        raise ValueError(
            f"deviations (..., N, m) must match class_means (..., K, m) in leading dims, m, dtype and device; got "
            f"{tuple(Z.shape)} {Z.dtype} {Z.device} and {tuple(Mu.shape)} {Mu.dtype} {Mu.device}"
        )
    (N, m), K = Z.shape[-2:], Mu.shape[-2]
    labels, _, counts = check_labels(labels, N, Z.device, K)
    onehot = torch.nn.functional.one_hot(labels, K).to(Z.dtype)  # (N, K)
    counts = counts.to(Z.dtype)
    centred = Mu - Mu.mean(-2, keepdim=True)  # (..., K, m)
    if scale is None:
        scale = torch.maximum(amax_scale(centred, "class_means"), amax_scale(Z, "deviations"))
    if not (isinstance(scale, (int, float)) and scale == 1):
        scale = torch.as_tensor(scale, dtype=Z.dtype, device=Z.device)[..., None, None]  # (..., 1, 1)
        if not bool((scale > 0).all()):
            raise ValueError("scale must be positive (the per-item unit of class_means and deviations)")
        centred, Z = centred / scale, Z / scale  # the only full-size temporary
    var = class_var(Z, onehot, counts)  # (..., K)
    # NaN or inf in the inputs reach these two small reductions: checked here, not by another pass over Z
    check_finite("class_means", centred.sum((-2, -1)))
    check_finite("deviations", var.sum(-1))
    stats = SampleStats(centred, Z, var, counts, _floor(N, m, Z.dtype))
    stats.papyan = papyan
    out = {name: REGISTRY[name][0](stats) for name in ONLINE_METRICS}
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
    etf_error, cdnv (alias ``nc2`` for four of them) with the same definitions and guards as `nc_metrics`,
    using tr(Sigma_W) = sum_k n_k Var_k / N.

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
    dict[str, torch.Tensor]
        dict name -> Tensor (...)
    """
    M = check_features("class_means", class_means)
    V = check_features("within_var", within_var, ndim=1).to(device=M.device, dtype=M.dtype)
    K, m = M.shape[-2:]
    if V.shape[-1] != K:
        raise ValueError(f"within_var must have shape (..., K={K}), got {tuple(V.shape)}")
    counts = torch.as_tensor(np.asarray(counts) if not torch.is_tensor(counts) else counts)
    if counts.is_floating_point() or counts.shape != (K,):
        raise ValueError(f"counts must be {K} integers (samples per class), got {counts.tolist()}")
    if bool((counts < 1).any()):
        raise ValueError(f"counts must be >= 1: every class needs a sample; classes are empty: {counts.tolist()}")
    if K < 2:
        raise ValueError(f"NC metrics need at least 2 classes, got K={K}")
    counts = counts.to(device=M.device, dtype=M.dtype)
    chosen = select(names, MEANS_METRICS, "only class means and within-class variances are available")
    # one scale for both inputs: the means' largest entry or the within-class spread, whichever is larger
    check_finite("within_var", V.sum(-1))
    scale = torch.maximum(amax_scale(M, "class_means"), V.clamp(min=0).amax(-1).sqrt())
    stats = MeansStats(
        M / scale[..., None, None], V / (scale * scale)[..., None], counts, _floor(float(counts.sum()), m, M.dtype)
    )
    batch = torch.broadcast_shapes(M.shape[:-2], V.shape[:-1])
    return {name: REGISTRY[name][0](stats).expand(batch).clone() for name in chosen}


# ------------------------------------------------------------------------------------ ncm from the parts


def _segment_min(q: torch.Tensor, labels: torch.Tensor, K: int) -> torch.Tensor:
    """Per class k, the minimum of q over the samples of k: (..., N, K) -> (..., K, K)."""
    lead, (N, L) = q.shape[:-2], q.shape[-2:]
    flat = q.reshape(-1, N, L)  # (B, N, L)
    if N % K == 0 and torch.equal(labels, torch.arange(K, device=labels.device).repeat_interleave(N // K)):
        # samples ordered by class in equal blocks (every balanced LESDE): a strided view, no scatter
        out = flat.view(flat.shape[0], K, N // K, L).amin(-2)
    else:
        index = labels[None, :, None].expand_as(flat)
        out = flat.new_empty(flat.shape[0], K, L).scatter_reduce_(1, index, flat, "amin", include_self=False)
    return out.reshape(*lead, K, L)


def ncm_from_parts(
    projections: torch.Tensor, means: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The ncm test, reduced like `lesde.separability.pair_stats`, from class means and projections.

    With h_i = mu_k + z_i for a sample of class k, the ncm gap against class l is

    $$ \|h_i - \mu_l\|^2 - \|h_i - \mu_k\|^2 = \|\mu_k - \mu_l\|^2 + 2 z_i^\top (\mu_k - \mu_l), $$

    so with p_{il} = z_i^\top c_l for any common translate c_l = mu_l - a of the means, the pair (k, l) passes on
    k's side iff ||mu_k - mu_l||^2 + 2 min_{i in k} (p_{ik} - p_{il}) > 0 (rounding is monotone, so taking the
    minimum first decides exactly as testing every sample). Nothing of size (N, m) is touched: the caller already
    has the projections (``simulate(save="metrics")`` shares them with nc1), and the test never sees the rounding
    of h_i = mu_k + z_i at extreme scales.

    Parameters
    ----------
    projections : Tensor (..., N, K)
        p_{il} = z_i . c_l, z_i the deviation of sample i from its class mean.
    means : Tensor (..., K, m)
        The same translates c_l (e.g. centred on the mean of the class means), pre-scaled by the caller so that
        squaring cannot overflow.
    labels : Tensor (N,)
        Class of each sample, every class 0..K-1 present (not re-checked here: the caller validated them).

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        separable_fraction : Tensor (...,), the dtype of ``means``
        all_separable : Tensor (...,), bool
    """
    K = means.shape[-2]
    diff = means[..., :, None, :] - means[..., None, :, :]  # (..., K, K, m)
    dist2 = (diff * diff).sum(-1)  # (..., K, K)  ||mu_k - mu_l||^2, exact symmetric, 0 on the diagonal
    own = projections.gather(-1, labels.expand(*projections.shape[:-1])[..., None])  # (..., N, 1)  p_{i y_i}
    worst = _segment_min(own - projections, labels, K)  # (..., K, K)  min over i in k of z_i . (mu_k - mu_l)
    one_sided = dist2 + 2.0 * worst > 0
    sep = one_sided & one_sided.transpose(-1, -2)
    n_pairs = K * (K - 1) // 2
    count = upper_pairs(sep)
    return count.to(means.dtype) / n_pairs, count == n_pairs
