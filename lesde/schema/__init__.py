"""The tables of variable dims and attributes, and the one Dataset builder every stage uses (pyqg style).

`VARIABLE_ATTRS` gives each known variable its ``long_name`` and ``units``; `VARIABLE_DIMS` its
trailing dims (the dims after the Dataset's leading ones such as ``path, time`` or ``process, run, time``);
`TIME_ATTRS` the description of the ``time`` coordinate for each kind of Dataset. `make_dataset`
builds a Dataset from plain arrays with those tables and stamps the provenance attrs (package versions, creation
time) once; `finalize` annotates a Dataset built by hand the same way.

Conventions: attrs values are strings and numbers only (str subclasses such as ``torch.__version__`` become plain
``str``), so files round-trip through netCDF and zarr unchanged. Index coordinates (``path``, ``class``, ...)
and the categorical ``label`` carry a ``long_name`` but no ``units``; every other variable carries ``units``
(``"1"`` when dimensionless).

Examples
--------
>>> from lesde.schema import make_dataset
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

from .tables import _INDEX, TIME_ATTRS, VARIABLE_ATTRS, VARIABLE_DIMS

__all__ = ["VARIABLE_ATTRS", "VARIABLE_DIMS", "TIME_ATTRS", "make_dataset", "finalize", "provenance"]


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
    time : "sde" | "training", optional
        What the ``time`` coordinate measures (`TIME_ATTRS`); None keeps the attrs it already carries.
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
    """Annotate a Dataset built by hand as `make_dataset` does (table attrs, provenance, plain attrs)."""
    return _annotate(ds, None, global_attrs)
