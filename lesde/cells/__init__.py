"""Cells of work, where they run and the stores they are written to: the machinery phase sweeps
(`lesde.sweep`) and empirical experiments (`lesde.empirical.experiments`) share, below both so that
neither imports the other.

A cell is the unit a long computation is resumed by: a grid point of a sweep, a (setting, run) of an experiment.
The parts, one module each:

- `keys`: a cell's seed from the run's seed and the cell's own key (`key_seed`), so its
  numbers do not depend on batching, on which cells are done or where a cell ran;
- `executors`: ``"local"`` or ``"dask"`` (a LocalCluster on 127.0.0.1 with ``workers=N``, or
  a running cluster with ``scheduler=ADDRESS``), results yielded as they complete;
- `locking` and `stores`: stores created whole or not at all, one writer at a
  time (`StoreBusy`), folders written whole, Ctrl-C held while a result is written (`hold_sigint`),
  per-cell ``status`` and failure messages;
- `driver`: the loop that maps work over an executor and writes each result as it arrives,
  with a progress bar over cells.
"""

from __future__ import annotations

from .driver import check_executor, interrupted_as, run_cells
from .executors import EXECUTORS, SchedulerUnreachable, WorkersGone, require_dask, worker_device
from .keys import SEEDING, key_seed
from .locking import StoreBusy, StoreError, hold_sigint
from .stores import (
    STATUS,
    count_ok,
    describe_failures,
    failed_cells,
    open_locked,
    partial_folder,
    read_attrs,
    record_failures,
    remove_partials,
)

__all__ = [
    "key_seed",
    "SEEDING",
    "EXECUTORS",
    "check_executor",
    "run_cells",
    "interrupted_as",
    "require_dask",
    "worker_device",
    "open_locked",
    "partial_folder",
    "remove_partials",
    "read_attrs",
    "record_failures",
    "failed_cells",
    "describe_failures",
    "count_ok",
    "hold_sigint",
    "STATUS",
    "StoreError",
    "StoreBusy",
    "SchedulerUnreachable",
    "WorkersGone",
]
