"""Figures of the elasticity estimate: E(t) under both estimands with the fit and its band and alpha - beta, and
the label-corruption experiment (the imitation figures are in `lesde.plots.imitation_plots`).

Decisions: a power-law fit is drawn on log-log axes when the estimate it fits is positive over the window
(otherwise linear axes with the same curve); the fit's band is the 16-84% range of the curve over 400 draws of
its parameters from independent normals with the fit's standard errors (the fit stores no covariance, so the
band is labelled as such). The fit is drawn from the curves `lesde.empirical.FitResult.curves` puts in the
estimate Dataset (``lesde estimate`` writes them), so this module needs nothing from the package that fitted it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from ._style import (
    PALETTE,
    band,
    finish,
    fit_y,
    legend_below,
    reference,
    require,
    subplots,
    time_label,
)

__all__ = ["plot_elasticity", "plot_label_noise"]

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
    fit with its band. The y limits come from the estimate and the fit (`fit_y`), not from any error bar."""
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
    and the fitted schedule with its band, one panel each; and alpha(t) - beta(t) with its band and the zero line
    (when the estimate has it), the comparison the estimate's ``answer`` summarises.

    Parameters
    ----------
    est : Dataset of `lesde.empirical.estimate` (or the file lesde estimate writes).
        The fit is drawn from its variables ``alpha_fit``, ``alpha_fit_lower``, ``alpha_fit_upper`` (and beta's)
        over ``fit_time`` and its ``fit`` attr, which `lesde.empirical.FitResult.curves` adds.
    fit_result : `FitResult`, optional
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
    difference = "alpha_minus_beta_lower" in est
    fig, axes = subplots(len(panels) + difference, fig=fig, ncols=3, panel=(3.5, 3.8))
    for ax, (q, symbol, what) in zip(axes, panels):
        _elasticity_panel(ax, est, q, symbol, what, fits)
    if difference:  # time on the alpha panel's axis, so the windows line up
        _difference_panel(axes[len(panels)], est, axes[0].get_xscale())
    finish(
        fig,
        f"Elasticity E(t) of {est.attrs.get('net', 'the network')} on {est.attrs.get('dataset', '?')} "
        f"($K={est.attrs.get('num_classes', '?')}$, lr = {est.attrs.get('lr', '?')}); form = {est.attrs.get('form', '?')}, "
        f"errors clustered by {est.attrs.get('se_cluster', '?')}",
    )
    return fig


def _difference_panel(ax, est: xr.Dataset, xscale: str) -> None:
    """alpha - beta with its band (the selected estimand), the other estimand's bars, and the zero line; the title
    counts the windows whose interval lies above zero, as the estimate's ``answer`` does."""
    from scipy.stats import t as student_t

    t = np.asarray(est["time"].values, dtype=float)
    chosen = est.attrs.get("weighting", "n/a")
    conf = float(est.attrs.get("confidence", 0.95))
    ax.set_xscale(xscale)
    fit_y(ax, [est["alpha_minus_beta"].values, [0.0]],
          [est["alpha_minus_beta_lower"].values, est["alpha_minus_beta_upper"].values], log=False)  # fmt: skip
    band(ax, t, est["alpha_minus_beta_lower"].values, est["alpha_minus_beta_upper"].values, color=PALETTE[0],
         zorder=1, label=f"{100 * conf:.0f}% CI ({chosen} weighting)")  # fmt: skip
    ax.plot(t, est["alpha_minus_beta"].values, "o-", ms=2.5, lw=1, color=PALETTE[0], zorder=3,
            label=r"$\alpha_t - \beta_t$")  # fmt: skip
    if "alpha_minus_beta_by_weighting" in est:
        z = student_t.ppf(0.5 + conf / 2, np.maximum(est["dof"].values, 1))
        for w in est["weighting"].values:
            if w != chosen:
                ax.errorbar(t, est["alpha_minus_beta_by_weighting"].sel(weighting=w).values,
                            yerr=z * est["alpha_minus_beta_by_weighting_se"].sel(weighting=w).values, fmt="s",
                            ms=2.5, lw=0.7, color=PALETTE[1], alpha=0.85, zorder=1.8,
                            label=f"{w} weighting, {100 * conf:.0f}% CI bars")  # fmt: skip
    reference(ax, 0.0, color="0.3", ls="--", lw=0.8, label=r"$\alpha_t = \beta_t$")
    above = est.attrs.get("windows_alpha_above_beta", int(np.sum(est["alpha_minus_beta_lower"].values > 0)))
    ax.set_title(rf"$\alpha_t - \beta_t$: above 0 in {above} of {est.sizes['step']} windows")
    ax.set_xlabel(time_label(est))
    ax.set_ylabel(r"$\alpha_t - \beta_t$ (intra minus inter)")
    legend_below(ax)


def plot_label_noise(ds: xr.Dataset, *, fig=None):
    """Tail index r of the integrated alpha and beta against the label-noise rate, with the accuracies.
    Returns the Figure."""
    require(ds, ("tail_alpha", "tail_beta", "validation_accuracy", "train_accuracy"), "label-noise", "ds")
    fig, ax = subplots(2, fig=fig, panel=(3.5, 2.6))
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
