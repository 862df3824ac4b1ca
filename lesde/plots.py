r"""Figures from lesde Datasets (matplotlib, Agg backend: no display needed).

Phase diagrams of a separability sweep (:mod:`lesde.sweep`) against the LE-SDE theory: with
:math:`\alpha_t - \beta_t = c\,(1+t)^{-p}`, T = identity and balanced classes, the class means separate like
:math:`e^{A(t)}` with :math:`A(t) = \int_0^t (\alpha_s-\beta_s)\,ds / K` while the within-class spread grows like
:math:`\sigma\sqrt t`. For p < 1 separation wins (P(all pairs separable) -> 1), for p > 1 it loses (P -> 0), and on
p = 1, :math:`e^{A} = (1+t)^{c/K}` against :math:`\sqrt t`, separation wins exactly when 2c/K > 1.

Decisions: the heatmap draws cells centred on the grid values with edges half-way between neighbours (geometric
half-way on a log axis, used for a positive axis spanning a factor >= 8), so the theory lines sit at their true
coordinates; swept dimensions other than the two plotted (and ``time``) are fixed at their first value unless
``select`` says otherwise, and the choice is printed in the title; K for the 2c/K = 1 mark comes from the
``num_classes`` coordinate or the spec stored in the attrs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["phase_plot", "plot_phase_cli"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted centres: midpoints (geometric on a log axis), extrapolated at the ends."""
    v = np.log(values) if log else np.asarray(values, dtype=float)
    if len(v) == 1:
        e = np.array([v[0] - 0.5, v[0] + 0.5]) if not log else np.array([v[0] - np.log(2), v[0] + np.log(2)])
    else:
        mid = 0.5 * (v[1:] + v[:-1])
        e = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return np.exp(e) if log else e


def _is_log(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=float)
    return bool(len(values) > 2 and (values > 0).all() and values.max() / values.min() >= 8)


def _grid_ticks(axis, values: np.ndarray) -> None:
    """Ticks at the grid values (plain numbers, also on a log axis) when there are few enough to read."""
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

    if len(values) <= 12:
        axis.set_major_locator(FixedLocator(values))
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_locator(NullLocator())


def _num_classes(ds: xr.Dataset) -> int | None:
    if "num_classes" in ds.coords and ds["num_classes"].size == 1:
        return int(ds["num_classes"].values)
    try:
        return int(json.loads(ds.attrs["spec"])["model"]["num_classes"])
    except (KeyError, TypeError, ValueError):
        return None


def _open(ds_or_store: xr.Dataset | str | Path) -> xr.Dataset:
    if isinstance(ds_or_store, xr.Dataset):
        return ds_or_store
    from .sweep import open_sweep

    return open_sweep(ds_or_store)


def phase_plot(
    ds_or_store: xr.Dataset | str | Path,
    out: str | Path,
    time: float | None = None,
    x: str = "alpha.exponent",
    y: str = "alpha.scale",
    curve_times: int = 4,
    curve_at: float | None = None,
    select: dict[str, Any] | None = None,
) -> Path:
    r"""Heatmap of P(all pairs separable) over (x, y) at ``time``, and P against x for several times.

    Parameters
    ----------
    ds_or_store : Dataset from :func:`lesde.sweep.run`, or the path of its zarr store
    out : path of the PNG to write
    time : float, optional
        Time of the heatmap (nearest save time); default the sweep's ``summary_time`` attr, else the last time.
    x, y : str
        Swept dimensions on the axes (the exponent p and the scale c by default). When ``x`` is a schedule
        exponent the p = 1 line is drawn; when ``y`` is the matching scale the point 2c/K = 1 on it is marked
        and the part of the line where separation wins (2c/K > 1) is drawn solid.
    curve_times : int
        Number of save times (log-spaced indices, t > 0) in the second panel.
    curve_at : float, optional
        Value of ``y`` for the second panel's curves (nearest); default the grid value nearest K/2 from above.
    select : dict, optional
        Values for the other swept dims (default: their first values).

    Returns
    -------
    Path of the written figure.
    """
    plt = _pyplot()
    ds = _open(ds_or_store)
    for name in (x, y):
        if name not in ds.dims:
            swept = [d for d in ds["p_all_separable"].dims if d != "time"]
            raise ValueError(f"{name!r} is not a swept dimension of this Dataset; accepted: {', '.join(swept)}")
    P = ds["p_all_separable"].where(ds["done"] > 0)
    lower, upper = ds["p_all_separable_lower"].where(ds["done"] > 0), ds["p_all_separable_upper"].where(ds["done"] > 0)
    chosen = dict(select or {})
    for d in P.dims:
        if d not in (x, y, "time") and d not in chosen:
            chosen[d] = P[d].values[0]
    if chosen:
        P, lower, upper = (a.sel(chosen, method="nearest") for a in (P, lower, upper))
    if time is None:
        time = float(ds.attrs.get("summary_time", ds["time"].values[-1]))
    heat = P.sel(time=time, method="nearest").transpose(y, x)
    xs, ys = np.asarray(heat[x].values, float), np.asarray(heat[y].values, float)
    xlog, ylog = _is_log(xs), _is_log(ys)
    K = _num_classes(ds)

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.4), constrained_layout=True)
    mesh = ax.pcolormesh(
        _edges(xs, xlog), _edges(ys, ylog), heat.values, vmin=0, vmax=1, cmap="viridis", shading="flat"
    )
    fig.colorbar(mesh, ax=ax, label="P(all pairs separable)")
    widths = np.diff(np.log(_edges(xs, xlog)) if xlog else _edges(xs, xlog))
    readable = widths.min() / widths.sum() >= 0.08  # numbers only where every cell is wide enough to hold one
    for (j, i), v in np.ndenumerate(heat.values):
        if readable and np.isfinite(v):
            ax.text(
                xs[i], ys[j], f"{v:.2f}", ha="center", va="center", fontsize=7, color="black" if v > 0.5 else "white"
            )
    if "status" in ds:  # failed sweep cells (NaN results): a red cross, so that they do not read as missing
        failed = ds["status"] == "failed"
        failed = failed.sel(chosen, method="nearest") if chosen else failed
        jj, ii = np.nonzero(failed.transpose(y, x).values)
        if len(ii):
            ax.plot(xs[ii], ys[jj], "x", color="red", ms=10, mew=2, ls="none", label=f"failed cell ({len(ii)})")
    ax.set_xscale("log" if xlog else "linear")
    ax.set_yscale("log" if ylog else "linear")
    _grid_ticks(ax.xaxis, xs)
    _grid_ticks(ax.yaxis, ys)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    on_exponent = x.endswith("exponent")
    if on_exponent and xs.min() <= 1 <= xs.max():
        ax.axvline(1.0, color="white", ls="--", lw=1.2, label="p = 1")
        if K is not None and y.endswith("scale") and y.split(".")[0] == x.split(".")[0]:
            c_star = K / 2  # 2c/K = 1
            top = _edges(ys, ylog)[-1]
            if c_star < top:
                ax.plot(
                    [1, 1],
                    [max(c_star, _edges(ys, ylog)[0]), top],
                    color="red",
                    lw=3,
                    label="p = 1, 2c/K > 1: separable",
                )
            ax.plot([1], [c_star], "o", color="red", ms=7, mec="white", label=f"2c/K = 1 (c = {c_star:g})")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, fontsize=7, frameon=False)
    title = f"t = {float(heat.time):g}"
    if chosen:
        title += " | " + ", ".join(f"{k} = {v}" for k, v in chosen.items())
    ax.set_title(title)

    # second panel: P against x at one y, for log-spaced save times: the step sharpens around p = 1 as t grows
    times = np.asarray(P["time"].values, float)
    positive = np.flatnonzero(times > 0)
    picks = np.unique(np.round(np.geomspace(1, len(positive), min(curve_times, len(positive)))).astype(int) - 1)
    if curve_at is None:
        above = ys[ys > (K / 2 if K else np.median(ys))]
        curve_at = float(above.min()) if len(above) else float(ys[-1])
    line = P.sel({y: curve_at}, method="nearest")
    band_lo, band_hi = (a.sel({y: curve_at}, method="nearest") for a in (lower, upper))
    cmap = plt.get_cmap("plasma")
    for n, k in enumerate(positive[picks]):
        colour = cmap(n / max(1, len(picks) - 1) * 0.85)
        t = times[k]
        ax2.plot(xs, line.sel(time=t).transpose(x).values, "o-", color=colour, ms=3, label=f"t = {t:g}")
        ax2.fill_between(
            xs,
            band_lo.sel(time=t).transpose(x).values,
            band_hi.sel(time=t).transpose(x).values,
            color=colour,
            alpha=0.15,
            lw=0,
        )
    if on_exponent:
        ax2.axvline(1.0, color="grey", ls="--", lw=1)
    ax2.set_xscale("log" if xlog else "linear")
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_xlabel(x)
    ax2.set_ylabel("P(all pairs separable)  (95% Wilson band)")
    ax2.set_title(f"{y} = {float(line[y]):g}")
    ax2.legend(fontsize=7)
    fig.suptitle(
        f"separability phase diagram ({ds.attrs.get('method', '?')}, {ds.attrs.get('n_paths', '?')} "
        f"paths per cell, {ds.attrs.get('separability', 'ncm')})",
        fontsize=10,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_phase_cli(store: str | Path, out: str | Path = "phase.png", time: float | None = None) -> int:
    """``lesde plot phase STORE --out phase.png [--time T]``; returns an exit code."""
    path = phase_plot(store, out, time=time)
    print(f"wrote {path}")
    return 0
