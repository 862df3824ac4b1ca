"""Measured vs predicted: one panel per prediction :func:`lesde.theory.attach` added.

Measured quantities are solid (mean over runs / paths, band = +-1 std; one colour per process, class or mode),
predictions dashed in the same colour (black for a constant). Distances are drawn on log axes; the NC margin of
an unregularised CE run against log(log t), the axis Ji et al. read their rates on. Sweeps get the measured and the
predicted phase side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["panels", "draw_panel", "plot_theory"]

#: (measured, predicted or None, y label, log y) in the order drawn
_PAIRS = (
    ("loss", "loss_predicted", "training objective", True),
    ("tb_distance", None, "||WH - W*H*|| / ||Y||", True),
    ("tb_gram_distance", None, "||H'H - H*'H*|| / ||Y'Y||", True),
    ("snr", "snr_predicted", "SNR singular values", True),
    ("central_path_departure", None, "L_perp / L", True),
    ("nc_margin_normalized", "nc_margin_normalized_predicted", "q_min / (||W||^2 + ||H||^2)", False),
    ("gnc2", "gnc2_predicted", "gnc2 (one-vs-rest distance)", False),
    ("class_mean_var", "class_mean_var_predicted", "Var over paths of class mean", True),
    ("class_mean_var_zscore", None, "max |var - predicted| / s.e.", False),
    ("mean_cosine_distance", None, "|mean cosine + 1/(K-1)|", True),
    ("nc1", "nc1_predicted", "NC1", True),
    ("etf_error_classifier", "etf_error_classifier_predicted", "ETF error of W", True),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panels(ds: xr.Dataset) -> list[tuple[str, str | None, str, bool]]:
    """The panels :func:`plot_theory` draws for ``ds`` (an attached Dataset)."""
    added = set(json.loads(ds.attrs.get("theory_predictions", "[]")))
    if not added:
        raise ValueError("the Dataset carries no predictions: call lesde.theory.attach first")
    return [p for p in _PAIRS if p[0] in ds and (p[0] in added or p[1] in added) and "time" in ds[p[0]].dims]


def _series(da: xr.DataArray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """label -> (mean, std) over time: runs / paths / features averaged, one series per process, class or mode."""
    spread = [d for d in ("run", "path") if d in da.dims]
    std = da.std(spread) if spread else xr.zeros_like(da)
    mean = da.mean(spread) if spread else da
    if "feature" in mean.dims:
        mean, std = mean.mean("feature"), std.mean("feature")
    split = next((d for d in ("process", "class", "snr_mode") if d in mean.dims), None)
    if split is None:
        return {"": (mean.transpose("time").values, std.transpose("time").values)}
    out = {}
    for i, key in enumerate(mean[split].values):
        name = {"class": f"class {key}", "snr_mode": f"mode {i + 1}"}.get(split, str(key))
        sel = {split: i}
        others = [d for d in mean.dims if d not in (split, "time")]
        m, s = mean.isel(sel), std.isel(sel)
        if others:  # e.g. snr over process and mode: average what is left
            m, s = m.mean(others), s.mean(others)
        out[name] = (m.transpose("time").values, s.transpose("time").values)
    return out


def draw_panel(ax, ds: xr.Dataset, panel: tuple[str, str | None, str, bool]) -> None:
    """One measured-vs-predicted panel on ``ax``."""
    measured, predicted, label, logy = panel
    t = ds["time"].values
    loglog = measured == "nc_margin_normalized"
    keep = t > np.e if loglog else np.ones_like(t, bool)
    x = np.log(np.log(t[keep])) if loglog else t[keep]
    colours = {}
    for name, (mean, std) in _series(ds[measured]).items():
        (line,) = ax.plot(x, mean[keep], label=name or "measured", lw=1.6)
        low = mean - std
        if np.nanmin(mean) >= 0:  # a nonnegative quantity: the band stops at 0
            low = np.maximum(low, 0.0)
        ax.fill_between(x, low[keep], (mean + std)[keep], color=line.get_color(), alpha=0.2, lw=0)
        colours[name] = line.get_color()
    if predicted is not None and predicted in ds:
        pred = ds[predicted]
        if "time" in pred.dims:
            for name, (mean, _) in _series(pred).items():
                ax.plot(x, mean[keep], ls="--", lw=1.4, color=colours.get(name, "k"))
            ax.plot([], [], ls="--", color="0.3", label="predicted")
        elif logy and float(pred) <= 0:
            label = f"{label} (predicted {float(pred):g})"
        else:
            ax.axhline(float(pred), ls="--", lw=1.4, color="k", label=f"predicted {float(pred):.3g}")
    if measured.endswith("zscore"):
        ax.axhline(3.0, ls=":", color="0.4", lw=1, label="3 s.e.")
        ax.set_ylim(bottom=0)
    if logy:
        values = np.asarray(ds[measured].values, float)
        if np.all(values[np.isfinite(values)] > 0):
            ax.set_yscale("log")
    ax.set_xlabel("log log t" if loglog else ds["time"].attrs.get("long_name", "time"))
    ax.set_ylabel(label)
    ax.set_title(measured.replace("_", " "), fontsize=10)
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(fontsize=7, frameon=False)


def _phase(ds: xr.Dataset, path: Path) -> Path:
    plt = _pyplot()
    dims = list(ds["predicted_phase"].dims)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True, constrained_layout=True)
    for ax, name in zip(axes, ("phase", "predicted_phase")):
        da = ds[name].transpose(*dims[-2:]) if len(dims) >= 2 else ds[name]
        im = ax.imshow(np.asarray(da.values, float).T, origin="lower", cmap="RdBu", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(da.shape[0]), [f"{v:g}" for v in da[dims[0]].values])
        if len(dims) >= 2:
            ax.set_yticks(range(da.shape[1]), [f"{v:g}" for v in da[dims[1]].values])
            ax.set_ylabel(dims[1])
        ax.set_xlabel(dims[0])
        ax.set_title(f"{name.replace('_', ' ')} (1 separable, 0 not; blank: none)", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_theory(ds: xr.Dataset, path: str | Path, ncols: int = 3) -> Path:
    """Write a PNG of every measured-vs-predicted panel of an attached Dataset; returns the path."""
    path = Path(path)
    if "predicted_phase" in ds:
        return _phase(ds, path)
    chosen = panels(ds)
    if not chosen:
        raise ValueError("none of the attached predictions has a time axis to plot")
    plt = _pyplot()
    ncols = min(ncols, len(chosen))
    nrows = -(-len(chosen) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.9 * nrows), squeeze=False, constrained_layout=True)
    for ax, panel in zip(axes.flat, chosen):
        draw_panel(ax, ds, panel)
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
