r"""Parameter sweeps of the LE-SDE: separability phase diagrams, batched, resumable and distributable.

A sweep spec (a TOML file or the equivalent dict) names a base model, a simulation and a grid:

```toml
[model]                       # lesde.LESDE arguments
num_classes = 2
dim = 2
samples_per_class = 20
alpha = {kind = "PowerLaw", scale = 1.0, exponent = 1.0}
beta = 0.0
noise = 1.0

[simulate]                    # lesde.simulate arguments (per cell)
t_end = 1e4
dt = 1.0
n_paths = 200                 # paths per cell
save_times = [10.0, 100.0, 1000.0, 10000.0]
seed = 0

[grid]                        # dotted parameter paths -> values; one dimension each, in this order
"model.alpha.exponent" = [0.5, 1.0, 1.5, 2.0]
"model.alpha.scale" = [0.5, 1.0, 2.0, 4.0]

[sweep]                       # optional
time = 1e4                    # the time the demo table and the plots summarise at (default: the last)
separability = "ncm"          # "ncm" | "margin" | "linear"
margin = 0.0                  # only with separability = "margin"
confidence = 0.95             # of the Wilson intervals
cells_per_batch = 64          # default: as many as fit a fixed memory budget
```

For every cell the result holds, at every save time, ``p_all_separable`` (the fraction of paths on which every
class pair is separable) and ``separable_fraction`` (the mean over paths of the fraction of separable pairs), each
with its Wilson interval (`lesde.separability.wilson_interval`; the interval of ``separable_fraction`` pools
the pair counts over paths), the integer counts behind them (``all_separable_paths``, ``separable_pairs``), and
the mean over paths of every NC metric that ``simulate(save="metrics")`` returns. The Dataset has one dimension
per grid key (named by the key without its ``model.`` prefix, dots made underscores: ``alpha_exponent``) plus ``time``;
``status`` says which cells are ``ok``, ``failed`` or ``pending`` and ``method`` which integration method
produced each cell.

The parts, one module each: `spec` (load and check the spec, its canonical hash),
`plan` (cells -> batches, per-cell seeds, ``method="auto"``), `batch`
(run one batch, isolate failing cells), `store` (zarr layout, creation, locking, status) and
`runner` (`run`, text summaries). The executors (local, Dask), the store's locking and
atomic creation, and the seeds by key are `lesde.cells`, which empirical experiments share.

Semantics a long sweep relies on:

- **Ctrl-C** never writes the batch in progress (an interrupted simulation is not a result) and is held while
  a finished batch is written; `run` raises `SweepInterrupted` (``lesde sweep`` exits 130).
  Rerunning the same command resumes, and the store ends equal, bit for bit, to an uninterrupted run's.
- **A failed cell** (float64 overflow, a floating-point or numerical error) is recorded as ``failed`` with NaN
  results and its message in ``attrs["failed_cells"]``; the sweep goes on. A rerun retries failed cells only
  with ``retry_failed=True`` (``--retry-failed``); the other cells of its batch keep their numbers.
- **The store** is created before any work, atomically, and written by one sweep at a time
  (`StoreBusy` for a second one); damage is reported with the store, chunk file and cells.

The command line (``lesde sweep``) and ``lesde demo`` live in the application layer above this package
(`lesde.cli`); the library never imports it. `DEMO_SPEC` is the demo's small (p, c) phase diagram, the
spec tests and benchmarks derive theirs from (`demo_spec`).

Decisions: grid keys under ``simulate`` may not change the time axis or the paths
(``t_end``, ``save_times``, ``n_save``, ``n_paths``, ``seed``, ``x0``) so that all cells share one ``time``
coordinate; grid values that are not scalars (e.g. per-class noise lists) become JSON-string coordinates;
``simulate.dtype`` defaults to ``"float64"`` because phase diagrams reach exp(A(t)) far beyond float32; NC metrics
are averaged with ``nanmean`` (a metric undefined on some paths, e.g. 0/0 at t = 0, does not poison the cell).
"""

from __future__ import annotations

from ..cells import SchedulerUnreachable, StoreBusy, StoreError, WorkersGone, hold_sigint
from .batch import BatchResult, run_batch
from .plan import Batch, cell_seed, plan
from .runner import SweepInterrupted, describe_failures, failed_cells, format_table, run
from .spec import DEMO_SPEC, SweepSpec, demo_spec, load_spec, spec_hash
from .store import open_sweep

__all__ = [
    "run",
    "load_spec",
    "spec_hash",
    "plan",
    "run_batch",
    "open_sweep",
    "format_table",
    "describe_failures",
    "failed_cells",
    "cell_seed",
    "hold_sigint",
    "SweepSpec",
    "DEMO_SPEC",
    "demo_spec",
    "Batch",
    "BatchResult",
    "SweepInterrupted",
    "StoreError",
    "StoreBusy",
    "SchedulerUnreachable",
    "WorkersGone",
]
