"""Input checks and the one scale normalisation shared by the NC metrics and `lesde.separability`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: floating dtypes the kernels accept (float16/bfloat16 lose the noise floor and the degenerate cap to rounding)
FLOAT_DTYPES = (torch.float32, torch.float64)


def degenerate_ratio(dtype: torch.dtype) -> float:
    """Value of a positive scatter divided by a zero one (and the cap of every scatter ratio): ``1 / eps``.

    Beyond this ratio the denominator is below the dtype's resolution relative to the numerator, so the dtype
    cannot tell it from zero; a finite cap keeps means over paths and log-scale plots usable.

    ```pycon
    >>> import torch
    >>> from lesde.metrics import degenerate_ratio
    >>> degenerate_ratio(torch.float64)
    4503599627370496.0

    ```
    """
    return 1.0 / torch.finfo(dtype).eps


def check_features(name: str, x: Any, ndim: int = 2) -> torch.Tensor:
    """``x`` as a float32/float64 tensor with at least ``ndim`` dims (integers become float64, exactly)."""
    if not torch.is_tensor(x):
        x = torch.as_tensor(np.asarray(x))
    if x.dtype in (torch.bool, torch.complex64, torch.complex128) or (
        x.is_floating_point() and x.dtype not in FLOAT_DTYPES
    ):
        raise TypeError(
            f"{name} has dtype {x.dtype}; accepted dtypes: float32, float64 and integers (converted to float64); "
            "cast with .float() or .double()"
        )
    if not x.is_floating_point():
        x = x.double()
    if x.ndim < ndim:
        raise ValueError(f"{name} must have at least {ndim} dims, got shape {tuple(x.shape)}")
    return x


def finite_features(name: str, x: Any, ndim: int = 2) -> torch.Tensor:
    """`check_features` with finite entries: NaN and inf refused up front rather than returned as NaN."""
    t = check_features(name, x, ndim)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf; every entry must be finite")
    return t


def shapes_message(expected: str, **arrays: torch.Tensor) -> str:
    """``expected ...; got name (shape), ...``: the message of a shape mismatch between several arrays."""
    return f"expected {expected}; got " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())


def check_finite(name: str, summary: torch.Tensor) -> None:
    """Raise if ``summary`` (a per-item reduction that NaN and inf propagate into) is not finite."""
    bad = ~torch.isfinite(summary)
    if bool(bad.any()):
        raise ValueError(
            f"{name} contains NaN or inf ({int(bad.sum())} of {bad.numel()} items; an overflowed state? simulate "
            "in float64, or with a smaller step); NC metrics and separability need finite values"
        )


def amax_scale(x: torch.Tensor, name: str | None = None) -> torch.Tensor:
    """Largest |entry| over the last two dims, 1 where everything is zero (so dividing is a no-op). (...).

    The one scale normalisation of the metrics and separability: dividing by it before anything is squared keeps
    features of magnitude 1e200 (float64) or 1e20 (float32) from overflowing. With ``name``, NaN or inf in ``x``
    (which this reduction propagates) raise a ValueError naming it, at no extra pass over ``x``.
    """
    # max(amax, -amin) reads x twice but writes nothing: x.abs() would allocate a full-size copy
    s = torch.maximum(x.amax(dim=(-2, -1)), -x.amin(dim=(-2, -1)))
    if name is not None:
        check_finite(name, s)
    return torch.where(s > 0, s, torch.ones_like(s))


def check_labels(
    labels: Any, n_samples: int, device: torch.device, num_classes: int | None = None
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Labels as a long tensor on ``device``, the number of classes K and the class counts (K,).

    K is ``num_classes`` (the classifier's rows) when given, else max label + 1; every class 0..K-1 must hold a
    sample, and K >= 2.
    """
    lab = labels if torch.is_tensor(labels) else torch.as_tensor(np.asarray(labels))
    if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
        raise TypeError(f"labels must hold integers, got dtype {lab.dtype}")
    if lab.ndim != 1 or lab.shape[0] != n_samples:
        raise ValueError(
            f"labels must have shape ({n_samples},), one class per sample of the features (..., N={n_samples}, m); "
            f"got shape {tuple(lab.shape)}"
        )
    lab = lab.to(device=device, dtype=torch.long)
    if n_samples == 0 or int(lab.min()) < 0:
        raise ValueError("labels must be non-empty class indices 0..K-1")
    top = int(lab.max())
    K = top + 1 if num_classes is None else num_classes
    if top >= K:
        raise ValueError(f"labels go up to {top} but the classifier has K={K} rows")
    if K < 2:
        raise ValueError(f"labels name K={K} class; NC metrics and separability need at least 2 classes")
    counts = torch.bincount(lab, minlength=K)
    if bool((counts == 0).any()):
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"labels must cover every class 0..K-1: classes {empty} are empty (counts {counts.tolist()})")
    return lab, K, counts


def pair_index(K: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (i, j) of the K(K-1)/2 pairs i < j."""
    return torch.triu_indices(K, K, offset=1, device=device).unbind(0)


def upper_pairs(sep: torch.Tensor) -> torch.Tensor:
    """Number of True unordered pairs k < l of a (..., K, K) bool matrix: (...,)."""
    i, j = pair_index(sep.shape[-1], sep.device)
    return sep[..., i, j].sum(-1)
