r"""Drive an LE-SDE with the elasticity estimated from a track and compare its classes with the network's, in raw
and in scale-free terms, each against the network frozen at t = 0.

The LE-SDE (`lesde.empirical.imitation_sde`) gets K from the track, one sample per probe, the training set's
class frequencies (attr ``class_counts``: how the network's steps sampled classes, never the probe counts),
``alpha``/``beta`` from a fit (`FitResult`) or, given an estimate Dataset, tabulated from its
windows (linear interpolation, constant beyond the ends), the transform the estimate was made for
(``estimate(..., transform=)``; the feature form's default is the identity), and the residual diffusion scale
$\hat\sigma$ of the estimate unless ``noise`` is given. Path ``(r, j)`` starts at run ``r``'s initial probe
features, so its class means start exactly at the network's; ``paths_per_run`` noise realisations per run are
averaged.

Processes, along the ``process`` dim: ``network``; ``le-sde``; ``frozen``, the null (the network's probes held at
t = 0); and ``paper``, the original analysis's own method as a reference (``reference=True``): E(t) from the
integrated ``means`` form, the LE-ODE (identity transform, no noise), and one scale $c$ of its class means
fitted to the network's over the last quarter of the compared times (for its raw error; ``class_mean`` holds it
unscaled). Each is compared with the network
(`lesde.empirical.imitation_scores`): the raw relative error of the class means, the cosine of the centred
class-mean displacements, the normalised Gram distance, NC1, the nearest-class-mean (NCM) accuracy and the time of
separation (the first time the NCM accuracy reaches ``separation_level``), each with a verdict against the frozen
network. ``relative_error(run, time)`` and its median over runs are the LE-SDE's raw error, with the summary attrs
``median_relative_error_first_half`` (the first half of training, where a network's features still move) and
``median_relative_error``; a `UserWarning` when the median over runs exceeds ``warn_above`` (0.5).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import torch
import xarray as xr

from ..schema import make_dataset
from ..validation import check_int, check_positive_float
from .fitting import FitResult
from .imitation_scores import COMPARISONS, class_stats, discrepancies, ncm_accuracy, separation_time, verdict
from .imitation_sde import (
    check_same_track,
    class_probs_of,
    elasticity_of,
    le_sde,
    metrics,
    simulate_from,
    transform_for,
)

PROCESSES = ("network", "le-sde", "frozen", "paper")
TAIL = 0.25  # share of the compared times the reference's scale is fitted over


def imitate(
    track_ds: xr.Dataset,
    fit_result: FitResult | xr.Dataset,
    transform=None,
    noise: float | None = None,
    paths_per_run: int = 1,
    max_times: int = 201,
    method: str = "euler",
    seed: int = 0,
    progress: bool = False,
    warn_above: float = 0.5,
    reference: bool = True,
    separation_level: float = 1.0,
) -> xr.Dataset:
    r"""Simulate the LE-SDE driven by an estimated E(t) from the network's initial features and compare its classes
    with the network's (module docstring).

    Parameters
    ----------
    track_ds : xarray.Dataset
        A track (``features(run, step, probe, feature)``, ``label(probe)``, ``time(step)``, attr ``class_counts``).
    fit_result : FitResult or xarray.Dataset
        A fit (`fit`: the alpha and beta schedules) or an estimate
        (`estimate`: tabulated alpha and beta); either supplies $\hat\sigma$.
    transform : str, optional
        LE-SDE transform; default: the one the estimate was made for (``estimate(..., transform=)``), which is what
        its E(t) means. A different one is allowed with a warning.
    noise : float, optional
        Diffusion $\sigma$; default the estimate's $\hat\sigma$.
    paths_per_run : int
        LE-SDE paths per run (their class means are averaged).
    max_times : int
        At most this many recorded steps (evenly spaced) are compared.
    method
        passed to `lesde.simulate` (``dt`` = the track's learning rate).
    seed
        Described with `method` above.
    progress
        Described with `method` above.
    warn_above : float
        Warn when the median relative error over runs exceeds this at any compared time.
    reference : bool
        Also run the original analysis's method (process ``paper``); NaN when its ``means`` estimate fails.
    separation_level : float
        NCM accuracy at which the classes count as separated (1: every probe nearer its own class mean).

    Returns
    -------
    xarray.Dataset
        ``class_mean(process, run, time, class, feature)``, ``within_var(process, run, time, class)``, NC metrics and
        ``ncm_accuracy`` over ``(process, run, time)``, ``separation_time(process, run)``; the comparisons with the
        network (``class_mean_error``, ``centred_cosine``, ``gram_distance``, ``nc1_log_ratio``,
        ``ncm_accuracy_gap`` over ``(process, run, time)``, ``separation_time_log_ratio(process, run)``), their
        summaries ``discrepancy(process, comparison)`` (median over runs and times after 0), ``skill(process,
        comparison)`` and attrs ``verdict_<comparison>``; ``relative_error(run, time)``,
        ``relative_error_median(time)``; attrs ``median_relative_error_first_half``, ``median_relative_error``,
        ``transform``, ``elasticity`` ("fit" or "tabulated"), ``class_probs`` and ``class_probs_from``.
    """
    paths_per_run = check_int("paths_per_run", paths_per_run)
    if not isinstance(track_ds, xr.Dataset) or "features" not in track_ds:
        raise TypeError(f"track_ds must be a track Dataset (lesde.empirical.track), got {type(track_ds).__name__}")
    check_same_track(track_ds, fit_result)
    labels, K, counts = _probe_classes(track_ds)
    pi, pi_from = class_probs_of(track_ds, K)
    lr = float(track_ds.attrs["lr"])
    alpha, beta, sigma_hat, meta, kind = elasticity_of(fit_result)
    transform = transform_for(meta, transform)
    if noise is not None:
        noise = check_positive_float("noise", noise, allow_zero=True)
    warn_above = check_positive_float("warn_above", warn_above)
    sigma = sigma_hat if noise is None else noise
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"noise must be a finite sigma >= 0 (the estimate carries none: {sigma_hat}); pass noise=")
    S = track_ds.sizes["step"]
    idx = np.unique(np.linspace(0, S - 1, min(S, check_int("max_times", max_times, 2))).round().astype(int))
    sub = track_ds.isel(step=idx)
    times = sub["time"].values.astype(np.float64)
    F = sub["features"].values.astype(np.float64)  # (R, T, P, m)
    model = le_sde(K, F.shape[-1], counts, alpha, beta, transform, sigma, pi)
    sde = dict(paths_per_run=paths_per_run, lr=lr, method=method, seed=seed, progress=progress)
    procs = {"network": _network(F, labels, K, counts, times, separation_level)}
    procs["le-sde"] = _process(simulate_from(model, F[:, 0], times, sde), counts, times, separation_level)
    procs["frozen"] = _frozen(procs["network"])
    procs["paper"] = _paper(track_ds, F, procs["network"], counts, pi, times, sde, separation_level, reference)
    rel = _relative_error(procs["network"]["class_mean"], procs["le-sde"]["class_mean"])
    med = np.median(rel, axis=0)  # over runs
    first = times <= times[-1] / 2
    summary = dict(median_relative_error_first_half=float(np.median(rel[:, first])),
                   median_relative_error=float(np.median(rel)))  # fmt: skip
    if np.max(med) > warn_above:
        k = int(np.argmax(med > warn_above))
        warnings.warn(
            f"the LE-SDE does not imitate the network: the median relative error of the class means exceeds "
            f"{warn_above:g} from t={times[k]:.4g} (final {med[-1]:.3g}; median over the first half "
            f"{summary['median_relative_error_first_half']:.3g}); transform={transform!r}, elasticity {kind} from "
            f"form={meta.get('form', '?')!r}, weighting={meta.get('weighting', '?')!r}",
            UserWarning,
            stacklevel=2,
        )
    data, verdicts = _comparison_variables(procs, times)
    data.update(relative_error=(("run", "time"), rel), relative_error_median=("time", med))
    coords = {
        "process": list(PROCESSES),
        "run": np.arange(F.shape[0]),
        "time": times,
        "step": ("time", sub["step"].values),
        "class": np.arange(K),
        "feature": np.arange(F.shape[-1]),
        "comparison": list(COMPARISONS),
    }
    attrs = dict(
        source="imitate",
        elasticity=kind,
        fit=fit_result.to_json() if isinstance(fit_result, FitResult) else "",
        **{f"estimate_{k}": str(v) for k, v in meta.items()},
        **summary,
        **verdicts,
        spec=model.to_spec(),
        noise=sigma,
        transform=str(transform),
        paths_per_run=paths_per_run,
        method=method,
        seed=seed,
        lr=lr,
        samples_per_class=counts.tolist(),
        class_probs=pi.tolist(),
        class_probs_from=pi_from,
        separation_level=separation_level,
        reference_scale=procs["paper"].get("scale", float("nan")),
        reference=procs["paper"].get("note", ""),
    )
    return make_dataset(data, coords, time="training", attrs=attrs)


def _probe_classes(track_ds: xr.Dataset) -> tuple[np.ndarray, int, np.ndarray]:
    """The probes' labels (P,), K and the probe count of every class (K,), checked for imitation."""
    labels = track_ds["label"].values
    if np.any(np.diff(labels) < 0):
        raise ValueError("the track's probes must be ordered by label (tracks from lesde.empirical are)")
    K = int(track_ds.attrs.get("num_classes", labels.max() + 1))
    counts = np.bincount(labels, minlength=K)
    if (counts == 0).any():
        raise ValueError(f"every class needs at least one probe to imitate, got probe counts {counts.tolist()}")
    return labels, K, counts


def _process(sim: dict, counts: np.ndarray, times: np.ndarray, level: float) -> dict:
    """A simulated process's class means and variances (averaged over its paths), NC metrics and NCM accuracy
    (averaged over paths) and time of separation (median over paths), per run."""
    met = metrics(sim["class_mean"], sim["within_var"], counts)
    out = {k: sim[k].mean(1) for k in ("class_mean", "within_var", "ncm_accuracy")}
    out.update({k: v.mean(1) for k, v in met.items()})
    out["t_sep"] = np.median(separation_time(sim["ncm_accuracy"], times, level), axis=1)
    return out


def _network(F: np.ndarray, labels, K: int, counts, times, level: float) -> dict:
    """The network's own classes, as a process with one path per run."""
    M, V = class_stats(F, labels, K)
    sim = {"class_mean": M[:, None], "within_var": V[:, None], "ncm_accuracy": ncm_accuracy(F, labels, K)[:, None]}
    return _process(sim, counts, times, level)


def _frozen(net: dict) -> dict:
    """The null: the network's probes held at t = 0."""
    out = {k: np.broadcast_to(v[:, :1], v.shape).copy() for k, v in net.items() if k != "t_sep"}
    out["t_sep"] = np.where(net["t_sep"] == 0, 0.0, np.inf)  # separated from the start, or never
    return out


def _paper(track_ds, F, net, counts, pi, times, sde, level, reference: bool) -> dict:
    """The original analysis's method: the means form's E(t), the LE-ODE, one scale fitted over the tail."""
    nan = {k: np.full_like(v, np.nan, dtype=np.float64) for k, v in net.items()}
    if not reference:
        return {**nan, "note": "not run (reference=False)"}
    from .estimation import estimate

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            alpha, beta = elasticity_of(estimate(track_ds, form="means"))[:2]
            model = le_sde(len(counts), F.shape[-1], counts, alpha, beta, "identity", 0.0, pi)
            sim = simulate_from(model, F[:, 0], times, {**sde, "paths_per_run": 1})
    except (ValueError, OverflowError) as e:
        return {**nan, "note": f"failed: {e}"}
    out = _process(sim, counts, times, level)
    tail = times >= times[-1] * (1 - TAIL)
    Mo, Mn = out["class_mean"][:, tail], net["class_mean"][:, tail]
    with np.errstate(over="ignore", invalid="ignore"):
        c = float((Mo * Mn).sum() / (Mo * Mo).sum())
    c = c if np.isfinite(c) else float("nan")
    out["scaled_class_mean"] = c * out["class_mean"]  # the raw error's; the scale-free comparisons ignore the scale
    out.update(scale=c, note="E(t) from the means form, LE-ODE, one scale fitted over the last quarter")
    return out


def _comparison_variables(procs: dict, times: np.ndarray) -> tuple[dict, dict]:
    """The per-process variables, the comparisons with the network, their summaries and the verdict lines."""
    pt, prt = ("process", "run", "time"), ("process", "run")
    net = procs["network"]
    D = {p: discrepancies(procs[p], net, times) for p in PROCESSES}
    ran = {p: bool(np.isfinite(procs[p]["class_mean"]).any()) for p in PROCESSES}  # a reference may not have run
    D = {p: D[p] if ran[p] else {c: np.full_like(v, np.nan) for c, v in D[p].items()} for p in PROCESSES}

    def stack(k):
        return np.stack([procs[p][k] for p in PROCESSES])

    data = {
        "class_mean": (("process", "run", "time", "class", "feature"), stack("class_mean")),
        "within_var": (("process", "run", "time", "class"), stack("within_var")),
        "separation_time": (prt, stack("t_sep")),
    }
    for k in net:  # the NC metrics and the NCM accuracy
        if k not in ("class_mean", "within_var", "t_sep", "scaled_class_mean"):
            data[k] = (pt, stack(k))
    names = {"centred_cosine": "centred_cosine", "nc1": "nc1_log_ratio", "ncm_accuracy": "ncm_accuracy_gap",
             "class_mean_error": "class_mean_error", "gram_distance": "gram_distance"}  # fmt: skip
    for c, var in names.items():
        vals = np.stack([D[p][c] for p in PROCESSES])
        data[var] = (pt, 1.0 - vals if c == "centred_cosine" else vals)
    data["separation_time_log_ratio"] = (prt, np.stack([D[p]["separation_time"] for p in PROCESSES]))
    nan4 = (np.nan, np.nan, np.nan)
    summ = {
        p: {c: verdict(c, D[p][c], D["frozen"][c]) if ran[p] else (*nan4, procs[p].get("note")) for c in COMPARISONS}
        for p in PROCESSES
    }
    data["discrepancy"] = (("process", "comparison"), [[summ[p][c][0] for c in COMPARISONS] for p in PROCESSES])
    data["skill"] = (("process", "comparison"), [[summ[p][c][2] for c in COMPARISONS] for p in PROCESSES])
    verdicts = {f"verdict_{c}": json.dumps({p: summ[p][c][3] for p in ("le-sde", "paper")}) for c in COMPARISONS}
    return data, verdicts


def _relative_error(M_net: np.ndarray, M_sde: np.ndarray) -> np.ndarray:
    """||M_sde - M_net||_F / ||M_net||_F per run and time (R, T); inf (and a warning) where the LE-SDE overflowed."""
    R, T = M_net.shape[:2]
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging LE-SDE overflows the norm
        diff = np.linalg.norm((M_sde - M_net).reshape(R, T, -1), axis=-1)
        rel = diff / np.linalg.norm(M_net.reshape(R, T, -1), axis=-1)
    if not (np.isfinite(M_sde).all() and np.isfinite(rel).all()):
        rel = np.where(np.isfinite(rel), rel, np.inf)
        warnings.warn(
            "the LE-SDE's class means overflowed: it diverges from the network; relative errors there are inf",
            UserWarning,
            stacklevel=3,
        )
    return rel


def drift_check(track_ds: xr.Dataset, estimate_ds: xr.Dataset, transform=None, windows: int = 10) -> xr.Dataset:
    r"""Which term of the LE-SDE fails to imitate the network: each one checked on the network's own states.

    Over ``windows`` equal windows of recorded steps (long ones, so the class-mean displacement measures the
    drift rather than the step-to-step fluctuation), with no simulation, so nothing compounds:

    - ``velocity(run, step, class, feature)``: the network's class-mean velocity
      $(\bar M_k(t_b) - \bar M_k(t_a)) / (t_b - t_a)$ over the window;
    - ``drift(run, step, class, feature)``: the LE-SDE drift $\sum_l \pi_l E_{kl}(t) T_{kl} \bar M_l(t)$
      (``LESDE.f``, $\pi$ the training set's class shares) at the network's class means, with the estimate's
      E(t) (tabulated), averaged over the window;
      for a ``form="residual"`` estimate, the kernel form's drift $\sum_l \pi_l E_{kl}(t) \bar r_l(t)$
      with $\bar r_l$ the class-l probes' mean residual $e_l - \mathrm{softmax}(f)$ (what a
      cross-entropy step moves logits along; no LE-SDE transform has this drift);
    - ``drift_error(run, step)``: $\|\text{drift} - \text{velocity}\|_F / \|\text{velocity}\|_F$ and
      ``drift_cosine(run, step)`` (does the drift point where the network moves?);
    - ``within_var(run, step)``: the network's mean within-class variance, and ``within_var_model(step)`` what the
      LE-SDE's noise gives from the same start, $V(0) + m \hat\sigma^2 (1 - 1/n_k) t$ (the drift of the
      identity LE-SDE does not act on within-class deviations).

    A drift error of order 1 or more means the drift form itself (E T X) does not describe how the network moves.
    A small one with a large imitation error points to the noise, the fit, or compounding: a drift linear in the
    state has no brake, so an LE-SDE that departs from the network's states grows away from them (the network's
    own motion stops as its residuals vanish). benchmarks/RESULTS.md shows both on MNIST-1D and digits.
    """
    alpha, beta, sigma, meta, _ = elasticity_of(estimate_ds)
    kernel = meta.get("form") == "residual"
    transform = "kernel" if kernel else transform_for(meta, transform)
    labels, K, counts = _probe_classes(track_ds)
    pi = class_probs_of(track_ds, K)[0]
    F_ = track_ds["features"].values.astype(np.float64)  # (R, S, P, m)
    R, S, P, m = F_.shape
    if not kernel:
        model = le_sde(K, m, counts, alpha, beta, transform, 0.0, pi)

    def drift_at(t: float, X: np.ndarray) -> np.ndarray:  # (R, P, m) -> class means of the drift (R, K, m)
        if not kernel:
            out = model.f(t, torch.from_numpy(X.reshape(R, P * m))).numpy().reshape(R, P, m)
            return class_stats(out, labels, K)[0]
        # the kernel form: sum_l pi_l E_kl rbar_l, rbar_l the class-l probes' mean residual e_l - softmax(f)
        r = np.eye(K)[labels][None] - torch.softmax(torch.from_numpy(X), -1).numpy()
        rbar = class_stats(r, labels, K)[0]  # (R, K, K)
        a, b = float(alpha(torch.tensor(t))), float(beta(torch.tensor(t)))
        E = b + (a - b) * np.eye(K)
        return np.einsum("kl,l,rlm->rkm", E, pi, rbar)

    steps, times = track_ds["step"].values, track_ds["time"].values
    M, V = class_stats(F_, labels, K)  # (R, S, K, m), (R, S, K)
    edges = np.unique(np.linspace(0, S - 1, check_int("windows", windows) + 1).round().astype(int))
    W = len(edges) - 1
    vel, drift = np.zeros((R, W, K, m)), np.zeros((R, W, K, m))
    for w, (ia, ib) in enumerate(zip(edges[:-1], edges[1:])):
        vel[:, w] = (M[:, ib] - M[:, ia]) / (times[ib] - times[ia])
        with torch.no_grad():
            drift[:, w] = np.mean([drift_at(float(times[i]), F_[:, i]) for i in range(ia, ib)], axis=0)
    err = np.linalg.norm((drift - vel).reshape(R, W, -1), axis=-1) / np.linalg.norm(vel.reshape(R, W, -1), axis=-1)
    cos = (drift * vel).sum((2, 3)) / (
        np.linalg.norm(drift.reshape(R, W, -1), axis=-1) * np.linalg.norm(vel.reshape(R, W, -1), axis=-1)
    )
    t_w = 0.5 * (times[edges[:-1]] + times[edges[1:]])
    wv_net = V[:, edges[1:]].mean(-1)  # (R, W) at the end of each window
    t_end = times[edges[1:]]
    n_eff = (1 - 1 / counts).mean()
    wv_model = V[:, 0].mean() + m * (0 if not np.isfinite(sigma) else sigma) ** 2 * n_eff * t_end
    ds = make_dataset(
        {
            "velocity": (("run", "step", "class", "feature"), vel),
            "drift": (("run", "step", "class", "feature"), drift),
            "drift_error": (("run", "step"), err),
            "drift_cosine": (("run", "step"), cos),
            "within_var": (("run", "step"), wv_net),
            "within_var_model": ("step", wv_model),
        },
        {
            "run": np.arange(R),
            "step": steps[edges[1:]],
            "time": ("step", t_w),
            "class": np.arange(K),
            "feature": np.arange(m),
        },
        time="training",
        attrs=dict(
            source="drift_check",
            transform=str(transform),
            noise=sigma,
            **{f"estimate_{k}": str(v) for k, v in meta.items()},
        ),
    )
    return ds


__all__ = ["imitate", "drift_check", "elasticity_of", "PROCESSES"]
