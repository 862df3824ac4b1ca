"""The one table of variable attributes, and the global attrs every Dataset carries (pyqg style).

Every Dataset lesde returns goes through :func:`finalize`, which attaches ``long_name`` and ``units``
to each known variable and the provenance attrs (package and torch versions, creation time).
Attrs values are strings and numbers only, so files round-trip through netCDF and zarr unchanged.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from typing import Any

import numpy as np
import torch
import xarray as xr

VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    # --- coordinates ---
    "time": {"long_name": "time (t = step * learning rate)", "units": "1"},
    "label": {"long_name": "class label of each sample", "units": "1"},
    "path": {"long_name": "path index", "units": "1"},
    "class": {"long_name": "class index", "units": "1"},
    "class_other": {"long_name": "class index (second of a pair)", "units": "1"},
    "feature": {"long_name": "feature coordinate", "units": "1"},
    "feature_other": {"long_name": "feature coordinate (second of a pair)", "units": "1"},
    "sample": {"long_name": "sample index", "units": "1"},
    "run": {"long_name": "independent run", "units": "1"},
    "step": {"long_name": "SGD step", "units": "1"},
    "probe": {"long_name": "probe sample index", "units": "1"},
    "process": {"long_name": "stochastic process", "units": "1"},
    # --- core simulation ---
    "features": {"long_name": "sample features X_i", "units": "1"},
    "class_mean": {"long_name": "class mean of the features", "units": "1"},
    "within_var": {"long_name": "within-class variance: mean over samples of ||X_i - Xbar_k||^2", "units": "1"},
    "state": {"long_name": "flattened SDE state", "units": "1"},
    # --- metrics ---
    "nc1": {"long_name": "NC1: tr(Sigma_W Sigma_B^+) / K", "units": "1"},
    "nc1_quotient": {"long_name": "NC1 quotient tr(Sigma_W) / tr(Sigma_B)", "units": "1"},
    "equinorm_means": {"long_name": "std/mean of centred class-mean norms", "units": "1"},
    "equinorm_classifier": {"long_name": "std/mean of classifier row norms", "units": "1"},
    "equiangular_means": {"long_name": "std of pairwise cosines of centred class means", "units": "1"},
    "equiangular_classifier": {"long_name": "std of pairwise cosines of classifier rows", "units": "1"},
    "maxangle_means": {"long_name": "mean |cos + 1/(K-1)| of centred class means", "units": "1"},
    "maxangle_classifier": {"long_name": "mean |cos + 1/(K-1)| of classifier rows", "units": "1"},
    "etf_error": {"long_name": "Frobenius distance of the normalised Gram to the simplex ETF", "units": "1"},
    "etf_error_classifier": {
        "long_name": "Frobenius distance of the normalised W W^T to the simplex ETF",
        "units": "1",
    },
    "self_duality": {"long_name": "||W^T/||W|| - M/||M|| ||_F^2", "units": "1"},
    "ncc_mismatch": {"long_name": "fraction where the classifier and nearest class centre disagree", "units": "1"},
    "cdnv": {"long_name": "class-distance normalised variance, mean over pairs", "units": "1"},
    "nc_margin": {"long_name": "neural-collapse margin min_i (w_y h - max_j w_j h)", "units": "1"},
    "gnc2": {"long_name": "GNC2: minimum one-vs-rest distance of the classifier", "units": "1"},
    "gnc3": {"long_name": "GNC3: mean 1 - cos(w_k, mu_k)", "units": "1"},
    "mean_cosine": {"long_name": "mean pairwise cosine of centred class means", "units": "1"},
    # --- separability ---
    "separable_fraction": {"long_name": "fraction of class pairs separable", "units": "1"},
    "p_all_separable": {"long_name": "probability over paths that all class pairs are separable", "units": "1"},
    "p_all_separable_lower": {"long_name": "Wilson lower bound of p_all_separable", "units": "1"},
    "p_all_separable_upper": {"long_name": "Wilson upper bound of p_all_separable", "units": "1"},
    "separable_fraction_lower": {"long_name": "Wilson lower bound of the mean separable fraction", "units": "1"},
    "separable_fraction_upper": {"long_name": "Wilson upper bound of the mean separable fraction", "units": "1"},
    "all_separable": {"long_name": "all class pairs separable", "units": "1"},
    "separable": {"long_name": "class pair separable", "units": "1"},
    # --- SGD ---
    "loss": {"long_name": "training loss", "units": "1"},
    "accuracy": {"long_name": "training accuracy", "units": "1"},
    "classifier": {"long_name": "last-layer classifier rows w_k", "units": "1"},
    "bias": {"long_name": "classifier bias b_k", "units": "1"},
    "batch_counts": {"long_name": "times each sample was drawn into the step's minibatch", "units": "1"},
    # --- empirical elasticity ---
    "sampled_index": {"long_name": "index of the sample trained on at this step", "units": "1"},
    "sampled_label": {"long_name": "label of the sample trained on at this step", "units": "1"},
    "alpha": {"long_name": "intra-class elasticity alpha_t", "units": "1"},
    "beta": {"long_name": "inter-class elasticity beta_t", "units": "1"},
    "E": {"long_name": "elasticity matrix E(t)", "units": "1"},
    # --- sweeps ---
    "done": {"long_name": "sweep cell finished and written (1) or missing (0)", "units": "1"},
    "method": {"long_name": "integration method that produced the sweep cell", "units": "1"},
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, bool):
        return int(value)
    if value is None:
        return "None"
    if torch.is_tensor(value):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return json.dumps(value.tolist())
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return json.dumps(value, default=str)


def provenance(**extra: Any) -> dict[str, Any]:
    """Global attrs every Dataset carries: versions, creation time, plus ``extra`` made serialisable."""
    from . import __version__

    attrs = {
        "lesde_version": __version__,
        "torch_version": str(torch.__version__),  # TorchVersion is a str subclass h5py cannot write
        "xarray_version": xr.__version__,
        "python_version": platform.python_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    attrs.update({k: _jsonable(v) for k, v in extra.items()})
    return attrs


def finalize(ds: xr.Dataset, **global_attrs: Any) -> xr.Dataset:
    """Attach the table's attrs to known variables and coordinates, and provenance to the Dataset."""
    for name in list(ds.variables):
        if name in VARIABLE_ATTRS:
            for k, v in VARIABLE_ATTRS[name].items():
                ds[name].attrs.setdefault(k, v)
        elif "units" not in ds[name].attrs:
            ds[name].attrs["units"] = "1"
    ds.attrs.update(provenance(**global_attrs))
    return ds
