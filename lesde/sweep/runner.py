"""``run``: a sweep from spec to store, resumable, with per-cell failures; and text summaries of a store."""

from __future__ import annotations

import functools
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..cells import check_executor, describe_failures, failed_cells, interrupted_as, run_cells
from ..metrics import ONLINE_METRICS
from ..validation import check_bool, check_device, check_path
from .batch import run_batch
from .plan import plan
from .spec import SweepSpec, load_spec, time_axis
from .store import open_store, open_sweep

__all__ = ["run", "SweepInterrupted", "format_table", "describe_failures", "failed_cells"]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the sweep; the message says how many cells the store holds. Rerun to resume."""


def run(
    spec: SweepSpec | dict[str, Any] | str | Path,
    store: str | Path,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    retry_failed: bool = False,
    worker_timeout: float = 60.0,
) -> xr.Dataset:
    """Run (or resume) a sweep into a zarr store and return the gridded result.

    Parameters
    ----------
    spec : path to a TOML file, dict or SweepSpec
        See `lesde.sweep`; checked completely before any work.
    store : path
        The zarr store (a folder), created before the first batch runs. Cells already ``ok`` there are skipped,
        failed ones too unless ``retry_failed``; a store of another spec is refused, as is one that another
        sweep is writing.
    executor : "local" | "dask"
        ``"dask"`` with ``workers=N`` starts a LocalCluster of N processes on 127.0.0.1; with
        ``scheduler=ADDRESS`` it joins one. Passing ``workers`` or ``scheduler`` implies ``"dask"``.
    device : str
        Torch device each batch runs on (``"cuda"`` spreads over a cluster's GPUs).
    progress : bool
        tqdm bar over cells.
    retry_failed : bool
        Run the cells a previous run recorded as failed again.
    worker_timeout : float
        Seconds without any Dask worker after which the sweep stops (`WorkersGone`).

    Returns
    -------
    xarray.Dataset
        Dims: one per grid key, plus ``time``. Variables ``p_all_separable``, ``separable_fraction`` (with
        ``_lower``/``_upper`` Wilson bounds), the integer counts ``separable_pairs`` and
        ``all_separable_paths``, NC metrics (mean over paths), ``status``, ``done`` and ``method``; the
        failures' messages are in ``attrs["failed_cells"]`` (JSON).

    Raises
    ------
    SweepInterrupted
        On Ctrl-C (a KeyboardInterrupt): nothing of the batch in progress is written; rerun to resume, and
        the result equals an uninterrupted run's bit for bit.

    Examples
    --------
    >>> import lesde.examples, lesde.sweep
    >>> lesde.examples.copy("phase_diagram.toml", ".")  # doctest: +SKIP
    >>> ds = lesde.sweep.run("phase_diagram.toml", "phase.zarr")  # doctest: +SKIP
    >>> ds.p_all_separable.sel(time=1e4)  # doctest: +SKIP
    """
    spec = load_spec(spec)
    executor, worker_timeout = check_executor(executor, workers, scheduler, worker_timeout)
    device = str(check_device(device))
    store = check_path("store", store, "phase.zarr")
    retry_failed = check_bool("retry_failed", retry_failed)
    with interrupted_as(SweepInterrupted, store, spec.n_cells):
        batches = plan(spec)  # also resolves method="auto" before any work
        time = time_axis(spec.simulate)
        with open_store(store, spec, time, list(ONLINE_METRICS)) as st:
            status = st.status()
            todo = (status == "pending") | ((status == "failed") & retry_failed)
            work = [b.subset([j for j, c in enumerate(b.cells) if todo[c]]) for b in batches if todo[b.cells].any()]
            run_cells(
                functools.partial(run_batch, device=device),
                work,
                st.write,
                total=spec.n_cells,
                done=int((~todo).sum()),
                desc="sweep",
                progress=progress,
                executor=executor,
                size=lambda result: len(result.cells),
                workers=workers,
                scheduler=scheduler,
                worker_timeout=worker_timeout,
                name="lesde-sweep-batch",
                unit="batches",
            )
    return open_sweep(store)


# ----------------------------------------------------------------------------------------------------------------
# summaries


def format_table(ds: xr.Dataset, time: float | None = None, x: str = "alpha_exponent", y: str = "alpha_scale") -> str:
    """A compact text table of P(all pairs separable) at ``time``: rows ``y``, columns ``x``; failed cells
    show ``fail``, missing ones stay blank."""
    for name, d in (("x", x), ("y", y)):
        if d not in ds["p_all_separable"].dims or d == "time":
            swept = [s for s in ds["p_all_separable"].dims if s != "time"]
            raise ValueError(f"{name}={d!r} is not a swept dimension of this sweep; accepted: {', '.join(swept)}")
    if time is None:
        time = float(ds.attrs.get("summary_time", ds.time[-1]))
    elif isinstance(time, bool) or not isinstance(time, numbers.Real) or not math.isfinite(time):
        raise ValueError(f"time={time!r} must be a finite number (the nearest save time is shown)")
    ds = ds.sortby([x, y])  # rows and columns in increasing order, whatever the order of the spec's grid
    p = ds["p_all_separable"].sel(time=float(time), method="nearest").transpose(y, x)
    failed = (ds["status"] == "failed").transpose(y, x).values if "status" in ds else np.zeros(p.shape, bool)
    head = f"P(all pairs separable) at t = {float(p.time):g}; rows {y}, columns {x}"
    lines = [head, f"{y:>12} | " + " ".join(f"{float(v):>5g}" for v in p[x].values)]
    lines.append("-" * len(lines[-1]))
    for yv, row, bad in zip(p[y].values, p.values, failed):
        cells = [" fail" if b else " " * 5 if np.isnan(v) else f"{v:5.2f}" for v, b in zip(row, bad)]
        lines.append(f"{float(yv):>12g} | " + " ".join(cells))
    return "\n".join(lines)
