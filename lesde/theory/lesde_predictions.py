"""LE-SDE predictions beside a simulation: the Gaussian law of the class means, and the angle of their limit.

**Class-mean moments.** The law comes from `lesde.theory.class_mean_law.class_mean_law` (closed form, Van
Loan, or the moment ODE), started at the simulation's t0 = 0 from the recorded initial law (``x0="iid"``: class
means N(0, x0_scale^2 / n_k)) or, for a given x0, from the measured law at t0; a Dataset cut to a later window (no
t0 record) and a given x0 is conditioned on its first record instead, which the ``prediction`` attr says. It is
evaluated at the Dataset's own time coordinate, never at positions.

Measured beside it, per time, over the paths whose class means are finite there (a NaN path is dropped from the
mean, the variance and the count alike; ``n_paths_finite(time)`` stores the count): the mean and the variance
(ddof 1). The z-scores are ``|measured - predicted| / standard error`` with the standard error of a mean,
``sqrt(var / P)``, and of a Gaussian sample variance, ``var sqrt(2 / (P - 1))``; they are NaN (and the
``zscore_note`` attr says at which times and why) where

- fewer than 2 paths are finite, or
- the standard error is at most ``RESOLUTION_FACTOR`` (100) times the dtype's resolution of the value,
  ``eps * (|mean| + sd)`` for a mean and ``eps * s * (2 sd + eps * s)`` with ``s = |mean| + sd`` for a variance:
  there rounding, not sampling, decides the deviation (a deterministic start would give z = inf in float32, and
  in float64 z ~ 1e4 from variances of 1e-30), and a z-score would mislead. The factor keeps 10 eps of accumulated rounding
  below 0.1 standard errors.

**Angle.** ``mean_cosine_predicted`` is the limit of the centred class means' mean cosine where one exists
(`lesde.theory.mean_direction.cosine_limit`: the simplex ETF where proven, else the dominant mode, labelled
as such), beside ``mean_cosine_distance = |mean_cosine - predicted|`` per path and time.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..integrators.exact import unsupported_reason
from ..metrics.kernels import means_metrics
from ..model import LESDE
from .class_mean_law import class_mean_law
from .mean_direction import cosine_limit

EXACT_MOMENTS = (
    "LE-SDE class-mean law (Kothapalli et al., Section 3.2): Gaussian with mean Phi m0 and covariance "
    "Phi C0 Phi^T + int Phi D Phi^T ({plan}), from t0 = {t0:g}, start: {start}"
)
#: z-scores need a standard error above this many times the dtype's resolution of the value (module docstring)
RESOLUTION_FACTOR = 100.0

Out = dict[str, tuple[tuple[str, ...], Any, dict[str, str]]]


def _finite_moments(M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count (T,), mean and variance (ddof 1) (T, K, m) over the paths of M (P, T, K, m) finite at each time."""
    finite = np.isfinite(M).all(axis=(2, 3))  # (P, T)
    count = finite.sum(0)
    keep = finite[:, :, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(keep, M, 0.0).sum(0) / count[:, None, None]
        dev = np.where(keep, M - mean, 0.0)
        var = (dev * dev).sum(0) / (count[:, None, None] - 1)
    return count, mean, var


def start_law(ds: xr.Dataset, model, M: np.ndarray, t0: float) -> tuple[torch.Tensor, torch.Tensor, float, str]:
    """``(mean0, cov0, t_start, description)``: the law the prediction starts from (module docstring)."""
    K, m = model.num_classes, model.dim
    if ds.attrs.get("x0", "") == "iid":  # X_i(0) ~ N(0, s^2 I): class means N(0, s^2 / n_k I), independent
        s2 = float(ds.attrs.get("x0_scale", 1.0)) ** 2
        cov = torch.kron(torch.diag(s2 / model.counts.cpu().double()), torch.eye(m, dtype=torch.float64))
        return torch.zeros(K * m, dtype=torch.float64), cov, t0, f"x0 i.i.d. N(0, {s2:g} I), its exact law"
    times = ds["time"].values
    j = int(np.argmin(np.abs(times - t0)))
    t_start = float(times[j]) if np.isclose(times[j], t0, rtol=0, atol=1e-12 * max(1.0, abs(t0))) else None
    if t_start is None:  # the window lacks t0: condition on the first record (the process is Markov)
        j, t_start = int(np.argmin(times)), float(times.min())
        how = f"the measured law at t = {t_start:g} (the Dataset has no t0 record and x0 was given, not drawn)"
    else:
        how = "the measured law at t0 (x0 given)"
    v0 = M[:, j].reshape(M.shape[0], K * m)
    v0 = torch.from_numpy(v0[np.isfinite(v0).all(1)]).double()
    cov = torch.cov(v0.T).reshape(K * m, K * m) if v0.shape[0] > 1 else torch.zeros(K * m, K * m, dtype=torch.float64)
    return v0.mean(0), cov, t_start, how


def _zscores(mean, var, sim_mean, sim_var, count, eps: float, start_index, times) -> tuple[np.ndarray, np.ndarray, str]:
    """The z-scores of the mean and variance per time (max over class and feature; NaN with the reasons noted)."""
    P = count[:, None, None].astype(float)
    sd = np.sqrt(np.maximum(var, 0.0))
    scale = np.abs(mean) + sd
    with np.errstate(invalid="ignore", divide="ignore"):
        se_mean, se_var = sd / np.sqrt(P), var * np.sqrt(2.0 / (P - 1))
        z_mean, z_var = np.abs(sim_mean - mean) / se_mean, np.abs(sim_var - var) / se_var
    few = np.broadcast_to(P < 2, mean.shape)
    coarse_mean = se_mean <= RESOLUTION_FACTOR * eps * scale
    coarse_var = se_var <= RESOLUTION_FACTOR * eps * scale * (2 * sd + eps * scale)
    z_mean = np.where(few | coarse_mean, np.nan, z_mean)
    z_var = np.where(few | coarse_var, np.nan, z_var)
    if start_index is not None:  # the start law was measured there: a z-score would compare it with itself
        z_mean[start_index], z_var[start_index] = np.nan, np.nan
    T = mean.shape[0]
    notes = []
    for label, mask in (
        ("fewer than 2 paths with finite class means", few.reshape(T, -1).all(1)),
        (
            f"the predicted standard error is at most {RESOLUTION_FACTOR:g} x the dtype's resolution of the value "
            "(eps (|mean| + sd)), so rounding, not sampling, would set the z-score (a deterministic law there)",
            (coarse_mean | coarse_var).reshape(T, -1).any(1) & ~few.reshape(T, -1).all(1),
        ),
        ("the start law is the measured one there", np.arange(T) == (-1 if start_index is None else start_index)),
    ):
        if mask.any():
            notes.append(f"{label} (t = {', '.join(f'{t:g}' for t in times[mask])})")
    return _largest(z_mean.reshape(T, -1)), _largest(z_var.reshape(T, -1)), "; ".join(notes)


def _largest(z: np.ndarray) -> np.ndarray:
    """Row maxima of the finite entries of z (T, n); NaN for a row without any."""
    finite = np.isfinite(z)
    return np.where(finite.any(1), np.where(finite, z, -np.inf).max(1), np.nan)


def moment_predictions(ds: xr.Dataset, model) -> tuple[Out, str | None]:
    """The class-mean law beside the measured moments, or ``({}, why not)``."""
    M = ds["class_mean"].transpose("path", "time", "class", "feature").values
    t0 = float(ds.attrs.get("t0", 0.0))
    times = ds["time"].values.astype(np.float64)
    mean0, cov0, t_start, how = start_law(ds, model, M, t0)
    mean, cov, plan = class_mean_law(model, np.maximum(times, t_start), mean0, cov0, t_start)
    shape = (len(times), model.num_classes, model.dim)
    mean, var = mean.reshape(shape), np.diagonal(cov, axis1=1, axis2=2).reshape(shape)
    count, sim_mean, sim_var = _finite_moments(M.astype(np.float64))
    start_index = None if ds.attrs.get("x0", "") == "iid" else int(np.argmin(np.abs(times - t_start)))
    eps = float(np.finfo(M.dtype).eps) if np.issubdtype(M.dtype, np.floating) else float(np.finfo(float).eps)
    z_mean, z_var, notes = _zscores(mean, var, sim_mean, sim_var, count, eps, start_index, times)
    if not (np.isfinite(z_mean).any() or np.isfinite(z_var).any()):
        return {}, f"closed-form class-mean moments: no time where a z-score is meaningful ({notes})"
    note = EXACT_MOMENTS.format(plan=plan, t0=t0, start=how)
    zattrs = {"prediction": note, "zscore_note": f"NaN where {notes}" if notes else ""}
    tail = ("class", "feature")
    return {
        "class_mean_predicted": (("time", *tail), mean, {"prediction": note}),
        "class_mean_var_predicted": (("time", *tail), var, {"prediction": note}),
        "class_mean_var": (("time", *tail), sim_var, {}),
        "n_paths_finite": (("time",), count, {}),
        "class_mean_zscore": (("time",), z_mean, zattrs),
        "class_mean_var_zscore": (("time",), z_var, zattrs),
    }, None


def lesde_predictions(ds: xr.Dataset) -> tuple[Out, list[str]]:
    """Moments of the class means and the limit of their angle, where each applies."""
    model = LESDE.from_spec(json.loads(ds.attrs["spec"]))
    out: Out = {}
    skipped: list[str] = []
    reason = unsupported_reason(model)
    if reason is not None:
        skipped.append(f"closed-form class-mean moments: {reason.replace('method=', 'the exact law of method=')}")
    elif "class_mean" not in ds:
        skipped.append("closed-form class-mean moments: the Dataset has no class_mean (simulate with save='means')")
    elif model.param_batch is not None:
        skipped.append("closed-form class-mean moments: per-path parameters (one law per path, no variance over paths)")
    else:
        moments, why = moment_predictions(ds, model)
        out.update(moments)
        if why:
            skipped.append(why)
    target, what = cosine_limit(model)
    if target is None:
        skipped.append(f"limit of the class-mean angle: {what}")
    else:
        cos = _mean_cosine(ds, model.counts.cpu())
        if cos is None:
            skipped.append("limit of the class-mean angle: the Dataset has neither mean_cosine nor class_mean")
        else:
            out["mean_cosine_predicted"] = ((), target, {"prediction": what})
            out["mean_cosine_distance"] = (("path", "time"), np.abs(cos - target), {"prediction": what})
    return out, skipped


def _mean_cosine(ds: xr.Dataset, counts) -> np.ndarray | None:
    """mean_cosine over (path, time): the stored metric, else the metrics kernel on the finite stored class means."""
    if "mean_cosine" in ds:
        return ds["mean_cosine"].transpose("path", "time").values
    if "class_mean" not in ds:
        return None
    M = ds["class_mean"].transpose("path", "time", "class", "feature").values
    finite = np.isfinite(M).all(axis=(2, 3))
    out = np.full(finite.shape, np.nan)
    if finite.any():
        rows = torch.from_numpy(np.ascontiguousarray(M[finite]))
        # the cosines use the class means alone: a zero within-class variance stands in for the one not needed
        out[finite] = means_metrics(rows, rows.new_zeros(rows.shape[:-1]), counts, names=["mean_cosine"])[
            "mean_cosine"
        ].numpy()
    return out
