"""``lesde plot KIND FILE --out F``: open the file, check what the kind needs, draw, save (the only file I/O of
the plots package)."""

from __future__ import annotations

import math
from pathlib import Path

from ._style import MissingVariables, save_figure

#: kind -> what FILE is (for the help and the messages)
KINDS = {
    "phase": "a sweep store (lesde sweep)",
    "nc": "a metrics or simulation Dataset (lesde simulate with save='metrics', metrics.to_dataset)",
    "cosines": "a simulation Dataset with class_mean or features (lesde simulate with save='means' or 'full')",
    "elasticity": "an estimate file (lesde estimate)",
    "imitation": "an imitation file (lesde imitate)",
    "sgd": "a comparison file (lesde compare-sgd)",
    "theory": "a file with the predictions attached (lesde compare-theory FILE --out F.nc)",
}


def _open(kind: str, file: str | Path):
    import xarray as xr

    path = Path(file)
    if kind == "phase":
        from ..sweep import open_sweep

        return open_sweep(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        return xr.open_zarr(path).load()
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    except Exception as e:  # noqa: BLE001 - whatever h5py says about a file that is not NetCDF-4/HDF5
        raise ValueError(f"{path} is not a NetCDF file readable by h5netcdf ({type(e).__name__}: {e})") from None


def _times(ds) -> str:
    return "t = " + ", ".join(f"{float(t):g}" for t in ds["time"].values)


def plot_file(kind: str, file: str | Path, out: str | Path, time: float | None = None) -> str:
    """Draw ``kind`` from ``file`` into ``out`` (format by extension); returns the line the CLI prints."""
    from . import nc
    from .empirical import plot_elasticity, plot_imitation
    from .phase import phase_plot
    from .sgd import plot_compare
    from .theory import plot_theory

    if kind not in KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; accepted kinds: {', '.join(KINDS)}")
    ds = _open(kind, file)
    note = ""
    if kind == "phase":
        if time is not None:
            if not math.isfinite(time):
                raise ValueError(f"--time {time} must be a finite time; the store has {_times(ds)}")
            asked, time = time, float(ds["time"].sel(time=time, method="nearest"))  # a stored time, exactly
            if not math.isclose(time, asked, rel_tol=1e-9):
                note = f"; --time {asked:g} is not a save time, used the nearest, t = {time:g} (store has {_times(ds)})"
        fig = phase_plot(ds, time=time)
        n_failed = int((ds["status"] == "failed").sum())
        note = (f"; {n_failed} failed cells marked" if n_failed else "") + note
    elif time is not None:
        raise ValueError(f"--time applies to the phase kind only, not {kind!r}")
    elif kind == "nc":
        names = [n for n in ds.data_vars if n in nc.METRICS and "time" in ds[n].dims]
        if not names:
            raise MissingVariables(
                f"the nc figure needs at least one of the variables {', '.join(nc.METRICS)} "
                f"over time; {file} has {', '.join(map(str, ds.data_vars))}"
            )
        fig = nc.plot_nc_metrics(ds, names=names)
    elif kind == "cosines":
        fig = nc.plot_class_mean_cosines(ds)
    elif kind == "elasticity":
        fig = plot_elasticity(ds)
    elif kind == "imitation":
        fig = plot_imitation(ds)
    elif kind == "sgd":
        fig = plot_compare(ds)
    else:
        if "theory_predictions" not in ds.attrs:
            raise MissingVariables(
                f"the theory figure needs the predictions lesde.theory.attach adds; {file} has none: "
                f"run lesde compare-theory {file} --out F.nc and plot F.nc"
            )
        fig = plot_theory(ds)
    return f"wrote {save_figure(fig, out)}{note}"


def plot_phase_cli(store: str | Path, out: str | Path = "phase.png", time: float | None = None) -> int:
    """``lesde plot phase STORE --out phase.png [--time T]``; returns an exit code."""
    print(plot_file("phase", store, out, time=time))
    return 0
