"""What every lesde figure shares: the palette, the panel grid, names and labels, axis limits, bands, saving.

Decisions, so that every figure can go into a paper as it is written:

- Sizes: one panel is one column of a two-column paper (3.5 in); a grid of panels is two columns wide (7 in, the
  full text width) and 2.4 in a row. Text is 8 pt (labels), 7 pt (ticks and legends, never smaller), 8.5 pt
  (panel titles), 9 pt (the figure title): legible when the figure is printed at the size it is saved.
- A grid has no empty slot: the last panel of a short last row spans the rest of the row.
- Colours are the Okabe-Ito palette (safe for the common colour-vision deficiencies), passed explicitly to every
  artist so that the user's ``rcParams`` are never modified. The three processes of `lesde.sgd.compare`
  have one style each (`PROCESS_STYLE`): gradient flow, the noiseless reference, is drawn thin and first,
  so that SGD and its SME stay visible where the three coincide.
- Titles and labels are names (`TITLES`, `LABELS`, the Dataset's ``long_name``), never variable names.
- Reference lines (theory values, chance levels) are drawn under the data (`reference`).
- Axis limits come from the data, not from its spread: `fit_y` sets them from the lines drawn (a log axis
  when they are positive and span more than a factor 30), and `band` clips a band to those limits, so a
  band reaching 0 stops at the bottom of a log axis instead of setting it.

Figures come from `matplotlib.pyplot` (so ``plt.show()`` and Jupyter's inline display work) but no function
here or in the kind modules ever calls ``matplotlib.use``: the backend stays the user's.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["PALETTE", "COLUMN", "WIDTH", "save_figure", "MissingVariables"]

#: Okabe & Ito (2008): distinguishable under protanopia, deuteranopia and tritanopia, in this order of use
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
#: legend names of the processes of lesde.sgd.compare
PROCESS_NAMES = {"sgd": "SGD", "sme": "SME (first-order SDE)", "gradient_flow": "gradient flow"}
#: line style of each process: gradient flow thin, dotted and under the two stochastic processes
PROCESS_STYLE = {
    "sgd": {"color": PALETTE[0], "ls": "-", "lw": 1.5, "zorder": 2.6},
    "sme": {"color": PALETTE[1], "ls": "--", "lw": 1.5, "zorder": 2.7},
    "gradient_flow": {"color": "0.2", "ls": ":", "lw": 1.1, "zorder": 2.2},
}
THEORY = "#D55E00"  # vermillion: theory lines and marks
BAND_ALPHA = 0.25
COLUMN = 3.5  # inches: one column of a two-column paper
WIDTH = 2 * COLUMN  # inches: the text width, the widest figure
PANEL = (COLUMN, 2.4)  # inches: one panel of a grid
FONT = 8
LEGEND_FONT = 7  # the smallest text of any figure

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
    "nc_margin": r"$\min_i (w_{y_i} h_i - \max_{j\neq y_i} w_j h_i)$",
    "gnc2": r"$\min_k$ one-vs-rest distance",
    "gnc3": r"$\mathrm{mean}_k\,(1-\cos(w_k,\mu_k))$",
    "mean_cosine": r"$\mathrm{mean}_{k<l}\cos(\mu_k,\mu_l)$",
    "separable_fraction": "fraction of class pairs",
    "loss": "training loss",
    "accuracy": "training accuracy",
    "p_all_separable": r"$P(\mathrm{all\ pairs\ separable})$",
}

#: panel titles: what each variable is, in words
TITLES: dict[str, str] = {
    "nc1": "NC1: within-class variability",
    "nc1_quotient": "NC1: trace quotient",
    "equinorm_means": "NC2: equinorm of class means",
    "equinorm_classifier": "NC2: equinorm of classifier rows",
    "equiangular_means": "NC2: equiangularity of class means",
    "equiangular_classifier": "NC2: equiangularity of classifier rows",
    "maxangle_means": "NC2: angle gap to the ETF, class means",
    "maxangle_classifier": "NC2: angle gap to the ETF, classifier",
    "etf_error": "NC2: class means to simplex ETF",
    "etf_error_classifier": "NC2: classifier to simplex ETF",
    "self_duality": "NC3: self-duality gap",
    "ncc_mismatch": "NC4: nearest-centre mismatch",
    "cdnv": "class-distance normalised variance",
    "nc_margin": "neural-collapse margin",
    "gnc2": "GNC2: one-vs-rest distance of $W$",
    "gnc3": "GNC3: classifier-mean misalignment",
    "mean_cosine": "mean cosine of class means",
    "separable_fraction": "separable class pairs",
    "loss": "training loss",
    "accuracy": "training accuracy",
    "p_all_separable": "all class pairs separable",
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

#: how to get the variables each kind of figure needs (the end of a MissingVariables message)
HOW_TO_GET: dict[str, str] = {
    "phase": "a sweep store has them: lesde sweep SPEC.toml --store S.zarr",
    "nc": (
        "to get NC metrics, simulate with save='metrics' ([simulate] save = \"metrics\" in the TOML) or compute "
        "them from a save='full' or 'means' Dataset with lesde.metrics.to_dataset(ds)"
    ),
    "cosines": "to get class means, simulate with save='means' or save='full' ([simulate] save = \"means\")",
    "elasticity": "lesde estimate ... --out EST.nc writes them",
    "imitation": "lesde imitate EST.nc --out IMIT.nc writes them",
    "sgd": "lesde compare-sgd CONFIG.toml --out CMP.nc writes them",
    "label-noise": "lesde estimate --label-noise P1 P2 ... --out F.nc writes them",
    "theory": "lesde compare-theory FILE --out F.nc attaches them",
}


class MissingVariables(ValueError):
    """A Dataset lacks the variables a kind of figure needs (the message names them and how to get them)."""


def require(ds: Any, names: Iterable[str], kind: str, arg: str = "ds") -> xr.Dataset:
    """Check ``ds`` is a Dataset holding ``names``; raise `MissingVariables` naming what is missing."""
    if not isinstance(ds, xr.Dataset):
        raise TypeError(
            f"{arg} must be an xarray.Dataset, got {type(ds).__name__} (the plots never open files; "
            "open a sweep store with lesde.sweep.open_sweep, a NetCDF file with xarray.open_dataset)"
        )
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise missing_variables(kind, f"the variables {', '.join(missing)}", ds)
    if ds.sizes.get("time", 1) == 0:
        raise ValueError(f"{arg} has an empty time axis: the {kind} figure has nothing to draw")
    return ds


def missing_variables(kind: str, needs: str, ds: xr.Dataset, source: str = "this Dataset") -> Exception:
    """The `MissingVariables` error of ``kind``: what it needs, what ``source`` has, how to get them."""
    has = ", ".join(map(str, ds.data_vars)) or "no data variables"
    how = HOW_TO_GET.get(kind)
    return MissingVariables(f"the {kind} figure needs {needs}; {source} has {has}" + (f"; {how}" if how else ""))


def check_count(name: str, value: Any, size: int | None = None, what: str = "") -> int:
    """An integer option of a figure (a run index below ``size``, a number of panels >= 1), refused naming it."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if size is not None and not 0 <= value < size:
        raise ValueError(f"{name}={value} is out of range: {what} has {size}, so {name} must be in [0, {size - 1}]")
    if size is None and value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return value


def check_axes_and_figure(ax=None, fig=None) -> None:
    """Refuse, naming the parameter, an ``ax`` that is not a matplotlib Axes or a ``fig`` that is not a Figure
    (None means "a new one")."""
    from matplotlib.axes import Axes
    from matplotlib.figure import FigureBase

    if ax is not None and not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None (a new figure), got {type(ax).__name__}: {ax!r:.60}")
    if fig is not None and not isinstance(fig, FigureBase):
        raise TypeError(
            f"fig must be a matplotlib Figure (or SubFigure) or None (a new figure), got {type(fig).__name__}: "
            f"{fig!r:.60}"
        )


def subplots(n: int = 1, *, ax=None, fig=None, ncols: int = 2, panel: tuple[float, float] = PANEL):
    """(fig, list of n axes): the given ``ax`` (n == 1), axes laid out on the given ``fig``, or a new figure.

    A new figure is one column wide for one panel and a grid of at most ``ncols`` columns for more; the last
    panel spans what its row has left, so no slot is empty.
    """
    import matplotlib.pyplot as plt

    check_axes_and_figure(ax, fig)
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
    grid = fig.add_gridspec(nrows, ncols)
    axes = []
    for i in range(n):
        row, col = divmod(i, ncols)
        axes.append(fig.add_subplot(grid[row, col:] if i == n - 1 else grid[row, col]))
    for a in axes:
        a.grid(alpha=0.3, which="major", lw=0.5)
    return fig, axes


def style(ax) -> None:
    ax.tick_params(which="both", labelsize=FONT - 1)
    ax.xaxis.label.set_size(FONT)
    ax.yaxis.label.set_size(FONT)
    ax.title.set_size(FONT + 0.5)
    if ax.get_legend() is not None:
        for text in ax.get_legend().get_texts():
            text.set_fontsize(max(text.get_fontsize(), LEGEND_FONT))


def legend(ax, **kw):
    """``ax.legend`` in the house style: 7 pt at least (a smaller ``fontsize`` is raised to it)."""
    size = kw.pop("fontsize", LEGEND_FONT)
    kw["fontsize"] = max(float(size), LEGEND_FONT) if not isinstance(size, str) else LEGEND_FONT
    kw.setdefault("framealpha", 0.85)
    kw.setdefault("handlelength", 1.8)
    return ax.legend(**kw)


def legend_below(ax, **kw):
    """`legend` under the panel, clear of its tick labels and x label (a fixed 32 points below the axes),
    for a panel whose lines fill it."""
    from matplotlib.transforms import offset_copy

    below = offset_copy(ax.transAxes, fig=ax.figure, y=-32, units="points")
    kw = {"loc": "upper center", "bbox_to_anchor": (0.5, 0.0), "bbox_transform": below, "frameon": False, **kw}
    return legend(ax, **kw)


def reference(ax, y: float | None = None, *, x: float | None = None, **kw):
    """A horizontal (``y``) or vertical (``x``) reference line drawn under the data (theory values, levels)."""
    kw = {"color": THEORY, "ls": "--", "lw": 1.0, "zorder": 1.5, **kw}
    return ax.axhline(y, **kw) if x is None else ax.axvline(x, **kw)


def label(name: str, var: xr.DataArray | None = None) -> str:
    """Axis label: the mathtext form of a known metric, else the long_name, with the units unless dimensionless."""
    text = LABELS.get(name) or (var.attrs.get("long_name") if var is not None else None) or name
    units = var.attrs.get("units") if var is not None else None
    return f"{text} [{units}]" if units and units != "1" else text


def title_of(name: str, var: xr.DataArray | None = None) -> str:
    """Panel title: the name of a known variable, else its long_name, else the variable name in words."""
    long = var.attrs.get("long_name") if var is not None else None
    return TITLES.get(name) or (str(long) if long else name.replace("_", " "))


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


def _finite(arrays: Iterable[Any]) -> np.ndarray:
    parts = [np.asarray(a, dtype=float).ravel() for a in arrays]
    v = np.concatenate(parts) if parts else np.empty(0)
    return v[np.isfinite(v)]


def log_if_positive(ax, values: Any, axis: str = "y") -> bool:
    """A log axis when every finite value is positive and they span more than a factor 30."""
    v = _finite([values])
    ok = bool(v.size and (v > 0).all() and v.max() / v.min() > 30)  # 1.5 decades: at least two labelled ticks
    if ok:
        from matplotlib.ticker import NullFormatter

        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        (ax.yaxis if axis == "y" else ax.xaxis).set_minor_formatter(NullFormatter())  # no 2x10^-1, 3x10^-1 clutter
    return ok


def fit_y(ax, lines: Iterable[Any], bands: Iterable[Any] = (), *, log: bool | None = None, pad: float = 0.06) -> bool:
    """Set the y limits of ``ax`` from the data and return whether the axis is logarithmic.

    ``lines`` (the plotted values) decide the scale (log when ``log`` is None and they are positive and span a
    factor 30) and the limits; ``bands`` (their spread: quantile bands, +-1 s.d.) widen a linear axis but never a
    log one, where a band reaching 0 would set the bottom. Draw the bands afterwards with `band`.
    """
    v = _finite(lines)
    if not v.size:
        return False
    logy = log_if_positive(ax, v) if log is None else log
    if logy:
        if log is not None:
            ax.set_yscale("log")
        v = v[v > 0]
        lo, hi = np.log10(v.min()), np.log10(v.max())
        margin = max(pad * (hi - lo), 0.15)
        ax.set_ylim(10 ** (lo - margin), 10 ** (hi + margin))
        return True
    v = np.concatenate([v, _finite(bands)])
    lo, hi = float(v.min()), float(v.max())
    margin = pad * (hi - lo) if hi > lo else 0.1 * abs(hi) or 0.5
    ax.set_ylim(lo - margin, hi + margin)
    return False


def band(ax, x: Any, lo: Any, hi: Any, **kw):
    """``fill_between`` clipped to the y limits ``ax`` has now (call `fit_y` first)."""
    bottom, top = ax.get_ylim()
    lo, hi = (np.clip(np.asarray(a, dtype=float), bottom, top) for a in (lo, hi))
    kw = {"alpha": BAND_ALPHA, "lw": 0, **kw}
    return ax.fill_between(x, lo, hi, **kw)


def log_from_lines(ax) -> bool:
    """`fit_y` over the y data of every line already drawn on ``ax``."""
    return fit_y(ax, [line.get_ydata() for line in ax.lines])


def save_figure(fig, path: str | Path, dpi: float | str = 150, close: bool = True) -> Path:
    """Write ``fig`` to ``path``; the format follows the extension (.png, .pdf, .svg, ...). Returns the path.

    ``close`` (default) releases the figure from pyplot afterwards (the CLI and scripts write many figures).
    """
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure (what the plot functions return), got {type(fig).__name__}")
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise TypeError(f"path must be a file name (str or Path) such as 'figure.png', got {path!r:.60}")
    if dpi != "figure" and (isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not 0 < dpi < math.inf):
        raise ValueError(f"dpi must be a positive number of dots per inch (or 'figure'), got {dpi!r}")
    path = Path(path)
    formats = fig.canvas.get_supported_filetypes()
    ext = path.suffix.lstrip(".").lower()
    if ext not in formats:
        raise ValueError(
            f"cannot write a figure as {path.name!r}: accepted extensions are {', '.join(sorted(formats))}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # written whole or not at all: a temporary name beside the target (same suffix, so that matplotlib picks the
    # format; a leading dot, so that a glob for results does not see it), renamed onto the target, which a failure
    # or a kill part-way through leaves as it was (os.replace within one folder is atomic on POSIX)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=ext)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if close:
        plt.close(fig)
    return path


def finish(fig, title: str | None = None) -> None:
    """Last step of every figure: the figure title (9 pt) and the house font sizes on every axes (titles and
    labels set after `subplots` take matplotlib's defaults)."""
    if title:
        fig.suptitle(title, fontsize=FONT + 1)
    for ax in fig.axes:
        style(ax)
