"""Observations of a batch of parameter vectors, collected over time into one (run, time) Dataset.

Loss and accuracy are computed at each record. The NC metrics are not: the recorder keeps a copy of the
parameters (on the problem's device) and, when the copies reach ``flush_bytes`` and at the end, forms the
features, classifier and bias of all of them at once and computes their metrics in one batched
`lesde.metrics.nc_metrics` call over ``(run, time)``.
For the small problems SGD-vs-SDE comparisons run on, a metric call costs its fixed per-call overhead many times
over its arithmetic, so batching over time makes the metrics a small share of the run instead of the larger one
(``benchmarks/sgd_sde.py --part compare``, recorded in ``benchmarks/RESULTS.md``).

A run whose parameters become NaN or inf (a diverging SGD run or SME path) is masked, not fatal: from its first
non-finite record on, every observation of that run is NaN, the other runs are recorded as usual, the Dataset's
``n_diverged`` attr counts the masked runs, and `RunRecorder.dataset` warns (``UserWarning``) once. One SME path
escaping in 10^4 at a large learning rate then costs one NaN row, not the whole comparison.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..metrics import METRIC_NAMES, SEED_VARIANTS, nc_metrics
from ..metrics.statistics import select
from ..schema import make_dataset
from ..validation import check_choice

SAVE_MODES = ("metrics", "full")
#: default budget of the snapshots waiting for one batched metrics call (bytes, on the problem's device)
FLUSH_BYTES = 64 * 2**20
#: what ``metrics=True`` records: every NC metric but gnc2, the one with an iterative solver, and the GNC paper's
#: variants of GNC1 / GNC3 (opt in with ``metrics="all"`` or a list naming them); 6-8% of a compare run with
#: compare's defaults (benchmarks/RESULTS.md)
DEFAULT_METRICS: tuple[str, ...] = tuple(name for name in METRIC_NAMES if name != "gnc2" and name not in SEED_VARIANTS)


def progress_bar(progress: Any, total: int, desc: str):
    """A tqdm bar over ``total`` steps (none with ``progress=False``), or, as is, a bar the caller passes (compare
    shares one bar between its three processes)."""
    if hasattr(progress, "update"):
        return contextlib.nullcontext(progress)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not progress)


class RunRecorder:
    """Collects observations at increasing times; ``dataset()`` stacks them to (run, time, ...).

    ``metrics``: True (`DEFAULT_METRICS`), ``"all"`` (every metric of `nc_metrics`),
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
        self.diverged: torch.Tensor | None = None  # (R,) bool: runs masked from their first non-finite record on
        self.first_divergence: float | None = None
        self.pending_masks: list[torch.Tensor] = []  # the diverged mask (R,) of each pending record
        self.masks: list[torch.Tensor] = []  # the diverged mask (R,) of every record, on the CPU

    def _mask(self, t: float, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The diverged mask after this record (R,) and theta with the diverged rows set to 0 (finite stand-ins
        whose observations are replaced by NaN)."""
        bad = ~torch.isfinite(theta).all(-1)
        self.diverged = bad if self.diverged is None else self.diverged | bad
        if bool(self.diverged.any()):
            if self.first_divergence is None:
                self.first_divergence = float(t)
            theta = torch.where(self.diverged[:, None], torch.zeros_like(theta), theta)
        return self.diverged, theta

    def __call__(self, t: float, theta: torch.Tensor) -> None:
        mask, theta = self._mask(t, theta)
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
            self.pending_masks.append(mask.clone())
            self.pending_bytes += theta.numel() * theta.element_size()
        self.times.append(float(t))
        self.masks.append(mask.cpu())
        self.rows.append({k: _masked(v.detach().to("cpu", copy=True), self.masks[-1]) for k, v in obs.items()})
        if self.pending_bytes >= self.flush_bytes:
            self._flush()

    def _flush(self) -> None:
        """NC metrics of every pending record: features, classifier and bias of all of them (as R T' runs of the
        problem), then one nc_metrics call over (run, time)."""
        if not self.pending:
            return
        thetas = torch.stack(self.pending, dim=1)  # (R, T', P)
        masks = torch.stack(self.pending_masks, dim=1).cpu()  # (R, T')
        self.pending, self.pending_masks, self.pending_bytes = [], [], 0
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
        self.metric_parts.append({k: _masked(v.cpu(), masks) for k, v in vals.items()})

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
        n_diverged = 0 if self.diverged is None else int(self.diverged.sum())
        if n_diverged:
            warnings.warn(
                f"{attrs.get('process', 'run')}: {n_diverged} of {len(self.diverged)} runs diverged (parameters "
                f"NaN/inf, the first by time {self.first_divergence:g}); their observations are NaN from then on, "
                "the other runs are kept. Lower lr / dt, or use dtype=torch.float64",
                UserWarning,
                stacklevel=3,
            )
        return make_dataset(
            data,
            all_coords,
            lead=("run", "time"),
            time="training",
            attrs={"problem": self.problem.to_spec(), **attrs, "n_diverged": n_diverged},
        )


def _masked(values: torch.Tensor, diverged: torch.Tensor) -> torch.Tensor:
    """``values`` (R, ...) or (R, T', ...) with the diverged runs' entries NaN (a float copy where any are)."""
    if not bool(diverged.any()):
        return values
    values = values if values.is_floating_point() else values.to(torch.float64)
    shape = diverged.shape + (1,) * (values.ndim - diverged.ndim)
    return values.masked_fill(diverged.reshape(shape), float("nan"))


def record_steps(steps: int, record_every: int | Sequence[int] | None, n_save: int = 101) -> list[int]:
    """Steps at which to record: 0, every ``record_every`` steps, and always the last; or, when ``record_every`` is
    a sequence, exactly those steps (each in ``[0, steps]``)."""
    if record_every is not None and not isinstance(record_every, int):
        out = sorted({int(s) for s in record_every})
        if not out or out[0] < 0 or out[-1] > steps:
            raise ValueError(f"record_every: recorded steps must lie in [0, steps={steps}], got {out[:3]}...")
        return out
    if record_every is None:
        record_every = max(1, steps // max(1, n_save - 1))
    out = list(range(0, steps + 1, record_every))
    if out[-1] != steps:
        out.append(steps)
    return out


def even_steps(steps: int, n_save: int) -> list[int]:
    """``n_save`` steps from 0 to ``steps`` as evenly spaced as whole steps allow (both ends included), or every
    step when ``n_save > steps + 1``: spacings differ by at most one step."""
    n = min(n_save, steps + 1)
    # spacing steps / (n - 1) >= 1, so the rounded values are distinct: exactly n of them
    return [int(s) for s in np.rint(np.linspace(0, steps, n)).astype(np.int64)]
