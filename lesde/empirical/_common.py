"""Small helpers shared by the empirical stages."""

from __future__ import annotations

import contextlib
import signal
import warnings

import numpy as np

from .._validate import free_host_bytes


def n_runs_arg(n_runs: int | None, runs: int | None, default: int, stacklevel: int = 3) -> int:
    """Resolve the ``n_runs`` keyword and its deprecated spelling ``runs`` (one name everywhere)."""
    if runs is not None:
        warnings.warn("'runs' is deprecated; use 'n_runs'", DeprecationWarning, stacklevel=stacklevel)
        if n_runs is not None and n_runs != runs:
            raise ValueError(f"n_runs={n_runs} and its deprecated alias runs={runs} disagree; pass only n_runs")
        n_runs = runs
    return default if n_runs is None else n_runs


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
