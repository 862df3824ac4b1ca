"""Zarr checkpoints of a track: the records so far, the stacked parameters and the progress, so a track resumes.

A store (zarr format 2, the format sweeps use) holds group ``buffer`` (the raw records of a
`TrackBuffer`, written region by region as steps complete), ``state_a`` /
``state_b`` (the stacked parameters, alternately, so a kill while one is written leaves the other intact) and
``progress`` (the completed step and which state holds it, written last). A store records a fingerprint of the
track's configuration; resuming with a different one is refused. A path that holds anything else (a file, a sweep
store, another zarr store) is refused before anything is written, a store that cannot be read back (truncated,
corrupt) is reported naming its path, and a write that fails (a full disk) leaves the last complete checkpoint
resumable: its ``progress`` still points at the state written before.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ...atomic_write import atomic_path
from ._buffer import TrackBuffer

_ZARR = dict(zarr_format=2, consolidated=False)
#: what a checkpoint store's folder may hold
_ENTRIES = frozenset({".zgroup", ".zattrs", ".zmetadata", "zarr.json", "buffer", "state_a", "state_b", "progress"})


class CheckpointError(ValueError):
    """A checkpoint path that is not a readable checkpoint of this track (it names the path)."""


class CheckpointStore:
    """The checkpoint store at ``path`` of the track configuration with ``fingerprint``; a path that holds
    something else is refused here, before anything is written."""

    def __init__(self, path: str | Path, fingerprint: str):
        self.path, self.fingerprint = str(path), fingerprint
        check_checkpoint_path(self.path)

    def exists(self) -> bool:
        """Whether the store holds a complete checkpoint (its ``progress`` written)."""
        return bool(read_progress(self.path, self.fingerprint)["state"])

    def save(self, buf: TrackBuffer, j_from: int, j_to: int, step: int, params: dict, n_val: int) -> None:
        """Write recorded steps j_from..j_to, the parameters and the progress (last) to the store; a failed write
        (OSError: a full or read-only disk) raises one naming the path, the previous checkpoint kept."""
        try:
            self._save(buf, j_from, j_to, step, params, n_val)
        except OSError as e:
            raise OSError(
                e.errno,
                f"checkpoint {self.path}: writing step {step} failed ({e.strerror or e}); the last complete "
                "checkpoint is kept and resumes once there is room",
            ) from e

    def _save(self, buf: TrackBuffer, j_from: int, j_to: int, step: int, params: dict, n_val: int) -> None:
        tmpl = _template(buf)
        prog = read_progress(self.path, self.fingerprint)
        if not prog["state"]:  # no complete checkpoint: (re)create the buffer, whatever a killed run left
            tmpl.attrs["fingerprint"] = self.fingerprint
            tmpl.to_zarr(self.path, group="buffer", mode="w", compute=False, **_ZARR)
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
        folder = Path(self.path) / "progress"  # the group's attrs replaced in one rename: never half written
        folder.mkdir(exist_ok=True)
        _replace_json(folder / ".zgroup", {"zarr_format": 2})
        attrs = dict(completed_step=int(step), recorded=int(j_to), state=state, validations=int(n_val))
        _replace_json(folder / ".zattrs", {**attrs, "fingerprint": self.fingerprint})

    def load(self, buf: TrackBuffer, params: dict) -> tuple[int, int, int] | None:
        """Fill ``buf`` and ``params`` (in place) from the store; (completed step, recorded index, validations), or
        None when there is nothing to resume."""
        prog = read_progress(self.path, self.fingerprint)
        if not prog["state"]:
            return None
        try:
            return self._load(buf, params, prog)
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever zarr, numcodecs or json say about damaged files
            raise _corrupt(self.path, e) from e

    def _load(self, buf: TrackBuffer, params: dict, prog: dict) -> tuple[int, int, int]:
        j, n_val = int(prog["recorded"]), int(prog["validations"])
        with xr.open_zarr(self.path, group="buffer", **_ZARR) as stored:
            for k, v in buf.arrays.items():
                v[:, : j + 1] = torch.from_numpy(stored[k].values[:, : j + 1]).to(v)
            buf.s_idx[:, : j + 1] = torch.from_numpy(stored["s_idx"].values[:, : j + 1])
            for k in buf.val:  # saved only with a validation set
                if buf.val[k].size:
                    buf.val[k][:] = stored[k].values
        if (j > 0 and bool((buf.s_idx[:, 1 : j + 1] < 0).any())) or not bool(
            torch.isfinite(buf.arrays["features"][:, : j + 1]).all()
        ):
            raise CheckpointError(f"checkpoint {self.path}: recorded steps are missing (a truncated store)")
        with xr.open_zarr(self.path, group=prog["state"], **_ZARR) as st:
            names = json.loads(st.attrs["names"])
            if names != list(params):
                raise CheckpointError(f"checkpoint {self.path}: stored parameters {names} differ from the network's")
            values = [torch.from_numpy(st[f"p{i}"].values) for i in range(len(names))]
        if not all(bool(torch.isfinite(v).all()) for v in values):
            raise CheckpointError(f"checkpoint {self.path}: its parameters hold NaN (a truncated store)")
        with torch.no_grad():
            for p, v in zip(params.values(), values, strict=True):
                p.copy_(v.to(p))
        return int(prog["completed_step"]), j, n_val


def _corrupt(path: str, e: BaseException) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} is corrupt or truncated and cannot be resumed ({type(e).__name__}: "
        f"{' '.join(str(e).split())[:200]}); remove it to start the track again"
    )


def check_checkpoint_path(path: str) -> None:
    """Refuse a path that holds a file or a folder other than a track checkpoint (so nothing is written into it)."""
    p = Path(path)
    if not p.exists():
        return
    if not p.is_dir():
        raise CheckpointError(
            f"checkpoint={path!r} is an existing file, not a track checkpoint store; give a new path (a zarr folder "
            "is created there)"
        )
    entries = {e.name for e in p.iterdir()}
    foreign = sorted(entries - _ENTRIES)
    if foreign or (entries & {"state_a", "state_b", "progress"} and "buffer" not in entries):
        shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
        raise CheckpointError(
            f"checkpoint={path!r} holds something other than a track checkpoint ({shown or 'no buffer group'}); "
            "give a new path or an empty folder, nothing was written there"
        )


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
    """The progress of a store written by the configuration with ``fingerprint`` (state "" when it holds no
    complete checkpoint); CheckpointError for another configuration's store or unreadable progress."""
    none = {"completed_step": 0, "recorded": 0, "state": "", "validations": 0}
    attrs = Path(store) / "progress" / ".zattrs"
    if not attrs.exists():
        return none
    try:
        prog = json.loads(attrs.read_text())
        if "state" not in prog:  # the group created, its attrs not yet written
            return none
        prog = {k: prog[k] for k in (*none, "fingerprint")}
        if prog["state"] not in ("state_a", "state_b") or not (Path(store) / prog["state"]).is_dir():
            raise KeyError(f"group {prog['state']!r}")
    except Exception as e:  # noqa: BLE001 - damaged progress attrs
        raise _corrupt(store, e) from e
    if prog.pop("fingerprint") != fingerprint:
        raise CheckpointError(
            f"checkpoint store {store} was written by a track with different settings (network, data, lr, "
            "steps, runs, probes, seed, feature, record_every, init, dtype or validation); resume with the same "
            "settings, or use a new path"
        )
    return prog


def _replace_json(path: Path, value: dict) -> None:
    """Write ``value`` as JSON to ``path`` through a temporary file renamed into place (flushed to disk first)."""
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(value, fh)
        fh.flush()
        os.fsync(fh.fileno())


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


__all__ = ["CheckpointStore", "CheckpointError", "check_checkpoint_path", "fingerprint", "read_progress"]
