r"""Drive an LE-SDE with the elasticity estimated from a track and compare its class means with the network's.

The LE-SDE gets K from the track, one sample per probe (``samples_per_class`` = probe counts, ordered by class as
the probes are), ``alpha``/``beta`` from a fit (:class:`~lesde.empirical.FitResult`) or, given an estimate
Dataset, tabulated from its windows (linear interpolation, constant beyond the ends), the transform the estimate
was made for (``estimate(..., transform=)``; the feature form's default is the identity), and the residual
diffusion scale :math:`\hat\sigma` of the estimate unless ``noise`` is given. Path ``(r, j)`` starts at run ``r``'s
initial probe features, so its class means start exactly at the network's, and ``paths_per_run`` independent
noise realisations per run are averaged. The comparison, per run and time, is the relative error

.. math::

    \varepsilon_r(t) = \frac{\| \bar M^{\text{LE-SDE}}_r(t) - M^{\text{net}}_r(t) \|_F}{\| M^{\text{net}}_r(t) \|_F},

with :math:`M` the (K, m) matrix of class means, and the NC metrics computable from class means and within-class
variances (:func:`lesde.metrics.means_metrics`) for both processes side by side along a ``process`` dim.
The summary, in attrs and in the CLI: ``median_relative_error_first_half`` (the median over runs and the compared
times in the first half of training, where a network's features still move) and ``median_relative_error`` (all times); a
:class:`UserWarning` when the median over runs exceeds ``warn_above`` (0.5) at any time.
Decision: :math:`\pi_l` follows the probe counts (``class_sampling="uniform-sample"``), which match the training
set's class shares when probes are all samples or a stratified subset (the defaults).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import xarray as xr

from ..schema import make_dataset
from ..validation import check_int
from .fitting import FitResult

PROCESSES = ("network", "le-sde")


def elasticity_of(source) -> tuple:
    """(alpha schedule, beta schedule, sigma_hat, the estimate's form/weighting/transform) from a FitResult or an
    estimate Dataset (tabulated over its finite windows)."""
    from ..schedules import Constant, Tabulated

    if isinstance(source, FitResult):
        return source.alpha, source.beta, source.noise, dict(source.extra), "fit"
    if not isinstance(source, xr.Dataset) or "alpha" not in source:
        raise TypeError("elasticity must be a FitResult (lesde.empirical.fit) or an estimate Dataset (estimate)")
    t = source["time"].values

    def tab(q):
        y = source[q].values
        ok = np.isfinite(t) & np.isfinite(y)
        if ok.sum() == 0:
            raise ValueError(f"the estimate has no finite {q}")
        return Tabulated(t[ok], y[ok]) if ok.sum() >= 2 else Constant(float(y[ok][0]))

    noise = source["noise"].values if "noise" in source else np.array([np.nan])
    sigma = float(np.nanmedian(noise)) if np.isfinite(noise).any() else float("nan")
    meta = {k: source.attrs[k] for k in ("form", "weighting", "transform") if k in source.attrs}
    return tab("alpha"), tab("beta"), sigma, meta, "tabulated"


def _transform_for(meta: dict, transform):
    form, made_for = meta.get("form"), meta.get("transform")
    if transform is None:
        if form == "residual":
            raise ValueError(
                "form='residual' estimates E in Delta f = lr E r (the kernel form, NTK units), which no LE-SDE "
                "transform reproduces; estimate with form='feature', transform=<the LE-SDE's transform>, or pass "
                "transform= to imitate anyway"
            )
        return made_for if made_for not in (None, "n/a") else "identity"
    if made_for not in (None, "n/a") and str(transform) != made_for or form == "residual":
        warnings.warn(
            f"imitating with transform={transform!r}, but the elasticity was estimated for "
            f"{'the kernel (residual) form' if form == 'residual' else repr(made_for)}: its E(t) is not the one "
            "this LE-SDE needs (estimate with form='feature', transform=...)",
            UserWarning,
            stacklevel=3,
        )
    return transform


def _class_stats(F: np.ndarray, labels: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means (..., K, m) and within-class variances (..., K) of features (..., P, m)."""
    Y = (labels[:, None] == np.arange(K)).astype(np.float64)
    Y /= Y.sum(0)
    M = np.einsum("...pm,pk->...km", F, Y)
    dev2 = ((F - M[..., labels, :]) ** 2).sum(-1)  # (..., P)
    return M, np.einsum("...p,pk->...k", dev2, Y)


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
) -> xr.Dataset:
    r"""Simulate the LE-SDE driven by an estimated E(t) from the network's initial features and compare
    class-mean trajectories.

    Parameters
    ----------
    track_ds : xarray.Dataset
        A track (``features(run, step, probe, feature)``, ``label(probe)``, ``time(step)``).
    fit_result : FitResult or xarray.Dataset
        A fit (:func:`~lesde.empirical.fit`: the alpha and beta schedules) or an estimate
        (:func:`~lesde.empirical.estimate`: tabulated alpha and beta); either supplies :math:`\hat\sigma`.
    transform : str, optional
        LE-SDE transform; default: the one the estimate was made for (``estimate(..., transform=)``), which is what
        its E(t) means. A different one is allowed with a warning.
    noise : float, optional
        Diffusion :math:`\sigma`; default the estimate's :math:`\hat\sigma`.
    paths_per_run : int
        LE-SDE paths per run (their class means are averaged).
    max_times : int
        At most this many recorded steps (evenly spaced) are compared.
    method, seed, progress : passed to :func:`lesde.simulate` (``dt`` = the track's learning rate).
    warn_above : float
        Warn when the median relative error over runs exceeds this at any compared time.

    Returns
    -------
    xarray.Dataset
        ``class_mean(process, run, time, class, feature)``, ``within_var(process, run, time, class)``, NC metrics
        ``(process, run, time)``, ``relative_error(run, time)``, ``relative_error_median(time)``; coordinates
        ``process = ["network", "le-sde"]`` and ``step(time)``; attrs ``median_relative_error_first_half``,
        ``median_relative_error``, ``transform``, ``elasticity`` ("fit" or "tabulated").
    """
    paths_per_run = check_int("paths_per_run", paths_per_run)
    labels, K, counts = _probe_classes(track_ds)
    lr = float(track_ds.attrs["lr"])
    alpha, beta, sigma_hat, meta, kind = elasticity_of(fit_result)
    transform = _transform_for(meta, transform)
    sigma = sigma_hat if noise is None else float(noise)
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"noise must be a finite sigma >= 0 (the estimate carries none: {sigma_hat}); pass noise=")
    S = track_ds.sizes["step"]
    idx = np.unique(np.linspace(0, S - 1, min(S, check_int("max_times", max_times, 2))).round().astype(int))
    sub = track_ds.isel(step=idx)
    times = sub["time"].values.astype(np.float64)
    F = sub["features"].values.astype(np.float64)  # (R, T, P, m)
    model = _le_sde(K, F.shape[-1], counts, alpha, beta, transform, sigma)
    sde = dict(paths_per_run=paths_per_run, lr=lr, method=method, seed=seed, progress=progress)
    M_sde, V_sde = _simulate_from(model, F[:, 0], times, sde)  # (R, paths, T, K, m), (R, paths, T, K)
    M_net, V_net = _class_stats(F, labels, K)  # (R, T, K, m), (R, T, K)
    M_sde_mean, V_sde_mean = M_sde.mean(1), V_sde.mean(1)
    rel = _relative_error(M_net, M_sde_mean)  # (R, T)
    med = np.median(rel, axis=0)  # over runs
    first = times <= times[-1] / 2
    summary = dict(
        median_relative_error_first_half=float(np.median(rel[:, first])),
        median_relative_error=float(np.median(rel)),
    )
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
    data = {
        "class_mean": (("process", "run", "time", "class", "feature"), np.stack([M_net, M_sde_mean])),
        "within_var": (("process", "run", "time", "class"), np.stack([V_net, V_sde_mean])),
        "relative_error": (("run", "time"), rel),
        "relative_error_median": ("time", med),
    }
    met_net, met_sde = _metrics(M_net, V_net, counts), _metrics(M_sde, V_sde, counts)
    for k in met_net:  # the LE-SDE's metrics averaged over the paths of a run
        data[k] = (("process", "run", "time"), np.stack([met_net[k], met_sde[k].mean(1)]))
    coords = {
        "process": list(PROCESSES),
        "run": np.arange(F.shape[0]),
        "time": times,
        "step": ("time", sub["step"].values),
        "class": np.arange(K),
        "feature": np.arange(F.shape[-1]),
    }
    attrs = dict(
        source="imitate",
        elasticity=kind,
        fit=fit_result.to_json() if isinstance(fit_result, FitResult) else "",
        **{f"estimate_{k}": str(v) for k, v in meta.items()},
        **summary,
        spec=model.to_spec(),
        noise=sigma,
        transform=str(transform),
        paths_per_run=paths_per_run,
        method=method,
        seed=seed,
        lr=lr,
        samples_per_class=counts.tolist(),
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


def _le_sde(K: int, m: int, counts: np.ndarray, alpha, beta, transform, sigma: float):
    """The imitating LE-SDE: one sample per probe, classes drawn as the probes' class shares."""
    from .. import LESDE

    return LESDE(
        K,
        m,
        counts.tolist(),
        alpha=alpha,
        beta=beta,
        transform=transform,
        noise=sigma,
        class_sampling="uniform-sample",
    )


def _simulate_from(model, F0: np.ndarray, times: np.ndarray, sde: dict) -> tuple[np.ndarray, np.ndarray]:
    """Class means (R, paths, T, K, m) and within-class variances (R, paths, T, K) of ``paths_per_run`` LE-SDE
    paths per run, each starting at its run's initial probe features F0 (R, P, m), with dt = the learning rate."""
    from .. import simulate

    R, per = F0.shape[0], sde["paths_per_run"]
    x0 = torch.from_numpy(np.repeat(F0, per, axis=0))  # (R * paths_per_run, P, m)
    sim = simulate(
        model,
        t_end=float(times[-1]),
        dt=sde["lr"],
        n_paths=R * per,
        save_times=times,
        method=sde["method"],
        save="means",
        dtype=torch.float64,
        seed=sde["seed"],
        x0=x0,
        progress=sde["progress"],
    )
    T, K, m = len(times), model.num_classes, model.dim
    return sim["class_mean"].values.reshape(R, per, T, K, m), sim["within_var"].values.reshape(R, per, T, K)


def _metrics(M: np.ndarray, V: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """The NC metrics computable from class means (..., K, m) and within-class variances (..., K)."""
    from ..metrics import means_metrics

    out = means_metrics(
        torch.from_numpy(np.ascontiguousarray(M)),
        torch.from_numpy(np.ascontiguousarray(V)),
        torch.as_tensor(counts),
    )
    return {k: v.numpy() for k, v in out.items()}


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
      :math:`(\bar M_k(t_b) - \bar M_k(t_a)) / (t_b - t_a)` over the window;
    - ``drift(run, step, class, feature)``: the LE-SDE drift :math:`\sum_l \pi_l E_{kl}(t) T_{kl} \bar M_l(t)`
      (``LESDE.f``) at the network's class means, with the estimate's E(t) (tabulated), averaged over the window;
      for a ``form="residual"`` estimate, the kernel form's drift :math:`\sum_l \pi_l E_{kl}(t) \bar r_l(t)`
      with :math:`\bar r_l` the class-l probes' mean residual :math:`e_l - \mathrm{softmax}(f)` (what a
      cross-entropy step moves logits along; no LE-SDE transform has this drift);
    - ``drift_error(run, step)``: :math:`\|\text{drift} - \text{velocity}\|_F / \|\text{velocity}\|_F` and
      ``drift_cosine(run, step)`` (does the drift point where the network moves?);
    - ``within_var(run, step)``: the network's mean within-class variance, and ``within_var_model(step)`` what the
      LE-SDE's noise gives from the same start, :math:`V(0) + m \hat\sigma^2 (1 - 1/n_k) t` (the drift of the
      identity LE-SDE does not act on within-class deviations).

    A drift error of order 1 or more means the drift form itself (E T X) does not describe how the network moves.
    A small one with a large imitation error points to the noise, the fit, or compounding: a drift linear in the
    state has no brake, so an LE-SDE that departs from the network's states grows away from them (the network's
    own motion stops as its residuals vanish). benchmarks/RESULTS.md shows both on MNIST-1D and digits.
    """
    from .. import LESDE

    alpha, beta, sigma, meta, _ = elasticity_of(estimate_ds)
    kernel = meta.get("form") == "residual"
    transform = "kernel" if kernel else _transform_for(meta, transform)
    labels = track_ds["label"].values
    K = int(track_ds.attrs.get("num_classes", labels.max() + 1))
    counts = np.bincount(labels, minlength=K)
    F_ = track_ds["features"].values.astype(np.float64)  # (R, S, P, m)
    R, S, P, m = F_.shape
    if not kernel:
        model = LESDE(
            K,
            m,
            counts.tolist(),
            alpha=alpha,
            beta=beta,
            transform=transform,
            noise=0.0,
            class_sampling="uniform-sample",
        )
    pi = counts / counts.sum()

    def drift_at(t: float, X: np.ndarray) -> np.ndarray:  # (R, P, m) -> class means of the drift (R, K, m)
        if not kernel:
            out = model.f(t, torch.from_numpy(X.reshape(R, P * m))).numpy().reshape(R, P, m)
            return _class_stats(out, labels, K)[0]
        # the kernel form: sum_l pi_l E_kl rbar_l, rbar_l the class-l probes' mean residual e_l - softmax(f)
        r = np.eye(K)[labels][None] - torch.softmax(torch.from_numpy(X), -1).numpy()
        rbar = _class_stats(r, labels, K)[0]  # (R, K, K)
        a, b = float(alpha(torch.tensor(t))), float(beta(torch.tensor(t)))
        E = b + (a - b) * np.eye(K)
        return np.einsum("kl,l,rlm->rkm", E, pi, rbar)

    steps, times = track_ds["step"].values, track_ds["time"].values
    M, V = _class_stats(F_, labels, K)  # (R, S, K, m), (R, S, K)
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


__all__ = ["imitate", "drift_check", "elasticity_of"]
