"""``lesde plot KIND FILE --out F [--time T] [--metrics NAME ...]``: open the file, check what the kind needs, draw,
save.

The figure functions of `lesde.plots` take Datasets and open nothing; this module is where a file becomes
the Dataset a kind draws (`lesde.plots.KINDS` says which file each kind reads, and ``lesde plot --help``
prints it).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from .console import QUIET


def _kinds() -> dict[str, str]:
    from ..plots import KINDS

    return KINDS


#: ``lesde plot`` kinds (the keys of lesde.plots.KINDS)
PLOT_KINDS = tuple(_kinds())
#: the kinds ``--metrics`` applies to
METRIC_KINDS = ("nc", "sgd")


def add_parser(sub) -> None:
    width = max(map(len, PLOT_KINDS))
    table = "\n".join(f"  {kind:<{width}}  {reads}" for kind, reads in _kinds().items())
    s = sub.add_parser(
        "plot",
        help="figures of stored results (one kind of figure per kind of file)",
        epilog=f"kinds and the file each reads:\n{table}",
    )
    s.add_argument("kind", choices=PLOT_KINDS, metavar="KIND", help="what to plot: " + ", ".join(PLOT_KINDS))
    s.add_argument("file", metavar="FILE", help="the file KIND reads (see below): a sweep store or a NetCDF file")
    s.add_argument("--out", required=True, metavar="FIGURE", help="figure file to write (.png, .pdf, .svg)")
    s.add_argument("--time", type=float, default=None, help="phase only: time of the heatmap (nearest save time)")
    s.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        metavar="NAME",
        help="nc and sgd only: the NC metrics to draw, e.g. nc1 cdnv (default: up to six the file has)",
    )
    s.add_argument("--quiet", action="store_true", help=QUIET)
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

    if time is not None:
        if not math.isfinite(time):
            raise ValueError(f"--time {time} must be a finite time; the store has {_times(ds)}")
        asked, time = time, float(ds["time"].sel(time=time, method="nearest"))  # a stored time, exactly
        if not math.isclose(time, asked, rel_tol=1e-9):
            warnings.warn(
                f"--time {asked:g} is not a save time, used the nearest, t = {time:g} (store has {_times(ds)})",
                stacklevel=2,
            )
    fig = phase_plot(ds, time=time)
    n_failed = int((ds["status"] == "failed").sum())
    return fig, (f"; {n_failed} failed cells marked" if n_failed else "")


def _nc(ds, file, metrics):
    from ..plots import missing_variables, nc

    if metrics is None:  # the file's NC metrics only (a simulation file also has class means over time)
        have = [n for n in nc.METRICS if n in ds.data_vars and "time" in ds[n].dims]
        if not have:
            raise missing_variables("nc", "NC metrics over time (nc1, etf_error, ...)", ds, str(file))
        if not any(n in nc.DEFAULT_METRICS for n in have):
            metrics = have[: nc.MAX_PANELS]
    return nc.plot_nc_metrics(ds, metrics=metrics)


def _theory(ds, file):
    from ..plots import MissingVariables, plot_theory

    if "theory_predictions" not in ds.attrs:
        raise MissingVariables(
            f"the theory figure needs the predictions lesde.theory.attach adds; {file} has none: "
            f"run lesde compare-theory {file} --out F.nc and plot F.nc"
        )
    return plot_theory(ds)


def plot_file(kind: str, file: str | Path, out: str | Path, time: float | None = None, metrics=None) -> str:
    """Draw ``kind`` from ``file`` into ``out`` (format by extension); returns the line the CLI prints."""
    from .. import plots

    if kind not in plots.KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; accepted kinds: {', '.join(plots.KINDS)}")
    if time is not None and kind != "phase":
        raise ValueError(f"--time applies to the phase kind only, not {kind!r}")
    if metrics is not None and kind not in METRIC_KINDS:
        raise ValueError(f"--metrics applies to the kinds {', '.join(METRIC_KINDS)} only, not {kind!r}")
    ds = _open(kind, file)
    note = ""
    if kind == "phase":
        fig, note = _phase(ds, time)
    elif kind == "nc":
        fig = _nc(ds, file, metrics)
    elif kind == "theory":
        fig = _theory(ds, file)
    elif kind == "sgd" and metrics is not None:
        bad = [m for m in metrics if m not in ds.data_vars]
        if bad:
            raise ValueError(f"--metrics {' '.join(bad)}: not in {file}; it has {', '.join(map(str, ds.data_vars))}")
        fig = plots.plot_compare(ds, metrics=tuple(metrics))
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
    print(plot_file(args.kind, args.file, args.out, time=args.time, metrics=args.metrics))


__all__ = ["add_parser", "run", "plot_file", "PLOT_KINDS"]
