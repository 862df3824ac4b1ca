r"""Record a track from your own training loop: any model, any optimizer code.

`track` owns its training loop (stacked runs, plain SGD). `Tracker` leaves the loop
to you and records the same Dataset (layout in `lesde.empirical.tracks.track_layout`), one run per Tracker:

```python
optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
tracker = Tracker(model, x_train, y_train, optimizer=optimizer, probes=300)
for step in range(steps):
    i = int(torch.randint(len(y_train), ()))
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x_train[i : i + 1]), y_train[i : i + 1])
    loss.backward()
    optimizer.step()
    tracker.step(i, y_train[i])   # after the optimizer step: index and label just trained on
ds = tracker.dataset()
```

Several runs: one Tracker per run with ``run=r`` (and each run's own network and sample order), then
`combine_runs` of their datasets, which gives the Dataset `track` gives for
``n_runs`` runs (tested equal). A held-out set: ``validation=Validation(x, y, every=k)`` with ``steps=`` (its
accuracy and loss at step 0, every k steps and the last step, as ``track`` records them).

How it sees the trained example's pre-step feature $f_{s-1}(x_{I_s})$: a forward hook keeps every
batch-size-1 forward *with gradients enabled* since the last ``step()``, and ``step(index, label)`` takes the one
whose input is ``inputs[index]``; evaluation forwards under ``torch.no_grad()`` are ignored. The probe forwards the
tracker runs itself happen under ``no_grad`` with every submodule in eval mode (restored afterwards) and the hook
removed, so they change no running statistics and are not seen as training forwards. ``step()`` refuses the loop mistakes that would record
the wrong data (`lesde.empirical.tracks._step_watch`): called before ``optimizer.step()``, or after a skipped
call (an increment spanning two updates). The optimizer (``optimizer=``) is recorded in attrs, with a warning for
anything but plain SGD; without it, the first steps' updates are compared with $-\eta\nabla$ (attr
``update_rule``).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from ...validation import check_int, check_positive_float, check_seed
from ._buffer import TrackBuffer
from ._engine import FeatureHook, resolve_feature
from ._step_watch import StepWatch
from .track_inputs import check_data, select_probes
from .track_layout import network_attrs, track_dataset
from .track_options import Validation, as_validation


class Tracker:
    r"""Records probe features after each optimizer step of a user's batch-size-1 training loop.

    Parameters
    ----------
    model : nn.Module
        The network being trained, returning logits (B, K).
    inputs : tensors (N, ...) and (N,)
        The training set the loop samples from (integer labels ``0..K-1``).
    labels : tensors (N, ...) and (N,)
        Described with `inputs` above.
    lr : float, optional
        Learning rate $\eta$ (time is $t = s\eta$); default the optimizer's.
    optimizer : torch.optim.Optimizer, optional
        The loop's optimizer: its class and settings are recorded (attrs ``optimizer``, ``optimizer_settings``),
        and anything but plain SGD at ``lr`` (momentum, weight decay, Nesterov, another class) warns.
    probes : None, int or indices
        Samples whose features are recorded (as `track`).
    feature : str
        ``"logits"``, ``"penultimate"`` (the input of the last ``nn.Linear``) or a submodule name.
    record_every : int
        Record at steps ``0, r, 2r, ...``; increments stay one-step (an extra probe forward before each recorded
        step).
    steps : int, optional
        Expected steps: memory is reserved (and checked) up front; without it the records grow as needed. Needed
        with ``validation``.
    seed : int
        Seeds the probe subset.
    run : int
        This run's index (the ``run`` coordinate), for `combine_runs`.
    validation : Validation or (inputs, labels), optional
        Held-out set evaluated at step 0, every ``validation.every`` steps (default 50 times over ``steps``) and
        at step ``steps``.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs,
        labels,
        *,
        lr: float | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        probes: int | Sequence[int] | torch.Tensor | None = None,
        feature: str = "logits",
        record_every: int = 1,
        steps: int | None = None,
        seed: int = 0,
        run: int = 0,
        validation: Validation | tuple | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.lr, self.optimizer = _learning_rate(lr, optimizer)
        self.record_every = check_int("record_every", record_every)
        if steps is not None and self.record_every > check_int("steps", steps):
            raise ValueError(f"record_every={record_every} exceeds steps={steps}")
        self.run = check_int("run", run, minimum=0)
        x, self.labels = check_data(inputs, labels)
        self._label_of = self.labels.tolist()  # a list: indexing a tensor per step costs more than the check
        self.model, self.feature, self.seed = model, feature, check_seed("seed", seed)
        params = list(model.parameters())
        self.device = params[0].device if params else torch.device("cpu")
        self.dtype = params[0].dtype if params and params[0].is_floating_point() else torch.float32
        self.x = x.to(self.device, self.dtype)
        self.probe_idx = select_probes(self.labels, probes, seed)
        self._px = self.x[self.probe_idx.to(self.device)]
        self._hook = FeatureHook(model, *resolve_feature(model, feature))
        self._out = model.register_forward_hook(self._on_forward)
        self._modules = list(model.modules())
        self._watch = StepWatch([p for p in params if p.requires_grad], self.lr, check_rule=optimizer is None)
        self.s = 0
        feat, logits = self._probe()
        self.K = logits.shape[-1]
        if self.labels.max() >= self.K:
            raise ValueError(f"labels go up to {int(self.labels.max())} but the model returns {self.K} logits")
        self._val, val_steps = _validation(validation, steps, self.K, x.shape[1:], self.device, self.dtype)
        S = 1 + (steps // self.record_every if steps else 64)
        self._buf = TrackBuffer(1, S, len(self.probe_idx), feat.shape[-1], self.K, self.dtype, self.device,
                                separate_logits=feature != "logits", validation_steps=val_steps)  # fmt: skip
        self._buf.record(0, feat[None], logits[None])
        self._nval = 0
        self._validate_if_due()
        self._prev = feat
        self._index = torch.zeros(1, dtype=torch.long)  # the sampled index handed to the buffer, reused every step

    # ------------------------------------------------------------------------------------------------ hooks

    def _on_forward(self, module, args, out):
        if not torch.is_grad_enabled() or not torch.is_tensor(out):
            return
        self._watch.add(args[0] if args else None, self._hook.take(out), out)

    @torch.no_grad()
    def _probe(self, x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # every submodule's flag set and restored in its __dict__ (what Module.train writes), not through
        # Module.__setattr__ and train(): at a few microseconds per module per call that was a tenth of the step
        modes = [m.training for m in self._modules]
        for m in self._modules:
            m.__dict__["training"] = False
        if self._out is not None:  # without the training-forward hook the probe forward takes torch's fast path
            self._out.remove()
        try:
            logits = self.model(self._px if x is None else x)
            feat = self._hook.take(logits)
        finally:
            if self._out is not None:
                self._out = self.model.register_forward_hook(self._on_forward)
            for m, mode in zip(self._modules, modes):
                m.__dict__["training"] = mode
        return feat.detach(), logits.detach()

    def _validate_if_due(self) -> None:
        if self._val is None or self._nval >= len(self._buf.validation_steps):
            return
        if self.s == self._buf.validation_steps[self._nval]:
            self._buf.record_validation(self._nval, self._probe(self._val[0])[1][None], self._val[1])
            self._nval += 1

    # ------------------------------------------------------------------------------------------------ public

    def step(self, index: int, label: int) -> None:
        """Record the optimizer step just taken on training sample ``index`` (of class ``label``)."""
        if self._out is None:
            raise RuntimeError("this Tracker is closed")
        n = len(self._label_of)
        i = check_int("index", index, minimum=0, maximum=n - 1)  # 2.7 is refused, not truncated to 2
        lab = check_int("label", label, minimum=0)
        if lab != self._label_of[i]:
            raise ValueError(f"label={lab} but sample {i} has label {self._label_of[i]} in the tracked data")
        fwd = self._watch.training_forward(i, self.x)
        self._watch.check_update(fwd, i, self.s + 1)
        self.s += 1
        j, r = divmod(self.s, self.record_every)
        if r == 0:
            if j >= self._buf.S:
                self._buf.grow(2 * self._buf.S)
            feat, logits = self._probe()
            self._index[0] = i
            self._buf.record(j, feat[None], logits[None], self._prev[None], fwd.feature, fwd.logits, self._index)
            self._prev = feat
        if self.record_every > 1 and (self.s + 1) % self.record_every == 0:
            self._prev = self._probe()[0]  # features at the parameters the next recorded step starts from
        if self._val is not None:
            self._validate_if_due()
        self._watch.reset()

    __call__ = step

    def dataset(self) -> xr.Dataset:
        """The track so far, as an xarray Dataset (the layout of `track`, one run)."""
        j = self.s // self.record_every
        rec = np.arange(0, j + 1) * self.record_every
        ds = track_dataset(
            self._buf.records(j, self._nval),
            steps=rec,
            lr=self.lr,
            probe_index=self.probe_idx,
            labels=self.labels,
            num_classes=self.K,
            attrs=network_attrs(
                "tracker",
                net=self.model,
                labels=self.labels,
                num_classes=self.K,
                lr=self.lr,
                steps=self.s,
                n_runs=1,
                record_every=self.record_every,
                feature=self.feature,
                seed=self.seed,
                device=self.device,
                dtype=self.dtype,
                extra=dict(**_optimizer_attrs(self.optimizer), update_rule=self._watch.update_rule),
            ),
        )
        return ds.assign_coords(run=ds["run"].copy(data=[self.run]))

    def close(self) -> None:
        """Remove the hooks from the model."""
        self._hook.remove()
        if self._out is not None:
            self._out.remove()
            self._out = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _learning_rate(lr, optimizer) -> tuple[float, torch.optim.Optimizer | None]:
    """The checked learning rate (default: the optimizer's), with a warning for an optimizer other than plain SGD
    at that rate."""
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    groups = optimizer.param_groups if optimizer is not None else []
    if lr is None:
        if not groups:
            raise TypeError("Tracker needs lr= or optimizer= (whose learning rate is taken)")
        lr = float(groups[0]["lr"])
    lr = check_positive_float("lr", lr)
    if optimizer is not None:
        plain = type(optimizer) is torch.optim.SGD and all(
            not g.get("momentum") and not g.get("weight_decay") and not g.get("nesterov") and not g.get("maximize")
            and math.isclose(float(g["lr"]), lr, rel_tol=1e-9)
            for g in groups
        )  # fmt: skip
        if not plain:
            warnings.warn(
                f"optimizer {type(optimizer).__name__}({_settings(optimizer)}) is not plain SGD at lr={lr:g}: the "
                "estimators read the increments as batch-size-1 SGD steps theta <- theta - lr * grad, which momentum, "
                "weight decay or an adaptive method mix with earlier steps; the track is recorded with the "
                "optimizer in attrs (use torch.optim.SGD(params, lr=lr) for the LE-SDE's reading)",
                UserWarning,
                stacklevel=3,
            )
    return lr, optimizer


def _settings(optimizer) -> str:
    """The optimizer's first parameter group's settings (numbers, strings, booleans), as ``k=v`` pairs."""
    g = optimizer.param_groups[0]
    return ", ".join(f"{k}={v}" for k, v in g.items() if k != "params" and isinstance(v, (int, float, str, bool)))


def _optimizer_attrs(optimizer) -> dict:
    if optimizer is None:
        return dict(optimizer="not given")
    settings = [
        {k: v for k, v in g.items() if k != "params" and isinstance(v, (int, float, str, bool, type(None)))}
        for g in optimizer.param_groups
    ]
    return dict(optimizer=type(optimizer).__name__, optimizer_settings=json.dumps(settings))


def _validation(validation, steps, K, shape, device, dtype):
    """The validation set on the device and the steps it is evaluated at (those of ``track``), or (None, [])."""
    from .tracking import _validation_plan  # the plan track uses, so both evaluate at the same steps

    validation = as_validation(validation, None)
    if validation is None:
        return None, np.zeros(0, int)
    if steps is None:
        raise ValueError("validation needs steps= (the last step is always evaluated, as track does)")
    vx, vy = check_data(validation.inputs, validation.labels, name="validation inputs")
    if vx.shape[1:] != shape:
        raise ValueError("validation must have inputs shaped like the training inputs")
    return _validation_plan(Validation(vx, vy, validation.every), steps, K, device, dtype)


def combine_runs(tracks: Sequence[xr.Dataset]) -> xr.Dataset:
    """One track of several runs from tracks of the same probes and steps (each `Tracker.dataset`, one per
    ``run``), ordered by run: the Dataset `track` gives for ``n_runs`` runs.

    Examples
    --------
    >>> from lesde.empirical import Tracker
    >>> from lesde.empirical import combine_runs
    >>> import torch, torch.nn.functional as F
    >>> from lesde.empirical import load_dataset, mlp
    >>> x, y = load_dataset("gaussian-mixture", classes=3, per_class=5)
    >>> runs = []
    >>> for r in range(2):
    ...     net = mlp(10, 3, width=8)
    ...     opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ...     with Tracker(net, x, y, optimizer=opt, run=r) as tr:
    ...         for i in (0, 7, 3):
    ...             opt.zero_grad(); F.cross_entropy(net(x[i : i + 1]), y[i : i + 1]).backward(); opt.step()
    ...             tr.step(i, y[i])
    ...         runs.append(tr.dataset())
    >>> dict(combine_runs(runs).features.sizes)
    {'run': 2, 'step': 4, 'probe': 15, 'feature': 3}
    """
    tracks = list(tracks)
    if not tracks:
        raise ValueError("combine_runs needs at least one track")
    first = tracks[0]
    for k, ds in enumerate(tracks[1:], 1):
        for c in ("step", "sample_index", "label"):
            if c in first.coords and not np.array_equal(first[c].values, ds[c].values):
                raise ValueError(f"track {k} has other {c!r} than track 0: combine runs of the same probes and steps")
        for a in ("lr", "num_classes", "feature", "record_every"):
            if first.attrs.get(a) != ds.attrs.get(a):
                raise ValueError(f"track {k} has {a}={ds.attrs.get(a)!r}, track 0 {first.attrs.get(a)!r}")
    runs = np.concatenate([ds["run"].values for ds in tracks])
    if len(np.unique(runs)) != len(runs):
        raise ValueError(f"the tracks' runs repeat ({runs.tolist()}): give each Tracker its own run=")
    ordered = [tracks[k] for k in np.argsort([ds["run"].values[0] for ds in tracks], kind="stable")]
    out = xr.concat(ordered, dim="run", data_vars="minimal", coords="minimal", combine_attrs="override")
    seeds = sorted({ds.attrs.get("seed") for ds in tracks}, key=str)
    out.attrs.update(n_runs=int(out.sizes["run"]), seed=seeds[0] if len(seeds) == 1 else json.dumps(seeds))
    return out


__all__ = ["Tracker", "combine_runs"]
