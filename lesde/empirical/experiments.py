r"""Empirical experiments as cells: many tracked runs of many settings, on one machine or a Dask cluster, into one
resumable store.

An `Experiment` is ``settings x runs`` cells; a cell is one run of one
setting (`run_cell`: the setting's data, a fresh network, batch-size-1 SGD
with every probe tracked), seeded by its key so that its numbers do not depend on where it ran or with which
other cells. `run_experiment` runs the missing cells on an executor of `lesde.cells` (``"local"``, or
Dask with ``workers=N`` / ``scheduler=ADDRESS``, the very executors phase sweeps use) and writes each into the
store as it finishes (`experiment_store`); `experiment_tracks` reads a setting's runs
back as one track for `estimate`.

Semantics a long experiment relies on (those of a sweep):

- **Ctrl-C** never writes the cell in progress and is held while a finished cell is written;
  `run_experiment` raises `ExperimentInterrupted` (``lesde estimate`` exits 130). Rerunning the same
  call resumes: only the missing cells run, and the store ends equal to an uninterrupted run's (every track bit
  for bit; the cells' times are measured).
- **A failed cell** (a numerical error, a diverging run, a Dask worker killed while running it) is recorded as
  ``failed`` with its message in ``attrs["failed_cells"]``; the others go on. A rerun retries failed cells only
  with ``retry_failed=True`` (``--retry-failed``). Dask itself reruns a killed worker's task elsewhere up to
  ``distributed.scheduler.allowed-failures`` times before the cell is recorded as failed.
- **The store** is created before any work and written by one process at a time; a store of another experiment
  is refused with one line naming the difference.

Example, a small CNN on your own image arrays (any ``nn.Module`` factory and data loader that pickle and import
on the workers; ``lesde example copy cnn_on_arrays.py`` for the whole script):

```python
exp = Experiment(data=functools.partial(load_arrays, "images.npz"), net=small_cnn, lr=0.01, steps=2000,
                 n_runs=8, probes=120)
run_experiment(exp, "cnn.zarr")                 # here, one cell after the other
run_experiment(exp, "cnn.zarr", workers=2)      # or a LocalCluster of 2 processes on 127.0.0.1
est = estimate(experiment_tracks("cnn.zarr"))
```
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ..cells import check_executor, describe_failures, interrupted_as, run_cells
from ..validation import check_device
from .experiment_cells import Cell, CellResult, DatasetLoader, Experiment, run_cell
from .experiment_store import experiment_tracks, open_experiment, open_experiment_store

__all__ = [
    "Experiment",
    "DatasetLoader",
    "run_experiment",
    "open_experiment",
    "experiment_tracks",
    "require_complete",
    "ExperimentInterrupted",
    "ExperimentIncomplete",
]


class ExperimentInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the experiment; the message says how many cells the store holds. Rerun to resume."""


class ExperimentIncomplete(RuntimeError):
    """Cells of the experiment failed; ``failures`` names them (one line), the store holds the others."""

    def __init__(self, failures: str, hint: str):
        super().__init__(f"{failures}; {hint}")
        self.failures = failures


def _lost_cell(cell: Cell, error: BaseException) -> CellResult:
    """A cell whose Dask task failed: its worker was killed (a failed cell, to retry); anything else propagates."""
    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        return CellResult(cell.setting, cell.run, None, f"KilledWorker: {error}", float("nan"))
    raise error


def run_experiment(
    experiment: Experiment,
    store: str | Path,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    device: str = "cpu",
    retry_failed: bool = False,
    worker_timeout: float = 60.0,
    progress: bool = True,
) -> xr.Dataset:
    """Run (or resume) an experiment's cells into a zarr store and return its summary.

    Parameters
    ----------
    experiment : Experiment
        The settings, runs, data, network and training (`Experiment`).
    store : path
        The zarr store (a folder), created before the first cell runs. Cells already ``ok`` there are skipped,
        failed ones too unless ``retry_failed``; a store of another experiment is refused, as is one that another
        process is writing.
    executor : "local" | "dask"
        ``"dask"`` with ``workers=N`` starts a LocalCluster of N processes on 127.0.0.1; with
        ``scheduler=ADDRESS`` it joins one. Passing ``workers`` or ``scheduler`` implies ``"dask"``.
    device : str
        Torch device each cell trains on (``"cuda"`` spreads over a cluster's GPUs).
    retry_failed : bool
        Run the cells a previous run recorded as failed again.
    worker_timeout : float
        Seconds without any Dask worker after which the run stops (`WorkersGone`).
    progress : bool
        tqdm bar over cells.

    Returns
    -------
    xarray.Dataset
        ``status``, ``seconds`` and ``cpu_seconds`` over ``(setting, run)``, the failures' messages in
        ``attrs["failed_cells"]`` (`open_experiment`); the tracks are read with `experiment_tracks`.

    Raises
    ------
    ExperimentInterrupted
        On Ctrl-C: nothing of the cell in progress is written; rerun to resume.
    """
    executor, worker_timeout = check_executor(executor, workers, scheduler, worker_timeout)
    device = str(check_device(device))
    store = Path(store)
    R = experiment.n_runs
    with interrupted_as(ExperimentInterrupted, store, experiment.n_cells):
        with open_experiment_store(store, experiment) as st:
            status = st.status().ravel()
            todo = (status == "pending") | ((status == "failed") & retry_failed)
            work = [Cell(experiment, int(c) // R, int(c) % R, device) for c in np.flatnonzero(todo)]
            run_cells(run_cell, work, st.write, total=experiment.n_cells, done=int((~todo).sum()), desc="experiment",
                      progress=progress, executor=executor, workers=workers, scheduler=scheduler,
                      worker_timeout=worker_timeout, name="lesde-experiment-cell", on_error=_lost_cell)  # fmt: skip
    return open_experiment(store)


def require_complete(summary: xr.Dataset, hint: str = "rerun with retry_failed=True to retry them") -> None:
    """Raise `ExperimentIncomplete` (naming the failed cells, then ``hint``) unless every cell is ``ok``."""
    failures = describe_failures(summary)
    if failures:
        raise ExperimentIncomplete(failures, hint)
    pending = int((summary["status"] != "ok").sum())
    if pending:
        raise ExperimentIncomplete(f"{pending} of {summary['status'].size} cells are not done", "rerun to finish")
