"""Pairwise class separability of feature clouds, batched over paths and times.

Three operational tests of whether classes k and l are separated, all on samples (class means alone cannot
decide separability):

``ncm`` (default)
    Nearest-class-mean: every sample of k is strictly nearer to $\\bar X_k$ than to $\\bar X_l$, and
    every sample of l strictly nearer to $\\bar X_l$ than to $\\bar X_k$; i.e. the hyperplane bisecting
    the two means separates the classes.
``margin``
    The ncm test with a relative margin $\\delta \\ge 0$ (argument ``margin``): for every sample x of k

$$ \\|x - \\bar X_l\\|^2 - \\|x - \\bar X_k\\|^2 > \\delta\\, \\|\\bar X_k - \\bar X_l\\|^2, $$

    and symmetrically for the samples of l. Since the left side equals
    $2 \\|\\bar X_k - \\bar X_l\\|\\, s(x)$ with s(x) the signed distance of x from the bisecting hyperplane
    (positive on k's side), this asks every sample to lie farther than $(\\delta/2)\\|\\bar X_k-\\bar X_l\\|$
    from the bisector: delta = 0 is ncm, delta = 1 asks every sample to be at least as far from the bisector as its
    own class mean.
``linear``
    Some affine hyperplane strictly separates the two classes: exact LP feasibility of
    $y_i (w^\\top x_i + b) \\ge 1$ (scipy ``linprog``/HiGHS), one LP per pair and batch item on the CPU
    (the slow exact method; pairs already ncm-separable are linearly separable and skip the LP). Results are
    returned on the input's device.

Decisions (written down because the spec leaves them open):

- The answer is scale- and translation-free: each batch item is divided by its max-abs value, centred on the
  mean of its class means and divided by the max-abs value again before any squaring, so a float64 state of
  magnitude 1e200 gives the same answer as the rescaled state and nothing overflows. Inputs are checked by the
  functions `lesde.metrics` uses (one label check, one scale normalisation): NaN/inf and float16 raise.
- ``ncm``/``margin`` use $\\|x-a\\|^2-\\|x-b\\|^2 = 2x^\\top(b-a)+\\|a\\|^2-\\|b\\|^2$ so all K^2 pairs come from
  one (N, m) x (m, K) product per batch item: no Python loops over batch dims or pairs.
- Every class 0..K-1 (K = max label + 1) must hold at least one sample; the diagonal is True.
- ``margin`` is only meaningful for ``method="margin"``; passing a nonzero margin with ``ncm`` or ``linear`` is an
  error rather than silently ignored.
- `summary` treats the leading dim of a tensor (the dim named ``path`` of a DataArray) as paths. The
  interval for ``separable_fraction`` is Wilson's interval on the pair counts pooled over paths (successes = all
  separable pairs, trials = paths x K(K-1)/2). Pairs within one path are correlated, so this interval is narrower
  than an interval over independent paths would be; it is a descriptive band, ``p_all_separable`` (one Bernoulli
  trial per path) is the one with exact Wilson coverage semantics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .metrics.inputs import amax_scale, check_features, check_labels, upper_pairs
from .metrics.kernels import ncm_from_parts  # the ncm test from class means and projections (save="metrics")
from .validation import check_choice, check_positive_float

__all__ = ["separable", "separable_from_dataset", "pair_stats", "ncm_from_parts", "summary", "wilson_interval"]


# ----------------------------------------------------------------------------------------------------------------
# preparation


def _normalized(features: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Rescale, centre and rescale each batch item; return (X (..., N, m), means (..., K, m), onehot (N, K), K).

    Half-precision features are tested in float32: a separability test only compares distances, which float32
    resolves for every value float16 or bfloat16 can hold (their own rounding would decide near-ties).
    """
    if torch.is_tensor(features) and features.dtype in (torch.float16, torch.bfloat16):
        features = features.float()
    x = check_features("features", features)
    labels, K, counts = check_labels(labels, x.shape[-2], x.device)
    onehot = torch.nn.functional.one_hot(labels, K).to(x.dtype)  # (N, K)
    x = x / amax_scale(x, "features")[..., None, None]  # |x| <= 1: the sums below cannot overflow
    means = torch.einsum("nk,...nm->...km", onehot, x) / counts.to(x.dtype)[:, None]  # (..., K, m)
    centre = means.mean(dim=-2, keepdim=True)  # (..., 1, m) translation does not change any test
    x = x - centre
    s = amax_scale(x)[..., None, None]
    return x / s, (means - centre) / s, onehot, K


def _margin_gap(x: torch.Tensor, means: torch.Tensor, onehot: torch.Tensor, delta: float) -> torch.Tensor:
    """Per sample i (class k) and class l: (d_il^2 - d_ik^2) - delta ||mu_k - mu_l||^2. Shape (..., N, K)."""
    sq = (means * means).sum(-1)  # (..., K)
    # g_il = ||mu_l||^2 - 2 x_i . mu_l is ||x_i - mu_l||^2 up to the l-independent ||x_i||^2
    g = sq[..., None, :] - 2.0 * x @ means.transpose(-1, -2)  # (..., N, K)
    g_own = (g * onehot).sum(-1, keepdim=True)  # (..., N, 1)
    gap = g - g_own  # (..., N, K): d_il^2 - d_ik^2
    if delta:
        # ||mu_k - mu_l||^2 for the sample's own class k, from the Gram of the means
        gram = means @ means.transpose(-1, -2)  # (..., K, K)
        dist2 = sq[..., :, None] + sq[..., None, :] - 2.0 * gram  # (..., K, K)
        gap = gap - delta * (onehot @ dist2)  # (..., N, K)
    return gap


def _ncm_margin(features: Any, labels: Any, delta: float) -> torch.Tensor:
    x, means, onehot, K = _normalized(features, labels)
    ok = _margin_gap(x, means, onehot, delta) > 0  # (..., N, K)
    ok = ok | onehot.bool()  # a sample is never compared with its own class
    # violations[k, l] = number of samples of class k not strictly on k's side of the (k, l) test
    violations = onehot.transpose(0, 1) @ (~ok).to(onehot.dtype)  # (..., K, K)
    one_sided = violations == 0
    return one_sided & one_sided.transpose(-1, -2)


def _lp_separable(a: np.ndarray, b: np.ndarray) -> bool:
    """Strict linear separability of point sets a (n_a, m) and b (n_b, m) by LP feasibility."""
    from scipy.optimize import linprog

    pts = np.concatenate([a, b])  # (n, m)
    y = np.concatenate([np.ones(len(a)), -np.ones(len(b))])
    lifted = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)  # (n, m+1): [x, 1] carries the bias
    res = linprog(
        c=np.zeros(lifted.shape[1]),
        A_ub=-y[:, None] * lifted,
        b_ub=-np.ones(len(pts)),
        bounds=[(None, None)] * lifted.shape[1],
        method="highs",
    )
    if res.status not in (0, 2):  # 0 feasible, 2 infeasible; anything else is a solver failure
        raise RuntimeError(f"linprog failed while testing linear separability: {res.message}")
    return res.status == 0


def _linear(features: Any, labels: Any, delta: float) -> torch.Tensor:
    x, _, _, K = _normalized(features, labels)
    fast = _ncm_margin(features, labels, 0.0)  # strict ncm separation implies linear separation
    lab = torch.as_tensor(labels).long().cpu().numpy()
    xs = x.detach().cpu().numpy()
    flat = xs.reshape(-1, *xs.shape[-2:])  # (B, N, m)
    out = fast.detach().cpu().numpy().reshape(-1, K, K).copy()  # (B, K, K)
    groups = [np.flatnonzero(lab == k) for k in range(K)]
    # the exact test is an LP per (item, pair): this loop is the accepted slow path (CPU, small problems)
    for b in range(flat.shape[0]):
        for k in range(K):
            for l in range(k + 1, K):
                if not out[b, k, l]:
                    out[b, k, l] = out[b, l, k] = _lp_separable(flat[b, groups[k]], flat[b, groups[l]])
    return torch.from_numpy(out.reshape(fast.shape)).to(fast.device)


_METHODS: dict[str, Callable[[Any, Any, float], torch.Tensor]] = {
    "ncm": lambda f, y, d: _ncm_margin(f, y, 0.0),
    "margin": _ncm_margin,
    "linear": _linear,
}


# ----------------------------------------------------------------------------------------------------------------
# public kernels


def separable(features: torch.Tensor, labels: torch.Tensor, method: str = "ncm", margin: float = 0.0) -> torch.Tensor:
    """Which class pairs are separable, for every batch item.

    Parameters
    ----------
    features : Tensor, shape (..., N, m)
        Sample features with any leading batch dims (paths, times, runs).
    labels : Tensor, shape (N,)
        Integer class of each sample, classes 0..K-1 each non-empty.
    method : "ncm" | "margin" | "linear"
        The test (module docstring). ``margin`` uses
        $\\|x-\\bar X_l\\|^2 - \\|x-\\bar X_k\\|^2 > \\delta \\|\\bar X_k - \\bar X_l\\|^2$ for every sample x of k.
    margin : float
        The relative margin delta >= 0 of ``method="margin"`` (must be 0 for the other methods).

    Returns
    -------
    Tensor, shape (..., K, K), bool
        Symmetric, True on the diagonal, on the device of ``features``.

    Examples
    --------
    >>> import torch
    >>> from lesde.separability import separable
    >>> x = torch.tensor([[0.0], [0.1], [1.0], [1.1]])
    >>> separable(x, torch.tensor([0, 0, 1, 1]))[0, 1].item()
    True
    """
    check_choice("method", method, _METHODS)
    delta = check_positive_float("margin", margin, allow_zero=True)
    if delta and method != "margin":
        raise ValueError(f"margin={margin} is only used by method='margin' (got method={method!r}); pass margin=0.0")
    return _METHODS[method](features, labels, delta)


def pair_stats(
    features: torch.Tensor, labels: torch.Tensor, method: str = "ncm", margin: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item reduction of `separable` (what ``simulate(save="metrics")`` stores).

    Returns
    -------
    separable_fraction : Tensor, shape (...,)
        Fraction of the K(K-1)/2 unordered class pairs that are separable.
    all_separable : Tensor, shape (...,), bool
        Whether every pair is.
    """
    sep = separable(features, labels, method=method, margin=margin)  # (..., K, K)
    K = sep.shape[-1]
    n_pairs = K * (K - 1) // 2
    count = upper_pairs(sep)
    dtype = features.dtype if torch.is_tensor(features) and features.is_floating_point() else torch.float64
    return count.to(dtype) / n_pairs, count == n_pairs


def separable_from_dataset(sim_ds: Any, method: str = "ncm", margin: float = 0.0) -> Any:
    """`separable` on a ``save="full"`` simulation Dataset.

    Parameters
    ----------
    sim_ds : xarray.Dataset
        Holds ``features(path, time, sample, feature)`` with coordinate ``label(sample)``.

    Returns
    -------
    Any
        Bool, dims (path, time, class, class_other), named ``separable``.
    """
    import xarray as xr

    if "features" not in sim_ds or "label" not in sim_ds.coords:
        raise ValueError(
            "sim_ds must be a save='full' Dataset with a features(path, time, sample, feature) variable and a "
            "label(sample) coordinate; simulate with save='full'"
        )
    feats = sim_ds["features"].transpose("path", "time", "sample", "feature")
    sep = separable(
        torch.from_numpy(np.ascontiguousarray(feats.values)),
        torch.from_numpy(sim_ds["label"].values),
        method=method,
        margin=margin,
    )
    K = sep.shape[-1]
    from .schema import VARIABLE_ATTRS

    return xr.DataArray(
        sep.cpu().numpy(),
        dims=("path", "time", "class", "class_other"),
        coords={"path": feats["path"], "time": feats["time"], "class": np.arange(K), "class_other": np.arange(K)},
        name="separable",
        attrs={**VARIABLE_ATTRS["separable"], "method": method, "margin": float(margin)},
    )


def wilson_interval(successes: Any, trials: Any, confidence: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Wilson score interval for a binomial proportion, elementwise.

    $$ \\frac{\\hat p + z^2/2n \\pm z \\sqrt{\\hat p (1-\\hat p)/n + z^2/4n^2}}{1 + z^2/n},
    \\quad \\hat p = s/n,\\ z = \\Phi^{-1}(1 - (1-\\text{confidence})/2). $$

    Entries with ``trials == 0`` get the uninformative interval (0, 1). Successes and trials must be finite,
    ``0 <= successes <= trials`` (a ValueError names the first entry that is not).

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        (lower, upper) : float64 tensors of the broadcast shape of ``successes`` and ``trials``.
    """
    from scipy.stats import norm

    conf = check_positive_float("confidence", confidence)
    if not conf < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    s = torch.as_tensor(successes, dtype=torch.float64)
    n = torch.as_tensor(trials, dtype=torch.float64, device=s.device)
    for name, v in (("successes", s), ("trials", n)):
        bad = ~torch.isfinite(v)
        if bool(bad.any()):
            raise ValueError(f"{name} must be finite counts; got {float(v[bad].flatten()[0])} (NaN or inf)")
    if bool((s < 0).any()) or bool((s > n).any()):
        raise ValueError("successes must lie in [0, trials]")
    z = float(norm.ppf(1.0 - (1.0 - conf) / 2.0))
    safe_n = torch.where(n > 0, n, torch.ones_like(n))
    p = s / safe_n
    denom = 1.0 + z * z / safe_n
    centre = (p + z * z / (2.0 * safe_n)) / denom
    half = z * torch.sqrt(p * (1.0 - p) / safe_n + z * z / (4.0 * safe_n * safe_n)) / denom
    # the bounds touch 0 (1) exactly when no (every) trial succeeded; pin them there instead of rounding error
    lower = torch.where((n > 0) & (s > 0), (centre - half).clamp(0.0, 1.0), torch.zeros_like(centre))
    upper = torch.where((n > 0) & (s < n), (centre + half).clamp(0.0, 1.0), torch.ones_like(centre))
    return lower, upper


def _summary_tensor(sep: torch.Tensor, confidence: float) -> dict[str, torch.Tensor]:
    if sep.dtype != torch.bool or sep.ndim < 3 or sep.shape[-1] != sep.shape[-2] or sep.shape[-1] < 2:
        raise ValueError(
            f"expected a bool tensor of shape (path, ..., K, K) with K >= 2 from separable(), got "
            f"{tuple(sep.shape)} {sep.dtype}"
        )
    K = sep.shape[-1]
    n_pairs = K * (K - 1) // 2
    n_paths = sep.shape[0]
    count = upper_pairs(sep).to(torch.float64)  # (P, ...)
    all_sep = (count == n_pairs).to(torch.float64)  # (P, ...)
    pooled = count.sum(0)  # (...,)
    n_all = all_sep.sum(0)
    out = {
        "separable_fraction": pooled / (n_paths * n_pairs),
        "p_all_separable": n_all / n_paths,
    }
    out["separable_fraction_lower"], out["separable_fraction_upper"] = wilson_interval(
        pooled, n_paths * n_pairs, confidence
    )
    out["p_all_separable_lower"], out["p_all_separable_upper"] = wilson_interval(n_all, n_paths, confidence)
    return out


def summary(sep: Any, confidence: float = 0.95) -> Any:
    """Fraction of separable pairs and probability that all pairs are separable, over paths.

    Parameters
    ----------
    sep : Tensor (path, ..., K, K) bool, or xarray.DataArray with dims path, class, class_other
        Output of `separable` / `separable_from_dataset`. For tensors dim 0 is the path dim.
    confidence : float
        Level of the Wilson intervals.

    Returns
    -------
    dict or xarray.Dataset
        A dict of float64 tensors (shape = the dims between path and the class dims), or an xarray.Dataset over
        the DataArray's remaining dims (e.g. ``time``), with

        - ``separable_fraction``: mean over paths of the fraction of the K(K-1)/2 unordered pairs separable,
          with ``_lower``/``_upper`` the Wilson interval of the pooled pair counts (see module docstring);
        - ``p_all_separable``: fraction of paths on which every pair is separable, with its Wilson interval.
    """
    if torch.is_tensor(sep):
        return _summary_tensor(sep, confidence)
    import xarray as xr

    from .schema import make_dataset

    if not isinstance(sep, xr.DataArray) or not {"path", "class", "class_other"} <= set(sep.dims):
        raise TypeError("sep must be a bool tensor (path, ..., K, K) or a DataArray with dims path, class, class_other")
    rest = [d for d in sep.dims if d not in ("path", "class", "class_other")]
    arr = sep.transpose("path", *rest, "class", "class_other")
    stats = _summary_tensor(torch.from_numpy(np.asarray(arr.values, dtype=bool)), confidence)
    return make_dataset(
        stats,
        {d: arr[d] for d in rest if d in arr.coords},  # DataArrays: the time coordinate keeps its description
        lead=rest,
        attrs={
            "confidence": float(confidence),
            "n_paths": arr.sizes["path"],
            "method": sep.attrs.get("method", "unknown"),
        },
    )
