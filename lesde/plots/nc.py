r"""Figures of neural-collapse metrics over time, from the Datasets of :mod:`lesde.metrics` and :func:`lesde.simulate`.

* :func:`plot_nc_metrics`: one panel per metric (a metrics Dataset over ``(path, time)``): the median over paths
  against time and the 10-90% band of the paths around it.
* :func:`plot_class_mean_cosines`: the pairwise cosines of the centred class means,

  .. math:: \cos_{kl}(t) = \frac{(\bar X_k - \mu_G)^\top (\bar X_l - \mu_G)}
                                 {\|\bar X_k - \mu_G\|\,\|\bar X_l - \mu_G\|}, \qquad
            \mu_G = \frac1K \sum_k \bar X_k ,

  against time, with the simplex-ETF value :math:`-1/(K-1)` they approach under neural collapse.
* :func:`plot_collapse`: both in one figure (the metric panels, then the cosine panel).

Decisions: every dim of a metric other than ``time`` (``path``, and e.g. ``run`` of a sweep) is pooled as "paths"
for the median and the band; a metric without such dims is drawn as a single line. A panel uses a log y axis when
every plotted value is positive, finite and spans more than a factor 10. ``plot_nc_metrics`` plots, by default,
every numeric variable with a ``time`` dim, in Dataset order. ``plot_class_mean_cosines`` takes
``class_mean(..., class, feature)``, or, lacking it, computes the class means from ``features`` and ``label``;
each pair's median over paths is one line (labelled when there are at most 6 pairs); the grey band is the 10-90%
range pooled over paths *and* pairs, which stays readable for K = 10 (45 pairs).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xarray as xr

from ._style import (
    BAND_ALPHA,
    LABELS,
    PALETTE,
    THEORY,
    TITLES,
    MissingVariables,
    describe,
    finish,
    label,
    legend,
    log_if_positive,
    num_classes,
    require,
    subplots,
    time_label,
)

__all__ = ["plot_nc_metrics", "plot_class_mean_cosines", "plot_collapse", "class_mean_cosines", "path_quantiles"]

#: the NC metrics ``lesde plot nc`` draws when a Dataset has them (its other variables are left out)
METRICS = tuple(n for n in LABELS if n not in ("loss", "accuracy", "p_all_separable"))

# the band drawn around the median: the 10% and 90% quantiles over paths
BAND = (0.1, 0.9)
_BAND_LABEL = f"{100 * BAND[0]:.0f}-{100 * BAND[1]:.0f}% of paths"


def path_quantiles(var: xr.DataArray, qs: Iterable[float] = (BAND[0], 0.5, BAND[1])) -> np.ndarray:
    """Quantiles over every dim except ``time``, NaN and inf ignored. Returns (len(qs), T) float64.

    >>> da = xr.DataArray(np.arange(6.0).reshape(3, 2), dims=("path", "time"))
    >>> path_quantiles(da, (0.5,)).tolist()
    [[2.0, 3.0]]
    """
    if "time" not in var.dims:
        raise ValueError(f"variable {var.name!r} has no time dim; its dims are {var.dims}")
    other = [d for d in var.dims if d != "time"]
    vals = np.asarray(var.transpose("time", *other).values, dtype=np.float64).reshape(var.sizes["time"], -1)
    vals = np.where(np.isfinite(vals), vals, np.nan)  # (T, paths)
    qs = list(qs)
    out = np.full((len(qs), vals.shape[0]), np.nan)
    has = ~np.all(np.isnan(vals), axis=1)  # nanquantile warns on all-NaN rows
    if has.any():
        out[:, has] = np.nanquantile(vals[has], qs, axis=1)
    return out


def _metric_names(ds: xr.Dataset, names: Iterable[str] | str | None) -> list[str]:
    available = [
        n for n, v in ds.data_vars.items() if "time" in v.dims and np.issubdtype(v.dtype, np.number) and v.size > 0
    ]
    if names is None:
        if not available:
            raise MissingVariables(
                f"the nc figure needs a numeric variable with a time dim (nc1, etf_error, ...); this Dataset has "
                f"{', '.join(map(str, ds.data_vars)) or 'no data variables'}"
            )
        return available
    names = [names] if isinstance(names, str) else list(names)
    bad = [n for n in names if n not in available]
    if bad or not names:
        raise ValueError(f"names={bad or names!r} are not plottable metrics of metrics_ds; accepted: {available}")
    return names


def _draw_metric(ax, var: xr.DataArray, name: str, xlabel: str, K: int | None = None) -> int:
    """Median and 10-90% band of one metric on ``ax``; returns the number of pooled paths."""
    times = np.asarray(var["time"].values, dtype=np.float64)
    n_paths = var.size // max(1, var.sizes["time"])
    lo, med, hi = path_quantiles(var)  # (T,) each
    if n_paths > 1:
        ax.fill_between(times, lo, hi, color=PALETTE[0], alpha=BAND_ALPHA, lw=0, label=_BAND_LABEL)
    ax.plot(times, med, color=PALETTE[0], lw=1.5, label=f"median of {n_paths} paths" if n_paths > 1 else name)
    if not log_if_positive(ax, np.concatenate([lo, med, hi])) and name.startswith("mean_cosine") and K and K > 1:
        ax.axhline(-1 / (K - 1), color=THEORY, ls="--", lw=1.2, label=f"simplex ETF: $-1/(K-1) = {-1 / (K - 1):.3g}$")
        legend(ax)
    ax.set_title(TITLES.get(name, name))
    ax.set_ylabel(label(name, var))
    ax.set_xlabel(xlabel)
    return n_paths


def plot_nc_metrics(
    metrics_ds: xr.Dataset,
    *,
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
        :func:`lesde.metrics.to_dataset` or ``lesde.simulate(..., save="metrics")``.
    names : iterable of str, optional
        Metrics to draw, in this order (default: every numeric variable with a ``time`` dim).
    title : str, optional
        Figure title (default: the metrics and the model, K, n, m, schedules, from the attrs).
    ax, fig : matplotlib Axes or Figure, optional
        ``ax`` for one metric, ``fig`` to lay the panels out on; default a new figure, two panels a row.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> ds = xr.Dataset({"nc1": (("path", "time"), np.exp(-np.arange(6.0)).reshape(1, 6).repeat(3, 0))},
    ...                 coords={"time": np.arange(6.0)})
    >>> type(plot_nc_metrics(ds)).__name__
    'Figure'
    """
    require(metrics_ds, (), "nc", "metrics_ds")
    chosen = _metric_names(metrics_ds, names)
    fig, axes = subplots(len(chosen), ax=ax, fig=fig)
    xlabel = time_label(metrics_ds)
    for a, name in zip(axes, chosen):
        _draw_metric(a, metrics_ds[name], name, xlabel, num_classes(metrics_ds))
    legend(axes[0])
    what = describe(metrics_ds)
    heading = title or f"Neural-collapse metrics{': ' + what if what else ''}"
    (axes[0].set_title if ax is not None and title else fig.suptitle)(heading, fontsize=9)
    finish(fig)
    return fig


def _class_means(sim_ds: xr.Dataset) -> xr.DataArray:
    """class_mean (..., time, class, feature), from the Dataset or computed from features and label."""
    if "class_mean" in sim_ds:
        return sim_ds["class_mean"]
    if "features" in sim_ds and "label" in sim_ds.coords:
        return sim_ds["features"].groupby("label").mean("sample").rename(label="class")
    raise MissingVariables(
        "the cosines figure needs the variables class_mean(path, time, class, feature) (save='means' or 'full') or "
        f"features with a label(sample) coordinate; this Dataset has {', '.join(map(str, sim_ds.data_vars))}"
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
    """Per-pair medians, the pooled 10-90% band and the -1/(K-1) line on ``ax``."""
    if "time" not in cos.dims:
        raise ValueError(f"class-mean cosines need a time dim; they have dims {cos.dims}")
    K = int(cos["l"].max()) + 1
    times = np.asarray(cos["time"].values, dtype=np.float64)
    band = path_quantiles(cos)  # pooled over paths and pairs: (3, T)
    ax.fill_between(times, band[0], band[2], color="0.55", alpha=0.35, lw=0, label="10-90% of paths and pairs")
    n_pairs = cos.sizes["pair"]
    for p in range(n_pairs):  # one line per pair, each a vectorised quantile over paths
        one = cos.isel(pair=p)
        med = path_quantiles(one, (0.5,))[0]
        name = f"pair ({int(one['k'])}, {int(one['l'])}), median" if n_pairs <= 6 else None
        colour = PALETTE[p % 6] if n_pairs <= 6 else PALETTE[0]
        ax.plot(times, med, color=colour, lw=1.1, alpha=1.0 if n_pairs <= 6 else 0.5, label=name)
    if n_pairs > 6:
        ax.plot([], [], color=PALETTE[0], lw=1.1, alpha=0.5, label=f"median of each of {n_pairs} pairs")
    ax.axhline(-1.0 / (K - 1), color=THEORY, ls="--", lw=1.4, label=f"simplex ETF: $-1/(K-1) = {-1.0 / (K - 1):.3g}$")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"$\cos(\mu_k-\mu_G,\ \mu_l-\mu_G)$")
    ax.set_title(title or f"Cosines of centred class means, $K = {K}$")
    legend(ax, fontsize=5.5, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)


def plot_class_mean_cosines(sim_ds: xr.Dataset, *, title: str | None = None, ax=None):
    r"""Pairwise cosines of the centred class means against time, with the simplex-ETF value -1/(K-1).

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
    fig, (a,) = subplots(1, ax=ax, panel=(3.5, 3.0))
    _draw_cosines(a, cos, time_label(sim_ds), title or ("Centred class-mean cosines\n" + describe(sim_ds)))
    finish(fig)
    return fig


def plot_collapse(
    metrics_ds: xr.Dataset,
    sim_ds: xr.Dataset,
    *,
    names: Iterable[str] | str | None = None,
    title: str | None = None,
    fig=None,
):
    """One figure: the panels of :func:`plot_nc_metrics` followed by the panel of :func:`plot_class_mean_cosines`.

    Parameters
    ----------
    metrics_ds : xarray.Dataset
        Metrics over ``(path, time)``.
    sim_ds : xarray.Dataset
        The simulation Dataset the cosines come from (``class_mean`` or ``features``).
    names, title
        As for :func:`plot_nc_metrics`.
    fig : matplotlib Figure, optional
        Lay the panels out on this figure (cleared first); default a new figure, two panels a row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(metrics_ds, (), "nc", "metrics_ds")
    require(sim_ds, (), "cosines", "sim_ds")
    chosen = _metric_names(metrics_ds, names)
    cos = class_mean_cosines(sim_ds)
    fig, axes = subplots(len(chosen) + 1, fig=fig)
    xlabel = time_label(metrics_ds)
    for a, name in zip(axes, chosen):
        _draw_metric(a, metrics_ds[name], name, xlabel, num_classes(metrics_ds))
    legend(axes[0])
    _draw_cosines(axes[len(chosen)], cos, xlabel)
    what = describe(sim_ds) or describe(metrics_ds)
    fig.suptitle(title or f"Neural collapse{': ' + what if what else ''}", fontsize=9)
    finish(fig)
    return fig
