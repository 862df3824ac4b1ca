r"""Figures of neural-collapse metrics over time (matplotlib, Agg backend: no display needed).

Two helpers on the Datasets of :mod:`lesde.metrics` and :func:`lesde.simulate`:

* :func:`plot_nc_metrics`: one small panel per metric (a metrics Dataset over ``(path, time)``, from
  :func:`lesde.metrics.to_dataset` or ``simulate(save="metrics")``): the median over paths against time and the
  10-90% band of the paths around it.
* :func:`plot_class_mean_cosines`: the pairwise cosines of the centred class means,

  .. math:: \cos_{kl}(t) = \frac{(\bar X_k - \mu_G)^\top (\bar X_l - \mu_G)}
                                 {\|\bar X_k - \mu_G\|\,\|\bar X_l - \mu_G\|}, \qquad
            \mu_G = \frac1K \sum_k \bar X_k ,

  against time, with the simplex-ETF value :math:`-1/(K-1)` they approach under neural collapse.
* :func:`plot_collapse`: both in one figure (the metric panels, then the cosine panel).

Decisions (the spec leaves them open):

* Every dim of a metric other than ``time`` (``path``, and e.g. ``run`` of a sweep) is pooled as "paths" for
  the median and the band; a metric without such dims is drawn as a single line.
* A panel uses a log y axis when every plotted value (band and median) is positive and finite, and a linear
  axis otherwise (a metric that reaches exactly 0, such as ``nc1`` of a fully collapsed state, or a signed one
  such as ``mean_cosine``). Non-finite values are ignored by the quantiles.
* ``plot_nc_metrics`` plots, by default, every numeric variable that has a ``time`` dim, in Dataset order.
* ``plot_class_mean_cosines`` takes ``class_mean(..., class, feature)`` (``save="means"`` or ``"full"``), or,
  lacking it, computes the class means from ``features`` and ``label``. Each pair's median over paths is one
  line (labelled when there are at most 10 pairs); the grey band is the 10-90% range pooled over paths *and*
  pairs, which stays readable for K = 10 (45 pairs). A pair whose centred means have zero norm has no cosine
  (NaN, ignored).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["plot_nc_metrics", "plot_class_mean_cosines", "plot_collapse", "class_mean_cosines", "path_quantiles"]

# the band drawn around the median: the 10% and 90% quantiles over paths
BAND = (0.1, 0.9)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
            raise ValueError(f"metrics_ds has no numeric variable with a time dim; it has {list(ds.data_vars)}")
        return available
    names = [names] if isinstance(names, str) else list(names)
    bad = [n for n in names if n not in available]
    if bad or not names:
        raise ValueError(f"names={bad or names!r} are not plottable metrics of metrics_ds; accepted: {available}")
    return names


def _draw_metric(ax, var: xr.DataArray, name: str) -> int:
    """Median and 10-90% band of one metric on ``ax``; returns the number of pooled paths."""
    times = np.asarray(var["time"].values, dtype=np.float64)
    n_paths = var.size // max(1, var.sizes["time"])
    lo, med, hi = path_quantiles(var)  # (T,) each
    shown = np.concatenate([lo, med, hi])
    shown = shown[np.isfinite(shown)]
    if n_paths > 1:
        ax.fill_between(times, lo, hi, color="C0", alpha=0.25, lw=0, label="10-90% of paths")
    ax.plot(times, med, color="C0", lw=1.6, label="median")
    if shown.size and (shown > 0).all():
        ax.set_yscale("log")
    ax.set_title(name, fontsize=9)
    long_name = var.attrs.get("long_name")
    if long_name:
        ax.set_ylabel(long_name if len(long_name) <= 40 else long_name[:38] + "...", fontsize=7)
    ax.tick_params(which="both", labelsize=7)
    ax.grid(alpha=0.3, which="both", lw=0.5)
    return n_paths


def plot_nc_metrics(
    metrics_ds: xr.Dataset,
    out_png: str | Path,
    names: Iterable[str] | str | None = None,
    title: str | None = None,
) -> Path:
    """Median over paths and the 10-90% band of each NC metric against time, one small panel per metric.

    Parameters
    ----------
    metrics_ds : xarray.Dataset
        Metrics over ``(path, time)`` (any extra dims are pooled with ``path``), e.g. from
        :func:`lesde.metrics.to_dataset` or ``lesde.simulate(..., save="metrics")``.
    out_png : str or Path
        The figure file to write (parent folders are created).
    names : iterable of str, optional
        Metrics to draw, in this order (default: every numeric variable with a ``time`` dim).
    title : str, optional
        Figure title.

    Returns
    -------
    Path of the written figure.

    Examples
    --------
    >>> import tempfile
    >>> ds = xr.Dataset({"nc1": (("path", "time"), np.exp(-np.arange(6.0)).reshape(1, 6).repeat(3, 0))},
    ...                 coords={"time": np.arange(6.0)})
    >>> plot_nc_metrics(ds, tempfile.mkdtemp() + "/nc.png").suffix
    '.png'
    """
    if not isinstance(metrics_ds, xr.Dataset):
        raise TypeError(f"metrics_ds must be an xarray.Dataset, got {type(metrics_ds).__name__}")
    chosen = _metric_names(metrics_ds, names)
    plt = _pyplot()
    ncols = min(4, len(chosen))
    nrows = math.ceil(len(chosen) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.4 * ncols, 2.7 * nrows), squeeze=False, sharex=True, constrained_layout=True
    )
    n_paths = 1
    for ax, name in zip(axes.flat, chosen):
        n_paths = max(n_paths, _draw_metric(ax, metrics_ds[name], name))
    for ax in axes.flat[len(chosen) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("time")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title or f"NC metrics over time (median and 10-90% band of {n_paths} paths)", fontsize=11)
    return _save(fig, out_png)


def _class_means(sim_ds: xr.Dataset) -> xr.DataArray:
    """class_mean (..., time, class, feature), from the Dataset or computed from features and label."""
    if "class_mean" in sim_ds:
        return sim_ds["class_mean"]
    if "features" in sim_ds and "label" in sim_ds.coords:
        return sim_ds["features"].groupby("label").mean("sample").rename(label="class")
    raise ValueError(
        "sim_ds must hold class_mean(path, time, class, feature) (save='means' or 'full') or "
        f"features(path, time, sample, feature) with a label(sample) coordinate; it has {list(sim_ds.data_vars)}"
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
        coords={
            **{d: means[d] for d in lead if d in means.coords},
            "k": ("pair", i),
            "l": ("pair", j),
        },
        name="class_mean_cosine",
    )


def _draw_cosines(ax, cos: xr.DataArray, title: str | None = None) -> None:
    """Per-pair medians, the pooled 10-90% band and the -1/(K-1) line on ``ax``."""
    import matplotlib

    if "time" not in cos.dims:
        raise ValueError(f"class-mean cosines need a time dim; they have dims {cos.dims}")
    K = int(cos["l"].max()) + 1
    times = np.asarray(cos["time"].values, dtype=np.float64)
    band = path_quantiles(cos)  # pooled over paths and pairs: (3, T)
    ax.fill_between(times, band[0], band[2], color="0.6", alpha=0.35, lw=0, label="10-90% (paths, pairs)")
    n_pairs = cos.sizes["pair"]
    cmap = matplotlib.colormaps["viridis"]
    for p in range(n_pairs):  # one line per pair, each a vectorised quantile over paths
        one = cos.isel(pair=p)
        med = path_quantiles(one, (0.5,))[0]
        label = f"({int(one['k'])}, {int(one['l'])})" if n_pairs <= 10 else None
        ax.plot(times, med, color=cmap(p / max(1, n_pairs - 1) * 0.9), lw=1.2, label=label)
    ax.axhline(-1.0 / (K - 1), color="red", ls="--", lw=1.4, label=f"-1/(K-1) = {-1.0 / (K - 1):.3g}")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("time")
    ax.set_ylabel("cosine (median over paths)", fontsize=8)
    ax.set_title(title or f"cosines of centred class means, K = {K}", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(fontsize=6, ncol=2, loc="best")


def _save(fig, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    _pyplot().close(fig)
    return out


def plot_class_mean_cosines(sim_ds: xr.Dataset, out_png: str | Path, title: str | None = None) -> Path:
    r"""Pairwise cosines of the centred class means against time, with the simplex-ETF value -1/(K-1).

    Parameters
    ----------
    sim_ds : xarray.Dataset
        A simulation Dataset with ``class_mean(path, time, class, feature)`` (``save="means"`` or ``"full"``), or
        ``features`` with a ``label(sample)`` coordinate.
    out_png : str or Path
        The figure file to write (parent folders are created).
    title : str, optional
        Axes title.

    Returns
    -------
    Path of the written figure.
    """
    if not isinstance(sim_ds, xr.Dataset):
        raise TypeError(f"sim_ds must be an xarray.Dataset, got {type(sim_ds).__name__}")
    cos = class_mean_cosines(sim_ds)
    fig, ax = _pyplot().subplots(figsize=(6.4, 4.2), constrained_layout=True)
    _draw_cosines(ax, cos, title)
    return _save(fig, out_png)


def plot_collapse(
    metrics_ds: xr.Dataset,
    sim_ds: xr.Dataset,
    out_png: str | Path,
    names: Iterable[str] | str | None = None,
    title: str | None = None,
) -> Path:
    """One figure: the panels of :func:`plot_nc_metrics` followed by the panel of :func:`plot_class_mean_cosines`.

    Parameters
    ----------
    metrics_ds : xarray.Dataset
        Metrics over ``(path, time)``.
    sim_ds : xarray.Dataset
        The simulation Dataset the cosines come from (``class_mean`` or ``features``).
    out_png, names, title
        As for :func:`plot_nc_metrics`.

    Returns
    -------
    Path of the written figure.
    """
    for arg, value in (("metrics_ds", metrics_ds), ("sim_ds", sim_ds)):
        if not isinstance(value, xr.Dataset):
            raise TypeError(f"{arg} must be an xarray.Dataset, got {type(value).__name__}")
    chosen = _metric_names(metrics_ds, names)
    cos = class_mean_cosines(sim_ds)
    n_panels = len(chosen) + 1
    ncols = min(4, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig, axes = _pyplot().subplots(
        nrows, ncols, figsize=(3.4 * ncols, 2.7 * nrows), squeeze=False, constrained_layout=True
    )
    n_paths = max(_draw_metric(ax, metrics_ds[name], name) for ax, name in zip(axes.flat, chosen))
    axes.flat[0].legend(fontsize=7)
    _draw_cosines(axes.flat[len(chosen)], cos)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    for ax in axes.flat[:n_panels]:
        ax.set_xlabel("time", fontsize=8)
    fig.suptitle(title or f"NC metrics over time (median and 10-90% band of {n_paths} paths)", fontsize=11)
    return _save(fig, out_png)
