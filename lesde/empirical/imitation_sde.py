r"""The LE-SDE that imitates a network: its elasticity (a fit or a tabulated estimate), its transform, its class
frequencies, and its paths from the network's initial probe features.

Decisions:

- **Class frequencies are the training set's.** The LE-SDE's drift $\sum_l \pi_l E_{kl} T_{kl} \bar X_l$ weighs
  class $l$ by how often a step samples it, which is the training set's share $n_l / N$ (a network's
  step draws a training sample uniformly; attr ``class_counts`` of the track), or the discrete LE process's own
  $\pi$ (its ``spec``), never the probes' counts: a stratified probe subset's counts (e.g. 99/102/99) differ
  from the training shares, and with an exploding common mode even that small imbalance couples into the class
  differences and makes the LE-SDE separate classes it would not. The model keeps one sample per probe; its
  ``class_probs`` buffer is set to $\pi$ before it runs.
- **Paths are simulated run by run with every sample saved**, so the nearest-class-mean accuracy (which needs the
  samples, not only their class moments) is computed per path and time and the samples are dropped.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import torch
import xarray as xr

from .fitting import FitResult
from .imitation_scores import class_stats, ncm_accuracy

MAX_SAVED_BYTES = 2**28  # at most this much of saved samples per simulate call (paths are split beyond it)


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


def check_same_track(track_ds: xr.Dataset, source) -> None:
    """Refuse an elasticity estimated from another track than ``track_ds``: another learning rate, number of
    classes or tracked feature (the LE-SDE would run on the wrong clock, classes or coordinates)."""
    made = dict(source.extra) if isinstance(source, FitResult) else dict(getattr(source, "attrs", {}))
    for k in ("lr", "num_classes", "feature"):
        if k not in made or k not in track_ds.attrs:
            continue
        a, b = made[k], track_ds.attrs[k]
        same = np.isclose(float(a), float(b), rtol=1e-9, atol=0) if k == "lr" else str(a) == str(b)
        if not same:
            raise ValueError(
                f"the elasticity was estimated from another track: {k}={a!r} in the estimate, {b!r} in track_ds; "
                "imitate the track the estimate was made from"
            )


def transform_for(meta: dict, transform):
    """The LE-SDE's transform: the one the estimate was made for unless ``transform`` is given (with a warning when
    they differ); the kernel (residual) form is refused, no transform reproduces it."""
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
            stacklevel=4,
        )
    return transform


def class_probs_of(track_ds: xr.Dataset, K: int) -> tuple[np.ndarray, str]:
    """pi (K,) of the steps that made the track, and where it comes from (module docstring)."""
    spec, counts = (_json(track_ds.attrs.get(k)) for k in ("spec", "class_counts"))
    if isinstance(spec, dict) and spec.get("class_sampling") == "uniform-class":
        return np.full(K, 1.0 / K), "the LE process's class_sampling='uniform-class'"
    if counts is not None and len(np.atleast_1d(counts)) == K:
        c = np.asarray(np.atleast_1d(counts), np.float64)
        return c / c.sum(), "the training set's class_counts"
    c = np.bincount(track_ds["label"].values, minlength=K).astype(np.float64)
    warnings.warn(
        "the track records no class_counts of its training set: the LE-SDE's class frequencies are taken from the "
        "probe counts, which differ from the training set's unless the probes are all of it",
        UserWarning,
        stacklevel=3,
    )
    return c / c.sum(), "the probe counts (the track records no class_counts)"


def _json(value):
    """An attr as the producer wrote it: lists and dicts come back from a Dataset as JSON strings."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def le_sde(K: int, m: int, counts, alpha, beta, transform, sigma: float, pi: np.ndarray):
    """The imitating LE-SDE: one sample per probe (``counts`` per class), classes drawn with frequencies ``pi``."""
    from .. import LESDE

    model = LESDE(K, m, list(map(int, counts)), alpha=alpha, beta=beta, transform=transform, noise=sigma)
    model.class_probs.copy_(torch.as_tensor(pi, dtype=torch.float64))
    return model


def simulate_from(model, F0: np.ndarray, times: np.ndarray, sde: dict) -> dict[str, np.ndarray]:
    """``paths_per_run`` LE-SDE paths per run from each run's initial probe features F0 (R, P, m), dt = the learning
    rate: class means (R, paths, T, K, m), within-class variances (R, paths, T, K) and NCM accuracy (R, paths, T)."""
    from .. import simulate

    R, P, m = F0.shape
    per, T = sde["paths_per_run"], len(times)
    chunk = max(1, min(per, MAX_SAVED_BYTES // max(T * P * m * 8, 1)))
    labels = model.labels.numpy()
    out = {"class_mean": [], "within_var": [], "ncm_accuracy": []}
    for r in range(R):
        parts = {k: [] for k in out}
        for j in range(0, per, chunk):
            n = min(chunk, per - j)
            x0 = torch.from_numpy(np.repeat(F0[r : r + 1], n, axis=0))  # (n, P, m)
            sim = simulate(model, t_end=float(times[-1]), dt=sde["lr"], n_paths=n, save_times=times,
                           method=sde["method"], save="full", dtype=torch.float64, seed=sde["seed"] + r * per + j,
                           x0=x0, progress=sde["progress"])  # fmt: skip
            X = sim["features"].values  # (n, T, P, m)
            M, V = class_stats(X, labels, model.num_classes)
            parts["class_mean"].append(M)
            parts["within_var"].append(V)
            parts["ncm_accuracy"].append(ncm_accuracy(X, labels, model.num_classes))
        for k in out:
            out[k].append(np.concatenate(parts[k]))
    return {k: np.stack(v) for k, v in out.items()}


def metrics(M: np.ndarray, V: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """The NC metrics computable from class means (..., K, m) and within-class variances (..., K); NaN where a
    diverging process's moments overflowed."""
    from ..metrics import MEANS_METRICS, means_metrics

    ok = np.isfinite(M).all((-2, -1)) & np.isfinite(V).all(-1)  # (...)
    out = {k: np.full(ok.shape, np.nan) for k in MEANS_METRICS}
    if ok.any():
        res = means_metrics(torch.from_numpy(np.ascontiguousarray(M[ok])), torch.from_numpy(np.ascontiguousarray(V[ok])),
                            torch.as_tensor(counts))  # fmt: skip
        for k in out:
            out[k][ok] = res[k].numpy()
    return out


__all__ = ["elasticity_of", "check_same_track", "transform_for", "class_probs_of", "le_sde", "simulate_from", "metrics"]
