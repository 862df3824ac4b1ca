"""Observations of a batch of parameter vectors, collected over time into one (run, time) Dataset.

Loss and accuracy are computed at each record. The NC metrics are not: the recorder keeps a copy of the
parameters (on the problem's device) and, when the copies reach ``flush_bytes`` and at the end, forms the
features, classifier and bias of all of them at once and computes their metrics in one batched
:func:`lesde.metrics.nc_metrics` call over ``(run, time)``.
For the small problems SGD-vs-SDE comparisons run on, a metric call costs its fixed per-call overhead many times
over its arithmetic, so batching over time makes the metrics a small share of the run instead of the larger one
(``benchmarks/sgd_sde.py --part compare``, recorded in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from ..metrics import METRIC_NAMES, nc_metrics
from ..metrics.statistics import select
from ..schema import make_dataset
from ..validation import check_choice

SAVE_MODES = ("metrics", "full")
#: default budget of the snapshots waiting for one batched metrics call (bytes, on the problem's device)
FLUSH_BYTES = 64 * 2**20
#: what ``metrics=True`` records: every NC metric but gnc2, the one with an iterative solver (opt in with
#: ``metrics="all"`` or a list naming it); 6-8% of a compare run with compare's defaults (benchmarks/RESULTS.md)
DEFAULT_METRICS: tuple[str, ...] = tuple(name for name in METRIC_NAMES if name != "gnc2")


def progress_bar(progress: Any, total: int, desc: str):
    """A tqdm bar over ``total`` steps (none with ``progress=False``), or, as is, a bar the caller passes (compare
    shares one bar between its three processes)."""
    if hasattr(progress, "update"):
        return contextlib.nullcontext(progress)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not progress)


class RunRecorder:
    """Collects observations at increasing times; ``dataset()`` stacks them to (run, time, ...).

    ``metrics``: True (:data:`DEFAULT_METRICS`), ``"all"`` (every metric of :func:`~lesde.metrics.nc_metrics`),
    False (none) or a list of names (aliases such as ``"nc2"`` allowed).
    """

    def __init__(self, problem, save: str = "metrics", metrics=True, flush_bytes: int | None = None) -> None:
        self.problem = problem
        self.save = check_choice("save", save, SAVE_MODES)
        if metrics is True:
            metrics = DEFAULT_METRICS
        elif metrics == "all":
            metrics = METRIC_NAMES
        elif metrics is False or metrics is None:
            metrics = []
        self.names = select(metrics, METRIC_NAMES, "")  # checked now, not after the run
        self.flush_bytes = FLUSH_BYTES if flush_bytes is None else flush_bytes
        self.times: list[float] = []
        self.rows: list[dict[str, torch.Tensor]] = []
        self.pending: list[torch.Tensor] = []  # the parameters (R, P) of each record since the last flush, on device
        self.pending_bytes = 0
        self.metric_parts: list[dict[str, torch.Tensor]] = []  # name -> (R, T') per flush, on the CPU

    def __call__(self, t: float, theta: torch.Tensor) -> None:
        if not torch.isfinite(theta).all():
            raise FloatingPointError(
                f"parameters became NaN/inf by time {t:g}: the learning rate or step size is too large "
                "for this problem (lower lr / dt, or use dtype=torch.float64)"
            )
        problem = self.problem
        with torch.no_grad():
            obs = {"loss": problem.loss(theta), "accuracy": problem.accuracy(theta)}
            if self.save == "full":
                feats = problem.features(theta)
                if feats is not None:
                    obs["features"], obs["classifier"] = feats, problem.classifier(theta)
                    if (b := problem.bias(theta)) is not None:
                        obs["bias"] = b
        if self.names:
            # a copy: the integrators reuse the state's buffer
            self.pending.append(theta.detach().clone())
            self.pending_bytes += theta.numel() * theta.element_size()
        self.times.append(float(t))
        self.rows.append({k: v.detach().to("cpu", copy=True) for k, v in obs.items()})
        if self.pending_bytes >= self.flush_bytes:
            self._flush()

    def _flush(self) -> None:
        """NC metrics of every pending record: features, classifier and bias of all of them (as R T' runs of the
        problem), then one nc_metrics call over (run, time)."""
        if not self.pending:
            return
        thetas = torch.stack(self.pending, dim=1)  # (R, T', P)
        self.pending, self.pending_bytes = [], 0
        lead, flat = thetas.shape[:2], thetas.reshape(-1, thetas.shape[-1])
        with torch.no_grad():
            feats = self.problem.features(flat)
            if feats is None:  # a module without a linear head has no classifier to collapse: no metrics
                self.names = []
                return
            W, b = self.problem.classifier(flat), self.problem.bias(flat)
            vals = nc_metrics(
                feats.reshape(*lead, *feats.shape[1:]),
                self.problem.labels,
                W.reshape(*lead, *W.shape[1:]),
                None if b is None else b.reshape(*lead, *b.shape[1:]),
                names=self.names,
            )
        self.metric_parts.append({k: v.cpu() for k, v in vals.items()})

    def dataset(self, *, extra: dict[str, Any] | None = None, coords: dict[str, Any] | None = None, **attrs: Any):
        """The (run, time) Dataset: loss, accuracy, NC metrics, the ``save="full"`` arrays, and ``extra``
        variables (``(dims, values)``) with their ``coords``; ``attrs`` are the global attrs."""
        self._flush()
        data: dict[str, Any] = {name: torch.stack([row[name] for row in self.rows], dim=1) for name in self.rows[0]}
        for name in self.metric_parts[0] if self.metric_parts else ():
            data[name] = torch.cat([part[name] for part in self.metric_parts], dim=1)  # (R, T)
        data.update(extra or {})
        all_coords: dict[str, Any] = {"run": np.arange(data["loss"].shape[0]), "time": np.asarray(self.times)}
        if "features" in data:
            all_coords["label"] = ("sample", self.problem.labels.cpu().numpy())
        all_coords.update(coords or {})
        return make_dataset(
            data, all_coords, lead=("run", "time"), time="training", attrs={"problem": self.problem.to_spec(), **attrs}
        )


def record_steps(steps: int, record_every: int | None, n_save: int = 101) -> list[int]:
    """Steps at which to record: 0, every ``record_every`` steps, and always the last."""
    if record_every is None:
        record_every = max(1, steps // max(1, n_save - 1))
    out = list(range(0, steps + 1, record_every))
    if out[-1] != steps:
        out.append(steps)
    return out
