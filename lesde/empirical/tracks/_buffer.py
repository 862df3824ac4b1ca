r"""The arrays of a track while it is being recorded, the Dataset they become, and their zarr checkpoints.

:func:`~lesde.empirical.track` and :class:`~lesde.empirical.Tracker` both record into a :class:`TrackBuffer`, so
their Datasets have one layout (documented in :mod:`lesde.empirical.tracking`). The buffer keeps the raw
records (probe features and logits, the sampled example's pre-step feature and logits, its index); loss, accuracy,
residuals and the sampled loss are derived once at the end in float64 (per step they cost as much as the probe
forward's bookkeeping).

Checkpoints (zarr format 2, the format sweeps use) hold group ``buffer`` (the raw records, written region by
region as steps complete), ``state_a`` / ``state_b`` (the stacked parameters, alternately, so a kill while one is
written leaves the other intact) and ``progress`` (the completed step and which state holds it, written last).
A store records a fingerprint of the track's configuration; resuming with a different one is refused.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from ...validation import check_memory


class TrackBuffer:
    """Preallocated (run, step, ...) records of a track with S recorded steps (step 0 included)."""

    def __init__(self, R, S, P, m, K, dtype, device, separate_logits: bool, V: int = 0):
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

    @property
    def logits(self) -> torch.Tensor:
        return self.arrays.get("logits", self.arrays["features"])

    @property
    def s_feat(self) -> torch.Tensor:
        return self.arrays.get("s_feat", self.arrays["s_logit"])

    def record(self, j, feat, logits, prev=None, s_feat=None, s_logit=None, s_idx=None) -> None:
        """Recorded step j: probe features/logits (R, P, .) after the step, and the sampled example before it."""
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
        lp = torch.log_softmax(logits.double(), -1)  # (R, B, K)
        self.val["validation_loss"][:, v] = (
            (-lp.gather(2, labels.expand(lp.shape[0], -1)[..., None])[..., 0]).mean(1).cpu()
        )
        self.val["validation_accuracy"][:, v] = (logits.argmax(-1) == labels).double().mean(1).cpu()

    def dataset(self, upto: int, rec_steps, lr, probe_idx, train_labels, val_steps=None, n_val=None) -> xr.Dataset:
        """The track Dataset of recorded steps 0..upto (inclusive)."""
        sl = slice(0, upto + 1)
        np_ = {k: v[:, sl].detach().cpu().numpy() for k, v in self.arrays.items()}
        labels = train_labels.cpu()
        PY = labels[probe_idx].numpy()
        logits = np_.get("logits", np_["features"])
        loss, acc = _probe_loss(logits, PY)
        s_idx = self.s_idx[:, sl]
        s_lab = torch.where(s_idx >= 0, labels[s_idx.clamp(min=0)], -1).numpy()
        sl64 = torch.from_numpy(np_["s_logit"]).double()
        lp = torch.log_softmax(sl64, -1)
        onehot = F.one_hot(torch.from_numpy(s_lab).clamp(min=0), self.K).double()
        valid = torch.from_numpy(s_lab >= 0)[..., None]
        # float64 from the stored logits: 1 - p would round to 0 in float32 for well-fitted samples
        res = torch.where(valid, onehot - lp.exp(), torch.nan).numpy()
        s_loss = torch.where(valid[..., 0], -(lp * onehot).sum(-1), torch.nan).numpy()
        steps = np.asarray(rec_steps)[sl]
        data = {
            "features": (("run", "step", "probe", "feature"), np_["features"]),
            "increment": (("run", "step", "probe", "feature"), np_["increment"]),
            "sampled_feature": (("run", "step", "feature"), np_.get("s_feat", np_["s_logit"])),
            "sampled_residual": (("run", "step", "class"), res),
            "sampled_index": (("run", "step"), s_idx.numpy()),
            "sampled_label": (("run", "step"), s_lab),
            "sampled_loss": (("run", "step"), s_loss),
            "loss": (("run", "step"), loss),
            "accuracy": (("run", "step"), acc),
        }
        coords = {
            "run": np.arange(self.R),
            "step": steps,
            "probe": np.arange(self.P),
            "feature": np.arange(self.m),
            "class": np.arange(self.K),
            "label": ("probe", PY),
            "sample_index": ("probe", np.asarray(probe_idx)),
            "time": ("step", steps * lr),
        }
        if val_steps is not None and len(val_steps):
            n_val = len(val_steps) if n_val is None else n_val
            for k, v in self.val.items():
                data[k] = (("run", "validation_step"), v[:, :n_val])
            coords["validation_step"] = np.asarray(val_steps)[:n_val]
        return xr.Dataset(data, coords=coords)

    # ------------------------------------------------------------------------------------------ checkpoints

    def _template(self) -> xr.Dataset:
        import dask.array as da

        data = {}
        for k, v in self.arrays.items():
            dims = ("run", "step") + tuple(f"{k}_d{i}" for i in range(v.ndim - 2))
            chunk = (self.R, max(1, min(self.S, 2**22 // max(1, int(np.prod(v.shape[2:])) * self.R)))) + v.shape[2:]
            data[k] = (dims, da.full(v.shape, np.nan, dtype=str(v.dtype).replace("torch.", ""), chunks=chunk))
        data["s_idx"] = (("run", "step"), da.full(self.s_idx.shape, -1, dtype="int64", chunks=(self.R, 2**16)))
        for k, v in self.val.items():
            if v.size:
                data[k] = (("run", "validation_step"), da.full(v.shape, np.nan, chunks=v.shape))
        return xr.Dataset(data)

    def save(self, store, fingerprint: str, j_from: int, j_to: int, step: int, params: dict, n_val: int) -> None:
        """Write recorded steps j_from..j_to, the parameters and the progress (last) to the zarr store."""
        store = str(store)
        tmpl = self._template()
        if not _exists(store):
            tmpl.attrs["fingerprint"] = fingerprint
            tmpl.to_zarr(store, group="buffer", mode="w", compute=False, zarr_format=2, consolidated=False)
            prog = {"completed_step": 0, "recorded": 0, "state": "", "validations": 0}
        else:
            prog = read_progress(store, fingerprint)
        if j_to >= j_from:
            region = slice(j_from, j_to + 1)
            part = {k: (tmpl[k].dims, v[:, region].detach().cpu().numpy()) for k, v in self.arrays.items()}
            part["s_idx"] = (("run", "step"), self.s_idx[:, region].numpy())
            xr.Dataset(part).to_zarr(store, group="buffer", region={"step": region}, zarr_format=2, consolidated=False)
        if n_val:
            xr.Dataset({k: (("run", "validation_step"), v) for k, v in self.val.items()}).to_zarr(
                store,
                group="buffer",
                region={"validation_step": slice(0, self.val["validation_loss"].shape[1])},
                zarr_format=2,
                consolidated=False,
            )
        state = "state_b" if prog["state"] == "state_a" else "state_a"
        names = list(params)
        xr.Dataset(
            {
                f"p{i}": (tuple(f"p{i}_d{d}" for d in range(v.ndim)), v.detach().cpu().numpy())
                for i, v in enumerate(params.values())
            },
            attrs={"names": json.dumps(names)},
        ).to_zarr(store, group=state, mode="w", zarr_format=2, consolidated=False)
        xr.Dataset(
            attrs={
                "completed_step": int(step),
                "recorded": int(j_to),
                "state": state,
                "validations": int(n_val),
                "fingerprint": fingerprint,
            }
        ).to_zarr(store, group="progress", mode="w", zarr_format=2, consolidated=False)

    def load(self, store, fingerprint: str, params: dict) -> tuple[int, int, int] | None:
        """Fill the buffer and ``params`` (in place) from a store; (completed step, recorded index, validations)."""
        store = str(store)
        if not _exists(store):
            return None
        prog = read_progress(store, fingerprint)
        if not prog["state"]:
            return None
        j = prog["recorded"]
        with xr.open_zarr(store, group="buffer", zarr_format=2, consolidated=False) as buf:
            for k, v in self.arrays.items():
                v[:, : j + 1] = torch.from_numpy(buf[k].values[:, : j + 1]).to(v)
            self.s_idx[:, : j + 1] = torch.from_numpy(buf["s_idx"].values[:, : j + 1])
            for k in self.val:
                self.val[k][:] = buf[k].values
        with xr.open_zarr(store, group=prog["state"], zarr_format=2, consolidated=False) as st:
            names = json.loads(st.attrs["names"])
            if names != list(params):
                raise ValueError(f"checkpoint {store}: stored parameters {names} differ from the network's")
            with torch.no_grad():
                for i, p in enumerate(params.values()):
                    p.copy_(torch.from_numpy(st[f"p{i}"].values).to(p))
        return prog["completed_step"], j, prog["validations"]


def _exists(store: str) -> bool:
    return (Path(store) / "buffer").exists()


def read_progress(store: str, fingerprint: str) -> dict:
    with xr.open_zarr(store, group="buffer", zarr_format=2, consolidated=False) as buf:
        if buf.attrs.get("fingerprint") != fingerprint:
            raise ValueError(
                f"checkpoint store {store} was written by a track with different settings (network, data, lr, "
                "steps, runs, probes, seed, feature, record_every, init or dtype); resume with the same settings, "
                "or use a new path"
            )
    if not (Path(store) / "progress").exists():
        return {"completed_step": 0, "recorded": 0, "state": "", "validations": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xr.open_zarr(store, group="progress", zarr_format=2, consolidated=False) as p:
            return dict(p.attrs)


def fingerprint(**config) -> str:
    """SHA-256 of a configuration: tensors by their bytes, everything else by its JSON/repr."""
    h = hashlib.sha256()
    for k in sorted(config):
        v = config[k]
        h.update(k.encode())
        if torch.is_tensor(v):
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(v, dict):
            for n in sorted(v):
                h.update(n.encode() + v[n].detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(repr(v).encode())
    return h.hexdigest()


def _probe_loss(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


__all__ = ["TrackBuffer", "fingerprint", "read_progress"]
