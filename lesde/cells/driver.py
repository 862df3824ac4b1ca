"""The loop every run of cells shares: the executor chosen and checked up front, work mapped over it, each result
written as it arrives with Ctrl-C held during the write, a progress bar over cells, and an interrupt reported as
"k of n cells are in STORE; rerun the same command to resume"."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..validation import check_choice, check_int, check_positive_float
from .executors import EXECUTORS, require_dask
from .locking import hold_sigint
from .stores import count_ok

__all__ = ["check_executor", "run_cells", "interrupted_as"]


def check_executor(
    executor: str, workers: int | None, scheduler: str | None, worker_timeout: float
) -> tuple[str, float]:
    """The executor (``workers`` or ``scheduler`` imply ``"dask"``) and the checked ``worker_timeout``; a missing
    Dask extra is reported here, before any store is opened or bar drawn."""
    if workers is not None or scheduler is not None:
        executor = "dask"
    check_choice("executor", executor, EXECUTORS)
    if executor == "dask":
        require_dask()
    if workers is not None and scheduler is not None:
        raise ValueError("pass either workers (start a LocalCluster) or scheduler (join a cluster), not both")
    if workers is not None:
        check_int("workers", workers)
    return executor, check_positive_float("worker_timeout", worker_timeout)


def run_cells(
    fn: Callable,
    work: Sequence,
    write: Callable[[Any], None],
    *,
    total: int,
    done: int,
    desc: str,
    progress: bool = True,
    executor: str = "local",
    size: Callable[[Any], int] = lambda result: 1,
    **executor_options,
) -> None:
    """Run ``fn`` over ``work`` on ``executor`` and ``write`` each result in this process as it arrives.

    ``total`` and ``done`` are cells (the bar starts at ``done``), ``size(result)`` the cells a result holds;
    ``executor_options`` go to the executor (``workers``, ``scheduler``, ``worker_timeout``, ``name``, ``unit``,
    ``on_error``). Ctrl-C is held while a result is written; an interrupt closes the executor at once (a cluster
    that lesde started shuts down).
    """
    bar = tqdm(total=total, initial=done, unit="cell", disable=not progress, desc=desc)
    try:
        if work:
            results = EXECUTORS[executor](fn, work, **executor_options)
            with closing(results):
                for result in results:
                    with hold_sigint():
                        write(result)
                    bar.update(size(result))
    finally:
        bar.close()


@contextmanager
def interrupted_as(cls: type[KeyboardInterrupt], store: str | Path, total: int) -> Iterator[None]:
    """Turn a KeyboardInterrupt inside the block into ``cls`` saying how many of ``total`` cells ``store`` holds."""
    try:
        yield
    except KeyboardInterrupt:
        raise cls(
            f"{count_ok(Path(store))} of {total} cells are in {store}; rerun the same command to resume"
        ) from None
