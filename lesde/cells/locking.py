"""One writer per store, stores that are whole on disk, and Ctrl-C deferred while a store is written (sweep and
experiment stores alike).

A store is created in a hidden sibling folder ``.NAME.partial-PID-XXXX`` renamed into place when complete; a
process killed during creation leaves that folder, which the next writer removes (`remove_stale_partials`)
once its creating process is gone. The writer holds an exclusive ``flock`` on the store's folder
(`lock`); a second writer gets `StoreBusy`. `hold_sigint` defers Ctrl-C until a write
finishes, so an interrupt never leaves half a batch or half a cell in a store.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the infix of a store being created: ``.NAME.partial-PID-XXXX``
PARTIAL = ".partial-"


class StoreError(ValueError):
    """A store that cannot be used: not a lesde store of its kind, another spec's or experiment's, too old to
    resume, or damaged."""


class StoreBusy(StoreError):
    """Another process holds the store's lock."""


@contextmanager
def hold_sigint() -> Iterator[None]:
    """Defer Ctrl-C until the block (a store write) finishes, then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def lock(folder: Path, user: str = "sweep") -> int:
    """An exclusive flock on ``folder`` (held by the returned descriptor), or StoreBusy naming the other ``user``
    (``"sweep"``, ``"experiment"``)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreBusy(
            f"store {folder} is in use by another lesde {user} (it holds the store's lock); wait for it to finish "
            "(then rerun to see its result) or use another store path"
        ) from None
    return fd


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(path: Path) -> None:
    """Remove ``.NAME.partial-PID-*`` folders whose creating process is gone (killed during creation)."""
    for partial in path.parent.glob(f".{path.name}{PARTIAL}*"):
        try:
            pid = int(partial.name[len(f".{path.name}{PARTIAL}") :].split("-")[0])
        except ValueError:
            continue
        if _pid_alive(pid):
            continue
        try:
            fd = lock(partial)
        except (StoreBusy, OSError):
            continue
        try:
            shutil.rmtree(partial, ignore_errors=True)
        finally:
            os.close(fd)


__all__ = ["StoreError", "StoreBusy", "hold_sigint", "lock", "remove_stale_partials", "PARTIAL"]
