"""The one-paragraph summary of an attached Dataset: each distance's largest value and where it occurs."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

#: the distance variables attach may add, with how to read them (largest |value| is the deviation reported)
DISTANCES = {
    "loss_gap": "objective above the predicted minimum",
    "tb_distance": "||WH - W*H*|| / ||Y|| to the Tirer-Bruna minimizer",
    "tb_gram_distance": "feature-Gram distance to the Tirer-Bruna minimizer",
    "ce_distance": "||WH - W*H*|| / ||W*H*|| to the regularised CE minimizer",
    "snr_distance": "|log| ratio of measured to central-path SNR",
    "central_path_departure": "L_perp / L (off the central path the theorem assumes)",
    "nc_margin_gap": "normalised NC margin below the max-margin value",
    "max_margin_distance": "normalised logits' distance to the max-margin direction",
    "nc_margin_log_slope_gap": "dq_min / dlog t minus its limit, the temperature",
    "gnc2_gap": "gnc2 below the softmax-code distance",
    "class_mean_zscore": "class-mean mean off the closed form, in standard errors",
    "class_mean_var_zscore": "class-mean variance off the closed form, in standard errors",
    "mean_cosine_distance": "|mean cosine + 1/(K-1)| (simplex-ETF angle)",
}


def _typical(da: xr.DataArray) -> xr.DataArray:
    """The mean over runs / paths: the deviation of the typical process, not of its luckiest draw."""
    for dim in ("run", "path"):
        if dim in da.dims:
            da = da.mean(dim)
    return da


def _where(da: xr.DataArray, index: tuple[int, ...]) -> str:
    parts = []
    for dim, i in zip(da.dims, index):
        if dim in da.coords:
            value = da.coords[dim].values[i]
            parts.append(f"{dim}={value:g}" if isinstance(value, (float, np.floating)) else f"{dim}={value}")
        else:
            parts.append(f"{dim}={i}")
    return ", ".join(parts)


def summary(ds: xr.Dataset) -> str:
    """One paragraph: each distance ``attach`` added, its largest |value| and at which time (and process)."""
    added = json.loads(ds.attrs.get("theory_predictions", "[]"))
    if not added:
        raise ValueError("the Dataset carries no predictions: call lesde.theory.attach first")
    sentences = []
    for name in (n for n in DISTANCES if n in added):
        da = _typical(ds[name])
        values = np.abs(np.asarray(da.values, dtype=float))
        if not np.isfinite(values).any():
            continue
        index = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(values), values, -np.inf))), values.shape)
        last = float(np.nanmax(values[..., -1])) if "time" in da.dims and da.dims[-1] == "time" else None
        where = f" at {_where(da, index)}" if da.ndim else ""
        end = f", {last:.3g} at the last time" if last is not None else ""
        sentences.append(f"{name} ({DISTANCES[name]}): largest {values[index]:.3g}{where}{end}")
    sentences += _metric_sentences(ds, added)
    if "predicted_phase" in added:
        agree = ds["phase_agreement"].values
        n = int(np.isfinite(agree).sum())
        text = f"phase: measured agrees with predicted in {int(np.nansum(agree))} of {n} cells with a prediction"
        if "phase_prediction_kind" in ds:
            kinds = ds["phase_prediction_kind"]
            names = str(kinds.attrs.get("flag_meanings", "")).split()
            counts = {name: int((kinds.values == i).sum()) for i, name in enumerate(names)}
            text += " (" + ", ".join(f"{c} {name.replace('_', ' ')}" for name, c in counts.items() if c) + ")"
        sentences.append(text)
    head = f"Attached {len(added)} theory variables ({', '.join(added)})."
    return " ".join([head, *(s + "." for s in sentences)])


#: the measured quantities whose value at the last time the summary sets against a scalar prediction
REPORTED = ("loss", "nc1", "etf_error", "etf_error_classifier", "self_duality", "ncc_mismatch", "mean_cosine")


def _metric_sentences(ds: xr.Dataset, added: list[str]) -> list[str]:
    """For each scalar ``<name>_predicted`` of `REPORTED` beside its measurement over time: the measured
    value at the last time (mean over runs / paths, per process) against the prediction."""
    out = []
    for name in added:
        base = name.removesuffix("_predicted")
        if base not in REPORTED or base not in ds or ds[name].ndim or "time" not in ds[base].dims:
            continue
        last = _typical(ds[base].isel(time=-1))
        values = np.atleast_1d(np.asarray(last.values, dtype=float))
        if not np.isfinite(values).any():
            continue
        where = f" ({', '.join(map(str, last['process'].values))})" if "process" in last.dims else ""
        shown = ", ".join(f"{v:.3g}" for v in values)
        out.append(f"{base}: {shown} at the last time{where}, predicted {float(ds[name]):.3g}")
    return out
