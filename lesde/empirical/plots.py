"""Figures for the empirical workflow: E(t) with its fit, and network vs LE-SDE class-mean trajectories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .fitting import FitResult


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only: the CLI runs headless
    import matplotlib.pyplot as plt

    return plt


def plot_elasticity(est: xr.Dataset, fit_result: FitResult | None, path: str | Path) -> Path:
    """alpha(t) and beta(t) with confidence bands and the fitted schedules; saved to ``path`` (PNG)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    t = est["time"].values
    tt = np.linspace(t.min(), t.max(), 300)
    for ax, q in zip(axes, ("alpha", "beta")):
        ax.fill_between(t, est[f"{q}_lower"].values, est[f"{q}_upper"].values, alpha=0.3, label="CI")
        ax.plot(t, est[q].values, "o", ms=3, label=f"estimate ({est.attrs.get('form', '')})")
        if fit_result is not None and q in fit_result.fits:
            f = fit_result.fits[q]
            ax.plot(tt, f.schedule(tt).numpy(), "-", label=f"{f.model} fit")
        ax.set_xlabel("t = step * lr")
        ax.set_title(q)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_imitation(imit: xr.Dataset, path: str | Path, run: int = 0) -> Path:
    """Class means of one run (network solid, LE-SDE dashed), the relative error and nc1_quotient over time."""
    plt = _plt()
    K = imit.sizes["class"]
    fig, axes = plt.subplots(1, K + 2, figsize=(3.6 * (K + 2), 3.6), constrained_layout=True)
    t = imit["time"].values
    for k in range(K):
        ax = axes[k]
        for j in range(min(imit.sizes["feature"], 6)):  # a few coordinates stay readable
            (line,) = ax.plot(t, imit.class_mean.isel(process=0, run=run, feature=j).sel({"class": k}).values)
            ax.plot(
                t,
                imit.class_mean.isel(process=1, run=run, feature=j).sel({"class": k}).values,
                "--",
                color=line.get_color(),
            )
        ax.set_title(f"class {k} mean (solid: network, dashed: LE-SDE)", fontsize=8)
        ax.set_xlabel("t")
    ax = axes[K]
    err = imit["relative_error"]
    ax.plot(t, err.mean("run").values, label="mean over runs")
    ax.fill_between(t, err.min("run").values, err.max("run").values, alpha=0.3, label="range")
    ax.set_title("relative error of class means")
    ax.set_xlabel("t")
    ax.legend(fontsize=8)
    ax = axes[K + 1]
    if "nc1_quotient" in imit:
        for p in imit["process"].values:
            ax.semilogy(t, imit["nc1_quotient"].sel(process=p).mean("run").values, label=str(p))
        ax.set_title("NC1 quotient tr(S_W)/tr(S_B), mean over runs", fontsize=8)
        ax.legend(fontsize=8)
    ax.set_xlabel("t")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


__all__ = ["plot_elasticity", "plot_imitation"]
