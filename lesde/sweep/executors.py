"""Where batches run: ``"local"`` (one after the other, in this process) or ``"dask"`` (a Dask cluster).

``"dask"`` with ``workers=N`` starts a ``LocalCluster`` of N single-threaded processes that listens on
127.0.0.1 only (scheduler, workers and dashboard, on free ports); with ``scheduler=ADDRESS`` it joins a running
cluster (an address it cannot reach within ``distributed.comm.timeouts.connect`` raises
:class:`SchedulerUnreachable`). Results come back as they complete; this process writes them. When no worker
is left for ``worker_timeout`` seconds the sweep stops with :class:`WorkersGone` instead of waiting forever.
With ``device="cuda"`` on a cluster, worker i uses ``cuda:(i mod device_count)`` when worker names are integers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence

import torch

from ..extras import require
from .batch import BatchResult, run_batch
from .plan import Batch

__all__ = ["EXECUTORS", "SchedulerUnreachable", "WorkersGone", "local_results", "dask_results"]

#: seconds between checks of a Dask cluster's workers while waiting for results
POLL_S = 0.5


class SchedulerUnreachable(ValueError):
    """The Dask scheduler address given cannot be reached."""


class WorkersGone(RuntimeError):
    """Every Dask worker left and none came back within the timeout."""


def local_results(batches: Sequence[Batch], device: str, **_) -> Iterator[BatchResult]:
    for b in batches:
        yield run_batch(b, device)


def require_dask():
    return require("distributed", "dask", "a sweep on a Dask cluster (--workers / --scheduler)")


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
    batches: Sequence[Batch],
    device: str,
    workers: int | None = None,
    scheduler: str | None = None,
    worker_timeout: float = 60.0,
) -> Iterator[BatchResult]:
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
            client.submit(
                run_batch, b, device, pure=False, key=f"lesde-sweep-batch-{b.batch_id}-{uuid.uuid4().hex[:8]}"
            ): b
            for b in batches
        }
        alone_since = None
        while pending:
            try:
                finished, _ = wait(list(pending), timeout=POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                finished = set()
            for future in finished:
                pending.pop(future)
                yield future.result()
            if not pending:
                break
            if client.nthreads():
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since > worker_timeout:
                raise WorkersGone(
                    f"no Dask worker has been connected for {worker_timeout:g} s; {len(pending)} batches were "
                    "not computed (start workers, then rerun to resume)"
                )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


EXECUTORS = {"local": local_results, "dask": dask_results}
