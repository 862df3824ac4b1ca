"""What the UFM predictions read from a training run: its leading dims, its parameters (``save="full"``), a flat
parameter vector at a predicted point, and the NC metrics there; and the exception a prediction that does not
apply raises (`lesde.theory.ufm_predictions.ufm_predictions` turns it into a skipped reason)."""

from __future__ import annotations

import math
from typing import Any

import torch
import xarray as xr

from ..metrics import METRIC_NAMES, nc_metrics

Out = dict[str, tuple[tuple[str, ...], Any, dict[str, str]]]


def lead_dims(ds: xr.Dataset) -> tuple[str, ...]:
    """The run's leading dims (those of ``loss``: ``run, time`` or ``process, run, time``)."""
    return tuple(ds["loss"].dims)


def parameters(ds: xr.Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(features (..., N, d), classifier (..., K, d))`` float64, or None without ``save="full"``."""
    if "features" not in ds or "classifier" not in ds:
        return None
    lead = lead_dims(ds)
    H = torch.from_numpy(ds["features"].transpose(*lead, "sample", "feature").values).double()
    W = torch.from_numpy(ds["classifier"].transpose(*lead, "class", "feature").values).double()
    return H, W


def theta_at(problem, W: torch.Tensor, H_rows: torch.Tensor) -> torch.Tensor:
    """The flat parameter batch ``(1, P)`` of ``problem`` at classifier W (K, d), features H_rows (N, d), bias 0."""
    parts = [W.reshape(-1), H_rows.reshape(-1)]
    if problem.has_bias:
        parts.append(torch.zeros(problem.num_classes, dtype=torch.float64))
    return torch.cat(parts)[None]


def at_minimizer(ds: xr.Dataset, problem, W: torch.Tensor, H_rows: torch.Tensor, note: str) -> Out:
    """The objective at a predicted minimizer (``loss_predicted``), the run's ``loss_gap`` above it, and the NC
    metrics there (none at the zero solution, where they are 0/0)."""
    with torch.no_grad():
        loss_star = float(problem.to(torch.float64).loss(theta_at(problem, W, H_rows))[0])
    out: Out = {
        "loss_predicted": ((), loss_star, {"prediction": note}),
        "loss_gap": (lead_dims(ds), ds["loss"].values - loss_star, {"prediction": note}),
    }
    if bool(W.abs().max() > 0):
        out.update(metric_predictions(ds, problem, H_rows, W, note))
    return out


def metric_predictions(ds: xr.Dataset, problem, feats: torch.Tensor, W: torch.Tensor, note: str) -> Out:
    """``<metric>_predicted`` at a predicted point, for the NC metrics the Dataset measured (finite ones only)."""
    from ..schema import VARIABLE_ATTRS

    names = [n for n in ds.data_vars if f"{n}_predicted" in VARIABLE_ATTRS and n in METRIC_NAMES]
    if not names:
        return {}
    vals = nc_metrics(feats, problem.labels.cpu(), W, names=names)
    # the exact minimizer's collapse metrics are 0 up to rounding (1e-16): written as the 0 they are
    return {
        f"{n}_predicted": ((), 0.0 if abs(float(v)) < 1e-12 else float(v), {"prediction": note})
        for n, v in vals.items()
        if math.isfinite(float(v))
    }


class NotApplicable(Exception):
    """Raised inside a prediction that does not apply; attach turns it into NoPredictionError or skips it."""


def need_full(what: str) -> NotApplicable:
    return NotApplicable(f"{what} needs the parameters: record the run with save='full'")
