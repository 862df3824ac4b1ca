"""Where work runs: ``"local"`` (one item after the other, in this process) or ``"dask"`` (a Dask cluster).

An executor maps a function over items of work (a sweep's batches, an experiment's cells) and yields the results
as they complete; the caller, in this process, writes them. ``"dask"`` with ``workers=N`` starts a
``LocalCluster`` of N single-threaded processes that listens on 127.0.0.1 only (scheduler, workers and
dashboard, on free ports); with ``scheduler=ADDRESS`` it joins a running cluster (an address it cannot reach
within ``distributed.comm.timeouts.connect`` raises `SchedulerUnreachable`). When no worker is left for
``worker_timeout`` seconds the run stops with `WorkersGone` instead of waiting forever. An item whose
task fails on the cluster (its worker killed, say) raises there, unless ``on_error`` turns the exception into a
result. With ``device="cuda"`` on a cluster, `worker_device` gives worker i ``cuda:(i mod device_count)``
when worker names are integers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from ..extras import require

__all__ = [
    "EXECUTORS",
    "SchedulerUnreachable",
    "WorkersGone",
    "local_results",
    "dask_results",
    "require_dask",
    "worker_device",
]

#: seconds between checks of a Dask cluster's workers while waiting for results
POLL_S = 0.5


class SchedulerUnreachable(ValueError):
    """The Dask scheduler address given cannot be reached."""


class WorkersGone(RuntimeError):
    """Every Dask worker left and none came back within the timeout."""


def local_results(fn: Callable, items: Sequence, **_) -> Iterator[Any]:
    for item in items:
        yield fn(item)


def require_dask():
    return require("distributed", "dask", "work on a Dask cluster (--workers / --scheduler)")


def worker_device(device: str) -> str:
    """On a Dask worker named by an integer, spread ``cuda`` over the visible GPUs."""
    if device != "cuda" or not torch.cuda.is_available():
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    return f"cuda:{int(name) % torch.cuda.device_count()}" if isinstance(name, int) else device


def _connect(scheduler: str):
    Client = require_dask().Client

    try:
        return Client(scheduler)
    except (OSError, TimeoutError) as e:
        raise SchedulerUnreachable(f"cannot reach the Dask scheduler at {scheduler!r}: {e}") from None


def _local_cluster(workers: int):
    """A LocalCluster of single-threaded worker processes bound to 127.0.0.1 (dashboard included)."""
    LocalCluster = require_dask().LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )


def dask_results(
    fn: Callable,
    items: Sequence,
    workers: int | None = None,
    scheduler: str | None = None,
    worker_timeout: float = 60.0,
    name: str = "lesde-cells",
    unit: str = "cells",
    on_error: Callable[[Any, BaseException], Any] | None = None,
) -> Iterator[Any]:
    """``fn(item)`` for every item on a Dask cluster, yielded as they complete (module docstring).

    ``fn`` must pickle (a module-level function, or a ``functools.partial`` of one); task keys are
    ``{name}-{i}-{random}``; ``unit`` names the items in `WorkersGone`'s message.
    """
    distributed = require_dask()
    Client, wait = distributed.Client, distributed.wait

    cluster = None
    if scheduler is not None:
        client = _connect(scheduler)
    else:
        cluster = _local_cluster(workers or 1)
        client = Client(cluster)
    try:
        if cluster is not None:  # one thread per worker process: torch must not oversubscribe the cores either
            client.run(torch.set_num_threads, 1)
        pending = {
            client.submit(fn, item, pure=False, key=f"{name}-{i}-{uuid.uuid4().hex[:8]}"): item
            for i, item in enumerate(items)
        }
        alone_since = None
        while pending:
            try:
                finished, _ = wait(list(pending), timeout=POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                finished = set()
            for future in finished:
                item = pending.pop(future)
                if on_error is not None and future.status == "error":
                    yield on_error(item, future.exception())
                else:
                    yield future.result()
            if not pending:
                break
            if client.nthreads():
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since > worker_timeout:
                raise WorkersGone(
                    f"no Dask worker has been connected for {worker_timeout:g} s; {len(pending)} {unit} were "
                    "not computed (start workers, then rerun to resume)"
                )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


EXECUTORS = {"local": local_results, "dask": dask_results}
