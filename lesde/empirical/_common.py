"""Small helpers shared by the empirical stages."""

from __future__ import annotations

from typing import Any

import xarray as xr

from .._attrs import finalize


def finish(ds: xr.Dataset, **attrs: Any) -> xr.Dataset:
    """``finalize`` plus a guard: every global attr becomes a str or a number (netCDF needs plain types;
    e.g. ``torch.__version__`` is a str subclass that h5py cannot write)."""
    ds = finalize(ds, **attrs)
    for k, v in list(ds.attrs.items()):
        if isinstance(v, str) and type(v) is not str:
            ds.attrs[k] = str(v)
    return ds
