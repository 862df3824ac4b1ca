"""Figures of an imitation (`lesde.empirical.imitate`): network vs LE-SDE class means, the relative error,
NC1 and the scale-free comparisons against the frozen network; and the diagnosis of which LE-SDE term fails."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from ._style import (
    PALETTE,
    THEORY,
    band,
    check_count,
    finish,
    fit_y,
    legend,
    log_from_lines,
    reference,
    require,
    subplots,
    time_label,
)
from .empirical import _SYMBOL

__all__ = ["plot_imitation", "plot_imitation_diagnosis"]


#: legend names of the processes of an imitation Dataset
_IMITATION_NAMES = {"network": "network", "le-sde": "LE-SDE"}


def _class_panel(ax, t, net: np.ndarray, sde: np.ndarray, k: int, run: int, J: int, xlabel: str) -> None:
    """Class k's mean, network solid and LE-SDE dashed, one colour per coordinate; symlog where the LE-SDE leaves
    the network's range."""
    for j in range(J):
        ax.plot(t, net[:, k, j], "-", color=PALETTE[j], lw=1.2)
        ax.plot(t, sde[:, k, j], "--", color=PALETTE[j], lw=1.2)
    if np.nanmax(np.abs(sde[..., :J])) > 10 * max(np.nanmax(np.abs(net[..., :J])), 1e-12):
        # linear inside the network's range (rounded up to a power of ten), logarithmic beyond
        lin = 10.0 ** np.ceil(np.log10(max(np.nanmax(np.abs(net[..., :J])), 1e-6)))
        ax.set_yscale("symlog", linthresh=lin, linscale=1.5)
    ax.set_title(f"class {k} mean, run {run}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"coordinate of $\bar X_k$")


def _error_panel(ax, imit: xr.Dataset, xlabel: str) -> None:
    """Relative error of the class means: the median over runs, each run thin, their min-max band."""
    t1 = imit["time"].values[1:]
    err = imit["relative_error"].isel(time=slice(1, None))  # t = 0: both start at the network's means (error 0)
    med = err.median("run").values
    fit_y(ax, [med, [0.3, 0.5]], [err.min("run").values, err.max("run").values])
    band(ax, t1, err.min("run").values, err.max("run").values, color=PALETTE[0], alpha=0.3, zorder=1,
         label=f"min-max over {imit.sizes['run']} runs")  # fmt: skip
    if imit.sizes["run"] <= 10:
        for r in range(imit.sizes["run"]):
            ax.plot(t1, err.isel(run=r).values, color=PALETTE[0], lw=0.5, alpha=0.6,
                    label="each run" if r == 0 else None)  # fmt: skip
    ax.plot(t1, med, color=PALETTE[0], lw=1.6, label=f"median of {imit.sizes['run']} runs")
    reference(ax, 0.5, ls=":", label="warning level 0.5")
    reference(ax, 0.3, ls=":", color=PALETTE[2], label="aim 0.3")
    ax.set_title("relative error of the class means")
    ax.set_ylabel(r"$\|\bar X^{\rm SDE} - \bar X^{\rm net}\|_F / \|\bar X^{\rm net}\|_F$")
    ax.set_xlabel(xlabel)
    legend(ax, loc="best")


def plot_imitation(imit: xr.Dataset, *, run: int = 0, coords: int = 3, classes: int = 4, fig=None):
    """Per class (the first ``classes``), the class mean of one run (network solid, LE-SDE dashed; one colour per
    coordinate), the relative error over runs, the NC1 quotient and the scale-free comparisons (centred class-mean
    cosine, normalised Gram distance, NCM accuracy; each process against the frozen network, the null, with the
    verdicts), as a two-column grid; a symlog scale where the LE-SDE leaves the network's range. Returns the
    Figure."""
    from matplotlib.lines import Line2D

    require(imit, ("class_mean", "relative_error"), "imitation", "imit")
    run = check_count("run", run, imit.sizes.get("run", 1), "the imitation's run dim")
    coords, classes = check_count("coords", coords), check_count("classes", classes)
    K = min(imit.sizes["class"], classes)
    scores = [v for v in _SCORES if v in imit]
    n = K + 1 + ("nc1_quotient" in imit) + len(scores)
    fig, axes = subplots(n, fig=fig)
    t = imit["time"].values
    net = imit.class_mean.sel(process="network").isel(run=run).values  # (T, K, m)
    sde = imit.class_mean.sel(process="le-sde").isel(run=run).values
    J = min(imit.sizes["feature"], coords)
    xlabel = time_label(imit)
    for k in range(K):
        _class_panel(axes[k], t, net, sde, k, run, J, xlabel)
    handles = [Line2D([], [], color="k", ls="-", label="network"), Line2D([], [], color="k", ls="--", label="LE-SDE")]
    handles += [Line2D([], [], color=PALETTE[j], label=f"coordinate {j}") for j in range(J)]
    legend(axes[0], handles=handles, ncol=2, loc="best")
    _error_panel(axes[K], imit, xlabel)
    if "nc1_quotient" in imit:
        ax = axes[K + 1]
        q = imit["nc1_quotient"].mean("run")
        fit_y(ax, [q.values])
        for i, p in enumerate(imit["process"].values):
            ax.plot(t, q.sel(process=p).values, color=PALETTE[i], lw=1.4, label=_IMITATION_NAMES.get(str(p), str(p)))
        ax.set_title("NC1 quotient, mean over runs")
        ax.set_ylabel(r"$\mathrm{tr}\,\Sigma_W / \mathrm{tr}\,\Sigma_B$")
        ax.set_xlabel(xlabel)
        legend(ax, loc="best")
    for ax, v in zip(axes[n - len(scores) :], scores):
        _score_panel(ax, imit, v, xlabel)
    finish(
        fig,
        f"Imitation: T = {imit.attrs.get('transform')}, E(t) {imit.attrs.get('elasticity', '')} "
        f"({imit.attrs.get('estimate_form', '?')}, {imit.attrs.get('estimate_weighting', '?')} weighting)\n"
        f"median relative error, first half: {float(imit.attrs.get('median_relative_error_first_half', np.nan)):.3g}",
    )
    return fig


#: the scale-free comparisons plot_imitation draws: variable -> (panel title, y label)
_SCORES = {
    "centred_cosine": ("centred class-mean cosine", "cos with the network's displacement"),
    "gram_distance": ("normalised Gram distance", r"$\|\hat G - \hat G^{\rm net}\|_F$"),
    "ncm_accuracy": ("nearest-class-mean accuracy", "NCM accuracy of the probes"),
}


def _score_panel(ax, imit: xr.Dataset, v: str, xlabel: str) -> None:
    """One comparison over time, median over runs, for every process (the frozen network dotted: the null)."""
    t = imit["time"].values
    verdicts = json.loads(imit.attrs.get(f"verdict_{v}", "{}")) if v != "ncm_accuracy" else {}
    lines = []
    for i, p in enumerate(imit["process"].values):
        if v != "ncm_accuracy" and p == "network":
            continue
        y = imit[v].sel(process=p).median("run").values
        if np.isfinite(y).any():
            lines.append((i, p, y))
    fit_y(ax, [y for _, _, y in lines], log=False)
    for i, p, y in lines:
        word = f" ({verdicts[p]})" if p in verdicts else ""
        name = _IMITATION_NAMES.get(str(p), str(p))
        ax.plot(
            t,
            y,
            ":" if p == "frozen" else "-",
            color=PALETTE[i],
            lw=1.6 if p == "frozen" else 1.2,
            zorder=3 if p == "frozen" else 2,
            label=f"{name}{word}",
        )  # the null on top: a process can equal it
    ax.set_title(_SCORES[v][0] + " (median of runs)")
    ax.set_ylabel(_SCORES[v][1])
    ax.set_xlabel(xlabel)
    legend(ax, loc="best")


def plot_imitation_diagnosis(imit: xr.Dataset, checks: dict[str, xr.Dataset], est: xr.Dataset, *, fig=None):
    """Which term of the LE-SDE fails: (a) class-mean norms, network vs LE-SDE; (b) the estimated E(t);
    (c) the drift on the network's own states against the network's velocity (``drift_check``, one line per
    check); (d) within-class variance, network vs what the LE-SDE's noise gives. Returns the Figure."""
    require(imit, ("class_mean",), "imitation", "imit")
    fig, ax = subplots(4, fig=fig)
    t = imit["time"].values
    xlabel = time_label(imit)
    M = imit["class_mean"]
    for p, ls in (("network", "-"), ("le-sde", "--")):
        n = np.linalg.norm(M.sel(process=p).values.reshape(M.sizes["run"], len(t), -1), axis=-1)
        ax[0].plot(t, np.median(n, 0), ls, color="k", label=_IMITATION_NAMES[p])
    log_from_lines(ax[0])
    ax[0].set_title("(a) class means, median over runs")
    ax[0].set_ylabel(r"$\|(\bar X_1, \ldots, \bar X_K)\|_F$")
    te = est["time"].values
    for i, q in enumerate(("alpha", "beta")):
        ax[1].plot(
            te,
            np.abs(est[q].values),
            "o-",
            ms=2.5,
            color=PALETTE[i],
            label=f"$|{_SYMBOL[q]}_t|$ ({est.attrs.get('weighting')} weighting)",
        )
    log_from_lines(ax[1])
    if (te > 0).all() and te.max() / te.min() > 100:
        ax[1].set_xscale("log")
    ax[1].set_title(f"(b) E(t) estimated for T = {est.attrs.get('transform')}")
    ax[1].set_ylabel("elasticity")

    def nrm(x):  # median over runs of the Frobenius norm per window
        return np.median(np.linalg.norm(x.values.reshape(x.sizes["run"], x.sizes["step"], -1), axis=-1), 0)

    for i, (name, dc) in enumerate(checks.items()):
        td = dc["time"].values
        if i == 0:
            ax[2].plot(td, nrm(dc["velocity"]), "-", color="k", lw=2, label="network velocity")
        ax[2].plot(
            td,
            nrm(dc["drift"]),
            "--",
            color=PALETTE[i % len(PALETTE)],
            label=f"drift, {name} (error {np.median(dc['drift_error'].values):.2g}, "
            f"cos {np.median(dc['drift_cosine'].values):.2g})",
        )
    log_from_lines(ax[2])
    ax[2].set_title("(c) drift at the network's class means")
    ax[2].set_ylabel("Frobenius norm, median over runs")
    dc = next(iter(checks.values()))
    ax[3].plot(dc["time"].values, dc["within_var"].median("run").values, "-", color="k", label="network")
    ax[3].plot(
        dc["time"].values,
        dc["within_var_model"].values,
        "--",
        color=THEORY,
        label=rf"LE-SDE noise, $\hat\sigma={dc.attrs.get('noise', np.nan):.3g}$",
    )
    log_from_lines(ax[3])
    ax[3].set_title("(d) noise: within-class variance")
    ax[3].set_ylabel(r"$\mathrm{mean}_i\|X_i - \bar X_{y_i}\|^2$")
    for a in ax:
        a.set_xlabel(xlabel)
        legend(a, loc="best")
    finish(
        fig,
        "Why the LE-SDE does not imitate the network (median relative error, first half: "
        f"{float(imit.attrs.get('median_relative_error_first_half', np.nan)):.3g})",
    )
    return fig
