"""The integrated (``means``) estimator of the original LE-SDE code; formulas in :mod:`lesde.empirical.estimators`."""

from __future__ import annotations

import numpy as np
import xarray as xr

from . import _pooling as pool
from ._pooling import onehot


def means_form(ds: xr.Dataset, window: int, confidence: float) -> dict:
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
