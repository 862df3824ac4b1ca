r"""Estimators of the elasticity matrix :math:`E(t)` from a track.

A track (from :func:`~lesde.empirical.track`, a :class:`~lesde.empirical.Tracker` or
:func:`~lesde.empirical.simulate_discrete`) records, at step :math:`s`, the one-step increment :math:`\Delta_i =
f_s(x_i) - f_{s-1}(x_i)` of every probe, the sampled example :math:`I_s` (label :math:`L_s`) and its feature
:math:`f_{s-1}(x_{I_s})` before the step.

Regression forms (``feature``, ``residual``)
--------------------------------------------
With :math:`v_s = \eta f_{s-1}(x_{I_s})` (feature; with a ``transform``, :math:`v_{s,k} = \eta\,
T(k, L_s) f_{s-1}(x_{I_s})`, one regressor per moved class) or :math:`v_s = \eta (e_{L_s} - \mathrm{softmax}(f_{s-1}(x_{I_s})))`
(residual, the kernel form: one cross-entropy step moves logits by :math:`\eta\,\Theta(x, x_I)\, r_I`; needs
logits), the discrete LE process gives :math:`\Delta_i = E(y_i, L_s) v_s + \sqrt{\eta}\phi_i`. For the pair
:math:`(k, l)`, let :math:`n_s = \sum_{i: y_i = k} \langle \Delta_i, v_s\rangle` and :math:`d_s = n^{(k)}_s
\|v_s\|^2` over the steps with :math:`L_s = l` (:math:`n^{(k)}_s` the probes of class :math:`k` in the step). Two
estimands pool a window of such steps (``weighting``):

.. math::

    \hat E^{\text{increment}}_{kl} = \frac{\sum_s n_s}{\sum_s d_s}, \qquad
    \hat E^{\text{step}}_{kl} = \frac{1}{|S|} \sum_s \frac{n_s}{d_s} .

``increment`` is the least-squares drift coefficient (a ratio of sums, each step weighted by
:math:`\|v_s\|^2`): the coefficient that best reproduces the summed increments, which is what an LE-SDE driven by
it (:func:`~lesde.empirical.imitate`) needs. ``step`` is the mean of each step's own regression coefficient, the
typical step, what the original LE-SDE analysis and He and Su's local-elasticity measure report. On the discrete
LE process both estimate the same :math:`E`; on real networks they differ (MNIST-1D residual form: alpha/beta
about 1 vs 3.5), because well-fitted samples (small residual :math:`\|v\|`) have a large per-step elasticity and
little :math:`\|v\|^2` weight. The default is ``increment`` (the estimand imitation needs); both are always
computed (``alpha_by_weighting``), and a :class:`UserWarning` names the windows where they differ beyond their
joint uncertainty (``alpha_disagreement``, the z-score of the difference with its clustered error; Bonferroni over
the windows at a family-wise false-alarm probability of 1e-3, so an LE process, where both estimate the same E,
almost never warns).
:math:`\hat\alpha` pools the pairs :math:`k = l` and :math:`\hat\beta` the pairs :math:`k \ne l` (for ``step``,
each step's coefficient over all probes of the other classes).

Decisions:

- The sampled example is left out of its own step (its self-elasticity is a different, much larger quantity).
- Steps whose regressor is at rounding level are dropped from both estimands: :math:`\|v_s\| < 256\,
  \varepsilon\, \|f\|_{\text{rms}} / c_w` (:math:`\varepsilon` the machine epsilon of the stored increments,
  :math:`\|f\|_{\text{rms}}` the probes' rms feature norm before the step, :math:`c_w = \max(|\hat\alpha|,
  |\hat\beta|)` of the window's least-squares fit over all steps, which such steps barely weigh). Measured on
  digits (float32 against float64 tracks of the same runs, residual form), a step's coefficient carries a relative
  rounding error of about :math:`0.1 / q` (median; :math:`0.25 / q` at the 90th percentile) with :math:`q` its
  signal-to-floor ratio :math:`\|v\| c_w / (\varepsilon \|f\|_{\text{rms}})`: the kept steps (:math:`q \ge
  256`) are good to about 1e-3. In float32 logit tracks the dropped steps are samples fitted to within about
  1e-5 of probability one; ``n_excluded`` counts them. Residuals are computed in float64 from the logits, so they are never rounded to
  zero themselves (in float32, :math:`1 - p` is 0 or 6e-8 for such samples, and their per-step coefficients were
  rounding noise divided by rounding noise).
- Standard errors are cluster-robust (:mod:`lesde.empirical._pooling`): one cluster per run when the track has
  several (``se_cluster = "run"``), per step otherwise (then they ignore the correlation between the steps of one
  run, and a warning says so). Intervals use Student's t with ``dof`` = clusters - 1.
- Each window's ``time`` is the estimand's weighted mean of :math:`t_{s-1} = (s-1)\eta` (the time at which step
  :math:`s` evaluates :math:`E`), which removes the first-order bias of pooling a changing :math:`E(t)`.
- ``noise`` is the residual scale of the least-squares (increment) fit,
  :math:`\hat\sigma = (\sum \|\Delta_i - \hat E v\|^2 / (n\, m\, \eta))^{1/2}`, the diffusion an imitating LE-SDE needs.
- ``alpha_integrated`` / ``beta_integrated`` are :math:`A(t) = \int_0^t \alpha`, the trapezoid rule over the
  windows (the first window's value held back to t = 0); :func:`~lesde.empirical.tail_index` reads them.

``means`` (the original LE-SDE code's integrated estimators, T = identity, balanced): per run,

.. math::

    \hat A(t) = \log\Big| \frac{\bar X(t) (\bar X_k(t) - \bar X(t))^{K-1}}{c_0 c_k^{K-1}} \Big|, \quad
    \hat B(t) = -\log\Big| \frac{c_0}{c_k} \frac{\bar X_k(t) - \bar X(t)}{\bar X(t)} \Big|

averaged over classes and coordinates in log space; :math:`\hat\alpha, \hat\beta` are the least-squares slopes of
:math:`\hat A, \hat B` over each window (a first-order Savitzky-Golay derivative), with the standard error over
runs. ``weighting`` does not apply to it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
import xarray as xr

from ...schema import make_dataset
from ...validation import check_choice, check_int
from . import _pooling as pool
from ._pooling import onehot
from .means_form import means_form

WEIGHTINGS = ("increment", "step")
ROUNDING_FACTOR = 256.0
DISAGREEMENT_LEVEL = 1e-3  # family-wise false-alarm probability of the disagreement warning


def _class_sums(ds: xr.Dataset, v: np.ndarray, K: int) -> dict[str, np.ndarray]:
    """Per (run, step, probe class): sums of <Delta_i, v>, ||Delta_i||^2 and kept-probe counts, plus the probes'
    rms feature norm before the step. ``v`` is (R, S, m), or (R, S, K, m) with one regressor per moved class.
    Streams over runs and step chunks (float64 copies of the increments of a long penultimate track would not fit
    in memory)."""
    inc, feat = ds["increment"].values, ds["features"].values  # loaded once (a file-backed track reads here)
    R, S, P, m = inc.shape
    Y = onehot(ds["label"].values, K)  # (P, K)
    I = ds["sampled_index"].values[:, 1:]
    sample_index = ds["sample_index"].values
    out = {k: np.zeros((R, S - 1, K)) for k in ("num", "sq", "cnt")}
    out["fscale"] = np.zeros((R, S - 1))
    chunk = max(1, int(2**22 // max(P * m, 1)))
    for r in range(R):
        for a in range(1, S, chunk):
            b = min(S, a + chunk)
            c = slice(a - 1, b - 1)
            D = np.asarray(inc[r, a:b], np.float64)  # (c, P, m)
            prev = np.asarray(feat[r, a:b], np.float64) - D  # f_{s-1}
            keep = (sample_index[None, :] != I[r, c, None]).astype(np.float64)  # (c, P)
            if v.ndim == 3:
                num = np.einsum("spm,sm->sp", D, v[r, c])
            else:  # each probe against its own class's regressor
                num = np.einsum("spm,skm,pk->sp", D, v[r, c], Y)
            out["num"][r, c] = (num * keep) @ Y
            out["sq"][r, c] = ((D * D).sum(-1) * keep) @ Y
            out["cnt"][r, c] = keep @ Y
            out["fscale"][r, c] = np.sqrt((prev * prev).sum(-1).mean(-1))
    return out


def _regression(ds: xr.Dataset, v: np.ndarray, window: int, confidence: float) -> dict:
    """Both estimands of the pooled regression of each probe's increment on v (R, S, [K,] m); step 0 is dropped."""
    K = int(ds.attrs["num_classes"])
    lr = float(ds.attrs["lr"])
    m = ds.sizes["feature"]
    if v.shape[-1] != m:
        raise ValueError(f"increments have {m} coordinates but the regressor has {v.shape[-1]}")
    v = np.asarray(v[:, 1:], np.float64)
    R, S = v.shape[:2]
    cs = _class_sums(ds, v, K)
    L = ds["sampled_label"].values[:, 1:]
    Lh = onehot(L, K)  # (R, S, K)
    vvk = (v * v).sum(-1)
    vvk = np.broadcast_to(vvk[..., None], (R, S, K)) if v.ndim == 3 else vvk  # ||v||^2 per moved class
    eps = np.finfo(ds["increment"].dtype).eps if ds["increment"].dtype.kind == "f" else np.finfo(np.float64).eps
    ok = np.isfinite(vvk).all(-1) & (L >= 0) & (vvk.max(-1) > 0)
    starts = pool.window_starts(S, window)
    wid = pool.window_ids(S, starts)
    # rounding floor: a step whose regressor is so small that the stored increments' rounding (eps ||f||) would
    # move its coefficient by more than 1/1024 of the window's elasticity scale is dropped (two passes: the
    # scale comes from the least-squares fit of all steps, which such steps barely weigh)
    okw = ok[..., None].astype(np.float64)
    n0, d0 = np.nan_to_num(cs["num"]) * okw, np.nan_to_num(cs["cnt"]) * okw * np.where(ok[..., None], vvk, 0)
    scale = np.zeros(len(starts))
    for sel in (np.eye(K, dtype=bool), ~np.eye(K, dtype=bool)):
        nq = np.add.reduceat(np.einsum("rsk,rsl,kl->s", n0, Lh, sel), starts)
        dq = np.add.reduceat(np.einsum("rsk,rsl,kl->s", d0, Lh, sel), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.fmax(scale, np.abs(nq / dq))
    floor = ROUNDING_FACTOR * eps * cs["fscale"] / np.where(scale > 0, scale, np.inf)[wid][None]
    vnorm = np.sqrt(np.where(ok[..., None], vvk, 0).max(-1))
    valid = ok & (vnorm >= floor)
    excluded = ok & ~valid
    w = valid.astype(np.float64)
    num, cnt, sq = (np.nan_to_num(cs[k]) * w[..., None] for k in ("num", "cnt", "sq"))
    den = cnt * np.where(valid[..., None], vvk, 0)  # (R, S, K): d for the pair (k, L_s)
    cl = pool.Clusters(S, starts, by_run=R > 1)

    # per-step arrays of each quantity, (n, d) for the increment estimand
    pair = (np.einsum("rsk,rsl->rskl", num, Lh), np.einsum("rsk,rsl->rskl", den, Lh))
    n_a, d_a = (num * Lh).sum(-1), (den * Lh).sum(-1)
    inc = {"E": pair, "alpha": (n_a, d_a), "beta": (num.sum(-1) - n_a, den.sum(-1) - d_a)}

    def per_step(n, d):  # each step's own coefficient, weight 1 where the step has data
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(d > 0, n / d, 0.0), (d > 0).astype(np.float64)

    res = {
        wt: {q: pool.ratio(*(nd if wt == "increment" else per_step(*nd)), cl) for q, nd in inc.items()}
        for wt in WEIGHTINGS
    }
    out: dict = {"by_weighting": {}}
    for wt in WEIGHTINGS:
        r_ = res[wt]
        out["by_weighting"][wt] = {q: (r_[q]["est"], r_[q]["se"], r_[q]["dof"]) for q in r_}
        tw = d_a + inc["beta"][1] if wt == "increment" else w  # weights of each step in the window's time
        t_prev = (ds["step"].values[1:] - 1) * lr
        tws = np.add.reduceat(tw.sum(0), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["by_weighting"][wt]["time"] = np.add.reduceat((tw.sum(0) * t_prev), starts) / tws
    for q in ("alpha", "beta"):
        diff, se = pool.difference(res["increment"][q], res["step"][q])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{q}_disagreement"] = diff / se
    # residual scale of the least-squares fit: sum ||Delta - E v||^2 = Q - 2 E N + E^2 D per pair, per window
    E = np.nan_to_num(res["increment"]["E"]["est"])  # (W, K, K)
    red = [np.add.reduceat(np.einsum("rsk,rsl->skl", x, Lh), starts) for x in (sq, num, den, cnt)]
    ss = (red[0] - 2 * E * red[1] + E**2 * red[2]).sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        out["noise"] = np.sqrt(np.maximum(ss, 0) / (red[3].sum((1, 2)) * m * lr))
    steps = ds["step"].values[1:]
    stops = np.append(starts[1:], S) - 1
    out.update(
        step_start=steps[starts],
        step_stop=steps[stops],
        n_obs=red[3].sum((1, 2)),
        n_steps=np.add.reduceat(w.sum(0), starts),
        n_excluded=np.add.reduceat(excluded.sum(0).astype(np.float64), starts),
        se_cluster="run" if R > 1 else "step",
        rounding_tolerance=f"||v|| >= {ROUNDING_FACTOR:g} * {eps:.3g} * rms ||f|| / max(|alpha|, |beta|)",
    )
    return out


def _transformed(ds: xr.Dataset, transform) -> np.ndarray:
    """The regressors v_k = lr T(k, L_s) f_{s-1}(x_{I_s}) of the LE-SDE with ``transform``: (R, S, m) for the
    identity, (R, S, K, m) otherwise (state-dependent transforms see the probes' class means before the step)."""
    from ...transforms import make_transform

    lr = float(ds.attrs["lr"])
    XI = ds["sampled_feature"].values.astype(np.float64)  # (R, S, m)
    R, S, m = XI.shape
    K = int(ds.attrs["num_classes"])
    T = make_transform(transform, K, m)
    if T.is_identity:
        return lr * XI
    L = ds["sampled_label"].values.clip(min=0).reshape(-1)
    B = R * S
    V = torch.zeros(B, K, m, dtype=torch.float64)
    V[torch.arange(B), torch.from_numpy(L)] = torch.from_numpy(np.nan_to_num(XI).reshape(B, m))
    W = torch.zeros(B, K, K, dtype=torch.float64)
    W[torch.arange(B), :, torch.from_numpy(L)] = 1.0  # column L: row k of the result is T_{kL} X_I
    means = None
    if T.state_dependent:
        Y = onehot(ds["label"].values, K)
        prev = ds["features"].values.astype(np.float64) - np.nan_to_num(ds["increment"].values.astype(np.float64))
        means = torch.from_numpy(np.einsum("rspm,pk->rskm", prev, Y / Y.sum(0)).reshape(B, K, m))
    return lr * T.apply(W, V, means).reshape(R, S, K, m).numpy()


def _feature_form(ds: xr.Dataset, window: int, confidence: float, transform=None) -> dict:
    return _regression(ds, _transformed(ds, "identity" if transform is None else transform), window, confidence)


def _residual_form(ds: xr.Dataset, window: int, confidence: float) -> dict:
    if "sampled_residual" not in ds or ds.sizes["feature"] != ds.sizes["class"]:
        raise ValueError(
            "form='residual' needs logit features (feature dim == number of classes) and "
            "sampled_residual in the track; track with feature='logits' or use form='feature'"
        )
    if ds.attrs.get("feature") not in (None, "logits", "le-process"):
        raise ValueError(
            "form='residual' regresses logit increments on logit residuals; the track holds "
            f"feature={ds.attrs.get('feature')!r}: use form='feature'"
        )
    v = float(ds.attrs["lr"]) * ds["sampled_residual"].values.astype(np.float64)
    return _regression(ds, v, window, confidence)


FORMS: dict[str, Callable[..., dict]] = {
    "feature": _feature_form,
    "residual": _residual_form,
    "means": means_form,
}

_LONG = {
    "alpha_se": "standard error of alpha (clustered, see attrs se_cluster)",
    "beta_se": "standard error of beta (clustered, see attrs se_cluster)",
    "E_se": "standard error of E",
    "alpha_lower": "lower confidence bound of alpha",
    "alpha_upper": "upper confidence bound of alpha",
    "beta_lower": "lower confidence bound of beta",
    "beta_upper": "upper confidence bound of beta",
    "dof": "degrees of freedom of the intervals (clusters - 1)",
    "alpha_by_weighting": "alpha under each weighting (estimand)",
    "alpha_by_weighting_se": "standard error of alpha under each weighting",
    "beta_by_weighting": "beta under each weighting (estimand)",
    "beta_by_weighting_se": "standard error of beta under each weighting",
    "alpha_disagreement": "z-score of alpha(increment) - alpha(step)",
    "beta_disagreement": "z-score of beta(increment) - beta(step)",
    "alpha_integrated": "integrated intra-class elasticity A(t) = int_0^t alpha",
    "beta_integrated": "integrated inter-class elasticity B(t) = int_0^t beta",
    "noise": "residual diffusion scale sigma_hat",
    "n_obs": "(probe, step) observations pooled in the window",
    "n_steps": "steps pooled in the window",
    "n_excluded": "steps dropped: regressor at rounding level",
    "step_start": "first step of the window",
    "step_stop": "last step of the window",
}


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
    r"""Estimate :math:`\alpha_t`, :math:`\beta_t` and :math:`E(t)` from a track, pooled over windows of steps.

    Parameters
    ----------
    track_ds : xarray.Dataset
        Output of :func:`~lesde.empirical.track`, :meth:`Tracker.dataset` or
        :func:`~lesde.empirical.simulate_discrete`.
    form : {"feature", "residual", "means"}
        Regressor (module docstring): the sampled feature, the sampled logit residual, or the integrated estimator.
    window : int, optional
        Recorded steps per window; default: about 40 windows over the track.
    confidence : float
        Level of the Student-t intervals ``alpha_lower/upper``, ``beta_lower/upper``.
    weighting : {"increment", "step"}, optional
        The estimand reported as ``alpha``, ``beta``, ``E``: ``"increment"`` (default), the least-squares drift
        :math:`\sum_s n_s / \sum_s d_s` that reproduces the summed increments (what imitation needs), or
        ``"step"``, the mean over steps of each step's coefficient :math:`n_s / d_s` (the typical step, as the
        original LE-SDE analysis reports). Both are always in ``alpha_by_weighting(weighting, step)``.
        Regression forms only.
    transform : str or tensor, optional
        ``form="feature"`` only: regress on :math:`v_k = \eta\, T(k, L_s) f_{s-1}(x_{I_s})`, the move the LE-SDE
        with this transform makes (``"identity"``, default; ``"residual"``, ``"residual-projection"``,
        ``"softmax-residual"`` or a matrix, as :class:`~lesde.LESDE` accepts), so the estimate is the elasticity
        that LE-SDE needs (:func:`~lesde.empirical.imitate` reads it from the attrs).

    Returns
    -------
    xarray.Dataset over ``step`` (the window's middle recorded step) with ``alpha``, ``beta``, their ``_se``,
    ``_lower``, ``_upper``, ``dof``, ``E(step, class, class_other)`` (row: the moved probe's class, column: the sampled
    class), ``E_se``, ``alpha_by_weighting``/``beta_by_weighting`` (and ``_se``), ``alpha_disagreement``,
    ``beta_disagreement``, ``alpha_integrated``, ``beta_integrated``, ``noise``, ``n_obs``, ``n_steps``,
    ``n_excluded`` and coordinates ``time``, ``step_start``, ``step_stop``; attrs ``weighting``, ``se_cluster``.

    Examples
    --------
    >>> import lesde
    >>> from lesde.empirical import simulate_discrete
    >>> model = lesde.LESDE(3, 3, 10, alpha=1.0, beta=0.25, noise=0.05)
    >>> est = estimate(simulate_discrete(model, lr=0.01, steps=200, n_runs=4), window=200)
    >>> round(float(est.alpha[0]), 1), round(float(est.beta[0]), 2), est.attrs["se_cluster"]
    (1.0, 0.25, 'run')
    """
    form = check_choice("form", form, FORMS)
    if form == "means" and weighting is not None:
        raise ValueError("weighting applies to the regression forms ('feature', 'residual'), not form='means'")
    weighting = check_choice("weighting", "increment" if weighting is None else weighting, WEIGHTINGS)
    for name in ("features", "increment", "sampled_label", "sampled_index", "label", "step"):
        if name not in track_ds.variables:
            raise ValueError(f"track_ds has no {name!r}: pass a track from lesde.empirical (track, Tracker, ...)")
    S = track_ds.sizes["step"] - (0 if form == "means" else 1)
    if S < 1:
        raise ValueError("the track holds no SGD step (only step 0); track at least one step")
    window = max(1, S // 40) if window is None else check_int("window", window)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if transform is not None and form != "feature":
        raise ValueError(f"transform applies to form='feature' (the regressor lr T f(x_I)), not form={form!r}")
    r = FORMS[form](track_ds, window, confidence, **({"transform": transform} if form == "feature" else {}))
    K = int(track_ds.attrs["num_classes"])
    sel = r["by_weighting"][weighting]
    (alpha, alpha_se, alpha_dof), (beta, beta_se, beta_dof) = sel["alpha"], sel["beta"]
    q = pool.t_quantile(confidence, alpha_dof)
    mid = (np.asarray(r["step_start"]) + np.asarray(r["step_stop"])) // 2
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
        "E": (("step", "class", "class_other"), sel["E"][0]),
        "E_se": (("step", "class", "class_other"), sel["E"][1]),
        "alpha_integrated": ("step", integ["alpha"]),
        "beta_integrated": ("step", integ["beta"]),
        "noise": ("step", r["noise"]),
        "n_obs": ("step", r["n_obs"]),
        "n_steps": ("step", r["n_steps"]),
    }
    coords = {
        "step": mid,
        "time": ("step", time),
        "step_start": ("step", r["step_start"]),
        "step_stop": ("step", r["step_stop"]),
        "class": np.arange(K),
        "class_other": np.arange(K),
    }
    extra = {}
    if form != "means":
        bw = r["by_weighting"]
        for qn in ("alpha", "beta"):
            data[f"{qn}_by_weighting"] = (("weighting", "step"), np.stack([bw[w][qn][0] for w in WEIGHTINGS]))
            data[f"{qn}_by_weighting_se"] = (("weighting", "step"), np.stack([bw[w][qn][1] for w in WEIGHTINGS]))
            data[f"{qn}_disagreement"] = ("step", r[f"{qn}_disagreement"])
        data["n_excluded"] = ("step", r["n_excluded"])
        coords["weighting"] = list(WEIGHTINGS)
        extra = dict(rounding_tolerance=r["rounding_tolerance"], excluded_steps=int(np.sum(r["n_excluded"])))
    keep = {
        k: track_ds.attrs[k]
        for k in ("source", "lr", "steps", "n_runs", "feature", "num_classes", "class_counts", "seed", "spec")
        if k in track_ds.attrs
    }
    ds = make_dataset(
        data,
        coords,
        time="training",
        attrs=dict(
            **keep,
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
    for name, long in _LONG.items():
        if name in ds:
            ds[name].attrs.update(long_name=long, units="1")
    _warn(ds, confidence)
    return ds


def _warn(ds: xr.Dataset, confidence: float) -> None:
    if ds.attrs["se_cluster"] == "step" and ds.attrs["form"] != "means":
        warnings.warn(
            "the track has one run, so standard errors are clustered by step and ignore the correlation between "
            "the steps of one run (on networks they can be several times too small); track n_runs >= 2 for "
            "run-clustered errors",
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
