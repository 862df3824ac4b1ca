"""The options of a track as small objects, and the first stage of `track`: every argument
checked into one `TrackRequest`.

`Checkpoint` and `Validation` bundle what the keyword pairs ``checkpoint=path, checkpoint_every=n``
and ``validation=(x, y), validation_every=n`` say, so a job that passes them on (the CLI, an experiment over
label-noise rates) hands over one object. ``track`` accepts either spelling; past this stage only the objects
exist.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...validation import check_choice, check_device, check_int, check_positive_float, check_seed
from .track_inputs import DEFAULT_RUNS, INITS, check_data

#: steps between two checkpoint writes when none is given
CHECKPOINT_EVERY = 1000


@dataclass(frozen=True)
class Checkpoint:
    """Where and how often `track` saves its progress.

    Parameters
    ----------
    path : str or path
        Zarr store written every ``every`` steps, at the last step and on Ctrl-C; an existing store written by the
        same settings is resumed.
    every : int
        Steps between two writes (default 1000).

    Examples
    --------
    >>> from lesde.empirical import Checkpoint
    >>> Checkpoint("track.zarr", every=500)
    Checkpoint(path='track.zarr', every=500)
    """

    path: str | Path
    every: int = CHECKPOINT_EVERY

    def __post_init__(self):
        if not isinstance(self.path, (str, os.PathLike)):
            raise TypeError(f"Checkpoint path must be a str or a path, got {type(self.path).__name__}")
        object.__setattr__(self, "every", check_int("Checkpoint every", self.every))


@dataclass(frozen=True, eq=False)  # tensors have no truth value: compare Validations by identity
class Validation:
    """A held-out set whose accuracy and loss `track` records.

    Parameters
    ----------
    inputs : tensors (B, ...) and (B,)
        Inputs shaped like the training inputs, integer labels of the training set's classes.
    labels : tensors (B, ...) and (B,)
        Described with `inputs` above.
    every : int, optional
        Steps between two evaluations (default: 50 evaluations over the track); step 0 and the last step are
        always evaluated.
    """

    inputs: Any
    labels: Any
    every: int | None = None

    def __post_init__(self):
        if self.every is not None:
            object.__setattr__(self, "every", check_int("Validation every", self.every))

    def __repr__(self) -> str:  # the arrays would flood a traceback
        n = len(self.labels) if hasattr(self.labels, "__len__") else "?"
        return f"Validation(<{n} samples>, every={self.every})"


def as_checkpoint(checkpoint, checkpoint_every) -> Checkpoint | None:
    """``checkpoint=`` as a `Checkpoint` (or None), from either spelling."""
    if checkpoint_every is not None:
        checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    if checkpoint is None or isinstance(checkpoint, Checkpoint):
        if checkpoint is not None and checkpoint_every is not None:
            raise ValueError(
                "give the interval inside the Checkpoint (Checkpoint(path, every=...)), not checkpoint_every"
            )
        return checkpoint
    every = CHECKPOINT_EVERY if checkpoint_every is None else checkpoint_every
    return Checkpoint(checkpoint, every)


def as_validation(validation, validation_every) -> Validation | None:
    """``validation=`` as a `Validation` (or None), from either spelling."""
    if isinstance(validation, Validation):
        if validation_every is not None:
            raise ValueError(
                "give the interval inside the Validation (Validation(x, y, every=...)), not validation_every"
            )
        return validation
    if validation_every is not None:
        validation_every = check_int("validation_every", validation_every)
    if validation is None:
        return None
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise TypeError("validation must be a pair (inputs, labels) or a Validation")
    return Validation(*validation, every=validation_every)


@dataclass(frozen=True, eq=False)
class TrackRequest:
    """The checked arguments of one call of `track` (inputs and labels on the CPU)."""

    net: nn.Module
    inputs: torch.Tensor  # (N, ...)
    labels: torch.Tensor  # (N,) int64 in 0..K-1
    lr: float
    steps: int
    runs: int
    probes: int | Sequence[int] | torch.Tensor | None  # chosen by the plan, which knows the labels' classes
    record_every: int
    feature: str
    seed: int
    init: str
    validation: Validation | None  # inputs and labels checked
    checkpoint: Checkpoint | None
    device: torch.device
    dtype: torch.dtype
    progress: bool


def track_request(
    net,
    inputs,
    labels,
    *,
    lr,
    steps,
    n_runs,
    probes,
    record_every,
    feature,
    seed,
    init,
    validation,
    validation_every,
    checkpoint,
    checkpoint_every,
    device,
    dtype,
    progress,
) -> TrackRequest:
    """Check every argument of `track` (same names); the `TrackRequest`."""
    lr = check_positive_float("lr", lr)
    runs = check_int("n_runs", DEFAULT_RUNS if n_runs is None else n_runs)
    steps, record_every = check_int("steps", steps), check_int("record_every", record_every)
    if record_every > steps:
        raise ValueError(f"record_every={record_every} exceeds steps={steps}: nothing but step 0 would be recorded")
    init = check_choice("init", init, INITS)
    checkpoint = as_checkpoint(checkpoint, checkpoint_every)
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch dtype such as torch.float32, got {dtype!r}")
    if not isinstance(feature, str):
        raise TypeError(f"feature must be 'logits', 'penultimate' or a module name, got {feature!r}")
    x, y = check_data(inputs, labels)
    validation = as_validation(validation, validation_every)
    if validation is not None:
        vx, vy = check_data(validation.inputs, validation.labels, name="validation inputs")
        if vx.shape[1:] != x.shape[1:]:
            raise ValueError("validation must have inputs shaped like the training inputs")
        validation = Validation(vx, vy, validation.every)
    return TrackRequest(
        net=net,
        inputs=x,
        labels=y,
        lr=lr,
        steps=steps,
        runs=runs,
        probes=probes,
        record_every=record_every,
        feature=feature,
        seed=check_seed("seed", seed),
        init=init,
        validation=validation,
        checkpoint=checkpoint,
        device=check_device(device, dtype),
        dtype=dtype,
        progress=bool(progress),
    )


__all__ = ["Checkpoint", "Validation", "TrackRequest", "track_request", "as_checkpoint", "as_validation"]
