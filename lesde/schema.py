"""The tables of variable dims and attributes, and the one Dataset builder every stage uses (pyqg style).

:data:`VARIABLE_ATTRS` gives each known variable its ``long_name`` and ``units``; :data:`VARIABLE_DIMS` its
trailing dims (the dims after the Dataset's leading ones such as ``path, time`` or ``process, run, time``);
:data:`TIME_ATTRS` the description of the ``time`` coordinate for each kind of Dataset. :func:`make_dataset`
builds a Dataset from plain arrays with those tables and stamps the provenance attrs (package versions, creation
time) once; :func:`finalize` annotates a Dataset built by hand the same way.

Conventions: attrs values are strings and numbers only (str subclasses such as ``torch.__version__`` become plain
``str``), so files round-trip through netCDF and zarr unchanged. Index coordinates (``path``, ``class``, ...)
and the categorical ``label`` carry a ``long_name`` but no ``units``; every other variable carries ``units``
(``"1"`` when dimensionless).

Example
-------
>>> import numpy as np
>>> ds = make_dataset({"nc1": np.ones((2, 3))}, {"time": [0.0, 0.5, 1.0]}, lead=("path", "time"), time="sde",
...                   attrs={"seed": 0})
>>> ds.nc1.dims, ds.time.attrs["long_name"], "units" in ds.path.attrs
(('path', 'time'), 'SDE time t', False)
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import json
import platform
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

__all__ = ["VARIABLE_ATTRS", "VARIABLE_DIMS", "TIME_ATTRS", "make_dataset", "finalize", "provenance"]

_INDEX = {  # index coordinates: a long_name, no units
    "path": "path index",
    "class": "class index",
    "class_other": "class index (second of a pair)",
    "feature": "feature coordinate",
    "feature_other": "feature coordinate (second of a pair)",
    "sample": "sample index",
    "run": "independent training run (or SDE path aligned with one)",
    "step": "training step",
    "probe": "probe sample index",
    "process": "stochastic process",
    "component": "component of the flattened SDE state",
    "snr_mode": "nonzero singular value of the SNR matrix, largest first",
    "setting": "experiment setting (the keywords of its data)",
}

_METRIC_LONG = {
    "nc1": "NC1: tr(Sigma_W Sigma_B^+) / K",
    "nc1_quotient": "NC1 quotient tr(Sigma_W) / tr(Sigma_B)",
    "etf_error": "Frobenius distance of the normalised Gram to the simplex ETF",
    "etf_error_classifier": "Frobenius distance of the normalised W W^T to the simplex ETF",
    "self_duality": "||W^T/||W|| - M/||M|| ||_F^2",
    "mean_cosine": "mean pairwise cosine of centred class means",
    "gnc2": "GNC2: minimum one-vs-rest distance of the classifier",
    "nc_margin_normalized": "q_min(W, H) / (||W||_F^2 + ||H||_F^2)",
    "class_mean": "class mean of the features (mean over paths)",
    "class_mean_var": "variance over paths of the class means",
    "snr": "singular values of the SNR matrix Sigma_W^{-1/2} Mbar",
}
#: the measured variables lesde.theory may put a ``<name>_predicted`` beside
_PREDICTED_METRICS = tuple(_METRIC_LONG)

VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    # --- coordinates ---
    **{name: {"long_name": long} for name, long in _INDEX.items()},
    "label": {"long_name": "class label of each sample"},
    "time": {"long_name": "time", "units": "1"},  # replaced by TIME_ATTRS[kind] where the builder names the kind
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
    "validation_accuracy": {"long_name": "accuracy on the held-out validation set", "units": "1"},
    "validation_loss": {"long_name": "mean cross-entropy on the held-out validation set", "units": "1"},
    # --- empirical elasticity: estimates (lesde.empirical.estimate) ---
    "alpha_se": {"long_name": "standard error of alpha (clustered, see attrs se_cluster)", "units": "1"},
    "beta_se": {"long_name": "standard error of beta (clustered, see attrs se_cluster)", "units": "1"},
    "E_se": {"long_name": "standard error of E", "units": "1"},
    "alpha_lower": {"long_name": "lower confidence bound of alpha", "units": "1"},
    "alpha_upper": {"long_name": "upper confidence bound of alpha", "units": "1"},
    "beta_lower": {"long_name": "lower confidence bound of beta", "units": "1"},
    "beta_upper": {"long_name": "upper confidence bound of beta", "units": "1"},
    "dof": {"long_name": "degrees of freedom of the intervals (clusters - 1)", "units": "1"},
    "alpha_by_weighting": {"long_name": "alpha under each weighting (estimand)", "units": "1"},
    "alpha_by_weighting_se": {"long_name": "standard error of alpha under each weighting", "units": "1"},
    "beta_by_weighting": {"long_name": "beta under each weighting (estimand)", "units": "1"},
    "beta_by_weighting_se": {"long_name": "standard error of beta under each weighting", "units": "1"},
    "alpha_disagreement": {"long_name": "z-score of alpha(increment) - alpha(step)", "units": "1"},
    "beta_disagreement": {"long_name": "z-score of beta(increment) - beta(step)", "units": "1"},
    "alpha_integrated": {"long_name": "integrated intra-class elasticity A(t) = int_0^t alpha", "units": "1"},
    "beta_integrated": {"long_name": "integrated inter-class elasticity B(t) = int_0^t beta", "units": "1"},
    "noise": {"long_name": "residual diffusion scale sigma_hat", "units": "1"},
    "n_obs": {"long_name": "(probe, step) observations pooled in the window", "units": "1"},
    "n_steps": {"long_name": "steps pooled in the window", "units": "1"},
    "n_excluded": {"long_name": "steps dropped: regressor at rounding level", "units": "1"},
    "step_start": {"long_name": "first step of the window", "units": "1"},
    "step_stop": {"long_name": "last step of the window", "units": "1"},
    # --- empirical elasticity: label corruption (lesde.empirical.label_noise_experiment) ---
    "rate": {"long_name": "label-noise rate p", "units": "1"},
    "tail_alpha": {"long_name": "tail index r of the integrated alpha, per run", "units": "1"},
    "tail_beta": {"long_name": "tail index r of the integrated beta, per run", "units": "1"},
    "tail_alpha_pooled": {"long_name": "tail index r of the integrated alpha, estimate pooled over runs", "units": "1"},
    "tail_beta_pooled": {"long_name": "tail index r of the integrated beta, estimate pooled over runs", "units": "1"},
    "train_accuracy": {"long_name": "final probe accuracy on the (corrupted) training labels", "units": "1"},
    # --- empirical elasticity: imitation (lesde.empirical.imitate) ---
    "relative_error": {
        "long_name": "||class means (LE-SDE) - class means (network)||_F / ||network||_F",
        "units": "1",
    },
    "relative_error_median": {"long_name": "median over runs of relative_error", "units": "1"},
    # --- sweeps ---
    "done": {"long_name": "sweep cell finished and written (1) or missing (0)", "units": "1"},
    "method": {"long_name": "integration method that produced the sweep cell", "units": "1"},
    "status": {"long_name": "sweep cell status: pending, ok or failed (message in attrs failed_cells)", "units": "1"},
    # --- empirical experiments (lesde.empirical.run_experiment) ---
    "seconds": {"long_name": "wall time of the experiment cell where it ran", "units": "s"},
    "cpu_seconds": {"long_name": "CPU time of the experiment cell's process while it ran", "units": "s"},
    "separable_pairs": {"long_name": "separable class pairs, summed over the cell's paths (-1: none)", "units": "1"},
    "all_separable_paths": {"long_name": "paths on which every class pair is separable (-1: none)", "units": "1"},
    # --- theory (lesde.theory.attach adds these; each carries a `prediction` attr naming the result) ---
    **{
        f"{name}_predicted": {"long_name": f"predicted {_METRIC_LONG[name]}", "units": "1"}
        for name in _PREDICTED_METRICS
    },
    "tb_rho": {"long_name": "Tirer-Bruna rho: Hbar^T Hbar = rho I_K at the minimizer", "units": "1"},
    "loss_predicted": {"long_name": "training objective at the predicted minimizer", "units": "1"},
    "loss_gap": {"long_name": "training objective minus its value at the predicted minimizer", "units": "1"},
    "tb_distance": {"long_name": "||W H - W* H*||_F / ||Y||_F to the Tirer-Bruna minimizer", "units": "1"},
    "tb_gram_distance": {"long_name": "||H^T H - H*^T H*||_F / ||Y^T Y||_F to the Tirer-Bruna minimizer", "units": "1"},
    "snr": {"long_name": "singular values of the SNR matrix Sigma_W^{-1/2} Mbar", "units": "1"},
    "snr_distance": {"long_name": "max over modes of |log(snr / snr_predicted)|", "units": "1"},
    "central_path_departure": {"long_name": "L_perp / L: share of the loss off the central path", "units": "1"},
    "nc_margin_normalized": {"long_name": "q_min(W, H) / (||W||_F^2 + ||H||_F^2)", "units": "1"},
    "nc_margin_gap": {"long_name": "predicted minus measured normalised NC margin", "units": "1"},
    "gnc2_gap": {"long_name": "softmax-code one-vs-rest distance minus measured gnc2", "units": "1"},
    "class_mean_var": {"long_name": "variance over paths of the class means", "units": "1"},
    "class_mean_zscore": {"long_name": "max |mean over paths - predicted mean| / its standard error", "units": "1"},
    "class_mean_var_zscore": {
        "long_name": "max |variance over paths - predicted variance| / its standard error",
        "units": "1",
    },
    "mean_cosine_distance": {"long_name": "|mean_cosine - (-1/(K-1))|", "units": "1"},
    "phase": {"long_name": "measured phase: p_all_separable > 1/2 at the summary time", "units": "1"},
    "predicted_phase": {"long_name": "predicted phase: 1 separable, 0 not, NaN where no prediction", "units": "1"},
    "phase_agreement": {"long_name": "measured phase equals predicted phase (NaN where none)", "units": "1"},
}

#: Trailing dims of each known variable, after the Dataset's leading dims (a variable not listed has none: one
#: value per item, like every NC metric). A builder whose layout differs passes ``(dims, values)`` instead.
VARIABLE_DIMS: dict[str, tuple[str, ...]] = {
    **{name: () for name in VARIABLE_ATTRS if name not in _INDEX and name not in ("label", "time")},
    "features": ("sample", "feature"),
    "class_mean": ("class", "feature"),
    "within_var": ("class",),
    "state": ("component",),
    "classifier": ("class", "feature"),
    "bias": ("class",),
    "separable": ("class", "class_other"),
    "E": ("class", "class_other"),
    "batch_counts": ("sample",),  # on (run, step): the minibatch of each step
    "class_mean_predicted": ("class", "feature"),  # on (time,): moments over paths
    "class_mean_var_predicted": ("class", "feature"),
    "class_mean_var": ("class", "feature"),
    "snr": ("snr_mode",),
    "snr_predicted": ("snr_mode",),
}

#: ``time`` coordinate attrs for each kind of Dataset (``make_dataset(time=...)``).
TIME_ATTRS: dict[str, dict[str, str]] = {
    "sde": {"long_name": "SDE time t", "units": "1"},
    "training": {"long_name": "training time t = step x learning rate", "units": "1"},
}


def _plain(value: Any) -> Any:
    """A value netCDF and zarr attrs can hold: str, int, float, or a JSON string of anything else."""
    if isinstance(value, str):
        return str(value)  # str subclasses (torch.__version__ is a TorchVersion) become plain str
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if value is None:
        return "None"
    if torch.is_tensor(value):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return json.dumps(value.tolist())
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return json.dumps(value, default=str)


@functools.cache
def _lesde_version() -> str:
    # the installed distribution's version (pyproject), read without importing the lesde package (no import cycle)
    try:
        return importlib.metadata.version("lesde")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def provenance(**extra: Any) -> dict[str, Any]:
    """Global attrs every Dataset carries: versions, creation time, plus ``extra`` made serialisable."""
    attrs: dict[str, Any] = {k: _plain(v) for k, v in extra.items()}
    attrs.update(
        lesde_version=_lesde_version(),
        torch_version=str(torch.__version__),
        xarray_version=str(xr.__version__),
        python_version=platform.python_version(),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    return attrs


def _annotate(ds: xr.Dataset, time: str | None, attrs: Mapping[str, Any]) -> xr.Dataset:
    if time is not None:
        if time not in TIME_ATTRS:
            raise ValueError(f"time={time!r} is not a kind of time axis; accepted values: {list(TIME_ATTRS)}")
        if "time" in ds.variables:
            ds["time"].attrs.update(TIME_ATTRS[time])
    for name in list(ds.variables):
        var = ds[name]
        if name in VARIABLE_ATTRS:
            for k, v in VARIABLE_ATTRS[name].items():
                var.attrs.setdefault(k, v)
        elif "units" not in var.attrs:
            var.attrs["units"] = "1"
        if name in _INDEX and var.attrs.get("units") == "1":
            del var.attrs["units"]  # an index has no units (files written before the table said so)
    # attrs already on ds are kept as they are (only str subclasses made plain); new ones made serialisable
    kept = {k: str(v) if isinstance(v, str) else v for k, v in ds.attrs.items()}
    ds.attrs = {**kept, **provenance(**attrs)}
    return ds


def _as_values(x: Any) -> Any:
    if torch.is_tensor(x):
        return x.detach().cpu().numpy()
    return x


def _as_coord(value: Any) -> Any:
    if isinstance(value, xr.DataArray):
        return value
    if isinstance(value, tuple):  # (dims, values[, attrs])
        return (value[0], _as_values(value[1]), *value[2:])
    return _as_values(value)


def make_dataset(
    data: Mapping[str, Any],
    coords: Mapping[str, Any] | None = None,
    *,
    lead: Sequence[str] = (),
    time: str | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build a lesde Dataset: variables on ``(*lead, *VARIABLE_DIMS[name])``, table attrs, provenance.

    Parameters
    ----------
    data : mapping name -> values
        Each value is an array (numpy, torch or dask) whose dims are ``(*lead, *VARIABLE_DIMS.get(name, ()))``;
        or ``(dims, values)`` / ``(dims, values, attrs)`` for a variable laid out otherwise; or a DataArray,
        used as it is (lazy arrays stay lazy).
    coords : mapping name -> values, optional
        1-D values of the index coordinate ``name``; or ``(dims, values)`` for a non-index coordinate such as
        ``label(sample)``; or a DataArray (its attrs are kept, e.g. the ``time`` of an input Dataset).
    lead : sequence of str
        The leading dims every plain-array variable starts with, e.g. ``("path", "time")``.
    time : {"sde", "training"}, optional
        What the ``time`` coordinate measures (:data:`TIME_ATTRS`); None keeps the attrs it already carries.
    attrs : mapping, optional
        Global attrs (run specification, parameters); made serialisable, then the provenance is added.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    ValueError
        A value whose number of dims does not match its dims (the message names the variable and its dims), or an
        unknown ``time`` kind.
    """
    lead = tuple(lead)
    variables: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, xr.DataArray):
            variables[name] = value
            continue
        if isinstance(value, tuple):
            dims, values, *extra = value
            dims = (dims,) if isinstance(dims, str) else tuple(dims)
        else:
            dims, values, extra = (*lead, *VARIABLE_DIMS.get(name, ())), value, []
        values = _as_values(values)
        if np.ndim(values) != len(dims):
            raise ValueError(
                f"variable {name!r} has {np.ndim(values)} dims (shape {tuple(np.shape(values))}); its dims are {dims}"
            )
        variables[name] = (dims, values, *extra)
    coords = {name: _as_coord(value) for name, value in (coords or {}).items()}
    return _annotate(xr.Dataset(variables, coords=coords), time, dict(attrs or {}))


def finalize(ds: xr.Dataset, **global_attrs: Any) -> xr.Dataset:
    """Annotate a Dataset built by hand as :func:`make_dataset` does (table attrs, provenance, plain attrs)."""
    return _annotate(ds, None, global_attrs)
