"""Zarr checkpoints of a track: the records so far, the stacked parameters and the progress, so a track resumes.

A store (zarr format 2, the format sweeps use) holds group ``buffer`` (the raw records of a
`TrackBuffer`, written region by region as steps complete), ``state_a`` /
``state_b`` (the stacked parameters, alternately, so a kill while one is written leaves the other intact) and
``progress`` (the completed step and which state holds it, written last). A store records a fingerprint of the
track's configuration; resuming with a different one is refused.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ._buffer import TrackBuffer

_ZARR = dict(zarr_format=2, consolidated=False)


class CheckpointStore:
    """The checkpoint store at ``path`` of the track configuration with ``fingerprint``."""

    def __init__(self, path: str | Path, fingerprint: str):
        self.path, self.fingerprint = str(path), fingerprint

    def exists(self) -> bool:
        return (Path(self.path) / "buffer").exists()

    def save(self, buf: TrackBuffer, j_from: int, j_to: int, step: int, params: dict, n_val: int) -> None:
        """Write recorded steps j_from..j_to, the parameters and the progress (last) to the store."""
        tmpl = _template(buf)
        if not self.exists():
            tmpl.attrs["fingerprint"] = self.fingerprint
            tmpl.to_zarr(self.path, group="buffer", mode="w", compute=False, **_ZARR)
            prog = {"completed_step": 0, "recorded": 0, "state": "", "validations": 0}
        else:
            prog = read_progress(self.path, self.fingerprint)
        if j_to >= j_from:
            region = slice(j_from, j_to + 1)
            part = {k: (tmpl[k].dims, v[:, region].detach().cpu().numpy()) for k, v in buf.arrays.items()}
            part["s_idx"] = (("run", "step"), buf.s_idx[:, region].numpy())
            xr.Dataset(part).to_zarr(self.path, group="buffer", region={"step": region}, **_ZARR)
        if n_val:
            xr.Dataset({k: (("run", "validation_step"), v) for k, v in buf.val.items()}).to_zarr(
                self.path,
                group="buffer",
                region={"validation_step": slice(0, buf.val["validation_loss"].shape[1])},
                **_ZARR,
            )
        state = "state_b" if prog["state"] == "state_a" else "state_a"
        xr.Dataset(
            {
                f"p{i}": (tuple(f"p{i}_d{d}" for d in range(v.ndim)), v.detach().cpu().numpy())
                for i, v in enumerate(params.values())
            },
            attrs={"names": json.dumps(list(params))},
        ).to_zarr(self.path, group=state, mode="w", **_ZARR)
        xr.Dataset(
            attrs={
                "completed_step": int(step),
                "recorded": int(j_to),
                "state": state,
                "validations": int(n_val),
                "fingerprint": self.fingerprint,
            }
        ).to_zarr(self.path, group="progress", mode="w", **_ZARR)

    def load(self, buf: TrackBuffer, params: dict) -> tuple[int, int, int] | None:
        """Fill ``buf`` and ``params`` (in place) from the store; (completed step, recorded index, validations), or
        None when there is nothing to resume."""
        if not self.exists():
            return None
        prog = read_progress(self.path, self.fingerprint)
        if not prog["state"]:
            return None
        j = prog["recorded"]
        with xr.open_zarr(self.path, group="buffer", **_ZARR) as stored:
            for k, v in buf.arrays.items():
                v[:, : j + 1] = torch.from_numpy(stored[k].values[:, : j + 1]).to(v)
            buf.s_idx[:, : j + 1] = torch.from_numpy(stored["s_idx"].values[:, : j + 1])
            for k in buf.val:
                buf.val[k][:] = stored[k].values
        with xr.open_zarr(self.path, group=prog["state"], **_ZARR) as st:
            names = json.loads(st.attrs["names"])
            if names != list(params):
                raise ValueError(f"checkpoint {self.path}: stored parameters {names} differ from the network's")
            with torch.no_grad():
                for i, p in enumerate(params.values()):
                    p.copy_(torch.from_numpy(st[f"p{i}"].values).to(p))
        return prog["completed_step"], j, prog["validations"]


def _template(buf: TrackBuffer) -> xr.Dataset:
    """The empty ``buffer`` group (lazily NaN), chunked by about 4 MiB of steps."""
    import dask.array as da

    data = {}
    for k, v in buf.arrays.items():
        dims = ("run", "step") + tuple(f"{k}_d{i}" for i in range(v.ndim - 2))
        chunk = (buf.R, max(1, min(buf.S, 2**22 // max(1, int(np.prod(v.shape[2:])) * buf.R)))) + v.shape[2:]
        data[k] = (dims, da.full(v.shape, np.nan, dtype=str(v.dtype).replace("torch.", ""), chunks=chunk))
    data["s_idx"] = (("run", "step"), da.full(buf.s_idx.shape, -1, dtype="int64", chunks=(buf.R, 2**16)))
    for k, v in buf.val.items():
        if v.size:
            data[k] = (("run", "validation_step"), da.full(v.shape, np.nan, chunks=v.shape))
    return xr.Dataset(data)


def read_progress(store: str, fingerprint: str) -> dict:
    """The ``progress`` attrs of a store written by the configuration with ``fingerprint`` (ValueError otherwise)."""
    with xr.open_zarr(store, group="buffer", **_ZARR) as buf:
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
        with xr.open_zarr(store, group="progress", **_ZARR) as p:
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


__all__ = ["CheckpointStore", "fingerprint", "read_progress"]
