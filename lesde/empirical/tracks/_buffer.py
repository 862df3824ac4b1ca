"""The preallocated arrays a network's track is recorded into, step by step, on the training device.

`track` and `Tracker` both record into a `TrackBuffer`. It
keeps the raw records only (probe features and logits, the sampled example's pre-step feature and logits, its
index); `TrackBuffer.records` hands them to `track_dataset`, which
derives loss, accuracy, residuals and the sampled loss once at the end.
"""

from __future__ import annotations

import numpy as np
import torch

from ...validation import check_memory
from .track_layout import TrackRecords


class TrackBuffer:
    """Preallocated (run, step, ...) records of a track with S recorded steps (step 0 included), and the
    validation accuracy and loss at ``validation_steps``."""

    def __init__(self, R, S, P, m, K, dtype, device, separate_logits: bool, validation_steps=()):
        shapes = {
            "features": (R, S, P, m),
            "increment": (R, S, P, m),
            "logits": (R, S, P, K) if separate_logits else None,
            "s_feat": (R, S, m) if separate_logits else None,
            "s_logit": (R, S, K),
        }
        itemsize = torch.finfo(dtype).bits // 8
        need = sum(int(np.prod(s)) for s in shapes.values() if s) * itemsize
        check_memory(
            need,
            f"the track's records ({R} runs x {S} recorded steps x {P} probes x {m} features, features and "
            f"increments{' and logits' if separate_logits else ''}, {torch.finfo(dtype).bits}-bit)",
            "record fewer steps (record_every), fewer probes or runs, or track logits",
        )
        self.R, self.S, self.P, self.m, self.K = R, S, P, m, K
        nan = float("nan")
        self.arrays = {k: torch.full(s, nan, dtype=dtype, device=device) for k, s in shapes.items() if s is not None}
        self.s_idx = torch.full((R, S), -1, dtype=torch.long)
        self.validation_steps = np.asarray(validation_steps, dtype=np.int64)
        V = len(self.validation_steps)
        self.val = {k: np.full((R, V), np.nan) for k in ("validation_accuracy", "validation_loss")}

    def grow(self, S: int) -> None:
        """Room for S recorded steps (the records so far are kept)."""
        if S <= self.S:
            return
        check_memory(
            sum(v[:, :1].numel() for v in self.arrays.values()) * S * self.arrays["features"].element_size(),
            f"the track's records ({self.R} runs x {S} recorded steps x {self.P} probes x {self.m} features)",
            "record fewer steps (record_every) or fewer probes, or track logits",
        )
        for k, v in self.arrays.items():
            new = torch.full((v.shape[0], S) + v.shape[2:], float("nan"), dtype=v.dtype, device=v.device)
            new[:, : self.S] = v
            self.arrays[k] = new
        idx = torch.full((self.R, S), -1, dtype=torch.long)
        idx[:, : self.S] = self.s_idx
        self.s_idx, self.S = idx, S

    def record(self, j, feat, logits, prev=None, s_feat=None, s_logit=None, s_idx=None) -> None:
        """Recorded step j: probe features/logits (R, P, .) after the step, and the sampled example before it."""
        _check_finite(j, feat, logits, s_logit)
        a = self.arrays
        a["features"][:, j] = feat
        if "logits" in a:
            a["logits"][:, j] = logits
        if prev is not None:
            torch.sub(feat, prev, out=a["increment"][:, j])
        if s_logit is not None:
            a["s_logit"][:, j] = s_logit
            if "s_feat" in a:
                a["s_feat"][:, j] = s_feat
            self.s_idx[:, j] = s_idx.cpu()

    def record_validation(self, v: int, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Validation point v: accuracy and mean cross-entropy (float64) of logits (R, B, K) against labels (B,)."""
        lp = torch.log_softmax(logits.double(), -1)  # (R, B, K)
        self.val["validation_loss"][:, v] = (
            (-lp.gather(2, labels.expand(lp.shape[0], -1)[..., None])[..., 0]).mean(1).cpu()
        )
        self.val["validation_accuracy"][:, v] = (logits.argmax(-1) == labels).double().mean(1).cpu()

    def records(self, upto: int, validations: int = 0) -> TrackRecords:
        """The raw records of recorded steps 0..upto (inclusive) and of the first ``validations`` validation
        points."""
        sl = slice(0, upto + 1)
        a = {k: v[:, sl].detach().cpu().numpy() for k, v in self.arrays.items()}
        return TrackRecords(
            features=a["features"],
            increment=a["increment"],
            sampled_feature=a.get("s_feat", a["s_logit"]),
            sampled_index=self.s_idx[:, sl].numpy(),
            logits=a.get("logits", a["features"]),
            sampled_logits=a["s_logit"],
            validation={k: v[:, :validations] for k, v in self.val.items()},
            validation_steps=self.validation_steps[:validations],
        )


def _check_finite(j: int, *values) -> None:
    """Refuse NaN or inf records (R, ...) at recorded step j, naming the runs: a diverged training or a model that
    returns NaN would otherwise be tracked, estimated and plotted as NaN without a word."""
    bad = torch.zeros(values[0].shape[0], dtype=torch.bool, device=values[0].device)
    for v in values:
        if v is not None:
            bad |= ~torch.isfinite(v.reshape(v.shape[0], -1)).all(1)
    if not bool(bad.any()):
        return
    runs = bad.nonzero().flatten().tolist()
    where = f"run{'s' if len(runs) > 1 else ''} {', '.join(map(str, runs[:8]))}{', ...' if len(runs) > 8 else ''}"
    if j == 0:
        raise FloatingPointError(
            f"the network returns NaN or inf features or logits before any training ({where}): check the model's "
            "forward and the inputs' scale"
        )
    raise FloatingPointError(
        f"the run diverged: probe features are not finite from recorded step {j} on ({where}; NaN or inf features "
        "or logits); lower the learning rate or standardise the inputs"
    )


__all__ = ["TrackBuffer"]
