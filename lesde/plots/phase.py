r"""Phase diagrams of a separability sweep (`lesde.sweep`) against the theory of the
phase transition (see *Theory to code* in the documentation).

With $\alpha_t - \beta_t = c\,(1+t)^{-p}$, T = identity and balanced classes, the class means separate like
$e^{A(t)}$ with $A(t) = \int_0^t (\alpha_s-\beta_s)\,ds / K$ while the within-class spread grows like
$\sigma\sqrt t$. For p < 1 separation wins (P(all pairs separable) -> 1), for p > 1 it loses (P -> 0), and on
p = 1, $e^{A} = (1+t)^{c/K}$ against $\sqrt t$, separation wins exactly when 2c/K > 1.

Decisions: the heatmap draws cells centred on the grid values with edges half-way between neighbours (geometric
half-way on a log axis, used for a positive axis spanning a factor >= 8), so the theory lines sit at their true
coordinates; swept dimensions other than the two plotted (and ``time``) are fixed at their first value unless
``select`` says otherwise, and the choice is printed in the title; K for the 2c/K = 1 mark comes from the
``num_classes`` coordinate or the spec stored in the attrs. A ``predicted_phase`` variable (1 separable predicted,
0 not, NaN no prediction; `lesde.theory.attach` writes it) is drawn as hatching over the predicted-separable
cells with its boundary; the hatching is black on light cells and white on dark ones, so it shows on every
colour of the map. The grid is sorted first (a sweep may list its values in any order). The theory marks are thin
lines over the p = 1 cells, which stay readable under them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ._style import PALETTE, THEORY, check_count, dim_label, finish, legend_below, reference, require, subplots
from ._titles import describe, num_classes

__all__ = ["phase_plot"]

NEEDS = ("p_all_separable", "p_all_separable_lower", "p_all_separable_upper", "done")


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

    gaps = np.diff(np.log(values) if axis.get_scale() == "log" else values)
    span = (np.log(values[-1] / values[0]) if axis.get_scale() == "log" else values[-1] - values[0]) or 1.0
    if len(values) <= 10 and (len(values) < 2 or gaps.min() / span >= 0.09):  # every label has room
        axis.set_major_locator(FixedLocator(values))
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_locator(NullLocator())


def _dim(ds: xr.Dataset, name: str) -> str:
    """The swept dim ``name`` (a ValueError listing the swept dims when it is not one)."""
    if name in ds.dims:
        return name
    swept = [d for d in ds["p_all_separable"].dims if d != "time"]
    raise ValueError(f"{name!r} is not a swept dimension of this Dataset; accepted: {', '.join(swept)}")


def _hatch_predicted(ax, pred: xr.DataArray, heat: np.ndarray, x: str, y: str, xe, ye) -> bool:
    """Hatch the cells where ``predicted_phase`` is 1 and outline the predicted boundary; False if none.

    The hatching of a cell is black where its colour is light (P > 1/2: the yellow end of viridis) and white where
    it is dark, the rule of the values written in the cells.
    """
    from matplotlib.patches import Rectangle

    vals = np.asarray(pred.transpose(y, x).values, dtype=float)  # (ny, nx), as heat
    drawn = False
    for (j, i), v in np.ndenumerate(vals):
        if v == 1:
            light = not np.isfinite(heat[j, i]) or heat[j, i] > 0.5
            ax.add_patch(
                Rectangle((xe[i], ye[j]), xe[i + 1] - xe[i], ye[j + 1] - ye[j], fill=False, hatch="///", lw=0,
                          edgecolor="black" if light else "white", alpha=0.75, zorder=1.2)
            )  # fmt: skip
            drawn = True
    # the predicted boundary: cell edges between a 1 and a 0 neighbour
    for j in range(vals.shape[0]):
        for i in range(vals.shape[1]):
            if vals[j, i] != 1:
                continue
            for dj, di in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                jj, ii = j + dj, i + di
                if 0 <= jj < vals.shape[0] and 0 <= ii < vals.shape[1] and vals[jj, ii] == 0:
                    if di:
                        xb = xe[i + 1] if di > 0 else xe[i]
                        ax.plot([xb, xb], [ye[j], ye[j + 1]], color="white", lw=1.6, solid_capstyle="butt")
                    else:
                        yb = ye[j + 1] if dj > 0 else ye[j]
                        ax.plot([xe[i], xe[i + 1]], [yb, yb], color="white", lw=1.6, solid_capstyle="butt")
    return drawn


def _selection(ds: xr.Dataset, x: str, y: str, select: dict[str, Any] | None):
    """P(all separable) and its Wilson bounds over (x, y, time) at the chosen values of the other swept dims."""
    done = ds["done"] > 0
    P, lower, upper = (ds[n].where(done) for n in ("p_all_separable", "p_all_separable_lower", "p_all_separable_upper"))
    if select is not None and not isinstance(select, dict):
        raise TypeError(f"select must be a dict {{swept dim: value}}, got {type(select).__name__}")
    chosen = dict(select or {})
    others = [d for d in P.dims if d not in (x, y, "time")]
    bad = [d for d in chosen if d not in others]
    if bad:
        raise ValueError(
            f"select={select!r}: {', '.join(map(repr, bad))} not among the other swept dims; accepted: "
            f"{', '.join(others) or 'none (the sweep has no other swept dims)'}"
        )
    for d in P.dims:
        if d not in (x, y, "time") and d not in chosen:
            chosen[d] = P[d].values[0]
    if chosen:
        P, lower, upper = (a.sel(chosen, method="nearest") for a in (P, lower, upper))
    return P, lower, upper, chosen


def _heatmap(fig, ax, heat: xr.DataArray, xs, ys, xe, ye, xlog: bool) -> None:
    """The cells coloured by P, with the value written in each when every cell is wide enough to hold it."""
    mesh = ax.pcolormesh(xe, ye, heat.values, vmin=0, vmax=1, cmap="viridis", shading="flat")
    bar = fig.colorbar(mesh, ax=ax, shrink=0.9, pad=0.03)
    bar.set_label(r"$P(\mathrm{all\ pairs\ separable})$", fontsize=8, labelpad=2)
    bar.ax.tick_params(labelsize=7)
    widths = np.diff(np.log(xe) if xlog else xe)
    readable = widths.min() / widths.sum() >= 0.1
    for (j, i), v in np.ndenumerate(heat.values):
        if readable and np.isfinite(v):
            ax.text(
                xs[i], ys[j], f"{v:.2f}", ha="center", va="center", fontsize=6, color="black" if v > 0.5 else "white"
            )


def _cell_marks(ax, ds: xr.Dataset, chosen: dict, heat: xr.DataArray, x: str, y: str, xs, ys, xe, ye) -> list:
    """Hatching where theory predicts separation and crosses on failed cells; their legend handles."""
    from matplotlib.patches import Patch

    handles = []
    if "predicted_phase" in ds:
        pred = ds["predicted_phase"]
        pred = pred.sel({k: v for k, v in chosen.items() if k in pred.dims}, method="nearest")
        if "time" in pred.dims:
            pred = pred.sel(time=float(heat["time"]), method="nearest")
        if _hatch_predicted(ax, pred, np.asarray(heat.values, dtype=float), x, y, xe, ye):
            handles.append(
                Patch(facecolor="white", edgecolor="black", hatch="///", label="predicted separable (theory)")
            )
    if "status" in ds:  # failed sweep cells (NaN results): a cross, so that they do not read as missing
        failed = ds["status"] == "failed"
        failed = failed.sel(chosen, method="nearest") if chosen else failed
        jj, ii = np.nonzero(failed.transpose(y, x).values)
        if len(ii):
            handles.append(
                ax.plot(xs[ii], ys[jj], "x", color=THEORY, ms=8, mew=2, ls="none", label=f"failed cell ({len(ii)})")[0]
            )
    return handles


def _theory_lines(ax, x: str, y: str, xs, ye, K: int | None) -> list:
    """The p = 1 boundary (and, on the matching scale axis, the 2c/K = 1 point and the separable part)."""
    if not (x.endswith("exponent") and xs.min() <= 1 <= xs.max()):
        return []
    import matplotlib.patheffects as pe

    halo = [pe.Stroke(linewidth=2.2, foreground="white"), pe.Normal()]
    handles = [ax.axvline(1.0, color="black", ls="--", lw=0.9, path_effects=halo, label="theory: $p = 1$")]
    if K is not None and y == x.removesuffix("exponent") + "scale":
        c_star = K / 2  # 2c/K = 1
        if c_star < ye[-1]:
            handles += ax.plot([1, 1], [max(c_star, ye[0]), ye[-1]], color=THEORY, lw=1.6, path_effects=halo,
                               label="theory: $p=1$, $2c/K>1$ separable")  # fmt: skip
        handles += ax.plot([1], [c_star], "o", color=THEORY, ms=4.5, mec="white", mew=0.8,
                           label=f"theory: $2c/K = 1$ ($c = {c_star:g}$)")  # fmt: skip
    return handles


def _curves(ax2, ds, P, lower, upper, x: str, y: str, xs, ys, xlog: bool, K, curve_times: int, curve_at) -> None:
    """P against x at one y for log-spaced save times: the step sharpens around p = 1 as t grows."""
    times = np.asarray(P["time"].values, float)
    positive = np.flatnonzero(times > 0)
    picks = np.unique(np.round(np.geomspace(1, len(positive), min(curve_times, len(positive)))).astype(int) - 1)
    if curve_at is None:
        above = ys[ys > (K / 2 if K else np.median(ys))]
        curve_at = float(above.min()) if len(above) else float(ys[-1])
    line = P.sel({y: curve_at}, method="nearest")
    band_lo, band_hi = (a.sel({y: curve_at}, method="nearest") for a in (lower, upper))
    level = float(ds.attrs.get("confidence", 0.95))
    for n, k in enumerate(positive[picks]):
        colour = PALETTE[n % len(PALETTE)]
        t = times[k]
        ax2.plot(xs, line.sel(time=t).transpose(x).values, "o-", color=colour, ms=3, lw=1.2, label=f"$t = {t:g}$")
        ax2.fill_between(xs, band_lo.sel(time=t).transpose(x).values, band_hi.sel(time=t).transpose(x).values,
                         color=colour, alpha=0.18, lw=0)  # fmt: skip
    ax2.fill_between([], [], [], color="0.5", alpha=0.3, lw=0, label=f"{100 * level:.0f}% Wilson interval")
    if x.endswith("exponent"):
        reference(ax2, x=1.0, color="black", label="theory: $p = 1$")
    ax2.set_xscale("log" if xlog else "linear")
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_xlabel(dim_label(x))
    ax2.set_ylabel(r"$P(\mathrm{all\ pairs\ separable})$")
    ax2.set_title(f"{dim_label(y).split(' of ')[0]} = {float(line[y]):g}")
    legend_below(ax2, ncol=2)


def phase_plot(
    ds: xr.Dataset,
    *,
    time: float | None = None,
    x: str = "alpha_exponent",
    y: str = "alpha_scale",
    curve_times: int = 4,
    curve_at: float | None = None,
    select: dict[str, Any] | None = None,
    fig=None,
):
    r"""Heatmap of P(all pairs separable) over (x, y) at ``time``, and P against x for several times.

    Parameters
    ----------
    ds
        Dataset from `lesde.sweep.run` or `lesde.sweep.open_sweep` (this function opens no store).
    time : float, optional
        Time of the heatmap (nearest save time); default the sweep's ``summary_time`` attr, else the last time.
    x : str
        Swept dimensions on the axes (the exponent p and the scale c by default). When ``x`` is a schedule
        exponent the p = 1 line is drawn; when ``y`` is the matching scale the point 2c/K = 1 on it is marked
        and the part of the line where separation wins (2c/K > 1) is drawn solid.
    y : str
        Described with `x` above.
    curve_times : int
        Number of save times (log-spaced indices, t > 0) in the second panel.
    curve_at : float, optional
        Value of ``y`` for the second panel's curves (nearest); default the grid value nearest K/2 from above.
    select : dict, optional
        Values for the other swept dims (default: their first values).
    fig : matplotlib Figure, optional
        Draw the two panels on this figure (cleared first); default a new two-column figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(ds, NEEDS, "phase")
    x, y = _dim(ds, x), _dim(ds, y)
    if x == y:
        raise ValueError(f"x and y must be two different swept dims, got x = y = {x!r}")
    check_count("curve_times", curve_times)
    if curve_at is not None and not (isinstance(curve_at, (int, float, np.number)) and np.isfinite(curve_at)):
        raise ValueError(f"curve_at={curve_at!r} must be a finite value of {y} (the nearest grid value is used)")
    ds = ds.sortby([x, y])  # cell edges lie half-way between neighbours: the grid must be in order
    P, lower, upper, chosen = _selection(ds, x, y, select)
    if time is None:
        time = float(ds.attrs.get("summary_time", ds["time"].values[-1]))
    elif isinstance(time, bool) or not isinstance(time, (int, float, np.number)) or not np.isfinite(time):
        raise ValueError(f"time={time!r} must be a finite number (the nearest save time is drawn)")
    heat = P.sel(time=time, method="nearest").transpose(y, x)
    xs, ys = np.asarray(heat[x].values, float), np.asarray(heat[y].values, float)
    xlog, ylog = _is_log(xs), _is_log(ys)
    xe, ye = _edges(xs, xlog), _edges(ys, ylog)
    K = num_classes(ds)

    fig, (ax, ax2) = subplots(2, fig=fig, panel=(3.5, 3.2))
    _heatmap(fig, ax, heat, xs, ys, xe, ye, xlog)
    handles = _cell_marks(ax, ds, chosen, heat, x, y, xs, ys, xe, ye)
    ax.set_xscale("log" if xlog else "linear")
    ax.set_yscale("log" if ylog else "linear")
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    _grid_ticks(ax.xaxis, xs)
    _grid_ticks(ax.yaxis, ys)
    ax.grid(False)
    ax.set_xlabel(dim_label(x))
    ax.set_ylabel(dim_label(y))
    handles += _theory_lines(ax, x, y, xs, ye, K)
    if handles:
        legend_below(ax, handles=handles)
    title = f"$t = {float(heat.time):g}$"
    if chosen:
        title += ", " + ", ".join(f"{dim_label(k)} = {v}" for k, v in chosen.items())
    ax.set_title(title)
    _curves(ax2, ds, P, lower, upper, x, y, xs, ys, xlog, K, curve_times, curve_at)
    what = describe(ds, skip=[d.split("_")[0] for d in (x, y)])
    engine = fig.get_layout_engine() if hasattr(fig, "get_layout_engine") else None
    if engine is not None and hasattr(engine, "set"):  # room between the colour bar's label and the curves' axis
        engine.set(wspace=0.08)
    finish(
        fig,
        f"Separability phase diagram{': ' + what if what else ''}\n{ds.attrs.get('method', '?')} integrator, "
        f"{ds.attrs.get('n_paths', '?')} paths per cell, {ds.attrs.get('separability', 'ncm')} separability",
    )
    return fig
