r"""Record a track from your own training loop: any model, any optimizer code.

:func:`~lesde.empirical.track` owns its training loop (stacked runs, plain SGD). :class:`Tracker` leaves the loop
to you and records the same Dataset (layout in :mod:`lesde.empirical.tracks.track_layout`), with one run::

    tracker = Tracker(model, x_train, y_train, lr=0.02, probes=300)
    for step in range(steps):
        i = int(torch.randint(len(y_train), ()))
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x_train[i : i + 1]), y_train[i : i + 1])
        loss.backward()
        optimizer.step()
        tracker.step(i, y_train[i])   # after the optimizer step: index and label just trained on
    ds = tracker.dataset()

How it sees the trained example's pre-step feature :math:`f_{s-1}(x_{I_s})`: a forward hook keeps the output (and
the feature) of the model's last forward *with gradients enabled*, which in a training step is the forward on
:math:`x_{I_s}` before ``optimizer.step()``; evaluation forwards under ``torch.no_grad()`` are ignored. That
forward must hold the one sample (batch size 1). The probe forwards the tracker runs itself happen under
``no_grad`` with every submodule in eval mode (restored afterwards), so they change no running statistics and
are ignored by the hook. ``lr`` only sets the time axis (:math:`t = s\eta`) and the regressors of the estimators;
with an optimizer other than plain SGD, pass the learning rate you want time measured in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ...validation import check_int, check_positive_float
from ._buffer import TrackBuffer
from ._engine import FeatureHook, resolve_feature
from .track_inputs import check_data, select_probes
from .track_layout import network_attrs, track_dataset


class Tracker:
    r"""Records probe features after each optimizer step of a user's batch-size-1 training loop.

    Parameters
    ----------
    model : nn.Module
        The network being trained, returning logits (B, K).
    inputs, labels : tensors (N, ...) and (N,)
        The training set the loop samples from (integer labels ``0..K-1``).
    lr : float
        Learning rate :math:`\eta` (time is :math:`t = s\eta`).
    probes : None, int or indices
        Samples whose features are recorded (as :func:`~lesde.empirical.track`).
    feature : str
        ``"logits"``, ``"penultimate"`` (the input of the last ``nn.Linear``) or a submodule name.
    record_every : int
        Record at steps ``0, r, 2r, ...``; increments stay one-step (an extra probe forward before each recorded
        step).
    steps : int, optional
        Expected steps: memory is reserved (and checked) up front; without it the records grow as needed.
    seed : int
        Seeds the probe subset.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs,
        labels,
        *,
        lr: float,
        probes: int | Sequence[int] | torch.Tensor | None = None,
        feature: str = "logits",
        record_every: int = 1,
        steps: int | None = None,
        seed: int = 0,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.lr = check_positive_float("lr", lr)
        self.record_every = check_int("record_every", record_every)
        if steps is not None and self.record_every > check_int("steps", steps):
            raise ValueError(f"record_every={record_every} exceeds steps={steps}")
        x, self.labels = check_data(inputs, labels)
        self.model, self.feature, self.seed = model, feature, seed
        p = next(iter(model.parameters()), None)
        self.device = p.device if p is not None else torch.device("cpu")
        self.dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
        self.x = x.to(self.device, self.dtype)
        self.probe_idx = select_probes(self.labels, probes, seed)
        self._px = self.x[self.probe_idx.to(self.device)]
        self._hook = FeatureHook(model, *resolve_feature(model, feature))
        self._out = model.register_forward_hook(self._on_forward)
        self._last, self._busy = None, False
        self.s = 0
        feat, logits = self._probe()
        self.K = logits.shape[-1]
        if self.labels.max() >= self.K:
            raise ValueError(f"labels go up to {int(self.labels.max())} but the model returns {self.K} logits")
        S = 1 + (steps // self.record_every if steps else 64)
        self._buf = TrackBuffer(
            1,
            S,
            len(self.probe_idx),
            feat.shape[-1],
            self.K,
            self.dtype,
            self.device,
            separate_logits=feature != "logits",
        )
        self._buf.record(0, feat[None], logits[None])
        self._prev = feat

    # ------------------------------------------------------------------------------------------------ hooks

    def _on_forward(self, module, args, out):
        if self._busy or not torch.is_grad_enabled() or not torch.is_tensor(out):
            return
        self._last = (self._hook.take(out).detach().clone(), out.detach().clone())

    @torch.no_grad()
    def _probe(self) -> tuple[torch.Tensor, torch.Tensor]:
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        self._busy = True
        try:
            logits = self.model(self._px)
            feat = self._hook.take(logits)
        finally:
            self._busy = False
            for m, mode in modes:
                m.training = mode
        return feat.detach(), logits.detach()

    # ------------------------------------------------------------------------------------------------ public

    def step(self, index: int, label: int) -> None:
        """Record the optimizer step just taken on training sample ``index`` (of class ``label``)."""
        if self._out is None:
            raise RuntimeError("this Tracker is closed")
        i = int(index.item() if torch.is_tensor(index) else index)
        if isinstance(index, bool) or not 0 <= i < len(self.labels):
            raise ValueError(f"index must be a training-sample index in [0, {len(self.labels)}), got {index!r}")
        lab = int(label.item() if torch.is_tensor(label) else label)
        if lab != int(self.labels[i]):
            raise ValueError(f"label={lab} but sample {i} has label {int(self.labels[i])} in the tracked data")
        if self._last is None:
            raise RuntimeError(
                "no training forward since the last step: call model(x) with gradients enabled on the sample "
                "before optimizer.step(), then tracker.step(index, label)"
            )
        f_i, logit_i = self._last
        if len(logit_i) != 1:
            raise ValueError(f"Tracker records batch-size-1 SGD; the last training forward had batch {len(logit_i)}")
        self._last = None
        self.s += 1
        j, r = divmod(self.s, self.record_every)
        if r == 0:
            if j >= self._buf.S:
                self._buf.grow(2 * self._buf.S)
            feat, logits = self._probe()
            self._buf.record(j, feat[None], logits[None], self._prev[None], f_i, logit_i, torch.tensor([i]))
            self._prev = feat
        if (self.s + 1) % self.record_every == 0 and self.record_every > 1:
            self._prev = self._probe()[0]  # features at the parameters the next recorded step starts from

    __call__ = step

    def dataset(self):
        """The track so far, as an xarray Dataset (the layout of :func:`~lesde.empirical.track`, one run)."""
        j = self.s // self.record_every
        rec = np.arange(0, j + 1) * self.record_every
        return track_dataset(
            self._buf.records(j),
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
            ),
        )

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


__all__ = ["Tracker"]
