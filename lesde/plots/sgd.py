"""The SGD comparison figure: SGD, its SME and gradient flow side by side (the Dataset of :func:`lesde.sgd.compare`)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ._style import (
    BAND_ALPHA,
    PALETTE,
    PROCESS_NAMES,
    TITLES,
    describe,
    finish,
    label,
    legend,
    log_if_positive,
    require,
    subplots,
    time_label,
)

__all__ = ["plot_compare"]

_PLOT_METRICS = ("nc1", "nc1_quotient", "etf_error", "self_duality", "equinorm_means", "ncc_mismatch")


def plot_compare(ds: xr.Dataset, *, metrics: tuple[str, ...] = _PLOT_METRICS, fig=None):
    """Loss, accuracy and NC metrics against time, one line per process (mean over runs, band +-1 standard
    deviation over runs), as a two-column grid.

    Parameters
    ----------
    ds : Dataset of :func:`lesde.sgd.compare` (dims ``process, run, time``).
    metrics : NC metrics to add after loss and accuracy (those the Dataset has).
    fig : matplotlib Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(ds, ("loss", "accuracy", "process"), "sgd")
    names = ["loss", "accuracy"] + [m for m in metrics if m in ds]
    fig, axes = subplots(len(names), fig=fig, panel=(3.5, 2.4))
    t = ds.time.values
    for ax, name in zip(axes, names):
        for i, proc in enumerate(ds.process.values):
            v = ds[name].sel(process=proc)
            mean, std = v.mean("run").values, v.std("run").values
            colour = PALETTE[i % len(PALETTE)]
            ax.plot(
                t, mean, color=colour, lw=1.3, ls=("-", "--", ":")[i % 3], label=PROCESS_NAMES.get(str(proc), str(proc))
            )
            if np.nanmax(std) > 0:
                ax.fill_between(t, mean - std, mean + std, color=colour, alpha=BAND_ALPHA, lw=0)
        ax.set_title(TITLES.get(name, name))
        ax.set_ylabel(label(name, ds[name]))
        ax.set_xlabel(time_label(ds))
        if name != "accuracy":
            log_if_positive(ax, ds[name].values)
    axes[0].fill_between([], [], [], color="0.5", alpha=0.4, lw=0, label=f"$\\pm 1$ s.d. over {ds.sizes['run']} runs")
    legend(axes[0], fontsize=5.5)
    what = describe(ds)
    fig.suptitle(
        f"SGD vs SME vs gradient flow{': ' + what if what else ''}\nlr = {ds.attrs.get('lr')}, batch size "
        f"{ds.attrs.get('batch_size')}, {ds.attrs.get('sampling', '')} sampling",
        fontsize=8,
    )
    finish(fig)
    return fig
