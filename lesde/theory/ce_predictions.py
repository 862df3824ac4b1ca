r"""Cross-entropy UFM predictions: the max-margin direction without regularisation, the minimizer with it.

**Unregularised** (Ji et al., the unconstrained layer-peeled model; any save mode). Once the loss is below
$\log 2$ the data are separated, the parameter norm diverges and the direction of (W, H) approaches a
max-margin KKT point, which at the global optimum is neural collapse (Theorems 3.1-3.2):

- the NC metrics a run records approach 0 (``<metric>_predicted = 0`` for the collapse metrics it measured);
- the NC margin grows like $\tau \log t$ ($q_{\min} = \tau(\log t + \log\log t + O(1))$ for gradient flow
  on a 2-homogeneous model with the exponential-tailed loss $\mathrm{CE}(z/\tau)$): ``nc_margin_log_slope``
  $= dq_{\min}/d\log t$, measured where the loss is below $\log 2$, approaches
  ``nc_margin_log_slope_predicted`` $= \tau$ from above, slowly (like $\tau(1 + 1/\log t)$; 1.17 at
  t = 1.4e4 on the 4-class UFM of the tests), and ``nc_margin_log_slope_gap`` is their difference;
- with ``save="full"``: the normalised margin $q_{\min}/(\lVert W\rVert^2 + \lVert H\rVert^2)$ approaches
  its bound $1/(2(K-1)\sqrt n)$ from below (Lemma 3.1; ``nc_margin_gap``), and ``max_margin_distance``
  $= \lVert \hat W\hat H - Z^*\rVert_F / \lVert Z^*\rVert_F$ measures the normalised logits
  $\hat W \hat H = WH / (\lVert W\rVert^2 + \lVert H\rVert^2)$ against those of the max-margin direction,
  $Z^* = q^* (Y - 1 1^\top / K)$ (rotation-invariant, like ``tb_distance``). Both fall like
  $1/\log t$: read them on log(log t) axes, as Ji et al. do.

The bias is excluded from the ULPM margins (a UFM with a bias is noted in the ``prediction`` attr; ``nc_margin``
itself includes it).

**Regularised** (weight decay on W and H, balanced, not on the sphere): the global minimizer of Zhu et al. 2021
(`lesde.theory.ce_minimizer.ce_ufm_minimizer`): ``ce_rho`` ($\lVert w_k\rVert^2$ there),
``loss_predicted`` and ``loss_gap``, the NC metrics there, and with ``save="full"`` ``ce_distance``
$= \lVert WH - W^*H^*\rVert_F / \lVert W^*H^*\rVert_F$ (rotation-invariant).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr

from .ce_minimizer import ce_ufm_minimizer
from .ufm_inputs import NotApplicable, Out, at_minimizer, lead_dims, need_full, parameters

MAX_MARGIN = (
    "Ji et al., Lemma 3.1 and Theorems 3.1-3.2: normalised (W, H) approach the max-margin direction (neural "
    "collapse), q_min <= (||W||^2 + ||H||^2) / (2 (K-1) sqrt(n)) with equality only at neural collapse"
)
MARGIN_RATE = (
    "gradient flow on a 2-homogeneous model with the exponential-tailed CE(z / tau) (Ji et al., Lyu and Li): "
    "q_min = tau (log t + log log t + O(1)) once the loss is below log 2, so dq_min / dlog t -> tau from above"
)
ZHU = (
    "Zhu et al. 2021, Theorem 3.1: regularised CE UFM minimizer (simplex ETF, h_ki = sqrt(lambda_W / (n lambda_H)) w_k)"
)
#: the measured NC metrics that vanish at neural collapse (the max-margin direction and the regularised minimizer)
COLLAPSE_METRICS = (
    "nc1",
    "nc1_quotient",
    "etf_error",
    "etf_error_classifier",
    "self_duality",
    "equinorm_means",
    "equinorm_classifier",
    "equiangular_means",
    "equiangular_classifier",
    "maxangle_means",
    "maxangle_classifier",
    "cdnv",
    "ncc_mismatch",
    "gnc3",
)


def _log_slope(ds: xr.Dataset, q: np.ndarray, lead: tuple[str, ...]) -> np.ndarray:
    """dq / dlog t along time (lead order), NaN at t <= 0 and where the loss is not yet below log 2."""
    t = ds["time"].values.astype(np.float64)
    ti = lead.index("time")
    ok = t > 0
    slope = np.full(q.shape, np.nan)
    if ok.sum() >= 2:
        inner = np.take(q, np.flatnonzero(ok), axis=ti)
        part = np.gradient(inner, np.log(t[ok]), axis=ti)
        idx = [slice(None)] * q.ndim
        idx[ti] = np.flatnonzero(ok)
        slope[tuple(idx)] = part
    loss = ds["loss"].transpose(*lead).values
    return np.where(loss < math.log(2.0), slope, np.nan)


def max_margin_prediction(ds: xr.Dataset, problem) -> Out:
    """Unregularised CE: the collapse metrics -> 0, the margin's log t rate, and with the parameters the normalised
    margin and the distance of the normalised logits to the max-margin direction."""
    K, labels, n = problem.num_classes, problem.labels.cpu(), min(problem.counts)
    tau = float(problem.temperature)
    note = MAX_MARGIN + ("" if not problem.has_bias else "; this UFM has a bias, which the ULPM of Ji et al. does not")
    lead = lead_dims(ds)
    out: Out = {f"{name}_predicted": ((), 0.0, {"prediction": note}) for name in COLLAPSE_METRICS if name in ds}
    params = parameters(ds)
    q = None
    if params is not None:
        H, W = params
        logits = H @ W.transpose(-1, -2)  # (..., N, K), bias excluded as in Ji et al.'s ULPM
        own = logits.gather(-1, labels.expand(*logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        other = logits.masked_fill(torch.nn.functional.one_hot(labels, K).bool(), -torch.inf).amax(-1)
        q_min = (own - other).amin(-1)
        norm2 = (W**2).sum((-2, -1)) + (H**2).sum((-2, -1))
        q_norm = (q_min / norm2).numpy()
        bound = 1.0 / (2 * (K - 1) * math.sqrt(n))
        Y = torch.nn.functional.one_hot(labels, K).double()  # (N, K)
        target = bound * (Y - 1.0 / K)  # the max-margin logits at ||W||^2 + ||H||^2 = 1
        dist = torch.linalg.norm(logits / norm2[..., None, None] - target, dim=(-2, -1)) / target.norm()
        out.update(
            nc_margin_normalized=(lead, q_norm, {}),
            nc_margin_normalized_predicted=((), bound, {"prediction": note}),
            nc_margin_gap=(lead, bound - q_norm, {"prediction": note}),
            max_margin_distance=(lead, dist.numpy(), {"prediction": note}),
        )
        q = q_min.numpy()
    elif "nc_margin" in ds:
        q = ds["nc_margin"].transpose(*lead).values
    if q is not None and "time" in lead:
        slope = _log_slope(ds, q, lead)
        if np.isfinite(slope).any():
            rate = MARGIN_RATE + ("; this UFM has a bias" if problem.has_bias else "")
            out.update(
                nc_margin_log_slope=(lead, slope, {}),
                nc_margin_log_slope_predicted=((), tau, {"prediction": rate}),
                nc_margin_log_slope_gap=(lead, slope - tau, {"prediction": rate}),
            )
    if not out:
        raise need_full("the max-margin prediction (unregularised CE UFM; or record NC metrics)")
    return out


def regularized_ce_prediction(ds: xr.Dataset, problem) -> Out:
    """Regularised CE (balanced, weight decay on W and H): the global minimizer, the objective there, distances."""
    if len(set(problem.counts)) != 1:
        raise NotApplicable("the CE UFM minimizer (Zhu et al.) is stated for balanced classes; this UFM is imbalanced")
    K, n, d = problem.num_classes, problem.counts[0], problem.dim
    lw, lh = problem.weight_decay_W, problem.weight_decay_H
    sol = ce_ufm_minimizer(K, n, d, lw, lh, problem.temperature)
    note = f"{ZHU}; ||w_k||^2 = {sol['x']:.6g}" + (": the zero solution" if sol["collapsed"] else "")
    if problem.has_bias and problem.weight_decay_b > 0:
        note += "; b = 0"
    elif problem.has_bias:
        note += "; b any constant vector (unpenalised, invisible to the loss)"
    lead = lead_dims(ds)
    W, H_rows = sol["W"], sol["H"].T  # (K, d), (N, d)
    out: Out = {"ce_rho": ((), sol["x"], {"prediction": note}), **at_minimizer(ds, problem, W, H_rows, note)}
    params = parameters(ds)
    if params is not None and not sol["collapsed"]:
        H, Wm = params
        target = W @ H_rows.T  # (K, N)
        fit = Wm @ H.transpose(-1, -2)
        dist = torch.linalg.norm(fit - target, dim=(-2, -1)) / target.norm()
        out["ce_distance"] = (lead, dist.numpy(), {"prediction": note})
    return out
