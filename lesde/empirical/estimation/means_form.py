r"""The integrated (``means``) form of the estimators, the original LE-SDE code's, kept for comparison with the
published analysis.

With $\bar X$ the average of the K class means of the probes, $c_0 = \bar X(0)$ and
$c_k = \bar X_k(0) - c_0$, the LE-SDE with T = identity and balanced classes gives
$\bar X(t) = c_0 e^{(A + (K-1)B)/K}$ and $\bar X_k - \bar X = c_k e^{(A - B)/K}$, so

$$ \hat A(t) = \log\Big| \frac{\bar X(t) (\bar X_k(t) - \bar X(t))^{K-1}}{c_0 c_k^{K-1}} \Big|, \quad
\hat B(t) = -\log\Big| \frac{c_0}{c_k} \frac{\bar X_k(t) - \bar X(t)}{\bar X(t)} \Big| $$

averaged over classes and coordinates in log space; $\hat\alpha, \hat\beta$ are the least-squares slopes of
$\hat A, \hat B$ over each window (a first-order Savitzky-Golay derivative), with the standard error over
runs (and the covariance of alpha and beta from the same
per-run slopes). ``weighting`` does not apply to it.

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
    R, S = A.shape
    starts = pool.window_starts(S, window)
    wid = pool.window_ids(S, starts)
    n = np.bincount(wid).astype(np.float64)
    tm = np.bincount(wid, steps * lr) / n
    slopes = {q: _slopes(Z, steps * lr, wid) for q, Z in (("alpha", A), ("beta", B))}  # (R, W) each
    whole = {q: _slopes(Z, steps * lr, np.zeros(S, dtype=np.int64)) for q, Z in (("alpha", A), ("beta", B))}
    alpha, beta = _over_runs(slopes["alpha"]), _over_runs(slopes["beta"])
    eye = np.eye(K)
    E = tuple(a[:, None, None] * eye + b[:, None, None] * (1 - eye) for a, b in zip(alpha, beta))
    stops = np.append(starts[1:], S) - 1
    with np.errstate(invalid="ignore"):
        integ = {q: np.stack([np.bincount(wid, z) for z in Z]).mean(0) / n for q, Z in (("alpha", A), ("beta", B))}
    return dict(
        by_weighting={
            "increment": {"alpha": alpha, "beta": beta, "E": E, "time": tm, "cov": _run_cov(*slopes.values())}
        },
        pooled={
            "increment": {
                "alpha": _over_runs(whole["alpha"]),
                "beta": _over_runs(whole["beta"]),
                "cov": _run_cov(*whole.values()),
            }
        },
        integrated=integ,
        noise=np.full(len(starts), np.nan),
        step_start=steps[starts],
        step_stop=steps[stops],
        n_obs=n * F.shape[0],
        n_steps=n,
        se_cluster="run",
    )


def _slopes(Z: np.ndarray, t: np.ndarray, wid: np.ndarray) -> np.ndarray:
    """Per run and window, the least-squares slope of Z (R, S) over t (S,): (R, W)."""
    n = np.bincount(wid).astype(np.float64)
    tc = t - (np.bincount(wid, t) / n)[wid]
    sxx = np.bincount(wid, tc * tc)
    sxy = np.stack([np.bincount(wid, tc * z) for z in Z])
    with np.errstate(invalid="ignore", divide="ignore"):
        return sxy / sxx


def _over_runs(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean over runs of per-run slopes (R, W), its standard error (the spread over runs) and R - 1."""
    R = b.shape[0]
    se = b.std(0, ddof=1) / np.sqrt(R) if R > 1 else np.full(b.shape[1], np.nan)
    return b.mean(0), se, np.full(b.shape[1], R - 1.0)


def _run_cov(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Covariance of the run means of per-run slopes a, b (R, W)."""
    R = a.shape[0]
    if R < 2:
        return np.full(a.shape[1], np.nan)
    return ((a - a.mean(0)) * (b - b.mean(0))).sum(0) / (R - 1) / R


__all__ = ["means_form"]
