"""What every resumable store of cells shares: creation that leaves a store whole or nothing, one writer at a time,
folders written whole, and the per-cell status and failure messages.

- `open_locked` creates a store (through ``fill``) in a hidden sibling ``.NAME.partial-PID-XXXX`` renamed
  into place when complete, or checks the one there (``check``), and holds its lock while the block runs
  (`locking`); two processes creating one store at once: one wins, the other gets
  `StoreBusy`; `read_attrs` reads an existing store's identity for its ``check``.
- `partial_folder` writes a folder inside a store the same way (a cell's result), so a process killed while
  writing leaves only a hidden folder, which the next writer removes (`remove_partials`).
- A store's ``status`` variable holds ``"pending"``, ``"ok"`` or ``"failed"`` per cell, written last; its attr
  ``failed_cells`` (JSON) maps a failed cell's flat index to its label and error message
  (`record_failures`, `failed_cells`, `describe_failures`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr

from .locking import PARTIAL, StoreError, hold_sigint, lock, remove_stale_partials

__all__ = [
    "open_locked",
    "partial_folder",
    "remove_partials",
    "read_attrs",
    "record_failures",
    "failed_cells",
    "describe_failures",
    "count_ok",
    "STATUS",
]

#: the values of a store's per-cell ``status``
STATUS = ("pending", "ok", "failed")


def _partial_name(path: Path) -> Path:
    return path.parent / f".{path.name}{PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _create(path: Path, fill: Callable[[Path], None], user: str) -> int | None:
    """Create the store via a locked hidden sibling; the lock descriptor, or None if another process won."""
    tmp = _partial_name(path)
    tmp.mkdir()
    fd = None
    try:
        fd = lock(tmp, user)
        fill(tmp)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()  # an empty folder made by the user: take its place
        try:
            os.rename(tmp, path)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
            os.close(fd)
            fd = None
            return None  # another process created it first
        result, fd = fd, None
        return result
    finally:
        if fd is not None:
            os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def open_locked(path: str | Path, fill: Callable[[Path], None], check: Callable[[], None], user: str) -> Iterator[Path]:
    """The store at ``path``, created by ``fill(folder)`` if missing (or an empty folder) and otherwise checked by
    ``check()``, locked for this process while the block runs; yields the path.

    Creation runs with Ctrl-C held (a store on disk is always whole); an OSError during it is a
    `StoreError` naming the store, and ``user`` (``"sweep"``, ``"experiment"``) names the
    other writer in `StoreBusy`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the folder of store {path}: {e.strerror or e}") from None
    if not os.access(path.parent, os.W_OK):
        raise StoreError(f"cannot write store {path}: its folder {path.parent} is not writable")
    remove_stale_partials(path)
    fd = None
    try:
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            with hold_sigint():  # a Ctrl-C here is raised once the store is complete (and the lock released)
                try:
                    fd = _create(path, fill, user)
                except OSError as e:
                    raise StoreError(f"cannot create store {path}: {e.strerror or e}") from None
        if fd is None:
            check()
            fd = lock(path, user)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    try:
        yield path
    finally:
        os.close(fd)


@contextmanager
def partial_folder(path: Path) -> Iterator[Path]:
    """A hidden sibling of ``path`` to write into, renamed to ``path`` (replacing a folder there) when the block
    ends without error and removed otherwise."""
    tmp = _partial_name(path)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_partials(folder: Path) -> None:
    """Remove the hidden partial folders inside ``folder``: left by a writer killed in `partial_folder`
    (call it holding the store's lock, when no other process writes there)."""
    for partial in folder.glob(f".*{PARTIAL}*"):
        shutil.rmtree(partial, ignore_errors=True)


def read_attrs(path: Path, kind: str) -> dict:
    """The root attrs of the existing store at ``path``, or a StoreError saying it is not a readable ``kind``
    store (``"lesde sweep"``, ``"lesde experiment"``)."""
    import zarr

    if not path.is_dir():
        raise StoreError(f"store {path} exists and is not a zarr store (a folder); give another store path")
    try:
        return dict(zarr.open_group(str(path), mode="r", zarr_format=2).attrs)
    except Exception as e:  # noqa: BLE001 - any unreadable store is refused with its reason
        raise StoreError(f"store {path} exists but is not a readable {kind} store ({type(e).__name__}: {e})") from None


def record_failures(attrs: MutableMapping, cells: Iterable[int], failed: Mapping[int, tuple[str, str]]) -> None:
    """Update the JSON attr ``failed_cells``: the ``cells`` just written lose their old message, and each of
    ``failed`` (flat index -> (label, error)) gets its own."""
    messages = json.loads(attrs.get("failed_cells", "{}"))
    for c in cells:
        messages.pop(str(c), None)
    for c, (label, error) in failed.items():
        messages[str(c)] = {"cell": label, "error": error}
    attrs["failed_cells"] = json.dumps(messages, sort_keys=True)


def failed_cells(ds: xr.Dataset) -> dict[int, dict[str, str]]:
    """Flat cell index -> {"cell": label, "error": message} of a store's failed cells."""
    return {int(k): v for k, v in json.loads(ds.attrs.get("failed_cells", "{}")).items()}


def describe_failures(ds: xr.Dataset, limit: int = 4) -> str:
    """One line naming the failed cells and their errors ("" if none)."""
    failed = failed_cells(ds)
    if not failed:
        return ""
    items = [f"{v['cell']} ({v['error']})" for _, v in sorted(failed.items())]
    more = f"; and {len(items) - limit} more (see the store's status variable)" if len(items) > limit else ""
    return f"{len(failed)} of {ds['status'].size} cells failed: " + "; ".join(items[:limit]) + more


def count_ok(store: Path) -> int:
    """How many cells of the store at ``store`` are ``ok`` (0 when there is no readable store)."""
    import zarr

    try:
        group = zarr.open_group(str(store), mode="r", zarr_format=2)
        return int((np.asarray(group["status"][...]).astype(str) == "ok").sum())
    except Exception:  # noqa: BLE001 - no store yet, or unreadable: nothing of it counts
        return 0
