r"""The layout of a track, and the one function that builds its Dataset from the raw records.

Every producer of tracks (`track`, `Tracker` and
`simulate_discrete`) hands its raw records (`TrackRecords`) to `track_dataset`,
so the three share one layout and one computation of the derived quantities.

Layout (what the estimators in `lesde.empirical.estimation` read)
---------------------------------------------------------------------
- ``features(run, step, probe, feature)``: $f_s(x_i)$ at recorded steps ``0, r, 2r, ...`` (``r =
  record_every``); ``feature`` the logits, the penultimate layer (the input of the last ``nn.Linear``), the
  output of a named submodule, or the state of the discrete LE process.
- ``increment(run, step, probe, feature)``: $f_s(x_i) - f_{s-1}(x_i)$, the change made by the *single* step
  ``s`` (when ``record_every > 1`` the producers evaluate the probes just before each recorded step, so the
  estimators always see one-step increments, whatever the recording stride).
- ``sampled_feature(run, step, feature)``: $f_{s-1}(x_{I_s})$, the trained example's feature *before* the
  step, and ``sampled_residual(run, step, class)``: $e_{L_s} - \mathrm{softmax}(\text{logits}_{s-1}(x_{I_s}))$.
  For the discrete LE process, which has no network, the sampled feature plays the role of the logits (only when
  ``m == K``).
- ``sampled_index``, ``sampled_label`` over ``(run, step)``; for a network, ``sampled_loss`` (the sampled example's
  cross-entropy before the step) and ``loss`` and ``accuracy`` over ``(run, step)``, the mean cross-entropy and the
  accuracy on the probes after the step.
- with validation: ``validation_accuracy`` and ``validation_loss`` over ``(run, validation_step)``.
- coordinates ``label(probe)``, ``sample_index(probe)`` (index into the training set) and ``time(step) = step *
  lr``. Step 0 holds the initial features; its sampled_* entries are NaN / -1.

Decisions: the derived quantities are computed here, once, at the end, from the stored logits: per step they would
cost as much as the probe forward's bookkeeping. The residual and the sampled loss are computed in float64 (in
float32, $1 - p$ rounds to 0 for well-fitted samples, and the residual form would divide rounding noise by
rounding noise); the probes' loss keeps each probe's cross-entropy in the logits' precision and averages in float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from ...schema import make_dataset


@dataclass
class TrackRecords:
    """The raw records of a track's recorded steps (numpy, in the producer's precision)."""

    features: np.ndarray  # (R, S, P, m)
    increment: np.ndarray  # (R, S, P, m), NaN at step 0
    sampled_feature: np.ndarray  # (R, S, m), NaN at step 0
    sampled_index: np.ndarray  # (R, S) int64, -1 at step 0
    #: (R, S, P, K) the probes' logits of a network: ``loss``, ``accuracy`` and ``sampled_loss``; None without one
    logits: np.ndarray | None = None
    #: (R, S, K) the logits of the sampled example before its step: ``sampled_residual``; None without logits
    sampled_logits: np.ndarray | None = None
    validation: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (R, V)
    validation_steps: np.ndarray | None = None  # (V,)


def probe_loss(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy (logsumexp - z_y, the means in float64) and accuracy (argmax) over probes of logits
    (R, S, P, K), run by run (a fused logsumexp is 4x faster than log_softmax + gather here)."""
    R, S = logits.shape[:2]
    loss, acc = np.empty((R, S)), np.empty((R, S))
    y = torch.from_numpy(labels)
    for r in range(R):
        z = torch.from_numpy(logits[r])  # (S, P, K)
        zy = z.gather(2, y.expand(S, -1)[..., None])[..., 0]
        loss[r] = (torch.logsumexp(z, -1) - zy).double().mean(1).numpy()
        acc[r] = (z.argmax(-1) == y).double().mean(1).numpy()
    return loss, acc


def sampled_terms(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sampled example's residual $e_L - \\mathrm{softmax}(z)$ (R, S, K) and cross-entropy (R, S), in
    float64 from its logits (R, S, K); NaN where there is no sample (label -1)."""
    lp = torch.log_softmax(torch.from_numpy(logits).double(), -1)
    onehot = F.one_hot(torch.from_numpy(labels).clamp(min=0), logits.shape[-1]).double()
    valid = torch.from_numpy(labels >= 0)[..., None]
    residual = torch.where(valid, onehot - lp.exp(), torch.nan).numpy()
    loss = torch.where(valid[..., 0], -(lp * onehot).sum(-1), torch.nan).numpy()
    return residual, loss


def network_attrs(
    source: str,
    *,
    net,
    labels: torch.Tensor,
    num_classes: int,
    lr: float,
    steps: int,
    n_runs: int,
    record_every: int,
    feature: str,
    seed: int,
    device,
    dtype: torch.dtype,
    setup: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The global attrs of a network's track (``setup``: how the runs were made, ``extra``: how the track ended)."""
    return dict(
        source=source,
        lr=lr,
        steps=steps,
        n_runs=n_runs,
        record_every=record_every,
        feature=feature,
        seed=seed,
        **(setup or {}),
        device=str(device),
        dtype=str(dtype).replace("torch.", ""),
        num_classes=num_classes,
        num_samples=len(labels),
        class_counts=torch.bincount(labels, minlength=num_classes).tolist(),
        net=repr(net),
        **(extra or {}),
    )


def track_dataset(
    records: TrackRecords,
    *,
    steps: np.ndarray,
    lr: float,
    probe_index: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    time: str | None = None,
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """The track Dataset (module layout) of ``records`` at recorded ``steps`` (S,), with the probes
    ``probe_index`` (P,) into the training ``labels`` (N,); ``time`` and ``attrs`` as `lesde.schema.make_dataset`
    takes them."""
    labels = torch.as_tensor(labels).cpu()
    probe_index = torch.as_tensor(probe_index).cpu()
    probe_labels = labels[probe_index].numpy()
    s_idx = torch.from_numpy(records.sampled_index)
    s_lab = torch.where(s_idx >= 0, labels[s_idx.clamp(min=0)], -1).numpy()
    rs, rsp, rsm = ("run", "step"), ("run", "step", "probe", "feature"), ("run", "step", "feature")
    data: dict[str, Any] = {
        "features": (rsp, records.features),
        "increment": (rsp, records.increment),
        "sampled_feature": (rsm, records.sampled_feature),
    }
    s_loss = None
    if records.sampled_logits is not None:
        residual, s_loss = sampled_terms(records.sampled_logits, s_lab)
        data["sampled_residual"] = (("run", "step", "class"), residual)
    data["sampled_index"] = (rs, records.sampled_index)
    data["sampled_label"] = (rs, s_lab)
    if records.logits is not None:  # a network: its losses (the discrete LE process has none)
        if s_loss is not None:
            data["sampled_loss"] = (rs, s_loss)
        loss, acc = probe_loss(records.logits, probe_labels)
        data.update(loss=(rs, loss), accuracy=(rs, acc))
    steps = np.asarray(steps)
    R, _, P, m = records.features.shape
    coords = {
        "run": np.arange(R),
        "step": steps,
        "probe": np.arange(P),
        "feature": np.arange(m),
        "class": np.arange(num_classes),
        "label": ("probe", probe_labels),
        "sample_index": ("probe", probe_index.numpy()),
        "time": ("step", steps * lr),
    }
    if records.validation_steps is not None and len(records.validation_steps):
        data.update({k: (("run", "validation_step"), v) for k, v in records.validation.items()})
        coords["validation_step"] = np.asarray(records.validation_steps)
    return make_dataset(data, coords, time=time, attrs=attrs)


__all__ = ["TrackRecords", "track_dataset", "network_attrs", "probe_loss", "sampled_terms"]
