r"""Drive an LE-SDE with the elasticity fitted from a track and compare its class means with the network's.

The LE-SDE gets K from the track, one sample per probe (``samples_per_class`` = probe counts, ordered by class as
the probes are), ``alpha``/``beta`` from the fit, and the residual diffusion scale estimated with the fit
(:math:`\hat\sigma`, ``FitResult.noise``) unless ``noise`` is given. Path ``(r, j)`` starts at run ``r``'s
initial probe features, so its class means start exactly at the network's, and ``paths_per_run`` independent
noise realisations per run are averaged. The comparison, per run and time, is the relative error

.. math::

    \varepsilon_r(t) = \frac{\| \bar M^{\text{LE-SDE}}_r(t) - M^{\text{net}}_r(t) \|_F}{\| M^{\text{net}}_r(t) \|_F},

with :math:`M` the (K, m) matrix of class means, and the NC metrics computable from class means and within-class
variances (:func:`lesde.metrics.means_metrics`) for both processes side by side along a ``process`` dim.
Decision: :math:`\pi_l` follows the probe counts (``class_sampling="uniform-sample"``), which match the training
set's class shares when probes are all samples or a stratified subset (the defaults).
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from .._validate import check_int
from ._common import finish
from .fitting import FitResult

PROCESSES = ("network", "le-sde")


def _class_stats(F: np.ndarray, labels: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means (..., K, m) and within-class variances (..., K) of features (..., P, m)."""
    Y = (labels[:, None] == np.arange(K)).astype(np.float64)
    Y /= Y.sum(0)
    M = np.einsum("...pm,pk->...km", F, Y)
    dev2 = ((F - M[..., labels, :]) ** 2).sum(-1)  # (..., P)
    return M, np.einsum("...p,pk->...k", dev2, Y)


def imitate(
    track_ds: xr.Dataset,
    fit_result: FitResult,
    transform: str = "identity",
    noise: float | None = None,
    paths_per_run: int = 1,
    max_times: int = 201,
    method: str = "euler",
    seed: int = 0,
    progress: bool = False,
) -> xr.Dataset:
    r"""Simulate the fitted LE-SDE from the network's initial features and compare class-mean trajectories.

    Parameters
    ----------
    track_ds : xarray.Dataset
        A track (``features(run, step, probe, feature)``, ``label(probe)``, ``time(step)``).
    fit_result : FitResult
        From :func:`~lesde.empirical.fit`: supplies the alpha and beta schedules and :math:`\hat\sigma`.
    transform : str
        LE-SDE transform (``"identity"``, ``"residual"``, ...).
    noise : float, optional
        Diffusion :math:`\sigma`; default ``fit_result.noise``.
    paths_per_run : int
        LE-SDE paths per run (their class means are averaged).
    max_times : int
        At most this many recorded steps (evenly spaced) are compared.
    method, seed, progress : passed to :func:`lesde.simulate` (``dt`` = the track's learning rate).

    Returns
    -------
    xarray.Dataset
        ``class_mean(process, run, time, class, feature)``, ``within_var(process, run, time, class)``, NC metrics
        ``(process, run, time)``, ``relative_error(run, time)``; coordinates ``process = ["network", "le-sde"]``
        and ``step(time)``.
    """
    from .. import LESDE, simulate
    from ..metrics import means_metrics

    paths_per_run = check_int("paths_per_run", paths_per_run)
    labels = track_ds["label"].values
    if np.any(np.diff(labels) < 0):
        raise ValueError("the track's probes must be ordered by label (tracks from lesde.empirical are)")
    K = int(track_ds.attrs.get("num_classes", labels.max() + 1))
    counts = np.bincount(labels, minlength=K)
    if (counts == 0).any():
        raise ValueError(f"every class needs at least one probe to imitate, got probe counts {counts.tolist()}")
    lr = float(track_ds.attrs["lr"])
    sigma = fit_result.noise if noise is None else float(noise)
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"noise must be a finite sigma >= 0 (the fit carries none: {fit_result.noise}); pass noise=")
    S = track_ds.sizes["step"]
    idx = np.unique(np.linspace(0, S - 1, min(S, check_int("max_times", max_times, 2))).round().astype(int))
    sub = track_ds.isel(step=idx)
    times = sub["time"].values.astype(np.float64)
    F = sub["features"].values.astype(np.float64)  # (R, T, P, m)
    R, T, P, m = F.shape

    model = LESDE(
        K,
        m,
        counts.tolist(),
        alpha=fit_result.alpha,
        beta=fit_result.beta,
        transform=transform,
        noise=sigma,
        class_sampling="uniform-sample",
    )
    x0 = torch.from_numpy(np.repeat(F[:, 0], paths_per_run, axis=0))  # (R * paths_per_run, P, m)
    sim = simulate(
        model,
        t_end=float(times[-1]),
        dt=lr,
        n_paths=R * paths_per_run,
        save_times=times,
        method=method,
        save="means",
        dtype=torch.float64,
        seed=seed,
        x0=x0,
        progress=progress,
    )
    M_sde = sim["class_mean"].values.reshape(R, paths_per_run, T, K, m)
    V_sde = sim["within_var"].values.reshape(R, paths_per_run, T, K)
    M_net, V_net = _class_stats(F, labels, K)  # (R, T, K, m), (R, T, K)

    def metrics(M, V):
        out = means_metrics(
            torch.from_numpy(np.ascontiguousarray(M)),
            torch.from_numpy(np.ascontiguousarray(V)),
            torch.as_tensor(counts),
        )
        return {k: v.numpy() for k, v in out.items()}

    met_net = metrics(M_net, V_net)
    met_sde = {k: v.mean(1) for k, v in metrics(M_sde, V_sde).items()}  # mean over the paths of a run
    M_sde_mean, V_sde_mean = M_sde.mean(1), V_sde.mean(1)
    rel = np.linalg.norm((M_sde_mean - M_net).reshape(R, T, -1), axis=-1) / np.linalg.norm(
        M_net.reshape(R, T, -1), axis=-1
    )

    data = {
        "class_mean": (("process", "run", "time", "class", "feature"), np.stack([M_net, M_sde_mean])),
        "within_var": (("process", "run", "time", "class"), np.stack([V_net, V_sde_mean])),
        "relative_error": (("run", "time"), rel),
    }
    for k in met_net:
        data[k] = (("process", "run", "time"), np.stack([met_net[k], met_sde[k]]))
    ds = xr.Dataset(
        data,
        coords={
            "process": list(PROCESSES),
            "run": np.arange(R),
            "time": times,
            "step": ("time", sub["step"].values),
            "class": np.arange(K),
            "feature": np.arange(m),
        },
    )
    ds["relative_error"].attrs["long_name"] = "||class means (LE-SDE) - class means (network)||_F / ||network||_F"
    return finish(
        ds,
        source="imitate",
        fit=fit_result.to_json(),
        spec=model.to_spec(),
        noise=sigma,
        transform=transform,
        paths_per_run=paths_per_run,
        method=method,
        seed=seed,
        lr=lr,
        samples_per_class=counts.tolist(),
    )


__all__ = ["imitate"]
