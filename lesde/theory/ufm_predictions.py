"""UFM predictions beside SGD / SME / gradient-flow runs (``sgd.compare``, ``run_sgd``, ``run_sme``, ...).

Each function takes the run's Dataset and its `UFM` and returns ``{name: (dims, values)}``
plus the ``prediction`` attr of each new variable; `lesde.theory.attach` merges them. The MSE cases live
here, the cross-entropy ones in `lesde.theory.ce_predictions`. Quantities that need
the parameters themselves (distances to the minimizer, SNR singular values, the normalised margin) need a run
recorded with ``save="full"`` (``features`` and ``classifier`` in the Dataset); the loss gap and the predicted NC
metrics work from ``save="metrics"`` too.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from ..metrics.geometry import one_vs_rest_distance
from ..metrics.statistics import class_split
from .ce_predictions import max_margin_prediction, regularized_ce_prediction
from .closed_forms import central_path_snr, mse_decomposition, tirer_bruna
from .softmax_codes import softmax_code
from .ufm_inputs import NotApplicable, Out, at_minimizer, lead_dims, need_full, parameters

TIRER_BRUNA = "Tirer and Bruna 2022, Theorem 3.1: regularised MSE UFM minimizer"
CENTRAL_PATH = (
    "Han, Papyan and Donoho 2022, Proposition 2 / Appendix D.4: SNR singular values on the central path, "
    "C^2 N log w + C N w^2 + N w^4 / 4 = a_j + t"
)
SOFTMAX_CODE = "Jiang et al., Definition 2.1 / Theorem 3.3: GNC2 target = softmax-code one-vs-rest distance"


def tirer_bruna_prediction(ds: xr.Dataset, problem) -> Out:
    """Regularised MSE UFM (balanced, no bias): the minimizer, the objective there, and distances to it."""
    tb = problem.tirer_bruna_parameters()
    K, n, d = problem.num_classes, problem.counts[0], problem.dim
    sol = tirer_bruna(K, n, d, tb["lambda_W"], tb["lambda_H"])
    W, H_rows = sol["W"], sol["H"].T  # (K, d), (N, d)
    note = f"{TIRER_BRUNA}; c = sqrt(lambda_W lambda_H) = {sol['c']:.6g}" + (
        " >= 1: the zero solution" if sol["collapsed"] else ""
    )
    lead = lead_dims(ds)
    out: Out = {"tb_rho": ((), sol["rho"], {"prediction": note}), **at_minimizer(ds, problem, W, H_rows, note)}
    params = parameters(ds)
    if params is not None:
        H, Wm = params
        Y = torch.nn.functional.one_hot(problem.labels.cpu(), K).double().T  # (K, N)
        target = W @ H_rows.T  # (K, N) = (1 - c)_+ Y
        fit = Wm @ H.transpose(-1, -2)
        gram_star = H_rows @ H_rows.T
        gram = H @ H.transpose(-1, -2)
        out["tb_distance"] = (
            lead,
            (torch.linalg.norm(fit - target, dim=(-2, -1)) / Y.norm()).numpy(),
            {"prediction": note},
        )
        out["tb_gram_distance"] = (
            lead,
            (torch.linalg.norm(gram - gram_star, dim=(-2, -1)) / (Y.T @ Y).norm()).numpy(),
            {"prediction": note},
        )
    return out


def _snr(H: torch.Tensor, labels: torch.Tensor, K: int) -> torch.Tensor:
    """Nonzero singular values of Sigma_W^{-1/2} Mbar (Han, Papyan and Donoho), ``(..., K-1)``; Sigma_W^{-1/2} by pseudo-inverse."""
    onehot = torch.nn.functional.one_hot(labels, K).to(H.dtype)  # (N, K)
    means, dev = class_split(H, labels, onehot, onehot.sum(0))  # the metrics' one class-mean computation
    sigma_w = dev.transpose(-1, -2) @ dev / H.shape[-2]
    ev, V = torch.linalg.eigh(sigma_w)
    tol = ev.amax(-1, keepdim=True) * 1e-10
    inv_sqrt = torch.where(ev > tol, ev.clamp_min(1e-300).rsqrt(), torch.zeros_like(ev))
    root = (V * inv_sqrt.unsqueeze(-2)) @ V.transpose(-1, -2)
    centred = (means - means.mean(-2, keepdim=True)).transpose(-1, -2)  # (..., d, K)
    return torch.linalg.svdvals(root @ centred)[..., : K - 1]


def central_path_prediction(ds: xr.Dataset, problem) -> Out:
    """Unregularised MSE: measured SNR singular values, the central-path ODE from the first record, departure."""
    params = parameters(ds)
    if params is None:
        raise need_full("the central-path SNR prediction (unregularised MSE UFM)")
    H, W = params
    K, labels = problem.num_classes, problem.labels.cpu()
    if len(set(problem.counts)) != 1:
        raise NotApplicable("the central-path ODE assumes balanced classes; this UFM is imbalanced")
    lead = lead_dims(ds)
    snr = _snr(H, labels, K)  # (..., time, K-1)
    t = ds["time"].values
    ti = lead.index("time")
    omega0 = snr.select(ti, 0).clamp_min(1e-300)  # (..., K-1) without time
    pred = central_path_snr(omega0, K, problem.counts[0], t - t[0])  # (T, ..., K-1)
    pred = torch.movedim(pred, 0, ti)
    dist = (torch.log(snr.clamp_min(1e-300)) - torch.log(pred)).abs().amax(-1)
    b = ds["bias"].transpose(*lead, "class").values if "bias" in ds else np.zeros((*snr.shape[:-1], K))
    dec = mse_decomposition(H, labels, W, torch.from_numpy(np.asarray(b)).double())
    departure = (dec["L_perp"] / dec["total"].clamp_min(1e-300)).numpy()
    note = (
        f"{CENTRAL_PATH}; started from the measured SNR at t = {t[0]:g}. The theorem assumes the continually "
        "renormalised gradient flow on the central path (W = W_LS at all times): a run departs from it where "
        "central_path_departure (L_perp / L) is not small"
        + ("; SGD and SME add noise the theorem does not have" if "process" in lead else "")
    )
    return {
        "snr": ((*lead, "snr_mode"), snr.numpy(), {}),
        "snr_predicted": ((*lead, "snr_mode"), pred.numpy(), {"prediction": note}),
        "snr_distance": (lead, dist.numpy(), {"prediction": note}),
        "central_path_departure": (lead, departure, {"prediction": note}),
    }


def softmax_code_prediction(ds: xr.Dataset, problem) -> Out:
    """K > d + 1 on the sphere: the softmax-code one-vs-rest distance as the GNC2 target."""
    K, d = problem.num_classes, problem.dim
    code = softmax_code(K, d)
    note = f"{SOFTMAX_CODE}; K = {K} > d + 1 = {d + 1}, code optimised numerically (lesde.theory.softmax_codes.softmax_code)"
    lead = lead_dims(ds)
    out: Out = {"gnc2_predicted": ((), code["one_vs_rest_distance"], {"prediction": note})}
    if "gnc2" in ds:
        measured = ds["gnc2"].values
    elif (params := parameters(ds)) is not None:
        measured = one_vs_rest_distance(params[1]).numpy()
    else:
        return out
    out["gnc2_gap"] = (lead, code["one_vs_rest_distance"] - measured, {"prediction": note})
    return out


def ufm_predictions(ds: xr.Dataset, problem) -> tuple[Out, list[str]]:
    """Every UFM prediction that applies to ``problem``; returns the variables and the reasons others did not."""
    out: Out = {}
    skipped: list[str] = []
    mse, ce = problem.loss_name == "mse", problem.loss_name == "ce"
    regularised = problem.weight_decay_W > 0 and problem.weight_decay_H > 0
    none = problem.weight_decay_W == 0 and problem.weight_decay_H == 0 and problem.weight_decay_b == 0
    cases = []
    if mse and regularised and not problem.sphere:
        cases.append(tirer_bruna_prediction)
    if mse and none and not problem.sphere:
        cases.append(central_path_prediction)
    if ce and none and not problem.sphere:
        cases.append(max_margin_prediction)
    if ce and regularised and not problem.sphere:
        cases.append(regularized_ce_prediction)
    if problem.sphere and problem.num_classes > problem.dim + 1:
        cases.append(softmax_code_prediction)
    for case in cases:
        try:
            out.update(case(ds, problem))
        except (NotApplicable, ValueError) as e:
            skipped.append(f"{case.__name__}: {e}")
    return out, skipped
