r"""The discrete locally elastic process: the ground truth for the estimators.

One step $s$ (learning rate $\eta$, time $t_{s-1} = (s-1)\eta$) draws a class $L \sim \pi$
and a sample $I$ uniform inside class $L$, then moves *every* feature:

$$ X_i \leftarrow X_i + \eta\, E_{t_{s-1}}(y_i, L)\, T(y_i, L)\, X_I + \sqrt{\eta}\, \phi_i , $$

with $\phi_i$ drawn from the model's noise (``model.g_prod`` applied to a standard normal). Averaged over
$(L, I)$ with $t = s\eta$ this is the LE-SDE's drift. ``model.transform_apply`` computes the update
for all classes at once: slot $L$ of ``V`` holds $X_I$, and ``W`` keeps only column $L$ of
$E$, so row $k$ of the result is $E_{kL} T_{kL} X_I$.

Decisions: with ``noise="sampling"`` the model's diffusion *is* the fluctuation of the sampled drift, which the
discrete process already carries, so $\phi = 0$. ``x0`` defaults to i.i.d. $N(0, \text{x0\_scale}^2)$
features. The randomness (class, sample, noise) and $E(t)$ are drawn in chunks of steps: per-step calls
into the schedules dominate otherwise. The returned Dataset is built by
`track_dataset`, the builder of every track (features, increment,
sampled_feature, sampled_index, sampled_label; sampled_residual when ``m == K``, the features playing the role of
logits); there is no loss or accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from ...validation import check_int, check_positive_float, check_seed
from .track_inputs import DEFAULT_RUNS, select_probes
from .track_layout import TrackRecords, track_dataset


class _Process:
    """One model's discrete LE process for ``runs`` runs on a device: the constants of a step, drawn once."""

    def __init__(self, model, runs: int, lr: float, dtype: torch.dtype, dev: torch.device):
        self.md = model.on(dev)
        self.K, self.m, self.N = model.num_classes, model.dim, model.num_samples
        self.runs, self.lr, self.dtype, self.dev = runs, lr, dtype, dev
        self.labels = model.labels.to(dev)  # (N,)
        self.counts = model.counts.to(dev)
        self.offsets = torch.cumsum(self.counts, 0) - self.counts  # first index of each class
        self.pi = self.md.class_probs.to(device=dev, dtype=torch.float64)
        self.ar = torch.arange(runs, device=dev)
        self.sampling_noise = getattr(self.md, "noise_kind", None) == "sampling"
        self.brownian = int(getattr(self.md, "brownian_size", self.N * self.m))
        self.needs_means = getattr(getattr(self.md, "transform", None), "state_dependent", True)

    def draws(self, s: int, n: int, gen: torch.Generator) -> dict:
        """E(t_{s-1}), ..., E(t_{s+n-2}) (n, K, K) or (n, R, K, K), and the classes, uniforms and noise of n steps."""
        ts = (s - 1 + torch.arange(n, dtype=torch.float64, device=self.dev)) * self.lr
        out = {
            "E": self.md.elasticity_matrix(ts).to(device=self.dev, dtype=self.dtype),
            "L": torch.multinomial(self.pi, n * self.runs, replacement=True, generator=gen).view(n, self.runs),
            "u": torch.rand((n, self.runs), generator=gen, dtype=torch.float64, device=self.dev),
        }
        if not self.sampling_noise:
            out["z"] = torch.randn((n, self.runs, self.brownian), generator=gen, dtype=self.dtype, device=self.dev)
        return out

    def step(self, X: torch.Tensor, s: int, d: dict, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step s from X (R, N, m) with the c-th of the chunk's draws ``d``: the move (R, N, m), I (R,), X_I (R, m)."""
        runs, K, m, N = self.runs, self.K, self.m, self.N
        L = d["L"][c]  # (R,)
        I = self.offsets[L] + (d["u"][c] * self.counts[L]).long().clamp(max=self.counts[L] - 1)  # uniform in class L
        XI = X[self.ar, I]  # (R, m)
        V = torch.zeros((runs, K, m), dtype=self.dtype, device=self.dev)
        V[self.ar, L] = XI
        onehot = torch.nn.functional.one_hot(L, K).to(self.dtype)  # (R, K)
        W = d["E"][c] * onehot[:, None, :]  # (R, K, K): column L only
        means = self.md.class_means(X) if self.needs_means else None  # (R, K, m), for state-dependent transforms
        drift = self.md.transform_apply(W, V, means)  # (R, K, m): row k = E_kL T_kL X_I
        move = self.lr * drift[:, self.labels]  # (R, N, m)
        if not self.sampling_noise:
            t = (s - 1) * self.lr
            z = d["z"][c]
            move = move + self.lr**0.5 * self.md.g_prod(t, X.reshape(runs, N * m), z).reshape(runs, N, m)
        return move, I, XI


@dataclass
class _Records:
    """The recorded steps of a run of the process, on its device."""

    features: torch.Tensor  # (R, S, P, m)
    increment: torch.Tensor  # (R, S, P, m)
    sampled_feature: torch.Tensor  # (R, S, m)
    sampled_index: torch.Tensor  # (R, S)

    @classmethod
    def empty(cls, runs: int, S: int, P: int, m: int, dtype, dev) -> _Records:
        nan = float("nan")
        return cls(
            torch.empty((runs, S, P, m), dtype=dtype, device=dev),
            torch.full((runs, S, P, m), nan, dtype=dtype, device=dev),
            torch.full((runs, S, m), nan, dtype=dtype, device=dev),
            torch.full((runs, S), -1, dtype=torch.long, device=dev),
        )

    def as_numpy(self, sampled_logits: bool) -> TrackRecords:
        f, inc, sf, si = (
            x.cpu().numpy() for x in (self.features, self.increment, self.sampled_feature, self.sampled_index)
        )
        return TrackRecords(f, inc, sf, si, sampled_logits=sf if sampled_logits else None)


def _initial_state(proc: _Process, x0, x0_scale: float, gen: torch.Generator) -> torch.Tensor:
    """X(0) of every run (R, N, m): ``x0`` (shared or per run), or i.i.d. N(0, x0_scale^2)."""
    shape = (proc.runs, proc.N, proc.m)
    if x0 is None:
        return x0_scale * torch.randn(shape, generator=gen, dtype=proc.dtype, device=proc.dev)
    X = torch.as_tensor(x0, dtype=proc.dtype, device=proc.dev)
    if X.shape[-2:] != shape[1:] or X.ndim not in (2, 3) or (X.ndim == 3 and X.shape[0] != proc.runs):
        raise ValueError(f"x0 must have shape (N, m) = ({proc.N}, {proc.m}) or (n_runs, N, m), got {tuple(X.shape)}")
    return X.expand(*shape).clone()


def _run(proc: _Process, X: torch.Tensor, probe_idx, steps: int, record_every: int, gen) -> _Records:
    """Steps 1..steps from X, recorded at steps 0, r, 2r, ..."""
    rec = _Records.empty(proc.runs, steps // record_every + 1, len(probe_idx), proc.m, proc.dtype, proc.dev)
    rec.features[:, 0] = X[:, probe_idx]
    chunk = max(1, min(1024, 2**22 // (proc.runs * proc.brownian)))
    for s in range(1, steps + 1):
        c = (s - 1) % chunk
        if c == 0:
            d = proc.draws(s, min(chunk, steps - s + 1), gen)
        move, I, XI = proc.step(X, s, d, c)
        X = X + move
        j, r = divmod(s, record_every)
        if r == 0:
            rec.features[:, j] = X[:, probe_idx]
            rec.increment[:, j] = move[:, probe_idx]
            rec.sampled_feature[:, j] = XI
            rec.sampled_index[:, j] = I
        if s % 100 == 0 and not torch.isfinite(X).all():  # checked in strides: each check syncs
            raise FloatingPointError(
                f"the discrete process overflowed at step {s} (t={s * proc.lr:.4g}); use a smaller "
                "elasticity, fewer steps or float64"
            )
    return rec


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
        Supplies K, m, the class counts, $\pi$, $E(t)$ (``elasticity_matrix``), the transform
        (``transform_apply``) and the noise (``g_prod``).
    lr : float
        $\eta$; time $t = s\eta$.
    steps : int
        Steps per run, independent runs (batched, no loop over runs; default
        `DEFAULT_RUNS`, 8).
    n_runs : int
        Described with `steps` above.
    probes : None, int or indices
        Samples recorded (all by default; see `lesde.empirical.tracks.track_inputs.select_probes`).
    record_every : int
        Record at steps ``0, r, 2r, ...``; increments are always the one-step change.
    seed : int
        Seeds x0, the sampled (L, I) and the noise.
    x0 : tensor (N, m) or (n_runs, N, m), optional
        Initial features (samples ordered by class, as ``model.labels``).
    dtype
        precision (float64 default: this is ground truth) and device.
    device
        Described with `dtype` above.

    Returns
    -------
    xr.Dataset
        xarray.Dataset with ``features(run, step, probe, feature)``, ``increment``, ``sampled_feature(run, step,
        feature)``, ``sampled_residual(run, step, class)`` (only when m == K), ``sampled_index``, ``sampled_label``;
        coordinates ``label(probe)``, ``sample_index(probe)``, ``time(step)``.

    Examples
    --------
    >>> from lesde.empirical import simulate_discrete
    >>> import lesde
    >>> model = lesde.LESDE(3, 3, 4, alpha=1.0, beta=0.2, noise=0.1)
    >>> ds = simulate_discrete(model, lr=0.01, steps=10, n_runs=2)
    >>> dict(ds.features.sizes)
    {'run': 2, 'step': 11, 'probe': 12, 'feature': 3}
    """
    if not all(hasattr(model, a) for a in ("on", "labels", "to_spec")):
        raise TypeError(f"model must be a lesde.LESDE (the process to run), got {type(model).__name__}")
    lr, seed = check_positive_float("lr", lr), check_seed("seed", seed)
    runs = check_int("n_runs", DEFAULT_RUNS if n_runs is None else n_runs)
    steps, record_every = check_int("steps", steps), check_int("record_every", record_every)
    if record_every > steps:
        raise ValueError(f"record_every={record_every} exceeds steps={steps}: nothing but step 0 would be recorded")
    dev = torch.device(device)
    proc = _Process(model, runs, lr, dtype, dev)
    probe_idx = select_probes(model.labels, probes, seed).to(dev)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    X = _initial_state(proc, x0, x0_scale, gen)
    rec = _run(proc, X, probe_idx, steps, record_every, gen)
    return track_dataset(
        rec.as_numpy(sampled_logits=proc.m == proc.K),
        steps=np.arange(0, steps + 1, record_every),
        lr=lr,
        probe_index=probe_idx,
        labels=model.labels,
        num_classes=proc.K,
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
            num_classes=proc.K,
            num_samples=proc.N,
            class_counts=model.counts.tolist(),
        ),
    )


__all__ = ["simulate_discrete"]
