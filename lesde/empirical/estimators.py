r"""Estimators of the elasticity matrix :math:`E(t)` from a track (DESIGN.md section 3b).

A track (from :func:`~lesde.empirical.track` or :func:`~lesde.empirical.simulate_discrete`) records, at step
:math:`s`, the one-step increment :math:`\Delta_i = f_s(x_i) - f_{s-1}(x_i)` of every probe, the sampled example
:math:`I_s` (label :math:`L_s`) and its feature :math:`f_{s-1}(x_{I_s})` before the step.

Regression forms (``feature``, ``residual``): with :math:`v = \eta f_{s-1}(x_{I_s})` (feature) or
:math:`v = \eta (e_{L_s} - \mathrm{softmax}(f_{s-1}(x_{I_s})))` (residual, the kernel form; needs logits),
the discrete LE process gives :math:`\Delta_i = E(y_i, L_s) v + \sqrt{\eta}\phi_i`, so within a window the pooled
least-squares estimate of the pair :math:`(k, l)` is

.. math::

    \hat E_{kl} = \frac{\sum_{(r,s): L_s = l} \sum_{i: y_i = k} \langle \Delta_i, v \rangle}
                       {\sum_{(r,s): L_s = l} \sum_{i: y_i = k} \|v\|^2},

:math:`\hat\alpha` pools the pairs :math:`k = l` and :math:`\hat\beta` the pairs :math:`k \ne l`. Standard errors
are cluster-robust with one cluster per (run, step): probes of one step share :math:`v`, so their errors are not
independent; :math:`\mathrm{SE}^2 = \frac{G}{G-1} \sum_c (N_c - \hat E D_c)^2 / (\sum_c D_c)^2` with :math:`N_c,
D_c` the cluster sums of numerator and denominator and :math:`G` the clusters. The window's ``time`` is the
:math:`\|v\|^2`-weighted mean of :math:`t_{s-1} = (s-1)\eta` (the time at which step :math:`s` evaluates
:math:`E`), which removes the first-order bias of pooling a changing :math:`E(t)`. ``noise`` is the residual
scale :math:`\hat\sigma = (\sum \|\Delta_i - \hat E v\|^2 / (n\, m\, \eta))^{1/2}`, the diffusion that the LE-SDE
needs to imitate the track. The sampled example itself is left out of its own step (its self-elasticity is a
different, much larger quantity in a network).

``means`` (the original LE-SDE code's integrated estimators, T = identity, balanced): per run,

.. math::

    \hat A(t) = \log\Big| \frac{\bar X(t) (\bar X_k(t) - \bar X(t))^{K-1}}{c_0 c_k^{K-1}} \Big|, \quad
    \hat B(t) = -\log\Big| \frac{c_0}{c_k} \frac{\bar X_k(t) - \bar X(t)}{\bar X(t)} \Big|

averaged over classes and coordinates in log space; :math:`\hat\alpha, \hat\beta` are the least-squares slopes of
:math:`\hat A, \hat B` over each window (a first-order Savitzky-Golay derivative), with the standard error over
runs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr
from scipy.stats import norm

from .._validate import check_choice, check_int
from ._common import finish


def _onehot(x: np.ndarray, K: int) -> np.ndarray:
    return (x[..., None] == np.arange(K)).astype(np.float64)


def _window_starts(n: int, window: int) -> np.ndarray:
    """Window starts over n points; a trailing remainder shorter than half a window joins the previous one."""
    starts = np.arange(0, n, window)
    if len(starts) > 1 and n - starts[-1] < window / 2:
        starts = starts[:-1]
    return starts


def _pooled(Nc: np.ndarray, Dc: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ratio estimate and cluster-robust SE per window. Nc, Dc (R, S, ...) cluster sums -> (W, ...) each."""
    num = np.add.reduceat(Nc, starts, axis=1).sum(0)  # (W, ...)
    den = np.add.reduceat(Dc, starts, axis=1).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = num / den
        wid = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, Nc.shape[1])))
        resid = Nc - est[wid][None] * Dc  # (R, S, ...)
        ss = np.add.reduceat(resid**2, starts, axis=1).sum(0)
        G = np.add.reduceat((Dc > 0).astype(np.float64), starts, axis=1).sum(0)
        se = np.sqrt(G / (G - 1) * ss) / den
    est = np.where(den > 0, est, np.nan)
    se = np.where(G > 1, se, np.nan)
    return est, se


def _regression(ds: xr.Dataset, v: np.ndarray, window: int) -> dict:
    """Pooled least squares of each probe's increment on v (R, S, m); step 0 (no increment) is dropped."""
    K = int(ds.attrs["num_classes"])
    lr = float(ds.attrs["lr"])
    D = ds["increment"].values[:, 1:].astype(np.float64)  # (R, S, P, m)
    v = v[:, 1:].astype(np.float64)  # (R, S, m)
    if D.shape[-1] != v.shape[-1]:
        raise ValueError(f"increments have {D.shape[-1]} coordinates but the regressor has {v.shape[-1]}")
    L = ds["sampled_label"].values[:, 1:]
    I = ds["sampled_index"].values[:, 1:]
    keep = (ds["sample_index"].values[None, None, :] != I[..., None]).astype(np.float64)  # (R, S, P)
    Y, Lh = _onehot(ds["label"].values, K), _onehot(L, K)  # (P, K), (R, S, K)
    num = np.einsum("rspm,rsm->rsp", D, v) * keep
    vv = (v * v).sum(-1)  # (R, S)
    sq = (D * D).sum(-1) * keep
    Nc = np.einsum("rsp,pk,rsl->rskl", num, Y, Lh)  # (R, S, K, K) cluster sums per class pair
    Dc = np.einsum("rs,rsp,pk,rsl->rskl", vv, keep, Y, Lh)
    Qc = np.einsum("rsp,pk,rsl->rskl", sq, Y, Lh)
    Cc = np.einsum("rsp,pk,rsl->rskl", keep, Y, Lh)
    S = D.shape[1]
    starts = _window_starts(S, window)
    E, E_se = _pooled(Nc, Dc, starts)  # (W, K, K)
    diag = np.eye(K, dtype=bool)
    Na, Da = Nc[..., diag].sum(-1), Dc[..., diag].sum(-1)  # (R, S)
    alpha, alpha_se = _pooled(Na, Da, starts)
    beta, beta_se = _pooled(Nc.sum((2, 3)) - Na, Dc.sum((2, 3)) - Da, starts)
    # residual scale: sum ||Delta - E v||^2 = Q - 2 E N + E^2 D per pair, pooled per window
    red = [np.add.reduceat(x, starts, axis=1).sum(0) for x in (Qc, Nc, Dc, Cc)]
    Ew = np.nan_to_num(E)
    ss = (red[0] - 2 * Ew * red[1] + Ew**2 * red[2]).sum((1, 2))
    noise = np.sqrt(np.maximum(ss, 0) / (red[3].sum((1, 2)) * D.shape[-1] * lr))
    steps = ds["step"].values[1:]
    t_prev = (steps - 1) * lr  # step s evaluates E at t_{s-1}
    w = Dc.sum((0, 2, 3))  # (S,)
    wt = np.add.reduceat(w * t_prev, starts) / np.add.reduceat(w, starts)
    stops = np.append(starts[1:], S) - 1
    return dict(
        alpha=alpha,
        alpha_se=alpha_se,
        beta=beta,
        beta_se=beta_se,
        E=E,
        E_se=E_se,
        noise=noise,
        time=wt,
        step_start=steps[starts],
        step_stop=steps[stops],
        n_obs=red[3].sum((1, 2)),
    )


def _feature_form(ds: xr.Dataset, window: int) -> dict:
    return _regression(ds, float(ds.attrs["lr"]) * ds["sampled_feature"].values, window)


def _residual_form(ds: xr.Dataset, window: int) -> dict:
    if "sampled_residual" not in ds or ds.sizes["feature"] != ds.sizes["class"]:
        raise ValueError(
            "form='residual' needs logit features (feature dim == number of classes) and "
            "sampled_residual in the track; track with feature='logits' or use form='feature'"
        )
    if ds.attrs.get("feature") == "penultimate":
        raise ValueError(
            "form='residual' regresses logit increments on logit residuals; the track holds "
            "penultimate features: use form='feature'"
        )
    return _regression(ds, float(ds.attrs["lr"]) * ds["sampled_residual"].values, window)


def _means_form(ds: xr.Dataset, window: int) -> dict:
    K = int(ds.attrs["num_classes"])
    lr = float(ds.attrs["lr"])
    F = ds["features"].values.astype(np.float64)  # (R, S, P, m)
    Y = _onehot(ds["label"].values, K)
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
    S = len(steps)
    starts = _window_starts(S, window)
    wid = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, S)))
    n = np.bincount(wid).astype(np.float64)
    tm = np.bincount(wid, t) / n
    tc = t - tm[wid]
    sxx = np.bincount(wid, tc * tc)

    def slope(Z):  # per run and window: least-squares slope of Z over t
        sxy = np.stack([np.bincount(wid, tc * z) for z in Z])  # (R, W)
        with np.errstate(invalid="ignore", divide="ignore"):
            b = sxy / sxx
        R = b.shape[0]
        return b.mean(0), (b.std(0, ddof=1) / np.sqrt(R) if R > 1 else np.full(b.shape[1], np.nan))

    alpha, alpha_se = slope(A)
    beta, beta_se = slope(B)
    eye = np.eye(K)
    E = alpha[:, None, None] * eye + beta[:, None, None] * (1 - eye)
    E_se = alpha_se[:, None, None] * eye + beta_se[:, None, None] * (1 - eye)
    stops = np.append(starts[1:], S) - 1
    return dict(
        alpha=alpha,
        alpha_se=alpha_se,
        beta=beta,
        beta_se=beta_se,
        E=E,
        E_se=E_se,
        noise=np.full(len(starts), np.nan),
        time=tm,
        step_start=steps[starts],
        step_stop=steps[stops],
        n_obs=n * F.shape[0],
    )


FORMS: dict[str, Callable[[xr.Dataset, int], dict]] = {
    "feature": _feature_form,
    "residual": _residual_form,
    "means": _means_form,
}

_LONG = {
    "alpha_se": "standard error of alpha",
    "beta_se": "standard error of beta",
    "E_se": "standard error of E",
    "alpha_lower": "lower confidence bound of alpha",
    "alpha_upper": "upper confidence bound of alpha",
    "beta_lower": "lower confidence bound of beta",
    "beta_upper": "upper confidence bound of beta",
    "noise": "residual diffusion scale sigma_hat",
    "n_obs": "observations pooled in the window",
    "step_start": "first step of the window",
    "step_stop": "last step of the window",
}


def estimate(
    track_ds: xr.Dataset, form: str = "feature", window: int | None = None, confidence: float = 0.95
) -> xr.Dataset:
    r"""Estimate :math:`\alpha_t`, :math:`\beta_t` and :math:`E(t)` from a track, pooled over windows of steps.

    Parameters
    ----------
    track_ds : xarray.Dataset
        Output of :func:`~lesde.empirical.track` or :func:`~lesde.empirical.simulate_discrete`.
    form : {"feature", "residual", "means"}
        Estimator (module docstring).
    window : int, optional
        Recorded steps per window; default: about 40 windows over the track.
    confidence : float
        Level of the normal confidence intervals ``alpha_lower/upper``, ``beta_lower/upper``.

    Returns
    -------
    xarray.Dataset over ``step`` (the window's middle recorded step) with ``alpha``, ``beta``, their ``_se``,
    ``_lower``, ``_upper``, ``E(step, class, class_other)`` (row: the moved probe's class, column: the sampled
    class), ``E_se``, ``noise``, ``n_obs`` and coordinates ``time``, ``step_start``, ``step_stop``.

    Examples
    --------
    >>> import lesde
    >>> from lesde.empirical import simulate_discrete
    >>> model = lesde.LESDE(3, 3, 10, alpha=1.0, beta=0.25, noise=0.05)
    >>> est = estimate(simulate_discrete(model, lr=0.01, steps=200, runs=4), window=200)
    >>> round(float(est.alpha[0]), 1), round(float(est.beta[0]), 2)
    (1.0, 0.25)
    """
    form = check_choice("form", form, FORMS)
    S = track_ds.sizes["step"] - (0 if form == "means" else 1)
    window = max(1, S // 40) if window is None else check_int("window", window)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    r = FORMS[form](track_ds, window)
    K = int(track_ds.attrs["num_classes"])
    z = float(norm.ppf(0.5 + confidence / 2))
    mid = (np.asarray(r["step_start"]) + np.asarray(r["step_stop"])) // 2
    data = {
        "alpha": ("step", r["alpha"]),
        "alpha_se": ("step", r["alpha_se"]),
        "alpha_lower": ("step", r["alpha"] - z * r["alpha_se"]),
        "alpha_upper": ("step", r["alpha"] + z * r["alpha_se"]),
        "beta": ("step", r["beta"]),
        "beta_se": ("step", r["beta_se"]),
        "beta_lower": ("step", r["beta"] - z * r["beta_se"]),
        "beta_upper": ("step", r["beta"] + z * r["beta_se"]),
        "E": (("step", "class", "class_other"), r["E"]),
        "E_se": (("step", "class", "class_other"), r["E_se"]),
        "noise": ("step", r["noise"]),
        "n_obs": ("step", r["n_obs"]),
    }
    ds = xr.Dataset(
        data,
        coords={
            "step": mid,
            "time": ("step", r["time"]),
            "step_start": ("step", r["step_start"]),
            "step_stop": ("step", r["step_stop"]),
            "class": np.arange(K),
            "class_other": np.arange(K),
        },
    )
    for name, long in _LONG.items():
        ds[name].attrs["long_name"] = long
    keep = {
        k: track_ds.attrs[k]
        for k in ("source", "lr", "steps", "runs", "feature", "num_classes", "class_counts", "seed", "spec")
        if k in track_ds.attrs
    }
    return finish(ds, **keep, form=form, window=window, confidence=confidence, num_probes=track_ds.sizes["probe"])


__all__ = ["estimate", "FORMS"]
