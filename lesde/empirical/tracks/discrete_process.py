r"""The discrete locally elastic process: the ground truth for the estimators.

One step :math:`s` (learning rate :math:`\eta`, time :math:`t_{s-1} = (s-1)\eta`) draws a class :math:`L \sim \pi`
and a sample :math:`I` uniform inside class :math:`L`, then moves *every* feature:

.. math::

    X_i \leftarrow X_i + \eta\, E_{t_{s-1}}(y_i, L)\, T(y_i, L)\, X_I + \sqrt{\eta}\, \phi_i ,

with :math:`\phi_i` drawn from the model's noise (``model.g_prod`` applied to a standard normal). Averaged over
:math:`(L, I)` with :math:`t = s\eta` this is the LE-SDE's drift. ``model.transform_apply`` computes the update
for all classes at once: slot :math:`L` of ``V`` holds :math:`X_I`, and ``W`` keeps only column :math:`L` of
:math:`E`, so row :math:`k` of the result is :math:`E_{kL} T_{kL} X_I`.

Decisions: with ``noise="sampling"`` the model's diffusion *is* the fluctuation of the sampled drift, which the
discrete process already carries, so :math:`\phi = 0`. ``x0`` defaults to i.i.d. :math:`N(0, \text{x0\_scale}^2)`
features. The returned Dataset has the layout of :func:`lesde.empirical.track` (features, increment,
sampled_feature, sampled_index, sampled_label; sampled_residual when ``m == K``, treating features as logits);
there is no loss or accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from ...schema import make_dataset
from ...validation import check_int, check_positive_float
from .tracking import DEFAULT_RUNS, select_probes


def simulate_discrete(
    model,
    lr: float,
    steps: int,
    n_runs: int | None = None,
    probes: int | Sequence[int] | torch.Tensor | None = None,
    record_every: int = 1,
    seed: int = 0,
    x0: torch.Tensor | None = None,
    x0_scale: float = 1.0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> xr.Dataset:
    r"""Run the discrete LE process of ``model`` for ``n_runs`` independent runs and record it like a track.

    Parameters
    ----------
    model : lesde.LESDE
        Supplies K, m, the class counts, :math:`\pi`, :math:`E(t)` (``elasticity_matrix``), the transform
        (``transform_apply``) and the noise (``g_prod``).
    lr : float
        :math:`\eta`; time :math:`t = s\eta`.
    steps, n_runs : int
        Steps per run, independent runs (batched, no loop over runs; default
        :data:`~lesde.empirical.DEFAULT_RUNS`, 8).
    probes : None, int or indices
        Samples recorded (all by default; see :func:`lesde.empirical.tracking.select_probes`).
    record_every : int
        Record at steps ``0, r, 2r, ...``; increments are always the one-step change.
    seed : int
        Seeds x0, the sampled (L, I) and the noise.
    x0 : tensor (N, m) or (n_runs, N, m), optional
        Initial features (samples ordered by class, as ``model.labels``).
    dtype, device : precision (float64 default: this is ground truth) and device.

    Returns
    -------
    xarray.Dataset with ``features(run, step, probe, feature)``, ``increment``, ``sampled_feature(run, step,
    feature)``, ``sampled_residual(run, step, class)`` (only when m == K), ``sampled_index``, ``sampled_label``;
    coordinates ``label(probe)``, ``sample_index(probe)``, ``time(step)``.

    Examples
    --------
    >>> import lesde
    >>> model = lesde.LESDE(3, 3, 4, alpha=1.0, beta=0.2, noise=0.1)
    >>> ds = simulate_discrete(model, lr=0.01, steps=10, n_runs=2)
    >>> dict(ds.features.sizes)
    {'run': 2, 'step': 11, 'probe': 12, 'feature': 3}
    """
    lr = check_positive_float("lr", lr)
    runs = check_int("n_runs", DEFAULT_RUNS if n_runs is None else n_runs)
    steps, record_every = check_int("steps", steps), check_int("record_every", record_every)
    if record_every > steps:
        raise ValueError(f"record_every={record_every} exceeds steps={steps}: nothing but step 0 would be recorded")
    dev = torch.device(device)
    K, m, N = model.num_classes, model.dim, model.num_samples
    md = model.on(dev)
    labels = model.labels.to(dev)  # (N,)
    counts = model.counts.to(dev)
    offsets = torch.cumsum(counts, 0) - counts  # first index of each class
    probe_idx = select_probes(model.labels, probes, seed).to(dev)
    P = len(probe_idx)
    gen = torch.Generator(device=dev).manual_seed(int(seed))

    if x0 is None:
        X = x0_scale * torch.randn((runs, N, m), generator=gen, dtype=dtype, device=dev)
    else:
        X = torch.as_tensor(x0, dtype=dtype, device=dev)
        if X.shape[-2:] != (N, m) or X.ndim not in (2, 3) or (X.ndim == 3 and X.shape[0] != runs):
            raise ValueError(f"x0 must have shape (N, m) = ({N}, {m}) or (n_runs, N, m), got {tuple(X.shape)}")
        X = X.expand(runs, N, m).clone()
    sampling_noise = getattr(md, "noise_kind", None) == "sampling"
    brownian = int(getattr(md, "brownian_size", N * m))

    rec_steps = np.arange(0, steps + 1, record_every)
    S = len(rec_steps)
    nan = float("nan")
    features = torch.empty((runs, S, P, m), dtype=dtype, device=dev)
    increment = torch.full((runs, S, P, m), nan, dtype=dtype, device=dev)
    s_feat = torch.full((runs, S, m), nan, dtype=dtype, device=dev)
    s_res = torch.full((runs, S, K), nan, dtype=dtype, device=dev)
    s_idx = torch.full((runs, S), -1, dtype=torch.long, device=dev)
    features[:, 0] = X[:, probe_idx]
    pi = md.class_probs.to(device=dev, dtype=torch.float64)
    ar = torch.arange(runs, device=dev)
    sqrt_lr = lr**0.5
    needs_means = getattr(getattr(md, "transform", None), "state_dependent", True)

    # randomness and E(t) are drawn in chunks of steps: per-step calls into the schedules dominate otherwise
    chunk = max(1, min(1024, 2**22 // (runs * brownian)))
    for s in range(1, steps + 1):
        c = (s - 1) % chunk
        if c == 0:
            n = min(chunk, steps - s + 1)
            ts = (s - 1 + torch.arange(n, dtype=torch.float64, device=dev)) * lr
            E_all = md.elasticity_matrix(ts).to(device=dev, dtype=dtype)  # (n, K, K) or (n, R, K, K)
            L_all = torch.multinomial(pi, n * runs, replacement=True, generator=gen).view(n, runs)
            u_all = torch.rand((n, runs), generator=gen, dtype=torch.float64, device=dev)
            if not sampling_noise:
                z_all = torch.randn((n, runs, brownian), generator=gen, dtype=dtype, device=dev)
        t = (s - 1) * lr
        L = L_all[c]  # (R,)
        I = offsets[L] + (u_all[c] * counts[L]).long().clamp(max=counts[L] - 1)  # (R,) uniform inside class L
        XI = X[ar, I]  # (R, m)
        V = torch.zeros((runs, K, m), dtype=dtype, device=dev)
        V[ar, L] = XI
        onehot = torch.nn.functional.one_hot(L, K).to(dtype)  # (R, K)
        W = E_all[c] * onehot[:, None, :]  # (R, K, K): column L only
        means = md.class_means(X) if needs_means else None  # (R, K, m), for state-dependent transforms
        drift = md.transform_apply(W, V, means)  # (R, K, m): row k = E_kL T_kL X_I
        step = lr * drift[:, labels]  # (R, N, m)
        if not sampling_noise:
            step = step + sqrt_lr * md.g_prod(t, X.reshape(runs, N * m), z_all[c]).reshape(runs, N, m)
        X = X + step
        j, r = divmod(s, record_every)
        if r == 0:
            features[:, j] = X[:, probe_idx]
            increment[:, j] = step[:, probe_idx]
            s_feat[:, j] = XI
            s_idx[:, j] = I
            if m == K:
                e = torch.exp(
                    XI - XI.amax(-1, keepdim=True)
                )  # softmax by hand: torch.softmax is slow on tiny CPU tensors
                s_res[:, j] = onehot - e / e.sum(-1, keepdim=True)
        if s % 100 == 0 and not torch.isfinite(X).all():  # checked in strides: each check syncs
            raise FloatingPointError(
                f"the discrete process overflowed at step {s} (t={s * lr:.4g}); use a smaller "
                "elasticity, fewer steps or float64"
            )

    s_lab = torch.where(s_idx >= 0, labels[s_idx.clamp(min=0)], -1)

    def np_(x):
        return x.cpu().numpy()

    data = {
        "features": (("run", "step", "probe", "feature"), np_(features)),
        "increment": (("run", "step", "probe", "feature"), np_(increment)),
        "sampled_feature": (("run", "step", "feature"), np_(s_feat)),
        "sampled_index": (("run", "step"), np_(s_idx)),
        "sampled_label": (("run", "step"), np_(s_lab)),
    }
    if m == K:
        data["sampled_residual"] = (("run", "step", "class"), np_(s_res))
    ds = make_dataset(
        data,
        {
            "run": np.arange(runs),
            "step": rec_steps,
            "probe": np.arange(P),
            "feature": np.arange(m),
            "class": np.arange(K),
            "label": ("probe", np_(labels[probe_idx])),
            "sample_index": ("probe", np_(probe_idx)),
            "time": ("step", rec_steps * lr),
        },
        time="training",
        attrs=dict(
            source="simulate_discrete",
            spec=model.to_spec(),
            lr=lr,
            steps=steps,
            n_runs=runs,
            record_every=record_every,
            feature="le-process",
            seed=seed,
            device=str(dev),
            dtype=str(dtype).replace("torch.", ""),
            num_classes=K,
            num_samples=N,
            class_counts=model.counts.tolist(),
        ),
    )
    return ds


__all__ = ["simulate_discrete"]
