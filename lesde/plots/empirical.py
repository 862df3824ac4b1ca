"""Figures for the empirical workflow: E(t) under both estimands with the fit and its band, network vs LE-SDE
class means, the imitation diagnosis (which term fails), and the label-corruption experiment.

Decisions: a power-law fit is drawn on log-log axes when the estimate it fits is positive over the window
(otherwise linear axes with the same curve); the fit's band is the 16-84% range of the curve over 400 draws of
its parameters from independent normals with the fit's standard errors (the fit stores no covariance, so the
band is labelled as such). The fit is drawn from the curves :meth:`lesde.empirical.FitResult.curves` puts in the
estimate Dataset (``lesde estimate`` writes them), so this module needs nothing from the package that fitted it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from ._style import (
    PALETTE,
    THEORY,
    band,
    finish,
    fit_y,
    legend,
    legend_below,
    log_from_lines,
    reference,
    require,
    subplots,
    time_label,
)

__all__ = ["plot_elasticity", "plot_imitation", "plot_imitation_diagnosis", "plot_label_noise"]

COLORS = PALETTE
_SYMBOL = {"alpha": r"\alpha", "beta": r"\beta"}
_ACCURACY = {"validation_accuracy": "validation accuracy, final", "train_accuracy": "training accuracy, final"}


def _fit_label(f: dict) -> str:
    """Legend text of one fit, from its entry in the estimate's ``fit`` attr (JSON): the form and chi2 on the
    first line, the parameters on the second."""
    names = {"scale": "a", "exponent": "p", "offset": "t_0", "rate": "r", "value": "c"}
    ps = ", ".join(
        f"${names.get(k, k)}={v:.3g}" + (f"\\pm{f['stderr'][k]:.2g}$" if k in f["stderr"] else "$ (fixed)")
        for k, v in f["params"].items()
    )
    form = {"power": r"$a\,(t_0+t)^{-p}$", "exp": r"$a\,e^{-rt}$", "const": "$c$"}.get(f["model"], f["model"])
    return f"fit {form}, $\\chi^2/\\nu={f['chi2_dof']:.2g}$:\n{ps}"


#: the panels of the elasticity figure: (variable, its symbol, what it measures)
ELASTICITY_PANELS = (("alpha", r"\alpha_t", "intra-class"), ("beta", r"\beta_t", "inter-class"))


def _other_weightings(ax, est: xr.Dataset, q: str, chosen: str, conf: float) -> None:
    """Error bars of the estimands not selected (drawn after the limits are set: they never set them)."""
    from scipy.stats import t as student_t

    if f"{q}_by_weighting" not in est:
        return
    t = np.asarray(est["time"].values, dtype=float)
    for w in est["weighting"].values:
        if w == chosen:
            continue
        yw = est[f"{q}_by_weighting"].sel(weighting=w).values
        se = est[f"{q}_by_weighting_se"].sel(weighting=w).values
        z = student_t.ppf(0.5 + conf / 2, np.maximum(est["dof"].values, 1))
        ax.errorbar(t, yw, yerr=z * se, fmt="s", ms=2.5, lw=0.7, color=PALETTE[1], alpha=0.85, zorder=1.8,
                    label=f"{w} weighting, {100 * conf:.0f}% CI bars")  # fmt: skip


def _elasticity_panel(ax, est: xr.Dataset, q: str, symbol: str, what: str, fits: dict) -> None:
    """One quantity of the estimate: the selected estimand with its CI band, the other estimands' error bars, the
    fit with its band. The y limits come from the estimate and the fit (:func:`fit_y`), not from any error bar."""
    t = np.asarray(est["time"].values, dtype=float)
    chosen = est.attrs.get("weighting", "n/a")
    conf = float(est.attrs.get("confidence", 0.95))
    y = est[q].values
    f = fits.get(q) if f"{q}_fit" in est else None
    positive = bool((t > 0).all() and np.isfinite(y).all() and (y > 0).all())
    loglog = positive and f is not None and f["model"] == "power"
    if loglog:
        ax.set_xscale("log")
    elif (t > 0).all() and t.max() / t.min() > 100:
        ax.set_xscale("log")
    fit_y(ax, [y] + ([est[f"{q}_fit"].values] if f is not None else []), log=loglog)
    band(ax, t, est[f"{q}_lower"].values, est[f"{q}_upper"].values, color=PALETTE[0], zorder=1,
         label=f"{100 * conf:.0f}% CI ({chosen} weighting)")  # fmt: skip
    ax.plot(
        t,
        y,
        "o-",
        ms=2.5,
        lw=1,
        color=PALETTE[0],
        zorder=3,
        label=f"estimate, {chosen} weighting" if chosen != "n/a" else f"{est.attrs.get('form', '')} estimate",
    )
    _other_weightings(ax, est, q, chosen, conf)
    if f is not None:
        tt = est["fit_time"].values
        lower, upper = est[f"{q}_fit_lower"].values, est[f"{q}_fit_upper"].values
        if np.isfinite(lower).any():
            band(ax, tt, lower, upper, color="0.2", alpha=0.2, zorder=1,
                 label="fit: 16-84% over parameter draws (independent s.e.)")  # fmt: skip
        ax.plot(tt, est[f"{q}_fit"].values, "-", color="black", lw=1.2, zorder=2.5, label=_fit_label(f))
    if not loglog:
        reference(ax, 0.0, color="0.5", ls="-", lw=0.6)
    ax.set_xlabel(time_label(est))
    ax.set_ylabel(f"${symbol}$ ({what})")
    ax.set_title(f"${symbol}$, {'log-log' if loglog else 'linear'} axes")
    legend_below(ax)


def plot_elasticity(est: xr.Dataset, fit_result: Any = None, *, fig=None):
    r"""alpha(t) and beta(t): the selected estimand with its confidence band, the other estimand with error bars,
    and the fitted schedule with its band, one panel each.

    Parameters
    ----------
    est : Dataset of :func:`lesde.empirical.estimate` (or the file ``lesde estimate`` writes).
        The fit is drawn from its variables ``alpha_fit``, ``alpha_fit_lower``, ``alpha_fit_upper`` (and beta's)
        over ``fit_time`` and its ``fit`` attr, which :meth:`lesde.empirical.FitResult.curves` adds.
    fit_result : :class:`~lesde.empirical.FitResult`, optional
        A fit to draw: ``fit_result.curves(est)`` is drawn instead of ``est``.
    fig : matplotlib Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(est, ("alpha", "beta", "alpha_lower", "alpha_upper", "beta_lower", "beta_upper"), "elasticity", "est")
    if fit_result is not None:
        est = fit_result.curves(est)
    fits = json.loads(est.attrs["fit"])["fits"] if "fit" in est.attrs and "fit_time" in est.coords else {}
    panels = [p for p in ELASTICITY_PANELS if p[0] in est]
    fig, axes = subplots(len(panels), fig=fig, panel=(3.5, 3.8))
    for ax, (q, symbol, what) in zip(axes, panels):
        _elasticity_panel(ax, est, q, symbol, what, fits)
    finish(
        fig,
        f"Elasticity E(t) of {est.attrs.get('net', 'the network')} on {est.attrs.get('dataset', '?')} "
        f"($K={est.attrs.get('num_classes', '?')}$, lr = {est.attrs.get('lr', '?')}); form = {est.attrs.get('form', '?')}, "
        f"errors clustered by {est.attrs.get('se_cluster', '?')}",
    )
    return fig


#: legend names of the processes of an imitation Dataset
_IMITATION_NAMES = {"network": "network", "le-sde": "LE-SDE"}


def _class_panel(ax, t, net: np.ndarray, sde: np.ndarray, k: int, run: int, J: int, xlabel: str) -> None:
    """Class k's mean, network solid and LE-SDE dashed, one colour per coordinate; symlog where the LE-SDE leaves
    the network's range."""
    for j in range(J):
        ax.plot(t, net[:, k, j], "-", color=COLORS[j], lw=1.2)
        ax.plot(t, sde[:, k, j], "--", color=COLORS[j], lw=1.2)
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
    coordinate), the relative error over runs and the NC1 quotient, as a two-column grid; a symlog scale where the
    LE-SDE leaves the network's range. Returns the Figure."""
    from matplotlib.lines import Line2D

    require(imit, ("class_mean", "relative_error"), "imitation", "imit")
    K = min(imit.sizes["class"], classes)
    fig, axes = subplots(K + 1 + ("nc1_quotient" in imit), fig=fig)
    t = imit["time"].values
    net = imit.class_mean.sel(process="network").isel(run=run).values  # (T, K, m)
    sde = imit.class_mean.sel(process="le-sde").isel(run=run).values
    J = min(imit.sizes["feature"], coords)
    xlabel = time_label(imit)
    for k in range(K):
        _class_panel(axes[k], t, net, sde, k, run, J, xlabel)
    handles = [Line2D([], [], color="k", ls="-", label="network"), Line2D([], [], color="k", ls="--", label="LE-SDE")]
    handles += [Line2D([], [], color=COLORS[j], label=f"coordinate {j}") for j in range(J)]
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
    finish(
        fig,
        f"Imitation: T = {imit.attrs.get('transform')}, E(t) {imit.attrs.get('elasticity', '')} "
        f"({imit.attrs.get('estimate_form', '?')}, {imit.attrs.get('estimate_weighting', '?')} weighting)\n"
        f"median relative error, first half: {float(imit.attrs.get('median_relative_error_first_half', np.nan)):.3g}",
    )
    return fig


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


def plot_label_noise(ds: xr.Dataset, *, fig=None):
    """Tail index r of the integrated alpha and beta against the label-noise rate, with the accuracies.
    Returns the Figure."""
    require(ds, ("tail_alpha", "tail_beta", "validation_accuracy", "train_accuracy"), "label-noise", "ds")
    fig, ax = subplots(2, fig=fig, panel=(3.5, 2.6))
    p = ds["rate"].values
    K = ds.attrs["num_classes"]
    for i, q in enumerate(("alpha", "beta")):
        r = ds[f"tail_{q}"]
        y, lo, hi = r.mean("run").values, r.min("run").values, r.max("run").values
        ax[0].errorbar(
            p,
            y,
            yerr=[y - lo, hi - y],
            fmt="o-",
            color=PALETTE[i],
            capsize=3,
            ms=3,
            label=rf"$r$ of $\int {_SYMBOL[q]}$: mean of {ds.sizes['run']} runs, bars min-max",
        )
    reference(ax[0], x=(K - 1) / K, color="0.4", ls=":", label=r"$p=(K-1)/K$: labels carry no signal")
    ax[0].set_xlabel("label-noise rate $p$")
    ax[0].set_ylabel("tail index $r$")
    ax[0].set_title(rf"$r = 1 - \mathrm{{mean}}\,\log|A(t)| / \log s$, last {100 * ds.attrs['tail']:.0f}% of training")
    for i, (v, ls) in enumerate((("validation_accuracy", "o-"), ("train_accuracy", "s--"))):
        ax[1].plot(p, ds[v].mean("run").values, ls, color=PALETTE[i + 2], ms=3, label=_ACCURACY[v])
    reference(ax[1], 1 / K, color="0.4", ls=":", label=f"chance 1/K = {1 / K:.2g}")
    ax[1].set_xlabel("label-noise rate $p$")
    ax[1].set_ylabel("accuracy")
    ax[1].set_ylim(0, 1.02)
    ax[1].set_title("accuracy (validation labels clean)")
    for a in ax:  # below the panel: inside, a legend would cover a bar or a point
        legend_below(a)
    finish(fig, f"Label corruption on {ds.attrs.get('dataset')} ($K={K}$): {ds.attrs.get('net_desc', '')}")
    return fig
