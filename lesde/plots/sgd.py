"""The SGD comparison figure: SGD, its SME and gradient flow side by side (the Dataset of `lesde.sgd.compare`).

Decisions: each process has one style (`lesde.plots._style.PROCESS_STYLE`); gradient flow, the noiseless
reference, is thin, dotted and drawn under SGD and the SME, which are solid and dashed, so that all three stay
visible where they coincide. The band is +-1 standard deviation over the runs; the axis limits come from the
means, with the bands widening a linear axis only.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ._style import (
    PALETTE,
    PROCESS_NAMES,
    PROCESS_STYLE,
    band,
    finish,
    fit_y,
    label,
    legend,
    require,
    subplots,
    time_label,
    title_of,
)
from ._titles import describe

__all__ = ["plot_compare"]

_PLOT_METRICS = ("nc1", "etf_error", "self_duality", "ncc_mismatch")  # with loss and accuracy: six panels, one page


def _draw(ax, ds: xr.Dataset, name: str) -> None:
    """One panel: the mean over runs of each process and its +-1 s.d. band."""
    t = ds["time"].values
    series = []
    for i, proc in enumerate(ds["process"].values):
        v = ds[name].sel(process=proc)
        mean, std = v.mean("run").values, v.std("run").values
        style = PROCESS_STYLE.get(str(proc), {"color": PALETTE[i % len(PALETTE)], "lw": 1.5})
        series.append((PROCESS_NAMES.get(str(proc), str(proc)), style, mean, std))
    fit_y(ax, [m for *_, m, _ in series], [np.stack([m - s, m + s]) for *_, m, s in series],
          log=False if name == "accuracy" else None)  # fmt: skip
    for text, style, mean, std in series:
        if np.nanmax(std) > 0:
            band(ax, t, mean - std, mean + std, color=style["color"], zorder=1)
        ax.plot(t, mean, label=text, **style)
    ax.set_title(title_of(name, ds[name]))
    ax.set_ylabel(label(name, ds[name]))
    ax.set_xlabel(time_label(ds))


def plot_compare(ds: xr.Dataset, *, metrics: tuple[str, ...] = _PLOT_METRICS, fig=None):
    """Loss, accuracy and NC metrics against time, one line per process (mean over runs, band +-1 standard
    deviation over runs), as a two-column grid.

    Parameters
    ----------
    ds
        Dataset of `lesde.sgd.compare` (dims ``process, run, time``).
    metrics : NC metrics to add after loss and accuracy (by default those of the four the Dataset has; names
        given explicitly must all be in the Dataset).
    fig : matplotlib Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(ds, ("loss", "accuracy", "process"), "sgd")
    if isinstance(metrics, str):
        raise TypeError(f"metrics must be a tuple of variable names, e.g. ({metrics!r},), not the string {metrics!r}")
    if metrics is not _PLOT_METRICS and (absent := [m for m in metrics if m not in ds.data_vars]):
        # the default names those the Dataset may have; names asked for explicitly must be there
        raise ValueError(f"metrics={absent!r} are not in ds; it has {', '.join(map(str, ds.data_vars))}")
    names = ["loss", "accuracy"] + [m for m in metrics if m in ds]
    fig, axes = subplots(len(names), fig=fig)
    for ax, name in zip(axes, names):
        _draw(ax, ds, name)
    axes[0].fill_between([], [], [], color="0.5", alpha=0.35, lw=0, label=f"$\\pm 1$ s.d. over {ds.sizes['run']} runs")
    legend(axes[0], loc="best")
    what = describe(ds)
    run = [f"lr = {ds.attrs.get('lr')}", f"batch size {ds.attrs.get('batch_size')}"]
    if ds.attrs.get("sampling"):
        run.append(f"{ds.attrs['sampling']} sampling")
    finish(fig, f"SGD vs SME vs gradient flow{': ' + what if what else ''}\n" + ", ".join(run))
    return fig
