r"""Batch-size-1 SGD with every probe tracked at every recorded step, for many runs at once.

``n_runs`` independent copies of a network (different initialisations and sample orders, or the same weights
with ``init="keep"``) are stacked and trained together (:mod:`lesde.empirical._engine`): one call per step
applies every run's :math:`\theta \leftarrow \theta - \eta \nabla_\theta \ell(\theta; x_{I_s}, y_{I_s})` on its
own sampled example, and after each recorded step one forward evaluates every probe for every run. For a network
in your own training loop (any model, any optimizer), use :class:`~lesde.empirical.Tracker`, which records the
same Dataset.

Layout of the returned Dataset (what the estimators in :mod:`lesde.empirical.estimators` read)
------------------------------------------------------------------------------------------
- ``features(run, step, probe, feature)``: :math:`f_s(x_i)` at recorded steps ``0, r, 2r, ...`` (``r =
  record_every``); ``feature`` the logits, the penultimate layer (the input of the last ``nn.Linear``) or the
  output of a named submodule.
- ``increment(run, step, probe, feature)``: :math:`f_s(x_i) - f_{s-1}(x_i)`, the change made by the *single* SGD
  step ``s`` (when ``record_every > 1`` an extra probe forward runs just before each recorded step, so the
  estimators always see one-step increments, whatever the recording stride).
- ``sampled_feature(run, step, feature)``: :math:`f_{s-1}(x_{I_s})`, the trained example's feature *before* the
  step, and ``sampled_residual(run, step, class)``: :math:`e_{L_s} - \mathrm{softmax}(\text{logits}_{s-1}(x_{I_s}))`,
  computed in float64 from the logits (in float32, :math:`1 - p` rounds to 0 for well-fitted samples).
- ``sampled_index``, ``sampled_label``, ``sampled_loss`` over ``(run, step)``; ``loss`` and ``accuracy`` over
  ``(run, step)`` are the mean cross-entropy and the accuracy on the probes after the step.
- with ``validation=(x, y)``: ``validation_accuracy`` and ``validation_loss`` over ``(run, validation_step)``.
- coordinates ``label(probe)``, ``sample_index(probe)`` (index into the training set) and ``time(step) = step *
  lr``. Step 0 holds the initial features; its sampled_* entries are NaN / -1.

Decisions: with ``init="reinit"`` (default) each run's network is a deep copy of ``net`` re-initialised
(``reset_parameters`` of every submodule) under its own seed, drawn with the sample order from
``torch.Generator().manual_seed(seed)``; :func:`init_nets` reproduces them for reference loops. ``init="keep"``
starts every run from ``net``'s weights (the runs then differ only by their sample order). Samples are drawn
uniformly with replacement. Probes given as an int are a class-stratified random subset of that size. Ctrl-C
finishes the current step and returns what was recorded (``attrs["interrupted"]``), after writing the checkpoint
when there is one; calling ``track`` again with the same ``checkpoint`` resumes where it stopped and gives the
same Dataset as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import signal
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...schema import finalize
from ...validation import check_choice, check_int, check_positive_float
from . import _engine
from ._buffer import TrackBuffer, fingerprint

INITS = ("reinit", "keep")
#: independent runs a track (and lesde estimate) trains when n_runs is not given
DEFAULT_RUNS = 8


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


def run_seeds(runs: int, seed: int) -> tuple[list[int], torch.Generator]:
    """Per-run initialisation seeds, and the generator (advanced past them) that then draws the sample order."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, 2**62, (runs,), generator=g).tolist(), g


def init_nets(net: nn.Module, runs: int, seed: int = 0, init: str = "reinit") -> list[nn.Module]:
    """``runs`` deep copies of ``net``; with ``init="reinit"`` copy ``r`` is re-initialised under
    ``run_seeds(runs, seed)[0][r]``, with ``"keep"`` every copy keeps ``net``'s weights.

    The global RNG state is restored afterwards (``torch.random.fork_rng``), so tracking has no side effects.
    """
    init = check_choice("init", init, INITS)
    seeds, _ = run_seeds(runs, seed)
    nets = []
    for s in seeds:
        copy_ = copy.deepcopy(net)
        if init == "reinit":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                for m in copy_.modules():
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()
        nets.append(copy_)
    return nets


def sample_order(num_samples: int, runs: int, steps: int, seed: int = 0) -> torch.Tensor:
    """(runs, steps) indices drawn uniformly with replacement: ``I_s`` of each run."""
    _, g = run_seeds(runs, seed)
    return torch.randint(0, num_samples, (runs, steps), generator=g)


def check_data(inputs, labels, name: str = "inputs") -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs as a finite float tensor (N, ...) and labels as int64 (N,) in 0..K-1 with no empty class."""
    x = torch.as_tensor(inputs)
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise TypeError(f"{name} must be a real-valued tensor or array, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{name} must be (N, ...) with one row per sample, got shape {tuple(x.shape)}")
    if x.is_floating_point():
        bad = ~torch.isfinite(x.reshape(len(x), -1)).all(1)
        if bad.any():
            raise ValueError(
                f"{name} contain NaN or inf in {int(bad.sum())} samples (first: sample {int(bad.nonzero()[0])}); "
                "every input must be finite"
            )
    y = torch.as_tensor(labels)
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise TypeError(
            f"labels must be integers (class indices 0..K-1), got dtype {y.dtype}; cast whole-number labels "
            "with .long()"
        )
    y = y.long()
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"labels must be (N,) with N = len({name}) = {len(x)}, got shape {tuple(y.shape)}")
    if len(y) == 0:
        raise ValueError(f"{name} hold no samples")
    if y.min() < 0:
        raise ValueError(f"labels must be class indices >= 0, got {int(y.min())}")
    counts = torch.bincount(y)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        raise ValueError(
            f"classes {empty} have no samples: labels must cover 0..{len(counts) - 1} (relabel them, e.g. with "
            "np.unique(labels, return_inverse=True))"
        )
    return x, y


def select_probes(
    labels: torch.Tensor, probes: int | Sequence[int] | torch.Tensor | None, seed: int = 0
) -> torch.Tensor:
    """Probe indices sorted by (label, index). ``None``: all; int ``P``: class-stratified random subset;
    otherwise distinct integer indices."""
    labels = labels.cpu()
    N = len(labels)
    if probes is None:
        idx = torch.arange(N)
    elif isinstance(probes, (int, np.integer)) and not isinstance(probes, bool):
        P = check_int("probes", int(probes))
        if P > N:
            raise ValueError(f"probes={P} exceeds the {N} training samples")
        counts = torch.bincount(labels).double()
        share = counts * P / N
        take = share.floor().long().clamp(min=1)
        # hand out what flooring left over to the largest remainders, so the total is exactly P
        for k in torch.argsort(share - share.floor(), descending=True)[: max(0, P - int(take.sum()))]:
            take[k] += 1
        take = torch.minimum(take, counts.long())
        g = torch.Generator().manual_seed(int(seed) + 7919)
        idx = torch.cat(
            [
                torch.nonzero(labels == k).flatten()[torch.randperm(int(counts[k]), generator=g)[: int(take[k])]]
                for k in range(len(counts))
            ]
        )
    else:
        if isinstance(probes, (bool, float, str)):
            raise TypeError(f"probes must be None, an int or integer indices, got {probes!r}")
        arr = np.asarray(probes.cpu() if torch.is_tensor(probes) else probes)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"probes must be None, an int or integer indices, got an array of dtype {arr.dtype}")
        idx = torch.as_tensor(arr, dtype=torch.long).flatten()
        if idx.numel() == 0 or idx.min() < 0 or idx.max() >= N:
            raise ValueError(f"probes must be indices in [0, {N}), got {probes!r}")
        if len(torch.unique(idx)) != len(idx):
            raise ValueError("probes lists a sample twice; give distinct indices")
    order = torch.argsort(labels[idx] * N + idx)  # by label, then by index
    return idx[order]


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
    validation: tuple | None = None,
    validation_every: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1000,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
):
    r"""Train ``n_runs`` copies of ``net`` by batch-size-1 SGD and record every probe's feature.

    Step :math:`s = 1, \dots, \text{steps}` of run :math:`r` draws :math:`I_s` uniformly from the training set and
    applies :math:`\theta_s = \theta_{s-1} - \eta \nabla_\theta\, \mathrm{CE}(\text{net}_{\theta_{s-1}}(x_{I_s}),
    y_{I_s})`; time is :math:`t = s\eta`.

    Parameters
    ----------
    net : nn.Module
        Maps inputs (B, ...) to logits (B, K). Modules that update running statistics (BatchNorm) need
        :class:`~lesde.empirical.Tracker`.
    inputs, labels : tensors (N, ...) and (N,)
        Training set: finite inputs, integer labels ``0..K-1`` with every class present.
    lr, steps : learning rate :math:`\eta` and SGD steps.
    n_runs : int
        Independent runs (default :data:`DEFAULT_RUNS`, 8).
    probes : None, int or indices
        Samples whose features are recorded: all (default), a stratified random subset of that size, or indices.
    record_every : int
        Record at steps ``0, r, 2r, ...`` (at most ``steps``); increments are always one-step (module notes).
    feature : str
        ``"logits"``, ``"penultimate"`` (the input of the last ``nn.Linear``) or a submodule name (its output).
    seed : int
        Seeds initialisations, sample order and probe subset.
    init : {"reinit", "keep"}
        Re-initialise every run under its own seed (default), or start every run from ``net``'s weights.
    validation : (inputs, labels), optional
        Held-out set whose accuracy and loss are recorded every ``validation_every`` steps (default: 50 times
        over the track) and at the last step.
    checkpoint : path, optional
        Zarr store written every ``checkpoint_every`` steps (and on Ctrl-C); an existing store written by the same
        settings is resumed.
    device, dtype : where and in which precision to train (float64 for exactness checks).
    progress : bool
        Show a tqdm bar over steps.

    Returns
    -------
    xarray.Dataset
        Layout in the module docstring; ``attrs`` hold the configuration.

    Examples
    --------
    >>> from lesde.empirical import load_dataset, mlp
    >>> x, y = load_dataset("gaussian-mixture", classes=3, per_class=10)
    >>> ds = track(mlp(10, 3, width=8), x, y, lr=0.05, steps=4, n_runs=2, progress=False)
    >>> dict(ds.features.sizes)
    {'run': 2, 'step': 5, 'probe': 30, 'feature': 3}
    """
    lr = check_positive_float("lr", lr)
    runs = check_int("n_runs", DEFAULT_RUNS if n_runs is None else n_runs)
    steps, record_every = check_int("steps", steps), check_int("record_every", record_every)
    if record_every > steps:
        raise ValueError(f"record_every={record_every} exceeds steps={steps}: nothing but step 0 would be recorded")
    init = check_choice("init", init, INITS)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    device = torch.device(device)
    x_cpu, labels = check_data(inputs, labels)
    N = len(labels)
    probe_idx = select_probes(labels, probes, seed)
    P = len(probe_idx)

    nets = [m.to(device=device, dtype=dtype) for m in init_nets(net, runs, seed, init)]
    eng = _engine.make_engine(nets, feature, tuple(x_cpu.shape[1:]))
    X = x_cpu.to(device=device, dtype=dtype)
    Y = labels.to(device)
    PX = X[probe_idx.to(device)]
    feat0, logits0 = eng.forward(PX)  # (R, P, m), (R, P, K)
    K = logits0.shape[-1]
    if labels.max() >= K:
        raise ValueError(f"labels go up to {int(labels.max())} but the network returns {K} logits")
    val = None
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError("validation must be a pair (inputs, labels)")
        vx, vy = check_data(*validation, name="validation inputs")
        if vy.max() >= K or vx.shape[1:] != x_cpu.shape[1:]:
            raise ValueError(f"validation must have inputs shaped like the training inputs and labels < {K}")
        val = (vx.to(device=device, dtype=dtype), vy.to(device))
        ve = max(1, steps // 50) if validation_every is None else check_int("validation_every", validation_every)
        val_steps = np.unique(np.append(np.arange(0, steps + 1, ve), steps))
    else:
        val_steps = np.zeros(0, int)
    m = feat0.shape[-1]
    S = steps // record_every + 1
    buf = TrackBuffer(runs, S, P, m, K, dtype, device, separate_logits=feature != "logits", V=len(val_steps))
    rec_steps = np.arange(0, steps + 1, record_every)  # after the memory check: steps may be absurdly large
    order = sample_order(N, runs, steps, seed).to(device)  # (R, steps)
    store = None if checkpoint is None else str(checkpoint)
    fp = (
        fingerprint(
            net=repr(net),
            lr=lr,
            steps=steps,
            runs=runs,
            probes=probe_idx,
            record_every=record_every,
            feature=feature,
            seed=seed,
            init=init,
            dtype=str(dtype),
            inputs=x_cpu,
            labels=labels,
            init_state=net.state_dict() if init == "keep" else "",
            validation_steps=val_steps.tolist(),
            validation_inputs=val[0] if val else "",
            validation_labels=val[1] if val else "",
        )
        if store
        else ""
    )

    def validate(v):
        with torch.no_grad():
            buf.record_validation(v, eng.forward(val[0])[1], val[1])

    done, j_done, n_val = 0, 0, 0
    resumed = buf.load(store, fp, eng.params) if store else None
    if resumed:
        done, j_done, n_val = resumed
        j_saved = j_done
    else:
        buf.record(0, feat0, logits0)
        if val is not None:
            validate(0)
            n_val = 1
        j_saved = -1
    bar = range(done + 1, steps + 1)
    if progress and done < steps:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc=f"track {runs} runs x {P} probes", unit="step", mininterval=1.0, initial=done, total=steps)
    interrupted = False
    with interrupt_flag() as stop:
        try:
            for s in bar:
                j, r = divmod(s, record_every)
                recorded = r == 0
                if recorded and record_every > 1:
                    prev, _ = eng.forward(PX)
                else:
                    prev = buf.arrays["features"][:, j - 1] if recorded else None
                i = order[:, s - 1]  # (R,)
                f_i, logit_i = eng.sgd_step(X[i], Y[i], lr)
                if recorded:
                    feat, logits = eng.forward(PX)
                    buf.record(j, feat, logits, prev, f_i, logit_i, i)
                    j_done = j
                if n_val < len(val_steps) and s == val_steps[n_val]:
                    validate(n_val)
                    n_val += 1
                done = s
                if store and (s % checkpoint_every == 0 or s == steps):
                    buf.save(store, fp, j_saved + 1, j_done, s, eng.params, n_val)
                    j_saved = j_done
                if stop():
                    interrupted = True
                    break
        except KeyboardInterrupt:  # outside the main thread no handler is installed: the step may be half done
            interrupted, store = True, None
    if interrupted and store and done % checkpoint_every and done != steps:
        buf.save(store, fp, j_saved + 1, j_done, done, eng.params, n_val)
    ds = buf.dataset(j_done, rec_steps, lr, probe_idx, labels, val_steps, n_val)
    extra = {}
    if interrupted:
        import warnings

        extra = dict(interrupted=1, steps_completed=done)
        warnings.warn(
            f"track interrupted after step {done} of {steps}; returning the {j_done + 1} recorded steps"
            + (f"; calling track again with checkpoint={store!r} resumes" if store else ""),
            stacklevel=2,
        )
    return finalize(
        ds,
        source="track",
        lr=lr,
        steps=steps,
        n_runs=runs,
        record_every=record_every,
        feature=feature,
        seed=seed,
        init=init,
        engine=eng.name,
        device=str(device),
        dtype=str(dtype).replace("torch.", ""),
        num_classes=K,
        num_samples=N,
        class_counts=torch.bincount(labels, minlength=K).tolist(),
        net=repr(net),
        **extra,
    )


__all__ = ["track", "DEFAULT_RUNS", "init_nets", "sample_order", "select_probes", "run_seeds", "check_data", "INITS"]
