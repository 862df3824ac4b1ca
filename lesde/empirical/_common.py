"""Small helpers shared by the empirical stages."""

from __future__ import annotations

import contextlib
import signal

import numpy as np

from ..validation import free_host_bytes


def check_memory(need: int, what: str, advice: str) -> None:
    """Refuse up front (MemoryError with the numbers) what would not fit in 90% of the free host memory."""
    free = free_host_bytes()
    if need > 0.9 * free:
        raise MemoryError(f"{what} need {need / 2**30:.3g} GiB but only {free / 2**30:.3g} GiB are free; {advice}")


@contextlib.contextmanager
def interrupt_flag():
    """Within the block, Ctrl-C (SIGINT) sets a flag instead of raising, so a loop can stop between two steps.

    Yields a callable returning whether Ctrl-C was pressed; a second Ctrl-C raises KeyboardInterrupt as usual.
    Outside the main thread (no handler can be installed there) the flag stays False.
    """
    hit = []

    def handler(signum, frame):
        if hit:
            raise KeyboardInterrupt
        hit.append(signum)

    try:
        old = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        old = None
    try:
        yield lambda: bool(hit)
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def onehot(x: np.ndarray, K: int) -> np.ndarray:
    """float64 one-hot of integer labels (..., ) -> (..., K); negative labels (none) give zero rows."""
    return (np.asarray(x)[..., None] == np.arange(K)).astype(np.float64)
