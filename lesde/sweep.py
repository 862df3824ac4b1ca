r"""Parameter sweeps of the LE-SDE: separability phase diagrams, batched, resumable and distributable.

A sweep spec (a TOML file or the equivalent dict) names a base model, a simulation and a grid:

.. code-block:: toml

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
    margin = 0.0
    cells_per_batch = 64          # default: as many as fit a fixed memory budget

For every cell the result holds, at every save time, ``p_all_separable`` (the fraction of paths on which every class
pair is separable) and ``separable_fraction`` (the mean over paths of the fraction of separable pairs), each with
its Wilson interval (:func:`lesde.separability.wilson_interval`; the interval of ``separable_fraction`` pools the
pair counts over paths, see :mod:`lesde.separability`), and the mean over paths of every NC metric that
``simulate(save="metrics")`` returns. The Dataset has one dimension per grid key (named by the key without its
``model.`` prefix, e.g. ``alpha.exponent``) plus ``time``; ``done`` marks the finished cells and ``method`` says
which integration method produced each cell.

How it runs
-----------
- **Batching.** Cells that differ only in the numeric parameters of the ``alpha``/``beta`` schedules (scale,
  exponent, offset, rate, value) run as one :func:`lesde.simulate` call with per-path schedule tensors: cell j of a
  batch owns paths ``[j * n_paths, (j + 1) * n_paths)``. Anything else that is swept (num_classes,
  samples_per_class, dim, transform, noise, a schedule kind, simulate options) splits the cells into groups that
  run separately. A group is cut into batches of ``cells_per_batch`` cells; the default keeps the flat state of a
  batch (paths x N x m) under ``2**24`` numbers.
- **Seeds.** Batch b draws its noise from seed ``SeedSequence([seed, b])``; batches and their ids follow from
  the spec alone (never from the device, the executor or what is already done), so a resumed or distributed
  sweep gives the numbers of an uninterrupted local one. For the same reason each batch is one ``simulate``
  chunk (``chunk_size`` = the batch's paths unless ``simulate.chunk_size`` is set): the core seeds per chunk
  and would otherwise size chunks from the free memory of the machine.
- **Method.** ``simulate.method`` defaults to ``"auto"``: ``"exact"`` where the core can sample the model exactly
  (it raises ValueError otherwise), else ``"euler"``; an explicit method is used as given. The per-cell
  ``method`` variable and the ``method`` attr record what ran.
- **Store.** Results go to a zarr store (format 2) created when the first batch finishes (its time axis and metric
  names come from that batch), built in a hidden sibling directory and renamed into place, so a store on disk is
  always complete. Every finished batch is written at once (its cells' data, then their ``done`` flags), chunks
  are replaced atomically by zarr's local store, and so a sweep killed at any point leaves a readable store
  whose ``done`` cells are complete. Rerunning the same spec on it computes only the missing cells; a store
  written by a different spec (the SHA-256 of the canonical spec JSON is in its attrs) is refused.
- **Executors.** ``"local"`` runs batches one after the other in this process. ``"dask"`` submits every missing
  batch to a Dask distributed cluster (``workers=N`` starts a ``LocalCluster`` of N single-threaded processes;
  ``scheduler=ADDRESS`` joins a running one); this process writes each result as it completes. With
  ``device="cuda"`` on a cluster, worker i uses ``cuda:(i mod device_count)`` when worker names are integers.
- **Ctrl-C** stops after the write in progress (SIGINT is held during a write); rerun to resume.

Decisions (the issue leaves these open): grid keys under ``simulate`` may not change the time axis or the paths
(``t_end``, ``save_times``, ``n_save``, ``n_paths``, ``seed``, ``x0``) so that all cells share one ``time``
coordinate; grid values that are not scalars (e.g. per-class noise lists) become JSON-string coordinates;
``simulate.dtype`` defaults to ``"float64"`` because phase diagrams reach exp(A(t)) far beyond float32; NC metrics
are averaged with ``nanmean`` (a metric undefined on some paths, e.g. 0/0 at t = 0, does not poison the cell).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from ._validate import check_choice, check_int, check_positive_float

__all__ = ["load_spec", "spec_hash", "plan", "run", "run_batch", "open_sweep", "sweep_cli", "main_cli", "demo"]

#: default memory budget of one batch: paths * N * m numbers of flat state
BATCH_ELEMENTS = 2**24
#: simulate options a grid may not sweep (they change the time axis or the paths every cell shares)
_UNSWEEPABLE_SIMULATE = ("t_end", "save_times", "n_save", "n_paths", "seed", "x0", "save", "device", "progress")
#: schedule kinds whose scalar parameters can be given per path (one value per path along a leading dim)
_BATCHABLE_KINDS = ("Constant", "PowerLaw", "Exponential")
_SCHEDULE_FIELDS = ("alpha", "beta")
_SWEEP_DEFAULTS: dict[str, Any] = {
    "time": None,
    "separability": "ncm",
    "margin": 0.0,
    "confidence": 0.95,
    "cells_per_batch": None,
}
_SEPARABILITY = ("ncm", "margin", "linear")
_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_METHOD_FALLBACK = {"auto": ("exact", "euler")}
_SEPARABILITY_VARS = ("separable_fraction", "all_separable")
_SUMMARY_VARS = (
    "p_all_separable",
    "p_all_separable_lower",
    "p_all_separable_upper",
    "separable_fraction",
    "separable_fraction_lower",
    "separable_fraction_upper",
)


# ----------------------------------------------------------------------------------------------------------------
# the spec


@dataclass
class SweepSpec:
    """A parsed sweep: base ``model`` and ``simulate`` arguments, the ``grid`` (ordered) and ``sweep`` options."""

    model: dict[str, Any]
    simulate: dict[str, Any]
    grid: dict[str, list[Any]]
    sweep: dict[str, Any] = field(default_factory=dict)

    @property
    def dims(self) -> list[str]:
        """Dimension name of each grid key: the key without a leading ``model.``."""
        return [k.removeprefix("model.") for k in self.grid]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.grid.values())

    @property
    def n_cells(self) -> int:
        return int(np.prod(self.shape))

    @property
    def n_paths(self) -> int:
        return int(self.simulate["n_paths"])

    def to_dict(self) -> dict[str, Any]:
        # the grid as a list of pairs: its order defines the dims, and canonical JSON sorts dict keys
        return {
            "model": self.model,
            "simulate": self.simulate,
            "grid": [[k, v] for k, v in self.grid.items()],
            "sweep": self.sweep,
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): what :func:`spec_hash` hashes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def _read_toml(path: str | Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def load_spec(spec: str | Path | dict[str, Any] | SweepSpec) -> SweepSpec:
    """Parse and check a sweep spec from a TOML path or a dict with sections model, simulate, grid, sweep.

    The ``sweep`` section is completed with its defaults, so that a spec written with or without them hashes
    the same. Grid keys are dotted paths starting with ``model.`` or ``simulate.``.
    """
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, (str, Path)):
        spec = _read_toml(spec)
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a TOML path or a dict, got {type(spec).__name__}")
    unknown = set(spec) - {"model", "simulate", "grid", "sweep"}
    if unknown:
        raise ValueError(f"spec has unknown sections {sorted(unknown)}; accepted: model, simulate, grid, sweep")
    model = copy.deepcopy(dict(spec.get("model", {})))
    simulate = copy.deepcopy(dict(spec.get("simulate", {})))
    grid_in = spec.get("grid", {})
    if isinstance(grid_in, list):  # the canonical list-of-pairs form of SweepSpec.to_dict
        grid_in = dict(grid_in)
    if not isinstance(grid_in, dict) or not grid_in:
        raise ValueError("spec needs a [grid] section mapping dotted parameter paths to lists of values")
    for required in ("num_classes", "dim", "samples_per_class"):
        if required not in model and f"model.{required}" not in grid_in:
            raise ValueError(f"spec [model] needs {required!r} (or a grid over 'model.{required}')")
    for required in ("t_end", "n_paths"):
        if required not in simulate:
            raise ValueError(f"spec [simulate] needs {required!r}")
    check_int("simulate.n_paths", simulate["n_paths"])
    simulate.setdefault("seed", 0)
    simulate.setdefault("method", "auto")
    simulate.setdefault("dtype", "float64")
    check_choice("simulate.dtype", simulate["dtype"], _DTYPES)
    for bad in ("save", "device", "progress"):
        if bad in simulate:
            raise ValueError(f"spec [simulate] must not set {bad!r}: the sweep sets it (save='metrics')")

    grid: dict[str, list[Any]] = {}
    for key, values in grid_in.items():
        section, _, rest = key.partition(".")
        if section not in ("model", "simulate") or not rest:
            raise ValueError(f"grid key {key!r} must be a dotted path starting with 'model.' or 'simulate.'")
        if section == "simulate" and rest.split(".")[0] in _UNSWEEPABLE_SIMULATE:
            raise ValueError(
                f"grid key {key!r}: {rest!r} cannot be swept (every cell shares the time axis and paths); "
                f"sweepable simulate options exclude {', '.join(_UNSWEEPABLE_SIMULATE)}"
            )
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValueError(f"grid key {key!r} needs a non-empty list of values, got {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ValueError(f"grid key {key!r} has repeated values {values!r}")
        grid[key] = list(values)

    sweep = {**_SWEEP_DEFAULTS, **dict(spec.get("sweep", {}))}
    unknown = set(sweep) - set(_SWEEP_DEFAULTS)
    if unknown:
        raise ValueError(f"spec [sweep] has unknown options {sorted(unknown)}; accepted: {', '.join(_SWEEP_DEFAULTS)}")
    check_choice("sweep.separability", sweep["separability"], _SEPARABILITY)
    sweep["margin"] = check_positive_float("sweep.margin", sweep["margin"], allow_zero=True)
    if sweep["cells_per_batch"] is not None:
        check_int("sweep.cells_per_batch", sweep["cells_per_batch"])
    out = SweepSpec(model=model, simulate=simulate, grid=grid, sweep=sweep)
    for cell in range(min(out.n_cells, 1)):  # resolve one cell now so that bad paths fail before any work
        _cell_config(out, cell)
    return out


def spec_hash(spec: SweepSpec | dict[str, Any] | str | Path) -> str:
    """SHA-256 (hex) of the canonical JSON of the parsed spec."""
    return hashlib.sha256(load_spec(spec).to_json().encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# cells, groups and batches


def _set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``config[a][b][c] = value`` for key ``"a.b.c"``; a number schedule under a schedule key is refused."""
    parts = key.split(".")
    node = config
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ValueError(
                f"grid key {key!r}: {where} is {child!r}, not a table; write it as an inline table, e.g. "
                f'{parts[depth]} = {{kind = "PowerLaw", scale = 1.0, exponent = 1.0}}'
            )
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def _cell_config(spec: SweepSpec, cell: int) -> dict[str, Any]:
    """The full {"model", "simulate"} arguments of flat cell index ``cell`` (C order over the grid)."""
    config = {"model": copy.deepcopy(spec.model), "simulate": copy.deepcopy(spec.simulate)}
    for key, values, i in zip(spec.grid, spec.grid.values(), np.unravel_index(cell, spec.shape)):
        _set_dotted(config, key, values[int(i)])
    model = config["model"]
    for name in _SCHEDULE_FIELDS:
        value = model.get(name)
        # numbers become Constant schedules so that a swept alpha = [..] batches like any schedule parameter
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            model[name] = {"kind": "Constant", "value": float(value)}
    return config


def _batchable(model: dict[str, Any], name: str) -> bool:
    value = model.get(name)
    return (
        isinstance(value, dict)
        and value.get("kind") in _BATCHABLE_KINDS
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in value.items() if k != "kind")
    )


def _group_key(config: dict[str, Any]) -> str:
    """JSON of a cell's config with the per-path (batchable) schedule numbers blanked out."""
    keyed = copy.deepcopy(config)
    for name in _SCHEDULE_FIELDS:
        if _batchable(keyed["model"], name):
            keyed["model"][name] = {k: (v if k == "kind" else None) for k, v in keyed["model"][name].items()}
    return json.dumps(keyed, sort_keys=True)


def _state_size(model: dict[str, Any]) -> int:
    spc = model.get("samples_per_class", 1)
    n_samples = sum(spc) if isinstance(spc, (list, tuple)) else int(spc) * int(model.get("num_classes", 2))
    return n_samples * int(model.get("dim", 1))


@dataclass
class Batch:
    """One simulate call: cells (flat indices) sharing everything but per-path schedule parameters.

    ``model`` holds the LESDE arguments with each batchable schedule parameter given as a list with one value
    per cell; :func:`run_batch` expands them to one value per path.
    """

    batch_id: int
    cells: list[int]
    model: dict[str, Any]
    simulate: dict[str, Any]
    n_paths: int
    seed: int
    separability: str
    margin: float
    confidence: float


def _batch_seed(seed: int, batch_id: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(batch_id)]).generate_state(1, dtype=np.uint32)[0])


def plan(spec: SweepSpec | dict[str, Any] | str | Path) -> list[Batch]:
    """Cut the grid into batches, deterministically from the spec alone (ids, cells and seeds).

    Groups of cells with equal shapes are ordered by their first cell; each group is cut into consecutive runs of
    at most ``cells_per_batch`` cells.
    """
    spec = load_spec(spec)
    configs = [_cell_config(spec, c) for c in range(spec.n_cells)]
    groups: dict[str, list[int]] = {}
    for cell, config in enumerate(configs):
        groups.setdefault(_group_key(config), []).append(cell)
    batches: list[Batch] = []
    for cells in groups.values():
        first = configs[cells[0]]
        per_batch = spec.sweep["cells_per_batch"] or max(
            1, BATCH_ELEMENTS // (spec.n_paths * _state_size(first["model"]))
        )
        for start in range(0, len(cells), per_batch):
            chunk = cells[start : start + per_batch]
            model = copy.deepcopy(first["model"])
            for name in _SCHEDULE_FIELDS:
                if _batchable(model, name):
                    for param in model[name]:
                        if param != "kind":
                            model[name][param] = [float(configs[c]["model"][name][param]) for c in chunk]
            batch_id = len(batches)
            batches.append(
                Batch(
                    batch_id=batch_id,
                    cells=chunk,
                    model=model,
                    simulate=copy.deepcopy(first["simulate"]),
                    n_paths=spec.n_paths,
                    seed=_batch_seed(spec.simulate["seed"], batch_id),
                    separability=spec.sweep["separability"],
                    margin=float(spec.sweep["margin"]),
                    confidence=float(spec.sweep["confidence"]),
                )
            )
    return batches


# ----------------------------------------------------------------------------------------------------------------
# running one batch


def _schedule(spec: dict[str, Any], n_paths: int, name: str):
    """Schedule from a spec dict whose list-valued parameters hold one value per cell -> per-path tensors (P,)."""
    from .schedules import as_schedule

    params = {}
    for k, v in spec.items():
        if isinstance(v, list) and k != "kind" and spec.get("kind") in _BATCHABLE_KINDS:
            per_cell = torch.tensor(v, dtype=torch.float64)  # (C,)
            params[k] = per_cell[0] if bool((per_cell == per_cell[0]).all()) else per_cell.repeat_interleave(n_paths)
        else:
            params[k] = v
    return as_schedule(params, name)


def _simulate_fn():
    from .simulate import simulate

    return simulate


def _worker_device(device: str) -> str:
    """On a Dask worker named by an integer, spread ``cuda`` over the visible GPUs."""
    if device != "cuda" or not torch.cuda.is_available():
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    return f"cuda:{int(name) % torch.cuda.device_count()}" if isinstance(name, int) else device


@dataclass
class BatchResult:
    """Per-cell summaries of one batch: ``data[name]`` is (cells, time); ``method`` is what ran."""

    batch_id: int
    cells: list[int]
    time: np.ndarray
    data: dict[str, np.ndarray]
    method: str


def run_batch(batch: Batch, device: str = "cpu") -> BatchResult:
    """Simulate one batch with ``save="metrics"`` and reduce it to per-cell summaries.

    Every variable of the simulation with dims exactly (path, time) other than the separability ones is an NC
    metric and is averaged over each cell's paths (``nanmean``).
    """
    from .model import LESDE
    from .separability import wilson_interval

    simulate = _simulate_fn()
    C, n = len(batch.cells), batch.n_paths
    model_kwargs = dict(batch.model)
    for name in _SCHEDULE_FIELDS:
        if isinstance(model_kwargs.get(name), dict):
            model_kwargs[name] = _schedule(model_kwargs[name], n, name)
    model = LESDE(**model_kwargs)
    sim = dict(batch.simulate)
    requested = sim.pop("method")
    dtype = _DTYPES[sim.pop("dtype")]
    sim.pop("seed")
    sim.pop("n_paths")
    # an explicit chunk size: the core seeds each chunk, and its default chunking follows the free memory
    sim["chunk_size"] = min(C * n, int(sim.get("chunk_size") or C * n))
    save = "metrics" if batch.separability == "ncm" else "full"
    methods = _METHOD_FALLBACK.get(requested, (requested,))
    for i, method in enumerate(methods):
        try:
            ds = simulate(
                model,
                n_paths=C * n,
                method=method,
                save=save,
                device=_worker_device(device),
                dtype=dtype,
                seed=batch.seed,
                progress=False,
                **sim,
            )
            break
        except ValueError:
            if i == len(methods) - 1:
                raise
    if save == "full":
        ds = _metrics_from_features(ds, batch.separability, batch.margin)
    T = ds.sizes["time"]

    def per_cell(name: str) -> np.ndarray:
        return np.asarray(ds[name].transpose("path", "time").values, dtype=np.float64).reshape(C, n, T)

    K = model.num_classes
    n_pairs = K * (K - 1) // 2
    all_sep = per_cell("all_separable")  # (C, n, T)
    pairs = np.rint(per_cell("separable_fraction") * n_pairs)  # (C, n, T) separable pairs per path
    n_all, pooled = all_sep.sum(1), pairs.sum(1)  # (C, T)
    data = {"p_all_separable": n_all / n, "separable_fraction": pooled / (n * n_pairs)}
    lo, hi = wilson_interval(torch.from_numpy(n_all), n, batch.confidence)
    data["p_all_separable_lower"], data["p_all_separable_upper"] = lo.numpy(), hi.numpy()
    lo, hi = wilson_interval(torch.from_numpy(pooled), n * n_pairs, batch.confidence)
    data["separable_fraction_lower"], data["separable_fraction_upper"] = lo.numpy(), hi.numpy()
    for name, var in ds.data_vars.items():
        if set(var.dims) == {"path", "time"} and name not in _SEPARABILITY_VARS and var.dtype.kind in "fiub":
            with np.errstate(all="ignore"), _quiet_nanmean():
                data[name] = np.nanmean(per_cell(name), axis=1)  # (C, T)
    return BatchResult(
        batch.batch_id,
        list(batch.cells),
        np.asarray(ds["time"].values, dtype=np.float64),
        data,
        str(ds.attrs.get("method", method)),
    )


def _metrics_from_features(ds: xr.Dataset, method: str, margin: float) -> xr.Dataset:
    """What ``save="metrics"`` computes (with ncm), from a ``save="full"`` run, for the other separability tests."""
    from . import metrics, separability

    X = torch.from_numpy(np.ascontiguousarray(ds["features"].transpose("path", "time", "sample", "feature").values))
    labels = torch.from_numpy(ds["label"].values).long()
    vals = metrics.nc_metrics(X, labels, names=metrics.ONLINE_METRICS)  # each (path, time)
    vals["separable_fraction"], vals["all_separable"] = separability.pair_stats(X, labels, method=method, margin=margin)
    out = xr.Dataset({k: (("path", "time"), v.numpy()) for k, v in vals.items()}, coords={"time": ds["time"].values})
    out.attrs.update(ds.attrs)
    return out


@contextmanager
def _quiet_nanmean() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice": all-NaN cells stay NaN
        yield


# ----------------------------------------------------------------------------------------------------------------
# the store


def _coord(values: list[Any]) -> np.ndarray:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64 if any(isinstance(v, float) for v in values) else np.int64)
    if all(isinstance(v, (str, bool)) for v in values):
        return np.asarray([str(v) for v in values])
    return np.asarray([json.dumps(v, sort_keys=True) for v in values])  # lists/tables: JSON labels


def _spec_of_store(store: Path) -> str | None:
    import zarr

    try:
        return zarr.open_group(str(store), mode="r").attrs.get("spec_hash")
    except Exception as e:  # noqa: BLE001 - any unreadable store is refused below with its reason
        raise ValueError(f"store {store} exists but is not a readable lesde sweep store: {e}") from None


def _create_store(store: Path, spec: SweepSpec, first: BatchResult) -> None:
    """Write the empty gridded store (coordinates, attrs, done = 0) to a hidden sibling, then rename it."""
    import dask.array as da

    from ._attrs import VARIABLE_ATTRS, finalize

    dims = spec.dims
    coords = {d: _coord(v) for d, v in zip(dims, spec.grid.values())}
    coords["time"] = first.time
    shape = (*spec.shape, len(first.time))
    # leading grid dims chunked by 1, the last grid dim and time whole: one chunk per row of cells
    chunks = (*([1] * (len(dims) - 1)), spec.shape[-1], len(first.time))
    data_vars = {}
    for name in [*_SUMMARY_VARS, *sorted(set(first.data) - set(_SUMMARY_VARS))]:
        data_vars[name] = ([*dims, "time"], da.full(shape, np.nan, chunks=chunks, dtype=np.float64))
    data_vars["done"] = (dims, np.zeros(spec.shape, dtype=np.int8))
    data_vars["method"] = (dims, np.full(spec.shape, "", dtype="<U32"))
    ds = xr.Dataset(data_vars, coords=coords)
    for name in first.data:
        if name not in _SUMMARY_VARS:
            base = VARIABLE_ATTRS.get(name, {}).get("long_name", name)
            ds[name].attrs["long_name"] = f"{base} (mean over paths)"
    ds = finalize(
        ds,
        spec=spec.to_json(),
        spec_hash=spec_hash(spec),
        grid_keys=json.dumps(list(spec.grid)),
        n_paths=spec.n_paths,
        separability=spec.sweep["separability"],
        margin=float(spec.sweep["margin"]),
        confidence=float(spec.sweep["confidence"]),
        summary_time=float(first.time[-1] if spec.sweep["time"] is None else spec.sweep["time"]),
    )
    encoding = {name: {"chunks": chunks} for name in ds.data_vars if ds[name].ndim == len(shape)}
    for name in ("done", "method"):
        encoding[name] = {"chunks": (*([1] * (len(dims) - 1)), spec.shape[-1])}
    tmp = store.parent / f".{store.name}.partial-{uuid.uuid4().hex}"
    try:
        ds.to_zarr(str(tmp), mode="w", compute=False, zarr_format=2, encoding=encoding)
        os.rename(tmp, store)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_batch(store: Path, spec: SweepSpec, result: BatchResult) -> None:
    """Write a batch's cells: data first, then their done flags (one vectorised write per variable)."""
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    stored_time = group["time"][:]
    if stored_time.shape != result.time.shape or not np.allclose(stored_time, result.time, rtol=1e-12, atol=0):
        raise ValueError(f"batch {result.batch_id} returned save times that differ from the store's time axis")
    idx = np.unravel_index(np.asarray(result.cells), spec.shape)  # tuple of (C,)
    t = np.arange(len(result.time))[None, :]
    for name, values in result.data.items():
        if name in group:
            group[name].vindex[(*(i[:, None] for i in idx), t)] = values
    group["method"].vindex[idx] = np.full(len(result.cells), result.method, dtype="<U32")
    group["done"].vindex[idx] = np.ones(len(result.cells), dtype=np.int8)


def _done_cells(store: Path) -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_group(str(store), mode="r")["done"][...]).astype(bool).ravel()


def open_sweep(store: str | Path) -> xr.Dataset:
    """Load a sweep store into memory (gridded, with ``done`` and ``method`` per cell)."""
    ds = xr.open_zarr(str(store), zarr_format=2).load()
    methods = sorted({str(m) for m in np.asarray(ds["method"].values).ravel() if str(m)})
    ds.attrs["method"] = ",".join(methods) if methods else "none"
    return ds


@contextmanager
def _hold_sigint() -> Iterator[None]:
    """Defer Ctrl-C until the block (a store write) finishes, then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


# ----------------------------------------------------------------------------------------------------------------
# executors


def _local_results(batches: Sequence[Batch], device: str, **_: Any) -> Iterator[BatchResult]:
    for batch in batches:
        yield run_batch(batch, device)


def _dask_results(
    batches: Sequence[Batch], device: str, workers: int | None = None, scheduler: str | None = None
) -> Iterator[BatchResult]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is not None:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        if cluster is not None:  # one thread per worker process: torch must not oversubscribe the cores either
            client.run(torch.set_num_threads, 1)
        futures = [
            client.submit(
                run_batch, b, device, pure=False, key=f"lesde-sweep-batch-{b.batch_id}-{uuid.uuid4().hex[:8]}"
            )
            for b in batches
        ]
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


_EXECUTORS = {"local": _local_results, "dask": _dask_results}


def run(
    spec: SweepSpec | dict[str, Any] | str | Path,
    store: str | Path,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> xr.Dataset:
    """Run (or resume) a sweep into a zarr store and return the gridded result.

    Parameters
    ----------
    spec : path to a TOML file, dict or SweepSpec
        See the module docstring.
    store : path
        The zarr store (directory). Cells already done there are skipped; a store of another spec is refused.
    executor : {"local", "dask"}
        ``"dask"`` with ``workers=N`` starts a LocalCluster of N processes; with ``scheduler=ADDRESS`` it joins one.
        Passing ``workers`` or ``scheduler`` implies ``"dask"``.
    device : str
        Torch device each batch runs on (``"cuda"`` spreads over a cluster's GPUs).
    progress : bool
        tqdm bar over cells.

    Returns
    -------
    xarray.Dataset
        Dims: one per grid key, plus ``time``. Variables ``p_all_separable``, ``separable_fraction`` (with
        ``_lower``/``_upper`` Wilson bounds), NC metrics (mean over paths), ``done`` and ``method``.

    Examples
    --------
    >>> ds = lesde.sweep.run("examples/phase_diagram.toml", "phase.zarr")  # doctest: +SKIP
    >>> ds.p_all_separable.sel(time=1e4)  # doctest: +SKIP
    """
    spec = load_spec(spec)
    if workers is not None or scheduler is not None:
        executor = "dask"
    check_choice("executor", executor, _EXECUTORS)
    if workers is not None and scheduler is not None:
        raise ValueError("pass either workers (start a LocalCluster) or scheduler (join a cluster), not both")
    if workers is not None:
        check_int("workers", workers)
    store = Path(store)
    digest = spec_hash(spec)
    done = np.zeros(spec.n_cells, dtype=bool)
    if store.exists():
        found = _spec_of_store(store)
        if found != digest:
            raise ValueError(
                f"store {store} was written by a different sweep spec (spec_hash {found} != {digest}); "
                "use a new --store path, or delete the old store to recompute"
            )
        done = _done_cells(store)
    todo = [b for b in plan(spec) if not done[b.cells].all()]

    from tqdm.auto import tqdm

    bar = tqdm(total=spec.n_cells, initial=int(done.sum()), unit="cell", disable=not progress, desc="sweep")
    try:
        if todo:
            results = _EXECUTORS[executor](todo, device, workers=workers, scheduler=scheduler)
            with closing(results):  # an interrupt closes the generator at once: a cluster shuts down
                for result in results:
                    with _hold_sigint():
                        if not store.exists():
                            _create_store(store, spec, result)
                        _write_batch(store, spec, result)
                    bar.update(len(result.cells))
    except KeyboardInterrupt:
        bar.close()
        n_done = int(_done_cells(store).sum()) if store.exists() else 0
        print(
            f"\ninterrupted: {n_done} of {spec.n_cells} cells are in {store}; rerun the same command to resume",
            file=sys.stderr,
        )
        raise
    bar.close()
    return open_sweep(store)


# ----------------------------------------------------------------------------------------------------------------
# command line and demo


def sweep_cli(
    spec_path: str | Path,
    store: str | Path,
    workers: int | None = None,
    scheduler: str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> int:
    """``lesde sweep SPEC.toml --store out.zarr [--workers N | --scheduler ADDRESS] [--device cuda]``; exit code."""
    try:
        ds = run(spec_path, store, workers=workers, scheduler=scheduler, device=device, progress=progress)
    except KeyboardInterrupt:
        return 130
    print(f"{int(ds['done'].sum())} of {ds['done'].size} cells done in {store} (method: {ds.attrs['method']})")
    return 0


def main_cli(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lesde.sweep``."""
    parser = argparse.ArgumentParser(prog="lesde sweep", description="Run or resume a parameter sweep into zarr.")
    parser.add_argument("spec", help="sweep TOML file")
    parser.add_argument("--store", required=True, help="zarr store to write (resumed if it exists)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, help="start a Dask LocalCluster with N workers")
    where.add_argument("--scheduler", default=None, help="address of a running Dask scheduler to join")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return sweep_cli(
        args.spec,
        args.store,
        workers=args.workers,
        scheduler=args.scheduler,
        device=args.device,
        progress=not args.no_progress,
    )


#: the demo's grid: exponents on both sides of p = 1, scales on both sides of c = K/2 = 1
DEMO_SPEC: dict[str, Any] = {
    "model": {
        "num_classes": 2,
        "dim": 2,
        "samples_per_class": 20,
        "alpha": {"kind": "PowerLaw", "scale": 1.0, "exponent": 1.0},
        "beta": 0.0,
        "noise": 1.0,
    },
    "simulate": {"t_end": 1e4, "dt": 1.0, "n_paths": 200, "save_times": [1e1, 1e2, 1e3, 1e4], "seed": 0},
    "grid": {
        "model.alpha.exponent": [0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0],
        "model.alpha.scale": [0.25, 0.5, 1.0, 2.0, 4.0],
    },
    "sweep": {"time": 1e4},
}


def format_table(ds: xr.Dataset, time: float | None = None, x: str = "alpha.exponent", y: str = "alpha.scale") -> str:
    """A compact text table of P(all pairs separable) at ``time``: rows ``y``, columns ``x``."""
    time = float(ds.attrs.get("summary_time", ds.time[-1])) if time is None else float(time)
    p = ds["p_all_separable"].sel(time=time, method="nearest").transpose(y, x)
    head = f"P(all pairs separable) at t = {float(p.time):g}; rows {y}, columns {x}"
    lines = [head, f"{y:>12} | " + " ".join(f"{float(v):>5g}" for v in p[x].values)]
    lines.append("-" * len(lines[-1]))
    for yv, row in zip(p[y].values, p.values):
        lines.append(f"{float(yv):>12g} | " + " ".join(" " * 5 if np.isnan(v) else f"{v:5.2f}" for v in row))
    return "\n".join(lines)


def demo(outdir: str | Path = "lesde-demo", device: str = "cpu", progress: bool = True) -> xr.Dataset:
    """A small (p, c) phase diagram of alpha_t = c (1+t)^-p, beta = 0, K = 2: store, plot and table.

    Writes ``outdir/phase.zarr`` and ``outdir/phase.png`` and prints P(all pairs separable) at t = 10^4 over
    p x c. Runs in well under 2 minutes on 2 CPU cores (exact sampling, 40 cells x 200 paths).
    """
    from .plots import phase_plot

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    ds = run(DEMO_SPEC, outdir / "phase.zarr", device=device, progress=progress)
    phase_plot(ds, outdir / "phase.png")
    print(format_table(ds))
    print(f"method: {ds.attrs['method']}; wrote {outdir / 'phase.zarr'} and {outdir / 'phase.png'}")
    return ds


if __name__ == "__main__":
    sys.exit(main_cli())
