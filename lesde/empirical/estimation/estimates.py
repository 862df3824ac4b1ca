r"""Estimates of the elasticity matrix $E(t)$ from a track: the three forms side by side, pooled over windows
of steps, as one Dataset.

The forms (a registry, `FORMS`):

- ``feature`` and ``residual`` (`regression_forms`): each probe's one-step
  increment regressed on what the sampled example moves it along, its feature (optionally through the LE-SDE's
  transform) or its logit residual (the kernel form), with two estimands (``weighting``: ``increment``, the
  least-squares drift; ``step``, the typical step's coefficient) and cluster-robust errors
  (`_pooling`);
- ``means`` (`means_form`): the integrated estimators of the original LE-SDE code.

`estimate` checks its arguments, runs the form and builds the Dataset: ``alpha``, ``beta`` and ``E`` of the
chosen estimand with Student-t intervals, ``alpha_integrated`` / ``beta_integrated``, the integrated
$A(t) = \int_0^t \alpha$ (the trapezoid rule over the windows, the first window's value held back to t = 0,
unless the form integrates itself; `tail_index` reads them), and for the regression forms
both estimands side by side, and the comparison of alpha and beta with its uncertainty (attr ``answer``). It
warns when the errors cannot include run-to-run variation (one run),
when many steps were at the rounding floor, and when the two estimands differ beyond their joint uncertainty
(Bonferroni over the windows at a family-wise false-alarm probability of 1e-3, so an LE process, where both
estimate the same E, almost never warns).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import xarray as xr

from ...schema import make_dataset
from ...validation import check_choice, check_int, check_positive_float
from . import _pooling as pool
from . import answer
from .means_form import means_form
from .regression_forms import WEIGHTINGS, feature_form, residual_form

#: form name -> (track Dataset, window[, transform]) -> the form's estimates per window
FORMS: dict[str, Callable[..., dict]] = {
    "feature": feature_form,
    "residual": residual_form,
    "means": means_form,
}
DISAGREEMENT_LEVEL = 1e-3  # family-wise false-alarm probability of the disagreement warning
#: how a single run's block lengths are chosen (attr ``se_block_rule``)
BLOCK_RULE = "Politis-White (2004/2009) non-overlapping batch means per window, 1 <= b <= window / 4"
#: the track attrs an estimate carries over
KEPT_ATTRS = ("source", "lr", "steps", "n_runs", "feature", "num_classes", "class_counts", "seed", "spec")


def _integrate(t: np.ndarray, a: np.ndarray) -> np.ndarray:
    """A(t_w) = int_0^{t_w} a by the trapezoid rule over the windows, a held at its first value back to t = 0."""
    a = np.nan_to_num(a)
    seg = 0.5 * (a[1:] + a[:-1]) * np.diff(t)
    return a[0] * t[0] + np.concatenate([[0.0], np.cumsum(seg)])


def estimate(
    track_ds: xr.Dataset,
    form: str = "feature",
    window: int | None = None,
    confidence: float = 0.95,
    weighting: str | None = None,
    transform=None,
) -> xr.Dataset:
    r"""Estimate $\alpha_t$, $\beta_t$ and $E(t)$ from a track, pooled over windows of steps.

    Parameters
    ----------
    track_ds : xarray.Dataset
        Output of `track`, `Tracker.dataset` or
        `simulate_discrete`.
    form : "feature" | "residual" | "means"
        Regressor (module docstring): the sampled feature, the sampled logit residual, or the integrated estimator.
    window : int, optional
        Recorded steps per window; default: about 40 windows over the track.
    confidence : float
        Level of the Student-t intervals ``alpha_lower/upper``, ``beta_lower/upper``.
    weighting : "increment" | "step", optional
        The estimand reported as ``alpha``, ``beta``, ``E``: ``"increment"`` (default), the least-squares drift
        $\sum_s n_s / \sum_s d_s$ that reproduces the summed increments (what imitation needs), or
        ``"step"``, the mean over steps of each step's coefficient $n_s / d_s$ (the typical step, as the
        original LE-SDE analysis reports). Both are always in ``alpha_by_weighting(weighting, step)``.
        Regression forms only.
    transform : str or tensor, optional
        ``form="feature"`` only: regress on $v_k = \eta\, T(k, L_s) f_{s-1}(x_{I_s})$, the move the LE-SDE
        with this transform makes (``"identity"``, default; ``"residual"``, ``"residual-projection"``,
        ``"softmax-residual"`` or a matrix, as `LESDE` accepts), so the estimate is the elasticity
        that LE-SDE needs (`imitate` reads it from the attrs).

    Returns
    -------
    xr.Dataset
        xarray.Dataset over ``step`` (the window's middle recorded step) with ``alpha``, ``beta``, their ``_se``,
        ``_lower``, ``_upper``, ``dof``, ``E(step, class, class_other)`` (row: the moved probe's class, column: the sampled
        class), ``E_se``, ``alpha_by_weighting``/``beta_by_weighting`` (and ``_se``), ``alpha_disagreement``,
        ``beta_disagreement``, ``alpha_integrated``, ``beta_integrated``, ``noise``, ``n_obs``, ``n_steps``,
        ``n_excluded`` and coordinates ``time``, ``step_start``, ``step_stop``; attrs ``weighting``, ``se_cluster``.
        The comparison (`answer`): ``alpha_beta_cov``, ``alpha_minus_beta`` with
        ``_se``, ``_lower``, ``_upper``, ``alpha_over_beta`` with Fieller's ``_ci_low``, ``_ci_high``, and per weighting
        ``alpha_minus_beta_by_weighting`` (and ``_se``), ``alpha_beta_cov_by_weighting``; with one run
        ``block_length`` (the blocks the errors come from, attr ``se_block_rule``). Attr ``answer``: the one-line
        verdict (windows where alpha > beta, whole-track difference and ratio, decay exponents), its numbers in attrs
        ``windows_alpha_above_beta``, ``pooled_alpha_minus_beta`` (and ``_ci``), ``pooled_alpha_over_beta`` (and
        ``_ci``), ``decay_exponent_alpha`` (and ``_ci``), ``decay_exponent_beta`` (and ``_ci``).

    Examples
    --------
    >>> from lesde.empirical import estimate
    >>> import lesde
    >>> from lesde.empirical import simulate_discrete
    >>> model = lesde.LESDE(3, 3, 10, alpha=1.0, beta=0.25, noise=0.05)
    >>> est = estimate(simulate_discrete(model, lr=0.01, steps=200, n_runs=4), window=200)
    >>> round(float(est.alpha[0]), 1), round(float(est.beta[0]), 2), est.attrs["se_cluster"]
    (1.0, 0.25, 'run')
    """
    form, window, weighting = _check(track_ds, form, window, confidence, weighting, transform)
    r = FORMS[form](track_ds, window, **({"transform": transform} if form == "feature" else {}))
    data, coords = _variables(r, weighting, confidence, int(track_ds.attrs["num_classes"]))
    extra = {}
    if form != "means":
        extra = dict(rounding_tolerance=r["rounding_tolerance"], excluded_steps=int(np.sum(r["n_excluded"])))
    if r.get("block_length") is not None:
        extra.update(se_block_rule=BLOCK_RULE, pooled_block_length=r["pooled_block_length"])
    ds = make_dataset(
        data,
        coords,
        time="training",
        attrs=dict(
            **{k: track_ds.attrs[k] for k in KEPT_ATTRS if k in track_ds.attrs},
            form=form,
            window=window,
            confidence=confidence,
            weighting=weighting if form != "means" else "n/a",
            transform=str(transform if transform is not None else "identity") if form == "feature" else "n/a",
            se_cluster=r["se_cluster"],
            num_probes=track_ds.sizes["probe"],
            **extra,
        ),
    )
    _refuse_all_nan(ds)
    p = r["pooled"][weighting]
    pooled = answer.compare(*p["alpha"][:2], *p["beta"][:2], p["cov"], p["alpha"][2], confidence)
    ds.attrs.update(answer.summary(ds, {**pooled, "dof": p["alpha"][2]}, confidence))
    _warn(ds)
    return ds


def _check(track_ds: xr.Dataset, form, window, confidence, weighting, transform) -> tuple[str, int, str]:
    """The checked form, window (default: about 40 windows over the track, at least 2 steps for ``means``) and
    weighting."""
    if not isinstance(track_ds, xr.Dataset):
        raise TypeError(f"track_ds must be an xarray.Dataset from lesde.empirical.track, got {type(track_ds).__name__}")
    form = check_choice("form", form, FORMS)
    if form == "means" and weighting is not None:
        raise ValueError("weighting applies to the regression forms ('feature', 'residual'), not form='means'")
    weighting = check_choice("weighting", "increment" if weighting is None else weighting, WEIGHTINGS)
    for name in ("features", "increment", "sampled_label", "sampled_index", "label", "step"):
        if name not in track_ds.variables:
            raise ValueError(f"track_ds has no {name!r}: pass a track from lesde.empirical (track, Tracker, ...)")
    _check_layout(track_ds)
    S = track_ds.sizes["step"] - (0 if form == "means" else 1)
    least = 2 if form == "means" else 1  # the means form fits a slope over each window
    if S < least:
        raise ValueError(
            f"the track holds {track_ds.sizes['step']} recorded step (step 0 only); an estimate needs at least one SGD "
            "step after it: track at least one step"
        )
    window = max(least, S // 40) if window is None else check_int("window", window)
    if window < least:
        raise ValueError(
            f"window={window}: form='means' fits the slope of the integrated estimators over each window and needs "
            "window >= 2 recorded steps (one step gives NaN); give window >= 2 or use form='feature'"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if transform is not None and form != "feature":
        raise ValueError(f"transform applies to form='feature' (the regressor lr T f(x_I)), not form={form!r}")
    return form, window, weighting


def _variables(r: dict, weighting: str, confidence: float, K: int) -> tuple[dict, dict]:
    """The estimate's variables and coordinates over windows, from a form's output ``r``."""
    sel = r["by_weighting"][weighting]
    (alpha, alpha_se, alpha_dof), (beta, beta_se, beta_dof) = sel["alpha"], sel["beta"]
    q = pool.t_quantile(confidence, alpha_dof)
    c = answer.compare(alpha, alpha_se, beta, beta_se, sel["cov"], alpha_dof, confidence)
    time = sel["time"]
    integ = r.get("integrated") or {"alpha": _integrate(time, alpha), "beta": _integrate(time, beta)}
    data = {
        "alpha": ("step", alpha),
        "alpha_se": ("step", alpha_se),
        "alpha_lower": ("step", alpha - q * alpha_se),
        "alpha_upper": ("step", alpha + q * alpha_se),
        "beta": ("step", beta),
        "beta_se": ("step", beta_se),
        "beta_lower": ("step", beta - pool.t_quantile(confidence, beta_dof) * beta_se),
        "beta_upper": ("step", beta + pool.t_quantile(confidence, beta_dof) * beta_se),
        "dof": ("step", alpha_dof),
        "alpha_beta_cov": ("step", sel["cov"]),
        "alpha_minus_beta": ("step", c["difference"]),
        "alpha_minus_beta_se": ("step", c["difference_se"]),
        "alpha_minus_beta_lower": ("step", c["difference_lower"]),
        "alpha_minus_beta_upper": ("step", c["difference_upper"]),
        "alpha_over_beta": ("step", c["ratio"]),
        "alpha_over_beta_ci_low": ("step", c["ratio_lower"]),
        "alpha_over_beta_ci_high": ("step", c["ratio_upper"]),
        "E": (("step", "class", "class_other"), sel["E"][0]),
        "E_se": (("step", "class", "class_other"), sel["E"][1]),
        "alpha_integrated": ("step", integ["alpha"]),
        "beta_integrated": ("step", integ["beta"]),
        "noise": ("step", r["noise"]),
        "n_obs": ("step", r["n_obs"]),
        "n_steps": ("step", r["n_steps"]),
    }
    coords = {
        "step": (np.asarray(r["step_start"]) + np.asarray(r["step_stop"])) // 2,  # the window's middle step
        "time": ("step", time),
        "step_start": ("step", r["step_start"]),
        "step_stop": ("step", r["step_stop"]),
        "class": np.arange(K),
        "class_other": np.arange(K),
    }
    if "alpha_disagreement" in r:  # a regression form: both estimands side by side
        bw = r["by_weighting"]
        for qn in ("alpha", "beta"):
            data[f"{qn}_by_weighting"] = (("weighting", "step"), np.stack([bw[w][qn][0] for w in WEIGHTINGS]))
            data[f"{qn}_by_weighting_se"] = (("weighting", "step"), np.stack([bw[w][qn][1] for w in WEIGHTINGS]))
            data[f"{qn}_disagreement"] = ("step", r[f"{qn}_disagreement"])
        diffs = [answer.compare(*bw[w]["alpha"][:2], *bw[w]["beta"][:2], bw[w]["cov"], bw[w]["alpha"][2], confidence)
                 for w in WEIGHTINGS]  # fmt: skip
        ws = ("weighting", "step")
        data["alpha_minus_beta_by_weighting"] = (ws, np.stack([d["difference"] for d in diffs]))
        data["alpha_minus_beta_by_weighting_se"] = (ws, np.stack([d["difference_se"] for d in diffs]))
        data["alpha_beta_cov_by_weighting"] = (ws, np.stack([bw[w]["cov"] for w in WEIGHTINGS]))
        data["n_excluded"] = ("step", r["n_excluded"])
        coords["weighting"] = list(WEIGHTINGS)
    if r.get("block_length") is not None:
        data["block_length"] = ("step", r["block_length"])
    return data, coords


def _check_layout(track_ds: xr.Dataset) -> None:
    """The dims and attrs every form reads: features over (run, step, probe, feature), a positive lr, the number of
    classes; and features that move."""
    dims = track_ds["features"].dims
    if dims != ("run", "step", "probe", "feature"):
        raise ValueError(
            f"track_ds['features'] has dims {dims}, expected ('run', 'step', 'probe', 'feature'); a single run "
            "selected with isel(run=0) keeps the dim with isel(run=[0])"
        )
    for attr in ("lr", "num_classes"):
        if attr not in track_ds.attrs:
            raise ValueError(
                f"track_ds has no {attr!r} attr (the track's learning rate and number of classes are read from its "
                "attrs): keep the attrs of the track (xarray drops them in some operations; keep_attrs=True)"
            )
    check_positive_float("track_ds.attrs['lr']", track_ds.attrs["lr"])
    if track_ds.sizes["step"] > 1 and not np.any(track_ds["increment"].values[:, 1:]):
        raise ValueError(
            "every increment of the track is 0: its features never move (a constant feature, a frozen network or a "
            "learning rate too small to change them), so alpha and beta are undefined; track a feature that moves"
        )


def _refuse_all_nan(ds: xr.Dataset) -> None:
    """An estimate whose alpha or beta is NaN in every window says nothing: refused with its likely cause."""
    for q in ("alpha", "beta"):
        if np.isnan(ds[q].values).all():
            cause = (
                "the class means of the features are 0 or do not change (their logs are undefined)"
                if ds.attrs["form"] == "means"
                else "every regressor is 0 (zero features or residuals)"
            )
            raise ValueError(
                f"{q} is NaN in every window of the estimate (form={ds.attrs['form']!r}): {cause}; try another form, "
                "feature or a longer track"
            )


def _warn(ds: xr.Dataset) -> None:
    """The warnings an estimate calls for: errors clustered by step, steps at the rounding floor, estimands that
    differ."""
    if ds.attrs["se_cluster"] == "block" and ds.attrs["form"] != "means":
        warnings.warn(
            "the track has one run: standard errors come from blocks of its steps (they account for the "
            "correlation of neighbouring steps) but cannot include how much another initialisation or sample order "
            "would change the estimate, which on networks is often larger; track n_runs >= 2 for run-clustered "
            "errors",
            UserWarning,
            stacklevel=3,
        )
    if "alpha_disagreement" not in ds:
        return
    frac = ds.attrs.get("excluded_steps", 0) / max(float(ds["n_steps"].sum() + ds.attrs.get("excluded_steps", 0)), 1)
    if frac > 0.01:
        warnings.warn(
            f"{100 * frac:.1f}% of the steps have a regressor at the rounding level of the stored increments and "
            "were dropped; the 'step' estimand weighs every step equally and these (well-fitted samples) carry "
            "the largest per-step coefficients, so it is biased low by their absence: track with "
            "dtype=torch.float64 to resolve them ('increment' is unaffected)",
            UserWarning,
            stacklevel=3,
        )
    W = ds.sizes["step"]
    crit = pool.t_quantile(1 - DISAGREEMENT_LEVEL / W, ds["dof"].values)  # Bonferroni over the windows
    msgs = []
    for qn in ("alpha", "beta"):
        z = np.abs(ds[f"{qn}_disagreement"].values)
        bad = np.flatnonzero(z > crit)
        if bad.size:
            inc, stp = ds[f"{qn}_by_weighting"].values[:, bad]
            msgs.append(
                f"{qn} in {bad.size} of {W} windows (e.g. t={float(ds.time[bad[0]]):.3g}: increment "
                f"{inc[0]:.4g} vs step {stp[0]:.4g}; median ratio step/increment "
                f"{np.nanmedian(stp / inc):.3g})"
            )
    if msgs:
        warnings.warn(
            "the two estimands differ beyond their joint uncertainty: " + "; ".join(msgs) + ". 'increment' is the "
            "least-squares drift (what an imitating LE-SDE needs), 'step' the typical step's coefficient: report "
            "which one you use",
            UserWarning,
            stacklevel=3,
        )


__all__ = ["estimate", "FORMS", "WEIGHTINGS"]
