"""LE-SDE predictions: closed-form class-mean moments, the simplex-ETF angle, and the predicted phase of sweeps.

The class means of the LE-SDE with sample-independent noise solve a linear SDE, so their
law at every save time is Gaussian with a closed-form mean and covariance. The transitions are the exact
integrator's own (:class:`lesde.integrators.exact._Spectral`, ``_VanLoan``): each save interval maps
``(m, C) -> (Phi m, Phi C Phi^T + F F^T)`` with the ``(Phi, F)`` that ``method="exact"`` samples with, so the
moments here are the law ``method="exact"`` samples from (and the limit every other method converges to).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..integrators.exact import _Spectral, _VanLoan, plan_for, unsupported_reason
from ..integrators.protocol import Grid
from ..metrics.kernels import means_metrics
from ..model import LESDE

EXACT_MOMENTS = (
    "LE-SDE class-mean law (Kothapalli et al., Section 3.2): Gaussian with mean Phi m0 and covariance "
    "Phi C0 Phi^T + int Phi D Phi^T, the exact transitions of method='exact' ({plan} plan)"
)
ETF_ANGLE = (
    "Kothapalli et al., Section 3.2.3: the residual transform aligns the centred class means with a "
    "simplex ETF, pairwise cosine -1/(K-1)"
)
PHASE = (
    "separability phase transition (Kothapalli et al., Section 3.2): alpha_t - beta_t = c (1+t)^-p, "
    "p < 1 separable, p > 1 not, p = 1 separable iff 2c/K > 1 (T = identity, balanced classes)"
)

Out = dict[str, tuple[tuple[str, ...], Any, dict[str, str]]]


def _transitions(model, times: np.ndarray, dt: float):
    """Dense ``(Phi, Q)`` per save interval on vec(M) (row-major (K, m)): M(t1) ~ Phi M(t0) + N(0, Q)."""
    K, m = model.num_classes, model.dim
    plan = plan_for(model)
    reduced = model.transform.is_identity
    Sig = (
        model.noise_chol.cpu().double() @ model.noise_chol.cpu().double().T
        if model.noise_chol is not None
        else torch.eye(m, dtype=torch.float64)
    )

    def dense(Phi, F):
        if Phi.ndim == 3:
            Phi, F = Phi[0], F[0]
        Phi, Q = Phi.contiguous(), (F @ F.T).contiguous()
        if reduced:
            return torch.kron(Phi, torch.eye(m, dtype=torch.float64)), torch.kron(Q, Sig)
        return Phi, Q

    grid = Grid.make(torch.tensor(np.asarray(times, dtype=np.float64)), dt)
    if plan == "spectral":
        sp = _Spectral(model)
        return plan, [dense(*sp.transition(t0, t1)) for _, t0, t1, _, _ in grid.intervals()]
    vl = _VanLoan(model, reduced)
    out = []
    for _, t0, t1, n, h in grid.intervals():
        steps = [(t0, t1 - t0)] if plan == "constant" else [(t0 + (s + 0.5) * h, h) for s in range(n)]
        Phi, Q = torch.eye(K * m, dtype=torch.float64), torch.zeros(K * m, K * m, dtype=torch.float64)
        for t, step in steps:
            P1, F1, _ = vl.transition(t, step)
            P1, Q1 = dense(P1, F1)
            Phi, Q = P1 @ Phi, P1 @ Q @ P1.T + Q1
        out.append((Phi, Q))
    return plan, out


def class_mean_moments(ds: xr.Dataset, model) -> tuple[np.ndarray, np.ndarray, str]:
    """Predicted mean and variance over paths of ``class_mean`` at each save time, ``(T, K, m)`` each."""
    K, m = model.num_classes, model.dim
    M = ds["class_mean"].transpose("path", "time", "class", "feature").values
    start = ds.attrs.get("x0", "")
    if start == "iid":  # X_i(0) ~ N(0, s^2 I): class means N(0, s^2 / n_k I), independent
        s2 = float(ds.attrs.get("x0_scale", 1.0)) ** 2
        mean = torch.zeros(K * m, dtype=torch.float64)
        cov = torch.kron(torch.diag(s2 / model.counts.cpu().double()), torch.eye(m, dtype=torch.float64))
    else:  # a given x0 (or a file that does not say): the measured law at t = 0
        v0 = torch.from_numpy(M[:, 0].reshape(M.shape[0], K * m)).double()
        mean = v0.mean(0)
        cov = torch.cov(v0.T) if v0.shape[0] > 1 else torch.zeros(K * m, K * m, dtype=torch.float64)
        cov = cov.reshape(K * m, K * m)
    plan, steps = _transitions(model, ds["time"].values, float(ds.attrs.get("dt", 1.0)))
    means, variances = [mean], [torch.diagonal(cov)]
    for Phi, Q in steps:
        mean, cov = Phi @ mean, Phi @ cov @ Phi.T + Q
        means.append(mean)
        variances.append(torch.diagonal(cov))
    shape = (-1, K, m)
    return torch.stack(means).reshape(shape).numpy(), torch.stack(variances).reshape(shape).numpy(), plan


def lesde_predictions(ds: xr.Dataset) -> tuple[Out, list[str]]:
    """Moments of the class means and, for residual transforms, the simplex-ETF angle."""
    spec = json.loads(ds.attrs["spec"])
    model = LESDE.from_spec(spec)
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
        mean, var, plan = class_mean_moments(ds, model)
        note = EXACT_MOMENTS.format(plan=plan)
        M = ds["class_mean"].transpose("path", "time", "class", "feature")
        P = M.sizes["path"]
        sim_mean, sim_var = M.mean("path").values, M.var("path", ddof=1).values
        with np.errstate(divide="ignore", invalid="ignore"):
            # standard errors: of a mean, sqrt(var / P); of a Gaussian sample variance, var sqrt(2 / (P - 1))
            z_mean = np.abs(sim_mean - mean) / np.sqrt(var / P)
            z_var = np.abs(sim_var - var) / (var * math.sqrt(2.0 / max(P - 1, 1)))
        exact = var <= 0  # a deterministic start: the spread is zero in law and in the simulation
        z_mean = np.where(exact, np.where(np.isclose(sim_mean, mean), 0.0, np.inf), z_mean)
        z_var = np.where(exact, np.where(np.abs(sim_var) <= 1e-24, 0.0, np.inf), z_var)
        tail = ("class", "feature")
        out.update(
            class_mean_predicted=(("time", *tail), mean, {"prediction": note}),
            class_mean_var_predicted=(("time", *tail), var, {"prediction": note}),
            class_mean_var=(("time", *tail), sim_var, {}),
            class_mean_zscore=(("time",), z_mean.reshape(len(mean), -1).max(-1), {"prediction": note}),
            class_mean_var_zscore=(("time",), z_var.reshape(len(var), -1).max(-1), {"prediction": note}),
        )
    if model.transform.name in ("residual", "residual-projection"):
        K = model.num_classes
        cos = _mean_cosine(ds, model.counts.cpu())
        if cos is None:
            skipped.append("simplex-ETF angle: the Dataset has neither mean_cosine nor class_mean")
        else:
            out["mean_cosine_predicted"] = ((), -1.0 / (K - 1), {"prediction": ETF_ANGLE})
            out["mean_cosine_distance"] = (("path", "time"), np.abs(cos + 1.0 / (K - 1)), {"prediction": ETF_ANGLE})
    return out, skipped


def _mean_cosine(ds: xr.Dataset, counts) -> np.ndarray | None:
    """mean_cosine over (path, time): the stored metric, else the metrics kernel on the stored class means."""
    if "mean_cosine" in ds:
        return ds["mean_cosine"].transpose("path", "time").values
    if "class_mean" not in ds:
        return None
    M = torch.from_numpy(np.ascontiguousarray(ds["class_mean"].transpose("path", "time", "class", "feature").values))
    # the cosines use the class means alone: a zero within-class variance stands in for the one not needed
    return means_metrics(M, M.new_zeros(M.shape[:-1]), counts, names=["mean_cosine"])["mean_cosine"].numpy()


# ---------------------------------------------------------------------------------------------- sweeps
def _cell_phase(model: dict[str, Any]) -> float:
    """1 / 0 / NaN for one cell's model config (alpha a power law, beta = 0, identity where p = 1 matters)."""
    alpha, beta = model.get("alpha"), model.get("beta", 0.0)
    if isinstance(beta, dict):
        beta = beta.get("value") if beta.get("kind") == "Constant" else None
    if model.get("elasticity") is not None or beta != 0.0 or not isinstance(alpha, dict):
        return math.nan
    if alpha.get("kind") != "PowerLaw":
        return math.nan
    p, c = float(alpha["exponent"]), float(alpha["scale"])
    if p < 1:
        return 1.0
    if p > 1:
        return 0.0
    counts = model.get("samples_per_class")
    balanced = not isinstance(counts, (list, tuple)) or len(set(counts)) == 1
    K = int(model["num_classes"])
    if model.get("transform", "identity") != "identity" or not balanced or 2 * c / K == 1:
        return math.nan
    return 1.0 if 2 * c / K > 1 else 0.0


def phase_predictions(ds: xr.Dataset) -> tuple[Out, list[str]]:
    """``predicted_phase`` over the sweep grid, the measured ``phase`` and their ``phase_agreement``."""
    from ..sweep.spec import cell_config, load_spec

    spec = load_spec(json.loads(ds.attrs["spec"]))
    dims = tuple(spec.dims)
    pred = np.array([_cell_phase(cell_config(spec, i)["model"]) for i in range(spec.n_cells)]).reshape(spec.shape)
    if np.isnan(pred).all():
        return {}, [
            "predicted phase: no cell has alpha_t = c (1+t)^-p (PowerLaw) with beta_t = 0 and no elasticity matrix"
        ]
    t = float(ds.attrs.get("summary_time", ds["time"].values[-1]))
    P = ds["p_all_separable"].sel(time=t, method="nearest").where(ds["done"] > 0)
    measured = np.where(np.isnan(P.values), np.nan, (P.values > 0.5).astype(float))
    agree = np.where(np.isnan(pred) | np.isnan(measured), np.nan, (pred == measured).astype(float))
    note = PHASE
    return {
        "predicted_phase": (dims, pred, {"prediction": note}),
        "phase": (dims, measured, {"summary_time": t}),
        "phase_agreement": (dims, agree, {"prediction": note}),
    }, []
