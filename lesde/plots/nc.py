r"""Figures of neural-collapse metrics over time, from the Datasets of `lesde.metrics` and `lesde.simulate`.

* `plot_nc_metrics`: one panel per metric (a metrics Dataset over ``(path, time)``, or a comparison
  Dataset over ``(process, run, time)``): the median over paths (runs) against time and the 10-90% band of the
  paths around it, one line per process when there are processes.
* `plot_class_mean_cosines`: the pairwise cosines of the centred class means,

$$ \cos_{kl}(t) = \frac{(\bar X_k - \mu_G)^\top (\bar X_l - \mu_G)}
                     {\|\bar X_k - \mu_G\|\,\|\bar X_l - \mu_G\|}, \qquad
\mu_G = \frac1K \sum_k \bar X_k , $$

  against time, with the simplex-ETF value $-1/(K-1)$ they approach under neural collapse.
* `plot_collapse`: both in one figure (the metric panels, then the cosine panel).

Decisions: every dim of a metric other than ``time`` and ``process`` (``path``, ``run``, ``run`` of a sweep) is
pooled as "paths" for the median and the band; a metric without such dims is drawn as a single line. A panel
uses a log y axis when the medians are positive and span more than a factor 30; its limits come from the medians
and the band is clipped to them (`lesde.plots._style.fit_y`). By default ``plot_nc_metrics`` draws at most
six metrics, the first present of `DEFAULT_METRICS` (one or two per NC property), so that the figure fits a
page; ``metrics=`` picks others. The mean pairwise cosine is not among the defaults: centred class means sum to
zero, so it sits near -1/(K-1) whatever their geometry. For the same reason the cosine panel does not draw each
pair's median over paths (by symmetry they sit near -1/(K-1) too): it draws, per path, the largest and the
smallest pairwise cosine (their medians over paths with 10-90% bands), which both reach -1/(K-1) exactly when the
class means form a simplex ETF. ``plot_class_mean_cosines`` takes ``class_mean(..., class, feature)``, or, lacking
it, computes the class means from ``features`` and ``label``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xarray as xr

from ._style import (
    LABELS,
    PALETTE,
    PROCESS_NAMES,
    PROCESS_STYLE,
    MissingVariables,
    band,
    finish,
    fit_y,
    label,
    legend,
    legend_below,
    reference,
    require,
    subplots,
    time_label,
    title_of,
)
from ._titles import describe, num_classes

__all__ = ["plot_nc_metrics", "plot_class_mean_cosines", "plot_collapse", "class_mean_cosines", "path_quantiles"]

#: the NC metrics ``lesde plot nc`` draws when a Dataset has them (its other variables are left out)
METRICS = tuple(n for n in LABELS if n not in ("loss", "accuracy", "p_all_separable"))
#: the default panels, in this order: the first :data:`MAX_PANELS` a Dataset has
DEFAULT_METRICS = ("nc1", "etf_error", "equinorm_means", "self_duality", "ncc_mismatch", "cdnv", "nc1_quotient",
                   "maxangle_means", "equiangular_means", "etf_error_classifier", "equinorm_classifier", "gnc3",
                   "gnc2", "nc_margin", "separable_fraction")  # fmt: skip
MAX_PANELS = 6

# the band drawn around the median: the 10% and 90% quantiles over paths
BAND = (0.1, 0.9)


def path_quantiles(var: xr.DataArray, qs: Iterable[float] = (BAND[0], 0.5, BAND[1])) -> np.ndarray:
    """Quantiles over every dim except ``time``, NaN and inf ignored. Returns (len(qs), T) float64.

    ```pycon
    >>> import numpy as np
    >>> import xarray as xr
    >>> from lesde.plots import path_quantiles
    >>> da = xr.DataArray(np.arange(6.0).reshape(3, 2), dims=("path", "time"))
    >>> path_quantiles(da, (0.5,)).tolist()
    [[2.0, 3.0]]

    ```
    """
    if "time" not in var.dims:
        raise ValueError(f"variable {var.name!r} has no time dim; its dims are {var.dims}")
    other = [d for d in var.dims if d != "time"]
    vals = np.asarray(var.transpose("time", *other).values, dtype=np.float64).reshape(var.sizes["time"], -1)
    vals = np.where(np.isfinite(vals), vals, np.nan)  # (T, paths)
    qs = list(qs)
    if not all(isinstance(q, (int, float, np.number)) and 0 <= q <= 1 for q in qs):
        raise ValueError(f"qs must be quantiles in [0, 1], got {qs!r}")
    out = np.full((len(qs), vals.shape[0]), np.nan)
    has = ~np.all(np.isnan(vals), axis=1)  # nanquantile warns on all-NaN rows
    if has.any():
        out[:, has] = np.nanquantile(vals[has], qs, axis=1)
    return out


def _metric_names(ds: xr.Dataset, metrics: Iterable[str] | str | None) -> list[str]:
    available = [
        n for n, v in ds.data_vars.items() if "time" in v.dims and np.issubdtype(v.dtype, np.number) and v.size > 0
    ]
    if metrics is None:
        if not available:
            raise MissingVariables(
                f"the nc figure needs a numeric variable with a time dim (nc1, etf_error, ...); this Dataset has "
                f"{', '.join(map(str, ds.data_vars)) or 'no data variables'}"
            )
        preferred = [n for n in DEFAULT_METRICS if n in available]
        return (preferred or available)[:MAX_PANELS]
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    bad = [n for n in metrics if n not in available]
    if bad or not metrics:
        raise ValueError(f"metrics={bad or metrics!r} are not plottable metrics of metrics_ds; accepted: {available}")
    return metrics


def _pooled(var: xr.DataArray) -> tuple[int, str]:
    """How many series the median pools, and what they are ("paths", "runs")."""
    dims = [d for d in var.dims if d not in ("time", "process")]
    n = int(np.prod([var.sizes[d] for d in dims])) if dims else 1
    return n, ("runs" if dims == ["run"] else "paths")


def _series(var: xr.DataArray) -> list[tuple[str, dict, xr.DataArray]]:
    """(legend name, line style, values) per process of a comparison Dataset, or one series."""
    if "process" not in var.dims:
        return [("", {"color": PALETTE[0], "lw": 1.5}, var)]
    out = []
    for i, proc in enumerate(var["process"].values if "process" in var.coords else range(var.sizes["process"])):
        style = PROCESS_STYLE.get(str(proc), {"color": PALETTE[i % len(PALETTE)], "lw": 1.5})
        out.append((PROCESS_NAMES.get(str(proc), str(proc)), style, var.isel(process=i)))
    return out


def _draw_metric(ax, var: xr.DataArray, name: str, xlabel: str, K: int | None = None) -> None:
    """Median and 10-90% band of one metric on ``ax`` (per process when it has processes)."""
    times = np.asarray(var["time"].values, dtype=np.float64)
    n, what = _pooled(var)
    series = [(proc, style, path_quantiles(v)) for proc, style, v in _series(var)]  # (3, T) each
    etf = -1 / (K - 1) if name.startswith("mean_cosine") and K and K > 1 else None
    lines = [q[1] for _, _, q in series] + ([[etf]] if etf is not None else [])
    fit_y(ax, lines, [q[[0, 2]] for _, _, q in series])
    for proc, style, (lo, med, hi) in series:
        if n > 1:
            band(ax, times, lo, hi, color=style["color"], zorder=1)
        text = proc or (f"median of {n} {what}" if n > 1 else title_of(name, var))
        ax.plot(times, med, label=text, **style)
    if n > 1:
        ax.fill_between([], [], [], color=PALETTE[0] if len(series) == 1 else "0.5", alpha=0.35, lw=0,
                        label=f"10-90% of {n} {what}")  # fmt: skip
    if etf is not None:
        reference(ax, etf, label=f"simplex ETF: $-1/(K-1) = {etf:.3g}$")
    ax.set_title(title_of(name, var))
    ax.set_ylabel(label(name, var))
    ax.set_xlabel(xlabel)


def plot_nc_metrics(
    metrics_ds: xr.Dataset,
    *,
    metrics: Iterable[str] | str | None = None,
    names: Iterable[str] | str | None = None,
    title: str | None = None,
    ax=None,
    fig=None,
):
    """Median over paths and the 10-90% band of each NC metric against time, one panel per metric (a grid).

    Parameters
    ----------
    metrics_ds : xarray.Dataset
        Metrics over ``(path, time)`` (any extra dims are pooled with ``path``), e.g. from
        `lesde.metrics.to_dataset` or ``lesde.simulate(..., save="metrics")``; or a comparison Dataset of
        `lesde.sgd.compare` over ``(process, run, time)``, drawn one line per process.
    metrics : iterable of str, optional
        Metrics to draw, in this order (default: the first six of `DEFAULT_METRICS` the Dataset has, or its
        first six numeric variables with a ``time`` dim when it has none of them).
    names : iterable of str, optional
        The same as ``metrics`` (the spelling of `lesde.plots.plot_theory`); give one of the two.
    title : str, optional
        Figure title (default: the model, K, n, m, schedules, from the attrs).
    ax : matplotlib Axes or Figure, optional
        ``ax`` for one metric, ``fig`` to lay the panels out on; default a new figure, two panels a row.
    fig : matplotlib Axes or Figure, optional
        Described with `ax` above.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> from lesde.plots import plot_nc_metrics
    >>> ds = xr.Dataset({"nc1": (("path", "time"), np.exp(-np.arange(6.0)).reshape(1, 6).repeat(3, 0))},
    ...                 coords={"time": np.arange(6.0)})
    >>> type(plot_nc_metrics(ds)).__name__
    'Figure'
    """
    require(metrics_ds, (), "nc", "metrics_ds")
    if metrics is not None and names is not None:
        raise ValueError("give metrics= or names= (the same argument), not both")
    chosen = _metric_names(metrics_ds, metrics if metrics is not None else names)
    fig, axes = subplots(len(chosen), ax=ax, fig=fig)
    xlabel = time_label(metrics_ds)
    for a, name in zip(axes, chosen):
        _draw_metric(a, metrics_ds[name], name, xlabel, num_classes(metrics_ds))
    legend(axes[0], loc="best")
    what = describe(metrics_ds)
    heading = title or f"Neural-collapse metrics{': ' + what if what else ''}"
    if ax is not None:
        axes[0].set_title(heading if title else axes[0].get_title())
        heading = None
    finish(fig, heading)
    return fig


def _class_means(sim_ds: xr.Dataset) -> xr.DataArray:
    """class_mean (..., time, class, feature), from the Dataset or computed from features and label."""
    if "class_mean" in sim_ds:
        return sim_ds["class_mean"]
    if "features" in sim_ds and "label" in sim_ds.coords:
        return sim_ds["features"].groupby("label").mean("sample").rename(label="class")
    raise MissingVariables(
        "the cosines figure needs the variables class_mean(path, time, class, feature) or features with a "
        f"label(sample) coordinate; this Dataset has {', '.join(map(str, sim_ds.data_vars))}; to get class means, "
        "simulate with save='means' or save='full' ([simulate] save = \"means\")"
    )


def class_mean_cosines(sim_ds: xr.Dataset) -> xr.DataArray:
    """Cosines of the centred class means for each pair k < l: (..., time, pair) with coords ``k``, ``l``.

    Zero-norm centred means give NaN (no direction).
    """
    means = _class_means(sim_ds)
    lead = [d for d in means.dims if d not in ("class", "feature")]
    M = np.asarray(means.transpose(*lead, "class", "feature").values, dtype=np.float64)  # (..., K, m)
    K = M.shape[-2]
    if K < 2:
        raise ValueError(f"cosines need at least 2 classes, got K={K}")
    # divide by the largest entry first so squares cannot overflow (states of magnitude 1e200 in float64)
    scale = np.abs(M).max(axis=(-2, -1), keepdims=True)
    M = M / np.where(scale > 0, scale, 1.0)
    C = M - M.mean(axis=-2, keepdims=True)  # (..., K, m)
    norm = np.linalg.norm(C, axis=-1, keepdims=True)  # (..., K, 1)
    U = np.where(norm > 0, C / np.where(norm > 0, norm, 1.0), np.nan)
    cos = U @ np.swapaxes(U, -1, -2)  # (..., K, K)
    i, j = np.triu_indices(K, k=1)
    pairs = cos[..., i, j]  # (..., P)
    return xr.DataArray(
        pairs,
        dims=(*lead, "pair"),
        coords={**{d: means[d] for d in lead if d in means.coords}, "k": ("pair", i), "l": ("pair", j)},
        name="class_mean_cosine",
    )


def _draw_cosines(ax, cos: xr.DataArray, xlabel: str, title: str | None = None) -> None:
    """Per path the largest and the smallest pairwise cosine (median over paths, 10-90% band) and -1/(K-1)."""
    if "time" not in cos.dims:
        raise ValueError(f"class-mean cosines need a time dim; they have dims {cos.dims}")
    K = int(cos["l"].max()) + 1
    times = np.asarray(cos["time"].values, dtype=np.float64)
    extremes = {
        "largest": path_quantiles(cos.max("pair", skipna=True)),
        "smallest": path_quantiles(cos.min("pair", skipna=True)),
    }  # (3, T) each
    etf = -1.0 / (K - 1)
    fit_y(ax, [q[1] for q in extremes.values()] + [[etf]], [q[[0, 2]] for q in extremes.values()], log=False)
    bottom, top = ax.get_ylim()
    ax.set_ylim(max(bottom, -1.05), min(top, 1.05))
    n = int(np.prod([cos.sizes[d] for d in cos.dims if d not in ("time", "pair")]))
    for (which, (lo, med, hi)), colour, ls in zip(extremes.items(), PALETTE, ("-", "--")):
        band(ax, times, lo, hi, color=colour, zorder=1)
        ax.plot(times, med, color=colour, ls=ls, lw=1.5, label=f"{which} pair cosine, median")
    ax.fill_between([], [], [], color="0.5", alpha=0.35, lw=0, label=f"10-90% of {n} paths")
    reference(ax, etf, label=f"simplex ETF: $-1/(K-1) = {etf:.3g}$")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"$\cos(\mu_k-\mu_G,\ \mu_l-\mu_G)$")
    ax.set_title(title or f"Cosines of centred class means, $K = {K}$")
    legend_below(ax, ncol=2)  # the lines span the panel


def plot_class_mean_cosines(sim_ds: xr.Dataset, *, title: str | None = None, ax=None):
    r"""The largest and smallest pairwise cosine of the centred class means against time, with -1/(K-1).

    Parameters
    ----------
    sim_ds : xarray.Dataset
        A simulation Dataset with ``class_mean(path, time, class, feature)`` (``save="means"`` or ``"full"``), or
        ``features`` with a ``label(sample)`` coordinate.
    title : str, optional
        Axes title (default: K, n, m and the schedules from the attrs).
    ax : matplotlib Axes, optional
        Draw here; default a new one-column figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(sim_ds, (), "cosines", "sim_ds")
    cos = class_mean_cosines(sim_ds)
    fig, (a,) = subplots(1, ax=ax, panel=(3.5, 2.8))
    what = describe(sim_ds)
    _draw_cosines(a, cos, time_label(sim_ds), title or "Cosines of centred class means" + (f"\n{what}" if what else ""))
    finish(fig)
    return fig


def plot_collapse(
    metrics_ds: xr.Dataset,
    sim_ds: xr.Dataset,
    *,
    metrics: Iterable[str] | str | None = None,
    title: str | None = None,
    fig=None,
):
    """One figure: the panels of `plot_nc_metrics` followed by the panel of `plot_class_mean_cosines`.

    Parameters
    ----------
    metrics_ds : xarray.Dataset
        Metrics over ``(path, time)``.
    sim_ds : xarray.Dataset
        The simulation Dataset the cosines come from (``class_mean`` or ``features``).
    metrics
        As for `plot_nc_metrics` (by default five metrics, the sixth panel being the cosines).
    title
        Described with `metrics` above.
    fig : matplotlib Figure, optional
        Lay the panels out on this figure (cleared first); default a new figure, two panels a row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(metrics_ds, (), "nc", "metrics_ds")
    require(sim_ds, (), "cosines", "sim_ds")
    chosen = _metric_names(metrics_ds, metrics)
    if metrics is None:
        chosen = chosen[: MAX_PANELS - 1]
    cos = class_mean_cosines(sim_ds)
    fig, axes = subplots(len(chosen) + 1, fig=fig)
    xlabel = time_label(metrics_ds)
    for a, name in zip(axes, chosen):
        _draw_metric(a, metrics_ds[name], name, xlabel, num_classes(metrics_ds))
    legend(axes[0], loc="best")
    _draw_cosines(axes[len(chosen)], cos, xlabel)
    what = describe(sim_ds) or describe(metrics_ds)
    finish(fig, title or f"Neural collapse{': ' + what if what else ''}")
    return fig
