"""Result files written whole or not at all: a temporary name in the target's folder, renamed into place.

A command killed (SIGKILL, Ctrl-C, a full disk) while it writes leaves the previous file at the path intact and no
half-written file under the path's name: ``os.replace`` within one folder is atomic on POSIX file systems. The
temporary name keeps the suffix (so that engines that choose the format by the extension still do) and starts with
a dot (so that a glob for results does not see it).

```pycon
>>> from lesde.atomic_write import write_netcdf
>>> import numpy as np, xarray as xr, tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "x.nc"
>>> write_netcdf(xr.Dataset({"a": ("t", np.arange(3.0))}), out)
>>> xr.open_dataset(out, engine="h5netcdf")["a"].values.tolist(), sorted(p.name for p in out.parent.iterdir())
([0.0, 1.0, 2.0], ['x.nc'])

```
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_netcdf"]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an exception, rename it onto ``path``
    (a file, or a folder such as a zarr store, replacing what was there); otherwise remove it and leave ``path``
    as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():  # a folder cannot replace a non-empty folder: move the old one aside
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_netcdf(ds: Any, path: str | Path, **kwargs: Any) -> None:
    """``ds.to_netcdf(path, engine="h5netcdf", **kwargs)`` through `atomic_path`."""
    kwargs.setdefault("engine", "h5netcdf")
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, **kwargs)
