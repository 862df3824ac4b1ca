"""``lesde plot KIND FILE --out F [--time T]``: open the file, check what the kind needs, draw, save.

The figure functions of :mod:`lesde.plots` take Datasets and open nothing; this module is where a file becomes
the Dataset a kind draws (:data:`lesde.plots.KINDS` says which file each kind reads).
"""

from __future__ import annotations

import math
from pathlib import Path

#: ``lesde plot`` kinds, the keys of lesde.plots.KINDS, spelled here so that the parser imports no xarray (a test
#: checks that the two agree)
PLOT_KINDS = ("phase", "nc", "cosines", "elasticity", "imitation", "sgd", "theory")


def add_parser(sub) -> None:
    s = sub.add_parser("plot", help="figures of stored results")
    s.add_argument("kind", choices=PLOT_KINDS, help="what to plot: " + ", ".join(PLOT_KINDS))
    s.add_argument("file", help="what the kind reads: a sweep store (phase) or a NetCDF file written by lesde")
    s.add_argument("--out", required=True, help="figure file to write (.png, .pdf, .svg)")
    s.add_argument("--time", type=float, default=None, help="phase only: time of the heatmap (nearest save time)")
    s.set_defaults(fn=run, output=("out", "file"))


def _times(ds) -> str:
    return "t = " + ", ".join(f"{float(t):g}" for t in ds["time"].values)


def _open(kind: str, file: str | Path):
    from .files import open_result

    if kind == "phase":
        from ..sweep import open_sweep

        return open_sweep(Path(file))
    ds = open_result(file)
    if kind == "elasticity" and "fit" in ds.attrs and "alpha_fit" not in ds:
        # a file whose fit is stored as JSON only: its curves are computed here, where the fit's package may be
        # imported (lesde.plots draws what the Dataset holds)
        from ..empirical import FitResult

        ds = FitResult.from_json(ds.attrs["fit"]).curves(ds)
    return ds


def _phase(ds, time: float | None):
    from ..plots import phase_plot

    note = ""
    if time is not None:
        if not math.isfinite(time):
            raise ValueError(f"--time {time} must be a finite time; the store has {_times(ds)}")
        asked, time = time, float(ds["time"].sel(time=time, method="nearest"))  # a stored time, exactly
        if not math.isclose(time, asked, rel_tol=1e-9):
            note = f"; --time {asked:g} is not a save time, used the nearest, t = {time:g} (store has {_times(ds)})"
    fig = phase_plot(ds, time=time)
    n_failed = int((ds["status"] == "failed").sum())
    return fig, (f"; {n_failed} failed cells marked" if n_failed else "") + note


def _nc(ds, file):
    from ..plots import MissingVariables, nc

    names = [n for n in ds.data_vars if n in nc.METRICS and "time" in ds[n].dims]
    if not names:
        raise MissingVariables(
            f"the nc figure needs at least one of the variables {', '.join(nc.METRICS)} "
            f"over time; {file} has {', '.join(map(str, ds.data_vars))}"
        )
    return nc.plot_nc_metrics(ds, names=names)


def _theory(ds, file):
    from ..plots import MissingVariables, plot_theory

    if "theory_predictions" not in ds.attrs:
        raise MissingVariables(
            f"the theory figure needs the predictions lesde.theory.attach adds; {file} has none: "
            f"run lesde compare-theory {file} --out F.nc and plot F.nc"
        )
    return plot_theory(ds)


def plot_file(kind: str, file: str | Path, out: str | Path, time: float | None = None) -> str:
    """Draw ``kind`` from ``file`` into ``out`` (format by extension); returns the line the CLI prints."""
    from .. import plots

    if kind not in plots.KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; accepted kinds: {', '.join(plots.KINDS)}")
    if time is not None and kind != "phase":
        raise ValueError(f"--time applies to the phase kind only, not {kind!r}")
    ds = _open(kind, file)
    note = ""
    if kind == "phase":
        fig, note = _phase(ds, time)
    elif kind == "nc":
        fig = _nc(ds, file)
    elif kind == "theory":
        fig = _theory(ds, file)
    else:
        draw = {
            "cosines": plots.plot_class_mean_cosines,
            "elasticity": plots.plot_elasticity,
            "imitation": plots.plot_imitation,
            "sgd": plots.plot_compare,
        }[kind]
        fig = draw(ds)
    return f"wrote {plots.save_figure(fig, out)}{note}"


def run(args) -> None:
    print(plot_file(args.kind, args.file, args.out, time=args.time))


__all__ = ["add_parser", "run", "plot_file", "PLOT_KINDS"]
