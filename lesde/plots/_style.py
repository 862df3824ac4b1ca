"""What every lesde figure shares: the palette, the figure/axes factory, mathtext labels, titles, saving.

Decisions: figures come from :mod:`matplotlib.pyplot` (so ``plt.show()`` and Jupyter's inline display work) but no
function here or in the kind modules ever calls ``matplotlib.use``: the backend stays the user's. Sizes are for a
paper: one panel is one 3.5-inch column, a grid of panels is two columns wide (7 inches) at most, fonts 8-9 pt.
Colours are the Okabe-Ito palette (safe for the common colour-vision deficiencies), passed explicitly to every
artist so that the user's ``rcParams`` are never modified.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["PALETTE", "COLUMN", "save_figure", "MissingVariables"]

#: Okabe & Ito (2008): distinguishable under protanopia, deuteranopia and tritanopia, in this order of use
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
#: legend names of the processes of lesde.sgd.compare
PROCESS_NAMES = {"sgd": "SGD", "sme": "SME (first-order SDE)", "gradient_flow": "gradient flow"}
THEORY = "#D55E00"  # vermillion: theory lines and marks
BAND_ALPHA = 0.25
COLUMN = 3.5  # inches: one column of a two-column paper
FONT = 8

#: mathtext labels of the metrics (the Dataset's long_name is used for the rest)
LABELS: dict[str, str] = {
    "nc1": r"$\mathrm{tr}(\Sigma_W \Sigma_B^+)/K$",
    "nc1_quotient": r"$\mathrm{tr}\,\Sigma_W / \mathrm{tr}\,\Sigma_B$",
    "equinorm_means": r"$\mathrm{std}_k\|\mu_k-\mu_G\| / \mathrm{mean}_k\|\mu_k-\mu_G\|$",
    "equinorm_classifier": r"$\mathrm{std}_k\|w_k\| / \mathrm{mean}_k\|w_k\|$",
    "equiangular_means": r"$\mathrm{std}_{k<l}\cos(\mu_k,\mu_l)$",
    "equiangular_classifier": r"$\mathrm{std}_{k<l}\cos(w_k,w_l)$",
    "maxangle_means": r"$\mathrm{mean}_{k<l}|\cos(\mu_k,\mu_l)+\frac{1}{K-1}|$",
    "maxangle_classifier": r"$\mathrm{mean}_{k<l}|\cos(w_k,w_l)+\frac{1}{K-1}|$",
    "etf_error": r"$\|G/\|G\| - \mathrm{ETF}\|_F$ (means)",
    "etf_error_classifier": r"$\|WW^\top/\|WW^\top\| - \mathrm{ETF}\|_F$",
    "self_duality": r"$\|W^\top/\|W\| - M/\|M\|\|_F^2$",
    "ncc_mismatch": r"fraction: classifier $\neq$ nearest centre",
    "cdnv": r"CDNV, $\mathrm{mean}_{k<l}$",
    "nc_margin": r"margin $\min_i (w_{y_i} h_i - \max_{j\neq y_i} w_j h_i)$",
    "gnc2": r"GNC2: $\min_k$ one-vs-rest distance",
    "gnc3": r"GNC3: $\mathrm{mean}_k\,(1-\cos(w_k,\mu_k))$",
    "mean_cosine": r"$\mathrm{mean}_{k<l}\cos(\mu_k,\mu_l)$",
    "mean_cosine_median": r"$\mathrm{mean}_{k<l}\cos(\mu_k,\mu_l)$ (median)",
    "loss": "training loss",
    "accuracy": "training accuracy",
    "p_all_separable": r"$P(\mathrm{all\ pairs\ separable})$",
}

#: short panel titles
TITLES: dict[str, str] = {
    "nc1": "NC1 (within-class variability)",
    "nc1_quotient": "NC1 quotient",
    "equinorm_means": "NC2: equinorm (means)",
    "equiangular_means": "NC2: equiangularity (means)",
    "maxangle_means": "NC2: max-angle (means)",
    "etf_error": "NC2: distance to simplex ETF",
    "self_duality": "NC3: self-duality",
    "ncc_mismatch": "NC4: nearest-centre mismatch",
    "mean_cosine": "mean cosine of class means",
    "mean_cosine_median": "mean cosine of class means",
    "cdnv": "class-distance normalised variance",
}

#: axis labels of the sweep dims
DIM_LABELS: dict[str, str] = {
    "alpha_exponent": r"exponent $p$ of $\alpha_t = c\,(1+t)^{-p}$",
    "alpha_scale": r"scale $c$ of $\alpha_t$",
    "beta_exponent": r"exponent of $\beta_t$",
    "beta_scale": r"scale of $\beta_t$",
    "noise": r"noise $\sigma$",
    "num_classes": "classes $K$",
}


class MissingVariables(ValueError):
    """A Dataset lacks the variables a kind of figure needs (the message names them)."""


def require(ds: Any, names: Iterable[str], kind: str, arg: str = "ds") -> xr.Dataset:
    """Check ``ds`` is a Dataset holding ``names``; raise :class:`MissingVariables` naming what is missing."""
    if not isinstance(ds, xr.Dataset):
        raise TypeError(
            f"{arg} must be an xarray.Dataset, got {type(ds).__name__} (the plots never open files; "
            "open a sweep store with lesde.sweep.open_sweep, a NetCDF file with xarray.open_dataset)"
        )
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise MissingVariables(
            f"the {kind} figure needs the variables {', '.join(missing)}; this Dataset has "
            f"{', '.join(map(str, ds.data_vars)) or 'no data variables'}"
        )
    return ds


def subplots(
    n: int = 1,
    *,
    ax=None,
    fig=None,
    ncols: int = 2,
    panel: tuple[float, float] = (COLUMN, 2.6),
    **kw,
):
    """(fig, list of n axes): the given ``ax`` (n == 1), axes laid out on the given ``fig``, or a new figure.

    A new figure is one column wide for one panel and a grid of at most ``ncols`` columns for more.
    """
    import matplotlib.pyplot as plt

    if ax is not None:
        if n != 1:
            raise ValueError(f"this figure has {n} panels: pass fig= (a Figure to draw on), not ax=")
        return ax.figure, [ax]
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    if fig is None:
        fig = plt.figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    elif fig.axes:
        fig.clear()
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel()
    for extra in axes[n:]:
        extra.set_visible(False)
    with_style = list(axes[:n])
    for a in with_style:
        a.grid(alpha=0.3, which="major", lw=0.5)
    return fig, with_style


def style(ax) -> None:
    ax.tick_params(which="both", labelsize=FONT - 1)
    ax.xaxis.label.set_size(FONT)
    ax.yaxis.label.set_size(FONT)
    ax.title.set_size(FONT + 1)


def legend(ax, **kw) -> None:
    kw.setdefault("fontsize", FONT - 1.5)
    kw.setdefault("framealpha", 0.85)
    ax.legend(**kw)


def label(name: str, var: xr.DataArray | None = None) -> str:
    """Axis label: the mathtext form of a known metric, else the long_name, with the units unless dimensionless."""
    text = LABELS.get(name) or (var.attrs.get("long_name") if var is not None else None) or name
    units = var.attrs.get("units") if var is not None else None
    return f"{text} [{units}]" if units and units != "1" else text


def dim_label(dim: str) -> str:
    return DIM_LABELS.get(dim, dim.replace("_", " "))


def time_label(ds: xr.Dataset) -> str:
    """``time`` axis label from the Dataset's time attrs: SDE time or training time step x lr."""
    long = str(ds["time"].attrs.get("long_name", "time")) if "time" in ds.variables else "time"
    if "training" in long or "lr" in long:
        return r"training time $t$ = step $\times$ lr"
    if "SDE" in long:
        return r"SDE time $t$"
    if "lr" in ds.attrs:  # a training Dataset whose time coordinate predates the table's description
        return r"training time $t$ = step $\times$ lr"
    return f"time $t$ ({long})" if long != "time" else "time $t$"


def _schedule(spec: Any, name: str) -> str | None:
    if not isinstance(spec, Mapping):
        return None if spec is None else f"${name}={spec:g}$" if isinstance(spec, (int, float)) else None
    kind = spec.get("kind")
    if kind == "Constant":
        return f"${name}={spec['value']:g}$"
    if kind == "PowerLaw":
        off = spec.get("offset", 1.0)
        return f"${name}_t={spec['scale']:g}\\,({off:g}+t)^{{-{spec['exponent']:g}}}$"
    if kind == "Exponential":
        return f"${name}_t={spec['scale']:g}\\,e^{{-{spec['rate']:g}t}}$"
    return f"{name}: {kind}" if kind else None


def describe(ds: xr.Dataset, skip: Iterable[str] = ()) -> str:
    """'K = 3, n = 5, m = 4, alpha = 1, beta = 0.2, residual' from the attrs (what the title states)."""
    try:
        spec = json.loads(ds.attrs.get("spec", ds.attrs.get("problem", "{}")))
    except (TypeError, ValueError):
        spec = {}
    if not isinstance(spec, dict):
        spec = {}
    spec = spec.get("model", spec) if isinstance(spec.get("model"), Mapping) else spec
    parts = []
    if spec.get("kind") == "ufm":
        parts.append(f"UFM ({spec.get('loss', '?')} loss)")
    elif spec.get("kind") == "module":  # a torch network: its layer count and size
        layers = str(spec.get("module", "")).count("Linear(") or "?"
        parts.append(
            f"network, {layers} linear layers, {spec.get('num_params', '?')} parameters, {spec.get('loss')} loss"
        )
        if spec.get("num_samples") is not None:
            parts.append(f"{spec['num_samples']} samples")
    K = spec.get("num_classes", ds.attrs.get("num_classes"))
    if K is None and "class" in ds.dims:  # e.g. a network problem, whose spec does not name K
        K = ds.sizes["class"]
    if K is not None:
        parts.append(f"$K={K}$")
    n = spec.get("samples_per_class", ds.attrs.get("samples_per_class"))
    if isinstance(n, str):
        try:
            n = json.loads(n)
        except ValueError:
            pass
    if isinstance(n, list):
        n = n[0] if len(set(n)) == 1 else "/".join(map(str, n))
    if n is not None:
        parts.append(f"$n={n}$")
    m = spec.get("dim", ds.attrs.get("dim"))
    if m is not None:
        parts.append(f"$m={m}$")
    for q, sym in (("alpha", r"\alpha"), ("beta", r"\beta")):
        text = None if q in skip else _schedule(spec.get(q), sym)
        if text:
            parts.append(text)
    for key, sym in (("weight_decay_W", r"\lambda_W"), ("weight_decay_H", r"\lambda_H")):
        if isinstance(spec.get(key), (int, float)):
            parts.append(f"${sym}={spec[key]:g}$")
    if spec.get("transform"):
        parts.append(f"T = {spec['transform']}")
    if spec.get("noise") is not None and isinstance(spec.get("noise"), (int, float)):
        parts.append(rf"$\sigma={spec['noise']:g}$")
    return ", ".join(parts)


def num_classes(ds: xr.Dataset) -> int | None:
    """K from a one-value ``num_classes`` coordinate (a sweep over K, one K selected), the ``num_classes`` attr
    or the spec in the attrs (None when none says)."""
    if "num_classes" in ds.coords and ds["num_classes"].size == 1:
        return int(ds["num_classes"].values)
    try:
        return int(ds.attrs["num_classes"])
    except (KeyError, TypeError, ValueError):
        pass
    try:
        spec = json.loads(ds.attrs.get("spec", ds.attrs.get("problem", "{}")))
        spec = spec.get("model", spec) if isinstance(spec.get("model"), Mapping) else spec
        return int(spec["num_classes"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def log_if_positive(ax, values: np.ndarray, axis: str = "y") -> bool:
    """A log axis when every finite value is positive and they span more than a factor 30."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    ok = bool(v.size and (v > 0).all() and v.max() / v.min() > 30)  # 1.5 decades: at least two labelled ticks
    if ok:
        from matplotlib.ticker import NullFormatter

        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        (ax.yaxis if axis == "y" else ax.xaxis).set_minor_formatter(NullFormatter())  # no 2x10^-1, 3x10^-1 clutter
    return ok


def log_from_lines(ax) -> bool:
    """:func:`log_if_positive` over the y data of every line already drawn on ``ax``."""
    ys = [np.asarray(line.get_ydata(), dtype=float).ravel() for line in ax.lines]
    return log_if_positive(ax, np.concatenate(ys)) if ys else False


def save_figure(fig, path: str | Path, dpi: int = 150, close: bool = True) -> Path:
    """Write ``fig`` to ``path``; the format follows the extension (.png, .pdf, .svg, ...). Returns the path.

    ``close`` (default) releases the figure from pyplot afterwards (the CLI and scripts write many figures).
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    formats = fig.canvas.get_supported_filetypes()
    ext = path.suffix.lstrip(".").lower()
    if ext not in formats:
        raise ValueError(
            f"cannot write a figure as {path.name!r}: accepted extensions are {', '.join(sorted(formats))}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return path


def finish(fig) -> None:
    """Last step of every figure: the house font sizes on every axes (titles and labels set after
    :func:`subplots` take matplotlib's defaults)."""
    for ax in fig.axes:
        style(ax)
