r"""The integrated (``means``) form of the estimators, the original LE-SDE code's, kept for comparison with the
published analysis.

With :math:`\bar X` the average of the K class means of the probes, :math:`c_0 = \bar X(0)` and
:math:`c_k = \bar X_k(0) - c_0`, the LE-SDE with T = identity and balanced classes gives
:math:`\bar X(t) = c_0 e^{(A + (K-1)B)/K}` and :math:`\bar X_k - \bar X = c_k e^{(A - B)/K}`, so

.. math::

    \hat A(t) = \log\Big| \frac{\bar X(t) (\bar X_k(t) - \bar X(t))^{K-1}}{c_0 c_k^{K-1}} \Big|, \quad
    \hat B(t) = -\log\Big| \frac{c_0}{c_k} \frac{\bar X_k(t) - \bar X(t)}{\bar X(t)} \Big|

averaged over classes and coordinates in log space; :math:`\hat\alpha, \hat\beta` are the least-squares slopes of
:math:`\hat A, \hat B` over each window (a first-order Savitzky-Golay derivative), with the standard error over
runs. ``weighting`` does not apply to it.

Fragile when a coordinate crosses zero (its log diverges).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from . import _pooling as pool
from ._pooling import onehot


def means_form(ds: xr.Dataset, window: int) -> dict:
    """``form="means"``: per window, the slopes of the integrated estimators and their spread over runs."""
    K = int(ds.attrs["num_classes"])
    lr = float(ds.attrs["lr"])
    F = ds["features"].values.astype(np.float64)  # (R, S, P, m)
    Y = onehot(ds["label"].values, K)
    M = np.einsum("rspm,pk->rskm", F, Y / Y.sum(0))  # (R, S, K, m) class means
    Xb = M.mean(2)  # (R, S, m) average of the class means
    dev = M - Xb[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        la = np.log(np.abs(Xb / Xb[:, :1]))[:, :, None]  # (R, S, 1, m)
        lk = np.log(np.abs(dev / dev[:, :1]))  # (R, S, K, m)
    A = (la + (K - 1) * lk).mean((2, 3))  # (R, S): integral of alpha
    B = (la - lk).mean((2, 3))  # integral of beta
    steps = ds["step"].values
    t = steps * lr
    R, S = A.shape
    starts = pool.window_starts(S, window)
    wid = pool.window_ids(S, starts)
    n = np.bincount(wid).astype(np.float64)
    tm = np.bincount(wid, t) / n
    tc = t - tm[wid]
    sxx = np.bincount(wid, tc * tc)

    def slope(Z):  # per run and window: least-squares slope of Z over t; the SE is the spread over runs
        sxy = np.stack([np.bincount(wid, tc * z) for z in Z])  # (R, W)
        with np.errstate(invalid="ignore", divide="ignore"):
            b = sxy / sxx
        se = b.std(0, ddof=1) / np.sqrt(R) if R > 1 else np.full(b.shape[1], np.nan)
        return b.mean(0), se, np.full(b.shape[1], R - 1.0)

    alpha, beta = slope(A), slope(B)
    eye = np.eye(K)
    E = tuple(a[:, None, None] * eye + b[:, None, None] * (1 - eye) for a, b in zip(alpha, beta))
    stops = np.append(starts[1:], S) - 1
    with np.errstate(invalid="ignore"):
        integ = {q: np.stack([np.bincount(wid, z) for z in Z]).mean(0) / n for q, Z in (("alpha", A), ("beta", B))}
    return dict(
        by_weighting={"increment": {"alpha": alpha, "beta": beta, "E": E, "time": tm}},
        integrated=integ,
        noise=np.full(len(starts), np.nan),
        step_start=steps[starts],
        step_stop=steps[stops],
        n_obs=n * F.shape[0],
        n_steps=n,
        se_cluster="run",
    )


__all__ = ["means_form"]
