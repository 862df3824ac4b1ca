"""The files a command reads and writes: outputs checked (or refused) before any run starts, inputs opened with
one-line errors. The only place of the application layer that knows how lesde results are stored."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .failures import UsageError


def _probe_writable(folder: Path, what: str) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".lesde-probe-"):
            pass
    except OSError as e:
        raise UsageError(f"{what}: cannot write in {folder} ({e.strerror or e})") from None


def prepare_output(option: str, path: str, kind: str) -> None:
    """Create the folders an output needs, or refuse the path, before the run.

    ``kind`` is what the option names: ``"file"``, ``"folder"`` or ``"store"`` (a zarr folder).
    """
    out = Path(path)
    what = f"--{option} {path}"
    if kind == "file" and out.is_dir():
        raise UsageError(f"{what} is a folder; give a file name, e.g. {out / 'out.nc'}")
    if kind in ("folder", "store") and out.exists() and not out.is_dir():
        raise UsageError(f"{what} exists and is not a folder")
    folder = out if kind == "folder" else out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{what}: cannot create the folder {folder} ({e.strerror or e})") from None
    _probe_writable(folder, what)


def check_netcdf(path: str | Path) -> None:
    """Refuse, in one line, a path that is not a NetCDF-4 file (before any work)."""
    import xarray as xr

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path} does not exist" if not p.exists() else f"{path} is not a file")
    try:
        xr.open_dataset(p, engine="h5netcdf").close()
    except Exception as e:  # noqa: BLE001 - whatever h5py says about a file that is not NetCDF-4/HDF5
        raise UsageError(f"{path} is not a NetCDF file readable by h5netcdf ({type(e).__name__}: {e})") from None


def open_result(path: str | Path, folder: str = "zarr"):
    """A lesde result loaded into memory: a NetCDF file, or a folder read as ``folder`` says (``"sweep"``: a sweep
    store through `lesde.sweep.open_sweep`; ``"zarr"``: any zarr store)."""
    import xarray as xr

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if p.is_dir():
        if folder == "sweep":
            from ..sweep import open_sweep

            return open_sweep(p)
        # consolidated=False: lesde writes its stores without consolidated metadata, and xarray's fallback to
        # reading them otherwise warns (a RuntimeWarning after the command's own lines)
        try:
            with xr.open_zarr(p, consolidated=False) as ds:
                return ds.load()
        except Exception as e:  # noqa: BLE001 - whatever zarr says about a folder that is not a zarr store
            raise ValueError(f"{path} is not a readable zarr store ({type(e).__name__}: {e})") from None
    try:
        with xr.open_dataset(p, engine="h5netcdf") as ds:
            return ds.load()
    except Exception as e:  # noqa: BLE001 - whatever h5py says about a file that is not NetCDF-4/HDF5
        raise ValueError(f"{path} is not a NetCDF file readable by h5netcdf ({type(e).__name__}: {e})") from None


__all__ = ["prepare_output", "check_netcdf", "open_result"]
