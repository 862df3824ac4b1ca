"""The xarray layer of the NC metrics: `to_dataset`, a thin ``xr.apply_ufunc`` wrapper over the kernels.

Like xskillscore's ``deterministic.py`` over ``np_deterministic.py``: the kernels see plain arrays with the core dims
last, and ``dask="parallelized"`` maps them block by block over a chunked (e.g. zarr-backed) Dataset, so metrics
of a store larger than memory stay lazy until computed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import torch
import xarray as xr

from ..schema import make_dataset
from .inputs import check_labels
from .kernels import means_metrics, nc_metrics
from .statistics import MEANS_METRICS, REGISTRY, select


def _tensor(x: np.ndarray) -> torch.Tensor:
    # a dask block or a zarr read can be read-only; torch.from_numpy needs a writable, contiguous array
    x = np.ascontiguousarray(x)
    return torch.from_numpy(x if x.flags.writeable else x.copy())


def _lead(var: xr.DataArray, trailing: tuple[str, ...]) -> list[str]:
    missing = [d for d in trailing if d not in var.dims]
    if missing:
        raise ValueError(f"variable {var.name!r} lacks the dims {missing}; it has {var.dims}")
    return [d for d in var.dims if d not in trailing]


def _core_whole(var: xr.DataArray, core: tuple[str, ...]) -> xr.DataArray:
    # the kernels need every sample (or class) of an item in one block; leading dims keep their chunks
    return var.chunk(dict.fromkeys(core, -1)) if var.chunks is not None else var


def _float_dtype(var: xr.DataArray) -> np.dtype:
    return var.dtype if var.dtype in (np.float32, np.float64) else np.dtype(np.float64)


def to_dataset(
    sim_ds: xr.Dataset,
    names: Iterable[str] | None = None,
    use_least_squares: bool = False,
    *,
    papyan: bool = False,
) -> xr.Dataset:
    """NC metrics of a simulation Dataset, as a Dataset over its leading dims (``path``, ``time``, ...).

    Lazy when ``sim_ds`` is dask-backed (``xr.open_zarr``, ``open_dataset(chunks=...)``): the result holds dask
    arrays, one kernel call per block of leading dims, computed on ``.compute()`` / ``.load()`` / writing.

    Parameters
    ----------
    sim_ds : xarray.Dataset
        ``save="full"``: ``features(..., sample, feature)`` with coordinate ``label(sample)``; all metrics
        of `nc_metrics` (the classifier ones only with ``use_least_squares``).
        ``save="means"``: ``class_mean(..., class, feature)``, ``within_var(..., class)`` and the attr
        ``samples_per_class`` (JSON list, or an int for balanced classes); `means_metrics`.
    names : iterable of str, optional
        Subset of metrics, or the aliases ``nc2``, ``nc3``, ``nc4``.
    use_least_squares : bool
        Compute the classifier metrics with W_LS (needs ``save="full"``).
    papyan : bool
        nc1 without the / K.

    Returns
    -------
    xr.Dataset
        xarray.Dataset with one variable per metric over the leading dims, their coordinates, the input's attrs and
        ``metrics_source`` ("full" or "means") and ``metrics_classifier`` ("least_squares" or "none").

    Examples
    --------
    >>> from lesde.metrics import to_dataset
    >>> import lesde
    >>> sim = lesde.simulate(lesde.LESDE(3, 4, 5), t_end=0.5, dt=0.05, n_paths=4, n_save=11, save="full",
    ...                      progress=False)
    >>> to_dataset(sim.chunk({"path": 2}), names=["nc1", "nc2"]).nc1.chunks
    ((2, 2), (11,))
    """
    if not isinstance(sim_ds, xr.Dataset):
        raise TypeError(f"sim_ds must be an xarray.Dataset, got {type(sim_ds).__name__}")
    if "features" in sim_ds:
        core: list[tuple[str, ...]] = [("sample", "feature")]
        inputs = [sim_ds["features"]]
        if "label" not in sim_ds.variables:
            raise ValueError("sim_ds has features but no label(sample) coordinate")
        # the labels are small: read (and checked) now, so a bad Dataset fails here and not at compute time
        labels, K, _ = check_labels(np.asarray(sim_ds["label"].values), sim_ds.sizes["sample"], torch.device("cpu"))
        has_cls = use_least_squares
        available = [n for n, (_, need) in REGISTRY.items() if has_cls or need != "classifier"]
        chosen = select(names, available, "classifier metrics need use_least_squares=True")

        def kernel(x: np.ndarray) -> tuple[np.ndarray, ...]:
            out = nc_metrics(_tensor(x), labels, names=chosen, use_least_squares=use_least_squares, papyan=papyan)
            return tuple(out[n].cpu().numpy() for n in chosen)

        source = "full"
    elif "class_mean" in sim_ds and "within_var" in sim_ds:
        if use_least_squares:
            raise ValueError("use_least_squares=True needs every sample (save='full'); this Dataset holds means")
        core = [("class", "feature"), ("class",)]
        inputs = [sim_ds["class_mean"], sim_ds["within_var"]]
        if "samples_per_class" not in sim_ds.attrs:
            raise ValueError("a save='means' Dataset needs the attr samples_per_class (JSON list of ints)")
        spc = sim_ds.attrs["samples_per_class"]
        try:
            spc = json.loads(spc) if isinstance(spc, str) else spc
        except ValueError:
            raise ValueError(f"sim_ds.attrs['samples_per_class'] is damaged: {spc[:60]!r} is not JSON") from None
        K = sim_ds.sizes["class"]
        counts = [int(spc)] * K if np.ndim(spc) == 0 else [int(c) for c in np.asarray(spc).ravel()]
        chosen = select(names, MEANS_METRICS, "only class means and within-class variances are available")

        def kernel(means: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, ...]:
            out = means_metrics(_tensor(means), _tensor(var), counts, names=chosen)
            return tuple(out[n].cpu().numpy() for n in chosen)

        source = "means"
    else:
        raise ValueError(
            "sim_ds must hold features(path, time, sample, feature) (save='full') or class_mean and within_var "
            f"(save='means'); it has {list(sim_ds.data_vars)}"
        )
    lead = _lead(inputs[0], core[0])
    empty = [str(d) for d in (*lead, *core[0]) if inputs[0].sizes[d] == 0]
    if empty:  # nothing to measure: refused rather than returned as empty (or NaN) metrics
        raise ValueError(f"sim_ds has an empty {', '.join(map(repr, empty))} axis; the metrics need at least one entry")
    inputs = [_core_whole(v.transpose(*lead, *c), c) for v, c in zip(inputs, core)]
    results = xr.apply_ufunc(
        kernel if len(chosen) > 1 else lambda *arrays: kernel(*arrays)[0],  # one output: an array, not a 1-tuple
        *inputs,
        input_core_dims=[list(c) for c in core],
        output_core_dims=[[] for _ in chosen],
        dask="parallelized",
        output_dtypes=[_float_dtype(inputs[0])] * len(chosen),
    )
    results = (results,) if isinstance(results, xr.DataArray) else results
    for r in results:  # they carry the input's attrs (the features'): each metric gets its own from the table below
        r.attrs = {}
    return make_dataset(
        dict(zip(chosen, results)),
        attrs={
            **sim_ds.attrs,
            "metrics_source": source,
            "metrics_classifier": "least_squares" if use_least_squares else "none",
        },
    )
