"""Figures for the empirical workflow: E(t) under both estimands with the fit, network vs LE-SDE class means,
the imitation diagnosis (which term fails), and the label-corruption experiment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .fitting import FitResult

COLORS = ("C0", "C1", "C2", "C3", "C4", "C5")


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only: the CLI runs headless
    import matplotlib.pyplot as plt

    return plt


def _time_axis(ax, t: np.ndarray) -> None:
    t = t[np.isfinite(t) & (t > 0)]
    if t.size and t.max() / t.min() > 100:
        ax.set_xscale("log")
    ax.set_xlabel("t = step x lr")


def plot_elasticity(est: xr.Dataset, fit_result: FitResult | None, path: str | Path) -> Path:
    """alpha(t) and beta(t): the selected estimand with its confidence band, the other estimand with error bars,
    and the fitted schedule; saved to ``path`` (PNG)."""
    from scipy.stats import t as student_t

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    t = est["time"].values
    tt = np.linspace(max(np.nanmin(t), 0), np.nanmax(t), 300)
    chosen = est.attrs.get("weighting", "n/a")
    conf = float(est.attrs.get("confidence", 0.95))
    for ax, q in zip(axes, ("alpha", "beta")):
        ax.fill_between(
            t, est[f"{q}_lower"].values, est[f"{q}_upper"].values, alpha=0.25, color="C0", label=f"{100 * conf:.0f}% CI"
        )
        ax.plot(
            t,
            est[q].values,
            "o-",
            ms=3,
            lw=1,
            color="C0",
            label=f"{chosen} weighting" if chosen != "n/a" else f"{est.attrs.get('form', '')} estimate",
        )
        if f"{q}_by_weighting" in est:
            for w in est["weighting"].values:
                if w == chosen:
                    continue
                y = est[f"{q}_by_weighting"].sel(weighting=w).values
                se = est[f"{q}_by_weighting_se"].sel(weighting=w).values
                z = student_t.ppf(0.5 + conf / 2, np.maximum(est["dof"].values, 1))
                ax.errorbar(t, y, yerr=z * se, fmt="s", ms=3, lw=0.8, color="C1", alpha=0.8, label=f"{w} weighting")
        if fit_result is not None and q in fit_result.fits:
            f = fit_result.fits[q]
            ax.plot(
                tt,
                f.schedule(tt).numpy(),
                "-",
                color="k",
                lw=1.2,
                label=f"{f.model} fit ({chosen}), chi2/dof={f.chi2_dof:.2g}",
            )
        ax.axhline(0, color="0.6", lw=0.6)
        _time_axis(ax, t)
        ax.set_title(
            f"{q}_t ({'intra' if q == 'alpha' else 'inter'}-class), form={est.attrs.get('form', '')}, "
            f"errors clustered by {est.attrs.get('se_cluster', '?')}",
            fontsize=9,
        )
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def plot_imitation(imit: xr.Dataset, path: str | Path, run: int = 0, coords: int = 3) -> Path:
    """Per class, the class mean of one run (network solid, LE-SDE dashed; one colour per coordinate), the
    relative error over runs and the NC1 quotient; a symlog scale where the LE-SDE leaves the network's range."""
    plt = _plt()
    from matplotlib.lines import Line2D

    K = imit.sizes["class"]
    fig, axes = plt.subplots(1, K + 2, figsize=(3.7 * (K + 2), 3.8), constrained_layout=True)
    t = imit["time"].values
    net = imit.class_mean.sel(process="network").isel(run=run).values  # (T, K, m)
    sde = imit.class_mean.sel(process="le-sde").isel(run=run).values
    J = min(imit.sizes["feature"], coords)
    big = np.nanmax(np.abs(sde[..., :J])) > 10 * max(np.nanmax(np.abs(net[..., :J])), 1e-12)
    for k in range(K):
        ax = axes[k]
        for j in range(J):
            ax.plot(t, net[:, k, j], "-", color=COLORS[j])
            ax.plot(t, sde[:, k, j], "--", color=COLORS[j])
        if big:  # linear inside the network's range (rounded up to a power of ten), logarithmic beyond
            lin = 10.0 ** np.ceil(np.log10(max(np.nanmax(np.abs(net[..., :J])), 1e-6)))
            ax.set_yscale("symlog", linthresh=lin, linscale=1.5)
        ax.set_title(f"class {k} mean, run {run}", fontsize=9)
        ax.set_xlabel("t")
        handles = [
            Line2D([], [], color="k", ls="-", label="network"),
            Line2D([], [], color="k", ls="--", label="LE-SDE"),
        ] + [Line2D([], [], color=COLORS[j], label=f"coordinate {j}") for j in range(J)]
        ax.legend(handles=handles, fontsize=7)
    ax = axes[K]
    err = imit["relative_error"].isel(time=slice(1, None))  # t = 0: both start at the network's means (error 0)
    t1 = t[1:]
    ax.plot(t1, err.median("run").values, color="C0", label="median over runs")
    ax.fill_between(t1, err.min("run").values, err.max("run").values, alpha=0.3, color="C0", label="range")
    ax.axhline(0.5, color="C3", ls=":", lw=1, label="warning (0.5)")
    ax.axhline(0.3, color="C2", ls=":", lw=1, label="aim (0.3)")
    ax.set_yscale("log")
    ax.set_title("relative error of the class means", fontsize=9)
    ax.set_xlabel("t")
    ax.legend(fontsize=7)
    ax = axes[K + 1]
    if "nc1_quotient" in imit:
        for p in imit["process"].values:
            ax.semilogy(t, imit["nc1_quotient"].sel(process=p).mean("run").values, label=str(p))
        ax.set_title("NC1 quotient tr(S_W)/tr(S_B), mean over runs", fontsize=9)
        ax.legend(fontsize=7)
    ax.set_xlabel("t")
    fig.suptitle(
        f"imitation: transform={imit.attrs.get('transform')}, E(t) {imit.attrs.get('elasticity', '')} "
        f"({imit.attrs.get('estimate_form', '?')}, {imit.attrs.get('estimate_weighting', '?')}); "
        f"median relative error, first half: {imit.attrs.get('median_relative_error_first_half', np.nan):.3g}",
        fontsize=10,
    )
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def plot_imitation_diagnosis(
    imit: xr.Dataset, checks: dict[str, xr.Dataset], est: xr.Dataset, path: str | Path
) -> Path:
    """Which term of the LE-SDE fails: (a) class-mean norms, network vs LE-SDE; (b) the estimated E(t);
    (c) the drift on the network's own states against the network's velocity (``drift_check``, one line per
    check); (d) within-class variance, network vs what the LE-SDE's noise gives."""
    plt = _plt()
    fig, ax = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    t = imit["time"].values
    M = imit["class_mean"]
    for p, ls in (("network", "-"), ("le-sde", "--")):
        n = np.linalg.norm(M.sel(process=p).values.reshape(M.sizes["run"], len(t), -1), axis=-1)
        ax[0, 0].plot(t, np.median(n, 0), ls, color="k", label=p)
    ax[0, 0].set_yscale("log")
    ax[0, 0].set_title("(a) ||class means||_F, median over runs", fontsize=9)
    ax[0, 0].set_xlabel("t")
    ax[0, 0].legend(fontsize=8)
    te = est["time"].values
    for q, c in (("alpha", "C0"), ("beta", "C1")):
        y = est[q].values
        ax[0, 1].plot(te, np.abs(y), "o-", ms=3, color=c, label=f"|{q}| ({est.attrs.get('weighting')})")
    ax[0, 1].set_yscale("log")
    _time_axis(ax[0, 1], te)
    ax[0, 1].set_title(
        f"(b) E(t) estimated for T={est.attrs.get('transform')}: large while the features are small", fontsize=9
    )
    ax[0, 1].legend(fontsize=8)

    def nrm(x):  # median over runs of the Frobenius norm per window
        return np.median(np.linalg.norm(x.values.reshape(x.sizes["run"], x.sizes["step"], -1), axis=-1), 0)

    for i, (name, dc) in enumerate(checks.items()):
        td = dc["time"].values
        if i == 0:
            ax[1, 0].plot(td, nrm(dc["velocity"]), "-", color="k", lw=2, label="network velocity")
        ax[1, 0].plot(
            td,
            nrm(dc["drift"]),
            "--",
            color=COLORS[i],
            label=f"drift at network state: {name} "
            f"(error {np.median(dc['drift_error'].values):.2g}, cos {np.median(dc['drift_cosine'].values):.2g})",
        )
    ax[1, 0].set_yscale("log")
    ax[1, 0].set_xlabel("t")
    ax[1, 0].set_title("(c) drift term: LE-SDE drift on the network's own class means vs their velocity", fontsize=9)
    ax[1, 0].legend(fontsize=7)
    dc = next(iter(checks.values()))
    ax[1, 1].plot(dc["time"].values, dc["within_var"].median("run").values, "-", color="k", label="network")
    ax[1, 1].plot(
        dc["time"].values,
        dc["within_var_model"].values,
        "--",
        color="C3",
        label=f"LE-SDE noise, sigma_hat={dc.attrs.get('noise', np.nan):.3g}",
    )
    ax[1, 1].set_yscale("log")
    ax[1, 1].set_xlabel("t")
    ax[1, 1].set_title("(d) noise term: within-class variance", fontsize=9)
    ax[1, 1].legend(fontsize=8)
    fig.suptitle(
        "why the LE-SDE does not imitate the network (median relative error, first half: "
        f"{imit.attrs.get('median_relative_error_first_half', np.nan):.3g})",
        fontsize=11,
    )
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def plot_label_noise(ds: xr.Dataset, path: str | Path) -> Path:
    """Tail index r of the integrated alpha and beta against the label-noise rate, with validation accuracy."""
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    p = ds["rate"].values
    for q, c in (("alpha", "C0"), ("beta", "C1")):
        r = ds[f"tail_{q}"]
        y, lo, hi = r.mean("run").values, r.min("run").values, r.max("run").values
        ax[0].errorbar(
            p,
            y,
            yerr=[y - lo, hi - y],
            fmt="o-",
            color=c,
            capsize=3,
            label=f"r of int {q}: mean over {ds.sizes['run']} runs, bars: range",
        )
    ax[0].axvline(
        (ds.attrs["num_classes"] - 1) / ds.attrs["num_classes"],
        color="0.5",
        ls=":",
        lw=1,
        label="p = (K-1)/K: labels carry no signal",
    )
    ax[0].set_xlabel("label-noise rate p")
    ax[0].set_ylabel("tail index r = 1 - mean(log|A(t)| / log s)")
    ax[0].set_title(f"tail index over the last {100 * ds.attrs['tail']:.0f}% of training", fontsize=9)
    ax[0].legend(fontsize=7)
    for v, ls in (("validation_accuracy", "o-"), ("train_accuracy", "s--")):
        a = ds[v]
        ax[1].plot(p, a.mean("run").values, ls, label=v.replace("_", " ") + " (final)")
    ax[1].axhline(1 / ds.attrs["num_classes"], color="0.5", ls=":", lw=1, label="chance")
    ax[1].set_xlabel("label-noise rate p")
    ax[1].set_ylim(0, 1.02)
    ax[1].set_title("accuracy (validation labels clean; training labels as corrupted)", fontsize=9)
    ax[1].legend(fontsize=7)
    fig.suptitle(f"label corruption on {ds.attrs.get('dataset')}: {ds.attrs.get('net_desc', '')}", fontsize=10)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


__all__ = ["plot_elasticity", "plot_imitation", "plot_imitation_diagnosis", "plot_label_noise"]
