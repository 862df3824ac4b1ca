"""Run one batch: a `lesde.simulate` call over its cells' paths, reduced to per-cell summaries.

Failures are per cell. When the simulation of a batch raises a numerical error (`CELL_FAILURES`: a state
overflow, a floating-point error, a ValueError from the numerics), the batch is split in halves and each half is
run again, down to single cells: the cells that fail alone are returned as failed (NaN results, the message),
the others with the numbers they have in any batch (each cell has its own seed, see `lesde.sweep.plan`).

An interrupted simulation never becomes a result: ``simulate`` returns the completed part of a run stopped by
Ctrl-C (``attrs["interrupted"]``), and this module turns that into `KeyboardInterrupt`, so nothing of
the batch is written.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr

from ..cells import worker_device
from ..model import LESDE
from ..schedules import as_schedule
from ..simulate import DTYPES, simulate
from .plan import BATCHABLE_KINDS, Batch
from .spec import SCHEDULE_FIELDS, time_axis

__all__ = ["BatchResult", "run_batch", "CELL_FAILURES", "COUNT_VARS", "SEPARABILITY_VARS"]

#: what a cell's simulation may raise that makes the cell failed (anything else stops the sweep)
CELL_FAILURES = (ArithmeticError, ValueError, torch.linalg.LinAlgError)
#: integer per-cell counts over paths (per time): separable class pairs, and paths with every pair separable
COUNT_VARS = ("separable_pairs", "all_separable_paths")
#: the per-path separability outputs of simulate, reduced to COUNT_VARS and the summaries below
_PER_PATH_SEPARABILITY = ("separable_fraction", "all_separable")
SEPARABILITY_VARS = (
    "p_all_separable",
    "p_all_separable_lower",
    "p_all_separable_upper",
    "separable_fraction",
    "separable_fraction_lower",
    "separable_fraction_upper",
)


@dataclass
class BatchResult:
    """Per-cell summaries of one batch.

    ``data[name]`` is a float64 (cells, time) array and ``counts[name]`` an int64 one (NaN and -1 for failed
    cells); ``failed`` maps the flat index of each failed cell to its error message; ``method`` is what ran.
    """

    batch_id: int
    cells: list[int]
    time: np.ndarray
    data: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]
    method: str
    failed: dict[int, str] = field(default_factory=dict)


def _schedule(spec: dict, n_paths: int, name: str):
    """Schedule from a spec dict whose list-valued parameters hold one value per cell -> per-path tensors (P,)."""
    params = {}
    for k, v in spec.items():
        if isinstance(v, list) and k != "kind" and spec.get("kind") in BATCHABLE_KINDS:
            # per path even when every cell shares the value: a cell is computed the same way in any batch
            params[k] = torch.tensor(v, dtype=torch.float64).repeat_interleave(n_paths)
        else:
            params[k] = v
    return as_schedule(params, name)


@contextmanager
def _no_partial_results() -> Iterator[None]:
    """simulate's warning about returning the completed part: the sweep raises KeyboardInterrupt instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="simulate interrupted", category=UserWarning)
        yield


def _simulate_cells(batch: Batch, model: LESDE, lo: int, hi: int, device: str) -> xr.Dataset:
    """Simulate cells ``lo:hi`` of the batch (their paths, one seed each) with ``save="metrics"`` (or "full")."""
    n, count = batch.n_paths, hi - lo
    sim = dict(batch.simulate)
    for key in ("method", "seed", "n_paths"):
        sim.pop(key)
    dtype = DTYPES[sim.pop("dtype")]
    if "x0" in sim:
        x0 = torch.as_tensor(sim["x0"], dtype=torch.float64)
        sim["x0"] = x0.repeat(count, 1, 1) if x0.ndim == 3 else x0  # per-path x0: every cell starts alike
    save = "metrics" if batch.separability == "ncm" else "full"
    with _no_partial_results():
        ds = simulate(
            model.select_paths(slice(lo * n, hi * n)),
            n_paths=count * n,
            method=batch.method,
            save=save,
            device=worker_device(device),
            dtype=dtype,
            seed=list(batch.seeds[lo:hi]),  # cell j's paths equal a run of its own with seed seeds[j]
            progress=False,
            **sim,
        )
    if ds.attrs.get("interrupted"):
        raise KeyboardInterrupt(ds.attrs["interrupted"])
    return _metrics_from_features(ds, batch.separability, batch.margin) if save == "full" else ds


def _metrics_from_features(ds: xr.Dataset, method: str, margin: float) -> xr.Dataset:
    """What ``save="metrics"`` computes (with ncm), from a ``save="full"`` run, for the other separability tests."""
    from .. import metrics, separability

    X = torch.from_numpy(np.ascontiguousarray(ds["features"].transpose("path", "time", "sample", "feature").values))
    labels = torch.from_numpy(ds["label"].values).long()
    vals = metrics.nc_metrics(X, labels, names=metrics.ONLINE_METRICS)  # each (path, time)
    vals["separable_fraction"], vals["all_separable"] = separability.pair_stats(X, labels, method=method, margin=margin)
    out = xr.Dataset({k: (("path", "time"), v.numpy()) for k, v in vals.items()}, coords={"time": ds["time"].values})
    out.attrs.update(ds.attrs)
    return out


def _reduce(ds: xr.Dataset, n_cells: int, n: int, num_classes: int, confidence: float):
    """(data, counts) per cell from a simulation of ``n_cells * n`` paths."""
    from ..separability import wilson_interval

    T = ds.sizes["time"]

    def per_cell(name: str) -> np.ndarray:
        return np.asarray(ds[name].transpose("path", "time").values, dtype=np.float64).reshape(n_cells, n, T)

    n_pairs = num_classes * (num_classes - 1) // 2
    # simulate reports k/n_pairs per path; k is recovered exactly (n_pairs is far below 2^52) and summed as int
    pairs = np.rint(per_cell("separable_fraction") * n_pairs).astype(np.int64).sum(1)  # (C, T)
    n_all = per_cell("all_separable").astype(np.int64).sum(1)
    counts = {"separable_pairs": pairs, "all_separable_paths": n_all}
    data = {"p_all_separable": n_all / n, "separable_fraction": pairs / (n * n_pairs)}
    lo, hi = wilson_interval(torch.from_numpy(n_all), n, confidence)
    data["p_all_separable_lower"], data["p_all_separable_upper"] = lo.numpy(), hi.numpy()
    lo, hi = wilson_interval(torch.from_numpy(pairs), n * n_pairs, confidence)
    data["separable_fraction_lower"], data["separable_fraction_upper"] = lo.numpy(), hi.numpy()
    for name, var in ds.data_vars.items():
        if set(var.dims) == {"path", "time"} and name not in _PER_PATH_SEPARABILITY and var.dtype.kind in "fiub":
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice": all-NaN cells stay NaN
                data[name] = np.nanmean(per_cell(name), axis=1)  # (C, T)
    return data, counts


def run_batch(batch: Batch, device: str = "cpu") -> BatchResult:
    """Simulate one batch and reduce it to per-cell summaries; failing cells are isolated (module docstring).

    Every variable of the simulation with dims exactly (path, time) other than the separability ones is an NC
    metric and is averaged over each cell's paths (``nanmean``).
    """
    C, n = len(batch.cells), batch.n_paths
    kwargs = dict(batch.model)
    for name in SCHEDULE_FIELDS:
        if isinstance(kwargs.get(name), dict):
            kwargs[name] = _schedule(kwargs[name], n, name)
    model = LESDE(**kwargs)
    pieces: list[tuple[int, int, dict, dict]] = []  # (lo, hi, data, counts) of the ranges that ran
    failed: dict[int, str] = {}
    time = None

    def attempt(lo: int, hi: int) -> None:
        nonlocal time
        try:
            ds = _simulate_cells(batch, model, lo, hi, device)
        except CELL_FAILURES as e:
            if hi - lo == 1:
                failed[lo] = f"{type(e).__name__}: {e}"
                return
            mid = (lo + hi) // 2
            attempt(lo, mid)
            attempt(mid, hi)
            return
        time = np.asarray(ds["time"].values, dtype=np.float64)
        pieces.append((lo, hi, *_reduce(ds, hi - lo, n, model.num_classes, batch.confidence)))

    attempt(0, C)
    if time is None:  # every cell failed: the time axis is the spec's
        time = time_axis(batch.simulate)
    T = len(time)
    names = sorted({k for _, _, d, _ in pieces for k in d})
    data = {k: np.full((C, T), np.nan) for k in names}
    counts = {k: np.full((C, T), -1, dtype=np.int64) for k in COUNT_VARS}
    for lo, hi, d, c in pieces:
        for k, v in d.items():
            data[k][lo:hi] = v
        for k, v in c.items():
            counts[k][lo:hi] = v
    return BatchResult(
        batch.batch_id,
        list(batch.cells),
        time,
        data,
        counts,
        batch.method,
        {batch.cells[j]: msg for j, msg in sorted(failed.items())},
    )
