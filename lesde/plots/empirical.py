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
    BAND_ALPHA,
    PALETTE,
    THEORY,
    finish,
    legend,
    log_from_lines,
    log_if_positive,
    require,
    subplots,
    time_label,
)

__all__ = ["plot_elasticity", "plot_imitation", "plot_imitation_diagnosis", "plot_label_noise"]

COLORS = PALETTE
_SYMBOL = {"alpha": r"\alpha", "beta": r"\beta"}


def _fit_label(f: dict) -> str:
    """Legend text of one fit, from its entry in the estimate's ``fit`` attr (JSON)."""
    names = {"scale": "a", "exponent": "p", "offset": "t_0", "rate": "r", "value": "c"}
    ps = ", ".join(
        f"${names.get(k, k)}={v:.3g}" + (f"\\pm{f['stderr'][k]:.2g}$" if k in f["stderr"] else "$ (fixed)")
        for k, v in f["params"].items()
    )
    form = {"power": r"$a\,(t_0+t)^{-p}$", "exp": r"$a\,e^{-rt}$", "const": "$c$"}.get(f["model"], f["model"])
    return f"fit {form}: {ps}, $\\chi^2/\\nu={f['chi2_dof']:.2g}$"


def plot_elasticity(est: xr.Dataset, fit_result: Any = None, *, fig=None):
    r"""alpha(t) and beta(t): the selected estimand with its confidence band, the other estimand with error bars,
    and the fitted schedule with its band, one panel each; and alpha(t) - beta(t) with its band and the zero line
    (when the estimate has it), the comparison the estimate's ``answer`` summarises.

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
    from scipy.stats import t as student_t

    require(est, ("alpha", "beta", "alpha_lower", "alpha_upper", "beta_lower", "beta_upper"), "elasticity", "est")
    if fit_result is not None:
        est = fit_result.curves(est)
    fits = json.loads(est.attrs["fit"])["fits"] if "fit" in est.attrs and "fit_time" in est.coords else {}
    fig, axes = subplots(3 if "alpha_minus_beta_lower" in est else 2, fig=fig, ncols=3, panel=(3.5, 3.6))
    t = np.asarray(est["time"].values, dtype=float)
    chosen = est.attrs.get("weighting", "n/a")
    conf = float(est.attrs.get("confidence", 0.95))
    for ax, q in zip(axes, ("alpha", "beta")):
        y = est[q].values
        ax.fill_between(
            t,
            est[f"{q}_lower"].values,
            est[f"{q}_upper"].values,
            alpha=BAND_ALPHA,
            color=PALETTE[0],
            lw=0,
            label=f"{100 * conf:.0f}% CI ({chosen} weighting)",
        )
        ax.plot(
            t,
            y,
            "o-",
            ms=2.5,
            lw=1,
            color=PALETTE[0],
            label=f"estimate, {chosen} weighting" if chosen != "n/a" else f"{est.attrs.get('form', '')} estimate",
        )
        if f"{q}_by_weighting" in est:
            for w in est["weighting"].values:
                if w == chosen:
                    continue
                yw = est[f"{q}_by_weighting"].sel(weighting=w).values
                se = est[f"{q}_by_weighting_se"].sel(weighting=w).values
                z = student_t.ppf(0.5 + conf / 2, np.maximum(est["dof"].values, 1))
                ax.errorbar(
                    t,
                    yw,
                    yerr=z * se,
                    fmt="s",
                    ms=2.5,
                    lw=0.7,
                    color=PALETTE[1],
                    alpha=0.85,
                    label=f"{w} weighting, {100 * conf:.0f}% CI bars",
                )
        f = fits.get(q) if f"{q}_fit" in est else None
        loglog = bool((t > 0).all() and np.isfinite(y).all() and (y > 0).all()) and f is not None and f["model"] == "power"
        if f is not None:
            tt = est["fit_time"].values
            lower, upper = est[f"{q}_fit_lower"].values, est[f"{q}_fit_upper"].values
            if np.isfinite(lower).any():
                ax.fill_between(
                    tt, lower, upper, color="0.2", alpha=0.2, lw=0,
                    label="fit: 16-84% over parameter draws (independent s.e.)",
                )  # fmt: skip
            ax.plot(tt, est[f"{q}_fit"].values, "-", color="black", lw=1.2, label=_fit_label(f))
        if loglog:
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            ax.axhline(0, color="0.5", lw=0.6)
            if (t > 0).all() and t.max() / t.min() > 100:
                ax.set_xscale("log")
        ax.set_xlabel(time_label(est))
        ax.set_ylabel(f"${_SYMBOL[q]}_t$ ({'intra' if q == 'alpha' else 'inter'}-class)")
        ax.set_title(f"${_SYMBOL[q]}_t$, {'log-log' if loglog else 'linear'} axes")
        legend(ax, fontsize=5.5, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    if len(axes) == 3:  # time on the alpha panel's axis, so the windows line up
        _difference_panel(axes[2], est, t, conf, chosen, axes[0].get_xscale())
    fig.suptitle(
        f"Elasticity E(t) of {est.attrs.get('net', 'the network')} on {est.attrs.get('dataset', '?')} "
        f"($K={est.attrs.get('num_classes', '?')}$, lr = {est.attrs.get('lr', '?')}); form = {est.attrs.get('form', '?')}, "
        f"errors clustered by {est.attrs.get('se_cluster', '?')}",
        fontsize=8,
    )
    finish(fig)
    return fig


def _difference_panel(ax, est: xr.Dataset, t: np.ndarray, conf: float, chosen: str, xscale: str) -> None:
    """alpha - beta with its band (the selected estimand), the other estimand's bars, and the zero line; the title
    counts the windows whose interval lies above zero, as the estimate's ``answer`` does."""
    from scipy.stats import t as student_t

    ax.fill_between(t, est["alpha_minus_beta_lower"].values, est["alpha_minus_beta_upper"].values, alpha=BAND_ALPHA,
                    color=PALETTE[0], lw=0, label=f"{100 * conf:.0f}% CI ({chosen} weighting)")  # fmt: skip
    ax.plot(t, est["alpha_minus_beta"].values, "o-", ms=2.5, lw=1, color=PALETTE[0], label=r"$\alpha_t - \beta_t$")
    z = student_t.ppf(0.5 + conf / 2, np.maximum(est["dof"].values, 1))
    for w in est["weighting"].values if "alpha_minus_beta_by_weighting" in est else []:
        if w != chosen:
            ax.errorbar(t, est["alpha_minus_beta_by_weighting"].sel(weighting=w).values,
                        yerr=z * est["alpha_minus_beta_by_weighting_se"].sel(weighting=w).values, fmt="s", ms=2.5,
                        lw=0.7, color=PALETTE[1], alpha=0.85, label=f"{w} weighting, {100 * conf:.0f}% CI bars")  # fmt: skip
    ax.axhline(0, color="0.3", lw=0.8, ls="--", label=r"$\alpha_t = \beta_t$")
    ax.set_xscale(xscale)
    above = est.attrs.get("windows_alpha_above_beta", int(np.sum(est["alpha_minus_beta_lower"].values > 0)))
    ax.set_title(rf"$\alpha_t - \beta_t$: above 0 in {above} of {est.sizes['step']} windows")
    ax.set_xlabel(time_label(est))
    ax.set_ylabel(r"$\alpha_t - \beta_t$ (intra minus inter)")
    legend(ax, fontsize=5.5, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)


def plot_imitation(
    imit: xr.Dataset, *, run: int = 0, coords: int = 3, classes: int = 4, fig=None
):
    """Per class (the first ``classes``), the class mean of one run (network solid, LE-SDE dashed; one colour per
    coordinate), the relative error over runs, the NC1 quotient and the scale-free comparisons (centred class-mean
    cosine, normalised Gram distance, NCM accuracy; each process against the frozen network, the null, with the
    verdicts), as a two-column grid; a symlog scale where the LE-SDE leaves the network's range. Returns the
    Figure."""
    from matplotlib.lines import Line2D

    require(imit, ("class_mean", "relative_error"), "imitation", "imit")
    K = min(imit.sizes["class"], classes)
    scores = [v for v in _SCORES if v in imit]
    n = K + 1 + ("nc1_quotient" in imit) + len(scores)
    fig, axes = subplots(n, fig=fig, panel=(3.5, 2.5))
    t = imit["time"].values
    net = imit.class_mean.sel(process="network").isel(run=run).values  # (T, K, m)
    sde = imit.class_mean.sel(process="le-sde").isel(run=run).values
    J = min(imit.sizes["feature"], coords)
    big = np.nanmax(np.abs(sde[..., :J])) > 10 * max(np.nanmax(np.abs(net[..., :J])), 1e-12)
    xlabel = time_label(imit)
    for k in range(K):
        ax = axes[k]
        for j in range(J):
            ax.plot(t, net[:, k, j], "-", color=COLORS[j], lw=1.2)
            ax.plot(t, sde[:, k, j], "--", color=COLORS[j], lw=1.2)
        if big:  # linear inside the network's range (rounded up to a power of ten), logarithmic beyond
            lin = 10.0 ** np.ceil(np.log10(max(np.nanmax(np.abs(net[..., :J])), 1e-6)))
            ax.set_yscale("symlog", linthresh=lin, linscale=1.5)
        ax.set_title(f"class {k} mean, run {run}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(r"coordinate of $\bar X_k$")
        if k == 0:
            handles = [
                Line2D([], [], color="k", ls="-", label="network"),
                Line2D([], [], color="k", ls="--", label="LE-SDE"),
            ]
            handles += [Line2D([], [], color=COLORS[j], label=f"coordinate {j}") for j in range(J)]
            ax.legend(handles=handles, fontsize=5.5, ncol=2)
    ax = axes[K]
    err = imit["relative_error"].isel(time=slice(1, None))  # t = 0: both start at the network's means (error 0)
    t1 = t[1:]
    ax.plot(t1, err.median("run").values, color=PALETTE[0], label=f"median of {imit.sizes['run']} runs")
    ax.fill_between(
        t1,
        err.min("run").values,
        err.max("run").values,
        alpha=BAND_ALPHA,
        color=PALETTE[0],
        lw=0,
        label="min-max over runs",
    )
    ax.axhline(0.5, color=THEORY, ls=":", lw=1.2, label="warning level 0.5")
    ax.axhline(0.3, color=PALETTE[2], ls=":", lw=1.2, label="aim 0.3")
    log_if_positive(ax, err.values)
    ax.set_title("relative error of the class means")
    ax.set_ylabel(r"$\|\bar X^{\rm SDE} - \bar X^{\rm net}\|_F / \|\bar X^{\rm net}\|_F$")
    ax.set_xlabel(xlabel)
    legend(ax, fontsize=5.5)
    if "nc1_quotient" in imit:
        ax = axes[K + 1]
        for i, p in enumerate(imit["process"].values):
            ax.plot(t, imit["nc1_quotient"].sel(process=p).mean("run").values, color=PALETTE[i], label=str(p))
        log_if_positive(ax, imit["nc1_quotient"].values)
        ax.set_title("NC1 quotient, mean over runs")
        ax.set_ylabel(r"$\mathrm{tr}\,\Sigma_W / \mathrm{tr}\,\Sigma_B$")
        ax.set_xlabel(xlabel)
        legend(ax)
    for ax, v in zip(axes[n - len(scores) :], scores):
        _score_panel(ax, imit, v, xlabel)
    fig.suptitle(
        f"Imitation: T = {imit.attrs.get('transform')}, E(t) {imit.attrs.get('elasticity', '')} "
        f"({imit.attrs.get('estimate_form', '?')}, {imit.attrs.get('estimate_weighting', '?')} weighting)\n"
        f"median relative error, first half: {float(imit.attrs.get('median_relative_error_first_half', np.nan)):.3g}",
        fontsize=8,
    )
    finish(fig)
    return fig


#: the scale-free comparisons plot_imitation draws: variable -> (panel title, y label)
_SCORES = {
    "centred_cosine": ("centred class-mean cosine", "cos with the network's displacement"),
    "gram_distance": ("normalised Gram distance", r"$\|\hat G - \hat G^{\rm net}\|_F$"),
    "ncm_accuracy": ("nearest-class-mean accuracy", "NCM accuracy of the probes"),
}


def _score_panel(ax, imit: xr.Dataset, v: str, xlabel: str) -> None:
    """One comparison over time, median over runs, for every process (the frozen network dotted: the null)."""
    import json

    t = imit["time"].values
    verdicts = json.loads(imit.attrs.get(f"verdict_{v}", "{}")) if v != "ncm_accuracy" else {}
    for i, p in enumerate(imit["process"].values):
        if v != "ncm_accuracy" and p == "network":
            continue
        y = imit[v].sel(process=p).median("run").values
        if not np.isfinite(y).any():
            continue
        word = f" ({verdicts[p]})" if p in verdicts else ""
        ax.plot(t, y, ":" if p == "frozen" else "-", color=PALETTE[i], lw=1.2, label=f"{p}{word}")
    ax.set_title(_SCORES[v][0] + " (median of runs)")
    ax.set_ylabel(_SCORES[v][1])
    ax.set_xlabel(xlabel)
    legend(ax, fontsize=5.5)


def plot_imitation_diagnosis(
    imit: xr.Dataset, checks: dict[str, xr.Dataset], est: xr.Dataset, *, fig=None
):
    """Which term of the LE-SDE fails: (a) class-mean norms, network vs LE-SDE; (b) the estimated E(t);
    (c) the drift on the network's own states against the network's velocity (``drift_check``, one line per
    check); (d) within-class variance, network vs what the LE-SDE's noise gives. Returns the Figure."""
    require(imit, ("class_mean",), "imitation", "imit")
    fig, ax = subplots(4, fig=fig, panel=(3.5, 2.7))
    t = imit["time"].values
    xlabel = time_label(imit)
    M = imit["class_mean"]
    for p, ls in (("network", "-"), ("le-sde", "--")):
        n = np.linalg.norm(M.sel(process=p).values.reshape(M.sizes["run"], len(t), -1), axis=-1)
        ax[0].plot(t, np.median(n, 0), ls, color="k", label=p)
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
        legend(a, fontsize=5.5)
    fig.suptitle(
        "Why the LE-SDE does not imitate the network (median relative error, first half: "
        f"{float(imit.attrs.get('median_relative_error_first_half', np.nan)):.3g})",
        fontsize=8,
    )
    finish(fig)
    return fig


def plot_label_noise(ds: xr.Dataset, *, fig=None):
    """Tail index r of the integrated alpha and beta against the label-noise rate, with the accuracies.
    Returns the Figure."""
    require(ds, ("tail_alpha", "tail_beta", "validation_accuracy", "train_accuracy"), "label-noise", "ds")
    fig, ax = subplots(2, fig=fig, panel=(3.5, 2.8))
    p = ds["rate"].values
    K = ds.attrs["num_classes"]
    level = f"{100 * float(ds.attrs.get('tail_confidence', 0.95)):g}%"
    for i, q in enumerate(("alpha", "beta")):
        if f"tail_{q}_mean" in ds:  # the numbers the table prints: mean over runs and its interval
            y, lo, hi = (ds[f"tail_{q}_{k}"].values for k in ("mean", "ci_low", "ci_high"))
            what = f"mean of {ds.sizes['run']} runs, bars {level} interval"
        else:
            r = ds[f"tail_{q}"]
            y, lo, hi = r.mean("run").values, r.min("run").values, r.max("run").values
            what = f"mean of {ds.sizes['run']} runs, bars min-max"
        ax[0].errorbar(
            p,
            y,
            yerr=[y - lo, hi - y],
            fmt="o-",
            color=PALETTE[i],
            capsize=3,
            ms=3,
            label=rf"$r$ of $\int {_SYMBOL[q]}$: {what}",
        )
        if f"tail_{q}_pooled" in ds:
            ax[0].plot(p, ds[f"tail_{q}_pooled"].values, "D", mfc="none", color=PALETTE[i], ms=4,
                       label=rf"$r$ of $\int {_SYMBOL[q]}$: estimate pooled over runs")  # fmt: skip
    ax[0].axvline((K - 1) / K, color="0.4", ls=":", lw=1, label=r"$p=(K-1)/K$: labels carry no signal")
    ax[0].set_xlabel("label-noise rate $p$")
    ax[0].set_ylabel(r"tail index $r = 1 - \mathrm{mean}\,\log|A(t)| / \log s$")
    ax[0].set_title(f"tail index, last {100 * ds.attrs['tail']:.0f}% of training")
    for i, (v, ls) in enumerate((("validation_accuracy", "o-"), ("train_accuracy", "s--"))):
        ax[1].plot(p, ds[v].mean("run").values, ls, color=PALETTE[i + 2], ms=3, label=v.replace("_", " ") + " (final)")
    ax[1].axhline(1 / K, color="0.4", ls=":", lw=1, label=f"chance 1/K = {1 / K:.2g}")
    ax[1].set_xlabel("label-noise rate $p$")
    ax[1].set_ylabel("accuracy")
    ax[1].set_ylim(0, 1.02)
    ax[1].set_title("accuracy (validation labels clean)")
    for a in ax:
        legend(a, fontsize=5.5)
    fig.suptitle(f"Label corruption on {ds.attrs.get('dataset')} ($K={K}$): {ds.attrs.get('net_desc', '')}", fontsize=8)
    finish(fig)
    return fig
