r"""Batch-size-1 SGD with every probe tracked at every recorded step, for many runs at once.

``n_runs`` independent copies of a network (different initialisations and sample orders, or the same weights
with ``init="keep"``) are stacked and trained together (`lesde.empirical.tracks._engine`): one call per step
applies every run's $\theta \leftarrow \theta - \eta \nabla_\theta \ell(\theta; x_{I_s}, y_{I_s})$ on its
own sampled example, and after each recorded step one forward evaluates every probe for every run. For a network
in your own training loop (any model, any optimizer), use `Tracker`, which records the
same Dataset (layout in `lesde.empirical.tracks.track_layout`).

`track` reads as four stages, each taking the previous one's output: `track_request` checks every
argument (`track_options`) -> `plan_track` builds the engine, the buffer, the
probes, the sample order and the checkpoint store -> `run_track` runs the step loop with its checkpoints and
Ctrl-C -> `track_dataset` builds the Dataset.

Decisions: initialisations, sample order and probes are those of `lesde.empirical.tracks.track_inputs`.
Ctrl-C finishes the current step and returns what was recorded (``attrs["interrupted"]``), after writing the
checkpoint when there is one; calling ``track`` again with the same checkpoint resumes where it stopped and gives
the same Dataset as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import signal
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import _engine
from ._buffer import TrackBuffer
from ._zarr_checkpoint import CheckpointStore, fingerprint
from .track_inputs import init_nets, sample_order, select_probes
from .track_layout import network_attrs, track_dataset
from .track_options import Checkpoint, TrackRequest, Validation, track_request


@dataclass
class TrackPlan:
    """What the step loop needs, built from a `TrackRequest`."""

    engine: _engine.FunctionalEngine | _engine.MLPEngine
    X: torch.Tensor  # (N, ...) training inputs on the device
    Y: torch.Tensor  # (N,)
    probes: torch.Tensor  # (P, ...) the probes' inputs on the device
    probe_index: torch.Tensor  # (P,) into the training set, sorted by (label, index)
    num_classes: int
    validation: tuple[torch.Tensor, torch.Tensor] | None  # (B, ...), (B,) on the device
    validation_steps: np.ndarray  # (V,) steps after which the validation set is evaluated
    recorded_steps: np.ndarray  # (S,) 0, r, 2r, ...
    buffer: TrackBuffer
    order: torch.Tensor  # (R, steps) the sampled index of every step of every run
    store: CheckpointStore | None


@dataclass
class TrackProgress:
    """How far the step loop got."""

    done: int = 0  # completed SGD steps
    recorded: int = 0  # index of the last recorded step
    validations: int = 0  # validation points recorded
    saved: int = -1  # index of the last recorded step in the checkpoint
    interrupted: bool = False
    resumable: bool = True  # False when the loop stopped inside a step (a half-done step is not saved)


def plan_track(req: TrackRequest) -> TrackPlan:
    """Probes, stacked networks and engine, the initial forward (recorded as step 0), the buffer, the sample
    order and the checkpoint store."""
    probe_idx = select_probes(req.labels, req.probes, req.seed)
    nets = [m.to(device=req.device, dtype=req.dtype) for m in init_nets(req.net, req.runs, req.seed, req.init)]
    eng = _engine.make_engine(nets, req.feature, tuple(req.inputs.shape[1:]))
    X = req.inputs.to(device=req.device, dtype=req.dtype)
    PX = X[probe_idx.to(req.device)]
    feat0, logits0 = _engine.first_forward(eng, PX)  # (R, P, m), (R, P, K)
    K = logits0.shape[-1]
    if req.labels.max() >= K:
        raise ValueError(f"labels go up to {int(req.labels.max())} but the network returns {K} logits")
    val, val_steps = _validation_plan(req.validation, req.steps, K, req.device, req.dtype)
    S = req.steps // req.record_every + 1
    buf = TrackBuffer(
        req.runs, S, len(probe_idx), feat0.shape[-1], K, req.dtype, req.device, req.feature != "logits", val_steps
    )
    buf.record(0, feat0, logits0)
    plan = TrackPlan(
        engine=eng,
        X=X,
        Y=req.labels.to(req.device),
        probes=PX,
        probe_index=probe_idx,
        num_classes=K,
        validation=val,
        validation_steps=val_steps,
        recorded_steps=np.arange(0, req.steps + 1, req.record_every),  # after the memory check: steps may be huge
        buffer=buf,
        order=sample_order(len(req.labels), req.runs, req.steps, req.seed).to(req.device),  # (R, steps)
        store=None,
    )
    if req.checkpoint is not None:
        plan.store = CheckpointStore(req.checkpoint.path, _fingerprint(req, plan))
    return plan


def _validation_plan(validation: Validation | None, steps: int, K: int, device, dtype):
    """The validation set on the device and the steps it is evaluated at (0, every, 2 every, ..., steps)."""
    if validation is None:
        return None, np.zeros(0, int)
    if validation.labels.max() >= K:
        raise ValueError(
            f"validation labels go up to {int(validation.labels.max())} but the network returns {K} logits"
        )
    every = max(1, steps // 50) if validation.every is None else validation.every
    val = (validation.inputs.to(device=device, dtype=dtype), validation.labels.to(device))
    return val, np.unique(np.append(np.arange(0, steps + 1, every), steps))


def _fingerprint(req: TrackRequest, plan: TrackPlan) -> str:
    """What a checkpoint must have been written by to be resumed: everything that changes the track."""
    val = plan.validation
    return fingerprint(
        net=repr(req.net),
        lr=req.lr,
        steps=req.steps,
        runs=req.runs,
        probes=plan.probe_index,
        record_every=req.record_every,
        feature=req.feature,
        seed=req.seed,
        init=req.init,
        dtype=str(req.dtype),
        inputs=req.inputs,
        labels=req.labels,
        init_state=req.net.state_dict() if req.init == "keep" else "",
        validation_steps=plan.validation_steps.tolist(),
        validation_inputs=val[0] if val else "",
        validation_labels=val[1] if val else "",
    )


@contextlib.contextmanager
def interrupt_flag():
    """Within the block, Ctrl-C (SIGINT) sets a flag instead of raising, so a loop can stop between two steps.

    Yields a callable returning whether Ctrl-C was pressed; a second Ctrl-C raises KeyboardInterrupt as usual.
    Outside the main thread (no handler can be installed there) the flag stays False.
    """
    hit = []

    def handler(signum, frame):
        if hit:
            raise KeyboardInterrupt
        hit.append(signum)

    try:
        old = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        old = None
    try:
        yield lambda: bool(hit)
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def run_track(req: TrackRequest, plan: TrackPlan) -> TrackProgress:
    """The step loop: resume from the checkpoint or evaluate step 0, then train, record, validate and save until
    the last step or Ctrl-C."""
    prog = _start(plan)
    every = req.checkpoint.every if req.checkpoint else 0
    with interrupt_flag() as stop:
        try:
            for s in _steps(req, plan, prog.done):
                _step(req, plan, prog, s)
                if plan.store and (s % every == 0 or s == req.steps):
                    _save(plan, prog)
                if stop():
                    prog.interrupted = True
                    break
        except KeyboardInterrupt:  # outside the main thread no handler is installed: the step may be half done
            prog.interrupted, prog.resumable = True, False
    if prog.interrupted and prog.resumable and plan.store and prog.done % every and prog.done != req.steps:
        _save(plan, prog)
    return prog


def _start(plan: TrackPlan) -> TrackProgress:
    """Progress restored from the checkpoint, or a fresh start with step 0's validation recorded."""
    resumed = plan.store.load(plan.buffer, plan.engine.params) if plan.store else None
    if resumed:
        done, j, n_val = resumed
        return TrackProgress(done=done, recorded=j, validations=n_val, saved=j)
    prog = TrackProgress()
    if plan.validation is not None:
        _validate(plan, 0)
        prog.validations = 1
    return prog


def _steps(req: TrackRequest, plan: TrackPlan, done: int):
    """The steps still to run, behind a tqdm bar when ``progress``."""
    steps = range(done + 1, req.steps + 1)
    if not req.progress or done >= req.steps:
        return steps
    from tqdm.auto import tqdm

    desc = f"track {req.runs} runs x {len(plan.probe_index)} probes"
    return tqdm(steps, desc=desc, unit="step", mininterval=1.0, initial=done, total=req.steps)


def _step(req: TrackRequest, plan: TrackPlan, prog: TrackProgress, s: int) -> None:
    """SGD step s of every run, recorded when s is a recorded step, validated when s is a validation step."""
    eng, buf = plan.engine, plan.buffer
    j, r = divmod(s, req.record_every)
    recorded = r == 0
    if recorded and req.record_every > 1:  # one-step increments whatever the stride: the probes just before
        prev, _ = eng.forward(plan.probes)
    else:
        prev = buf.arrays["features"][:, j - 1] if recorded else None
    i = plan.order[:, s - 1]  # (R,)
    f_i, logit_i = eng.sgd_step(plan.X[i], plan.Y[i], req.lr)
    if recorded:
        feat, logits = eng.forward(plan.probes)
        buf.record(j, feat, logits, prev, f_i, logit_i, i)
        prog.recorded = j
    if prog.validations < len(plan.validation_steps) and s == plan.validation_steps[prog.validations]:
        _validate(plan, prog.validations)
        prog.validations += 1
    prog.done = s


def _validate(plan: TrackPlan, v: int) -> None:
    with torch.no_grad():
        plan.buffer.record_validation(v, plan.engine.forward(plan.validation[0])[1], plan.validation[1])


def _save(plan: TrackPlan, prog: TrackProgress) -> None:
    """Write the steps recorded since the last save, the parameters and the progress."""
    plan.store.save(plan.buffer, prog.saved + 1, prog.recorded, prog.done, plan.engine.params, prog.validations)
    prog.saved = prog.recorded


def track_result(req: TrackRequest, plan: TrackPlan, prog: TrackProgress):
    """The track Dataset of what was recorded (a warning when Ctrl-C stopped it early)."""
    extra = {}
    if prog.interrupted:
        extra = dict(interrupted=1, steps_completed=prog.done)
        resume = plan.store is not None and prog.resumable
        warnings.warn(
            f"track interrupted after step {prog.done} of {req.steps}; returning the {prog.recorded + 1} recorded "
            "steps" + (f"; calling track again with checkpoint={plan.store.path!r} resumes" if resume else ""),
            stacklevel=3,
        )
    return track_dataset(
        plan.buffer.records(prog.recorded, prog.validations),
        steps=plan.recorded_steps[: prog.recorded + 1],
        lr=req.lr,
        probe_index=plan.probe_index,
        labels=req.labels,
        num_classes=plan.num_classes,
        attrs=network_attrs(
            "track",
            net=req.net,
            labels=req.labels,
            num_classes=plan.num_classes,
            lr=req.lr,
            steps=req.steps,
            n_runs=req.runs,
            record_every=req.record_every,
            feature=req.feature,
            seed=req.seed,
            device=req.device,
            dtype=req.dtype,
            setup=dict(init=req.init, engine=plan.engine.name),
            extra=extra,
        ),
    )


def track(
    net: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    lr: float,
    steps: int,
    n_runs: int | None = None,
    probes: int | Sequence[int] | torch.Tensor | None = None,
    record_every: int = 1,
    feature: str = "logits",
    seed: int = 0,
    init: str = "reinit",
    validation: Validation | tuple | None = None,
    validation_every: int | None = None,
    checkpoint: Checkpoint | str | Path | None = None,
    checkpoint_every: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
):
    r"""Train ``n_runs`` copies of ``net`` by batch-size-1 SGD and record every probe's feature.

    Step $s = 1, \dots, \text{steps}$ of run $r$ draws $I_s$ uniformly from the training set and
    applies $\theta_s = \theta_{s-1} - \eta \nabla_\theta\, \mathrm{CE}(\text{net}_{\theta_{s-1}}(x_{I_s}),
    y_{I_s})$; time is $t = s\eta$.

    Parameters
    ----------
    net : nn.Module
        Maps inputs (B, ...) to logits (B, K). Modules that update running statistics (BatchNorm) need
        `Tracker`.
    inputs : tensors (N, ...) and (N,)
        Training set: finite inputs, integer labels ``0..K-1`` with every class present.
    labels : tensors (N, ...) and (N,)
        Described with `inputs` above.
    lr
        learning rate $\eta$ and SGD steps.
    steps
        Described with `lr` above.
    n_runs : int
        Independent runs (default `DEFAULT_RUNS`, 8).
    probes : None, int or indices
        Samples whose features are recorded: all (default), a stratified random subset of that size, or indices.
    record_every : int
        Record at steps ``0, r, 2r, ...`` (at most ``steps``); increments are always one-step (module notes).
    feature : str
        ``"logits"``, ``"penultimate"`` (the input of the last ``nn.Linear``) or a submodule name (its output).
    seed : int
        Seeds initialisations, sample order and probe subset (an integer in [0, 2**32)).
    init : "reinit" | "keep"
        Re-initialise every run under its own seed (default), or start every run from ``net``'s weights.
    validation : Validation or (inputs, labels), optional
        Held-out set whose accuracy and loss are recorded every ``validation_every`` steps (default: 50 times
        over the track) and at the last step; a `Validation` carries its own ``every``.
    checkpoint : Checkpoint or path, optional
        Zarr store written every ``checkpoint_every`` steps (default 1000; and on Ctrl-C); an existing store written
        by the same settings is resumed. A `Checkpoint` carries its own ``every``.
    device
        where and in which precision to train (float64 for exactness checks).
    dtype
        Described with `device` above.
    progress : bool
        Show a tqdm bar over steps.

    Returns
    -------
    xarray.Dataset
        Layout in `lesde.empirical.tracks.track_layout`; ``attrs`` hold the configuration.

    Examples
    --------
    >>> from lesde.empirical import Validation
    >>> from lesde.empirical import track
    >>> from lesde.empirical import load_dataset, mlp
    >>> x, y = load_dataset("gaussian-mixture", classes=3, per_class=10)
    >>> ds = track(mlp(10, 3, width=8), x, y, lr=0.05, steps=4, n_runs=2, progress=False)
    >>> dict(ds.features.sizes)
    {'run': 2, 'step': 5, 'probe': 30, 'feature': 3}
    >>> ds = track(mlp(10, 3, width=8), x, y, lr=0.05, steps=4, n_runs=2, progress=False,
    ...            validation=Validation(x[::3], y[::3], every=2))
    >>> ds.validation_step.values.tolist()
    [0, 2, 4]
    """
    req = track_request(
        net,
        inputs,
        labels,
        lr=lr,
        steps=steps,
        n_runs=n_runs,
        probes=probes,
        record_every=record_every,
        feature=feature,
        seed=seed,
        init=init,
        validation=validation,
        validation_every=validation_every,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        device=device,
        dtype=dtype,
        progress=progress,
    )
    plan = plan_track(req)
    return track_result(req, plan, run_track(req, plan))


__all__ = ["track", "plan_track", "run_track", "track_result", "TrackPlan", "TrackProgress", "interrupt_flag"]
