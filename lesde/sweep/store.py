"""The zarr store of a sweep: layout, safe creation, one writer at a time, per-cell status, damage reports.

Layout (zarr format 2, no consolidated metadata so attrs written later are never stale): one dimension per grid
key plus ``time``; float64 ``(grid..., time)`` summaries (``p_all_separable``, ``separable_fraction``, their
Wilson bounds, the NC metrics averaged over paths; NaN until written); int64 ``(grid..., time)`` counts
``separable_pairs`` and ``all_separable_paths`` (-1 until written or for a failed cell); per cell ``status``
(``"pending"``, ``"ok"`` or ``"failed"``), ``done`` (1 where ``status == "ok"``; kept for older readers) and
``method``. Attrs: the canonical ``spec`` and its ``spec_hash``, ``store_version``, ``seeding``, and
``failed_cells`` (JSON: flat cell index -> the cell and its error message).

Safety:

- **Creation.** The store is created before any batch runs (so a bad path fails at once), in a hidden sibling
  ``.NAME.partial-PID-XXXX`` that is renamed into place when complete: a store on disk is always whole
  (`lesde.cells.open_locked`, which experiment stores share). An error
  during creation removes the partial folder; one left by a killed process is removed by the next sweep that
  finds its creator gone.
- **One writer.** The sweep holds an exclusive ``flock`` on the store's folder while it runs. Two sweeps that
  create the same fresh store at once: one creates it, the other finds it locked and stops with a message
  (`StoreBusy`); the same happens to a second sweep started on a store in use.
- **Writes.** Each batch is written data first, then ``method``, the failure messages, ``done`` and last
  ``status``; zarr replaces every chunk file atomically, so a sweep killed at any point leaves a readable store
  whose ``ok`` cells are complete. SIGINT is held during a write and creation (`hold_sigint`).
- **Damage.** A chunk that cannot be read is reported with the store, the variable, the chunk file and the cells
  it holds (`StoreError`).

Stores written by lesde 0.1 (no ``store_version``) stay readable by `open_sweep` (``status`` is derived
from ``done``) but are not resumed: their cells were seeded per batch.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr

from ..cells import StoreBusy, StoreError, hold_sigint, open_locked, read_attrs, record_failures
from ..validation import check_path
from .batch import COUNT_VARS, SEPARABILITY_VARS, BatchResult
from .spec import SweepSpec, cell_label, load_spec, spec_hash

__all__ = ["StoreError", "StoreBusy", "SweepStore", "open_store", "open_sweep", "hold_sigint", "STORE_VERSION"]

STORE_VERSION = 2
SEEDING = "per cell: numpy SeedSequence([simulate.seed, *uint32 words of sha256(the cell's grid values)])"
_STATUS_DTYPE = "<U7"
_METHOD_DTYPE = "<U32"


def _coord(values: list) -> np.ndarray:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64 if any(isinstance(v, float) for v in values) else np.int64)
    if all(isinstance(v, (str, bool)) for v in values):
        return np.asarray([str(v) for v in values])
    return np.asarray([json.dumps(v, sort_keys=True) for v in values])  # lists/tables: JSON labels


def _layout(spec: SweepSpec, time: np.ndarray, metrics: list[str]) -> tuple[xr.Dataset, dict]:
    """The empty store as a Dataset (float data lazily NaN) and its zarr encoding."""
    import dask.array as da

    from ..schema import VARIABLE_ATTRS, make_dataset

    dims = spec.dims
    coords = {d: _coord(v) for d, v in zip(dims, spec.grid.values())}
    coords["time"] = time
    shape = (*spec.shape, len(time))
    # leading grid dims chunked by 1, the last grid dim and time whole: one chunk per row of cells
    chunks = (*([1] * (len(dims) - 1)), spec.shape[-1], len(time))
    cell_chunks = chunks[:-1]
    data_vars: dict = {}
    for name in [*SEPARABILITY_VARS, *sorted(set(metrics) - set(SEPARABILITY_VARS))]:
        data_vars[name] = ([*dims, "time"], da.full(shape, np.nan, chunks=chunks, dtype=np.float64))
    for name in COUNT_VARS:
        data_vars[name] = ([*dims, "time"], np.full(shape, -1, dtype=np.int64))
    data_vars["status"] = (dims, np.full(spec.shape, "pending", dtype=_STATUS_DTYPE))
    data_vars["done"] = (dims, np.zeros(spec.shape, dtype=np.int8))
    data_vars["method"] = (dims, np.full(spec.shape, "", dtype=_METHOD_DTYPE))
    ds = make_dataset(
        data_vars,
        coords,
        time="sde",
        attrs=dict(
            spec=spec.to_json(),
            spec_hash=spec_hash(spec),
            grid_keys=json.dumps(list(spec.grid)),
            n_paths=spec.n_paths,
            separability=spec.sweep["separability"],
            margin=float(spec.sweep["margin"]),
            confidence=float(spec.sweep["confidence"]),
            summary_time=float(time[-1] if spec.sweep["time"] is None else spec.sweep["time"]),
            store_version=STORE_VERSION,
            seeding=SEEDING,
            failed_cells="{}",
        ),
    )
    for name in metrics:
        base = VARIABLE_ATTRS.get(name, {}).get("long_name", name)
        ds[name].attrs["long_name"] = f"{base} (mean over paths)"
    encoding = {name: {"chunks": chunks} for name in ds.data_vars if ds[name].ndim == len(shape)}
    encoding.update({name: {"chunks": cell_chunks} for name in ("status", "done", "method")})
    for name in COUNT_VARS:
        encoding[name]["_FillValue"] = None  # written in full at creation; no CF masking (stays int64)
    return ds, encoding


def _fill(folder: Path, spec: SweepSpec, time: np.ndarray, metrics: list[str]) -> None:
    ds, encoding = _layout(spec, time, metrics)
    ds.to_zarr(str(folder), mode="a", compute=False, zarr_format=2, consolidated=False, encoding=encoding)


def _check_existing(path: Path, spec: SweepSpec) -> None:
    attrs = read_attrs(path, "lesde sweep")
    if "spec_hash" not in attrs:
        raise StoreError(f"store {path} exists but is not a lesde sweep store (no spec_hash attr)")
    if "store_version" not in attrs:
        raise StoreError(
            f"store {path} was written by lesde 0.1 (cells seeded per batch): it stays readable with "
            "lesde.sweep.open_sweep and lesde plot, but cannot be resumed; rerun into a new store"
        )
    digest = spec_hash(spec)
    if attrs["spec_hash"] != digest:
        raise StoreError(
            f"store {path} was written by a different sweep spec (spec_hash {attrs['spec_hash'][:12]}... != "
            f"{digest[:12]}...); use a new store path, or delete the old store to recompute"
        )


@contextmanager
def open_store(path: str | Path, spec: SweepSpec, time: np.ndarray, metrics: list[str]) -> Iterator[SweepStore]:
    """The store at ``path`` for ``spec``, created if missing, locked for this process while the block runs."""
    path = Path(path)
    fill = functools.partial(_fill, spec=spec, time=time, metrics=metrics)
    with open_locked(path, fill, functools.partial(_check_existing, path, spec), user="sweep"):
        yield SweepStore(path, spec)


# ----------------------------------------------------------------------------------------------------------------
# reading and writing


def _damage(path: Path, name: str, error: Exception, spec: SweepSpec | None = None) -> StoreError:
    """A StoreError naming the damaged chunk files of ``name`` and the cells they hold."""
    import zarr

    bad = []
    try:
        arr = zarr.open_array(str(path / name), mode="r", zarr_format=2)
        grid = [range(0, s, c) for s, c in zip(arr.shape, arr.chunks)]
        for start in np.ndindex(*[len(g) for g in grid]):
            region = tuple(slice(g[i], g[i] + c) for g, i, c in zip(grid, start, arr.chunks))
            try:
                arr[region]
            except Exception:  # noqa: BLE001 - every unreadable chunk is reported
                bad.append((".".join(map(str, start)), region))
    except Exception:  # noqa: BLE001 - the array's metadata itself is damaged
        return StoreError(f"store {path}: variable {name} cannot be read ({type(error).__name__}: {error})")
    if not bad:
        return StoreError(f"store {path}: variable {name} cannot be read ({type(error).__name__}: {error})")
    if spec is None:
        try:
            spec = load_spec(json.loads(dict(zarr.open_group(str(path), mode="r", zarr_format=2).attrs)["spec"]))
        except Exception:  # noqa: BLE001 - name the chunk without its cells
            spec = None
    where = []
    for key, region in bad[:3]:
        cells = ""
        if spec is not None:
            index = np.indices(spec.shape)[(slice(None), *region[: len(spec.shape)])].reshape(len(spec.shape), -1)
            flat = np.ravel_multi_index(tuple(index), spec.shape)
            labels = [cell_label(spec, int(c)) for c in flat[:3]]
            more = f" and {len(flat) - 3} more" if len(flat) > 3 else ""
            cells = f" (cells {'; '.join(labels)}{more})"
        where.append(f"chunk file {path / name / key}{cells}")
    more = f" and {len(bad) - 3} more chunks" if len(bad) > 3 else ""
    return StoreError(
        f"store {path} is damaged: {name} cannot be read from {', '.join(where)}{more} "
        f"({type(error).__name__}: {error}); restore the store from a copy or delete it and rerun"
    )


def _open_zarr(path: Path) -> xr.Dataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return xr.open_zarr(str(path), zarr_format=2, consolidated=False)
    except Exception as e:  # noqa: BLE001 - anything that is not a readable zarr group
        raise StoreError(f"{path} is not a readable lesde sweep store ({type(e).__name__}: {e})") from None


def open_sweep(store: str | Path) -> xr.Dataset:
    """Load a sweep store into memory (gridded, with ``status``, ``done`` and ``method`` per cell).

    Stores of lesde 0.1 (without ``status``) get one derived from ``done``; dims written with dots
    (``alpha.exponent``, as lesde 0.1 wrote them) are renamed as the spec names them (``alpha_exponent``). A damaged chunk raises
    `StoreError` naming the store, the chunk file and its cells.
    """
    path = check_path("store", store, "phase.zarr")
    if not path.exists():
        raise FileNotFoundError(f"store {path} does not exist")
    lazy = _open_zarr(path)
    if "spec_hash" not in lazy.attrs or "done" not in lazy:
        raise StoreError(f"{path} is a zarr store but not a lesde sweep store (no spec_hash attr or done flags)")
    for name in list(lazy.variables):
        try:
            lazy[name].load()
        except Exception as e:  # noqa: BLE001 - codec errors of every kind
            raise _damage(path, name, e) from None
    ds = lazy.load()
    dotted = {d: d.replace(".", "_") for d in ds.dims if "." in str(d)}
    if dotted:  # stores written before the dims lost their dots (alpha.exponent -> alpha_exponent)
        ds = ds.rename(dotted)
    if "status" not in ds:
        ds["status"] = xr.where(ds["done"] > 0, "ok", "pending").astype(_STATUS_DTYPE)
    first = [n for n in (*SEPARABILITY_VARS, *COUNT_VARS) if n in ds]
    last = ["status", "done", "method"]
    ds = ds[[*first, *sorted(set(ds.data_vars) - set(first) - set(last)), *last]]  # a stable order to read
    methods = sorted({str(m) for m in np.asarray(ds["method"].values).ravel() if str(m)})
    ds.attrs["method"] = ",".join(methods) if methods else "none"
    return ds


class SweepStore:
    """A store opened for writing by `open_store` (this process holds its lock)."""

    def __init__(self, path: Path, spec: SweepSpec):
        import zarr

        self.path, self.spec = path, spec
        self.group = zarr.open_group(str(path), mode="r+", zarr_format=2)

    def _read(self, name: str) -> np.ndarray:
        try:
            return np.asarray(self.group[name][...])
        except Exception as e:  # noqa: BLE001
            raise _damage(self.path, name, e, self.spec) from None

    def status(self) -> np.ndarray:
        """Flat (C order) status of every cell."""
        return self._read("status").astype(str).ravel()

    def failures(self) -> dict[int, str]:
        """Flat cell index -> error message of the failed cells."""
        return {int(k): v["error"] for k, v in json.loads(self.group.attrs.get("failed_cells", "{}")).items()}

    def write(self, result: BatchResult) -> None:
        """Write a batch's cells: data, counts, method, messages, done, and last their status."""
        group, spec = self.group, self.spec
        stored_time = self._read("time")
        if stored_time.shape != result.time.shape or not np.allclose(stored_time, result.time, rtol=1e-12, atol=0):
            raise StoreError(
                f"store {self.path}: batch {result.batch_id} returned save times {result.time.tolist()} that "
                f"differ from the store's time axis {stored_time.tolist()}"
            )
        floats = [n for n in group.array_keys() if group[n].ndim == len(spec.shape) + 1 and n not in COUNT_VARS]
        missing = sorted(set(floats) - set(result.data)) if len(result.failed) < len(result.cells) else []
        if missing:
            raise StoreError(f"store {self.path}: batch {result.batch_id} returned no {', '.join(missing)}")
        cells = np.asarray(result.cells)
        idx = np.unravel_index(cells, spec.shape)  # tuple of (C,)
        at = (*(i[:, None] for i in idx), np.arange(len(result.time))[None, :])
        failed = np.isin(cells, list(result.failed))
        nan = np.full((len(cells), len(result.time)), np.nan)
        for name in floats:
            values = result.data.get(name, nan).copy()
            values[failed] = np.nan
            self._put(name, at, values)
        for name in COUNT_VARS:
            self._put(name, at, np.where(failed[:, None], -1, result.counts[name]))
        self._put("method", idx, np.full(len(cells), result.method, dtype=_METHOD_DTYPE))
        record_failures(group.attrs, result.cells, {c: (cell_label(spec, c), m) for c, m in result.failed.items()})
        self._put("done", idx, (~failed).astype(np.int8))
        self._put("status", idx, np.where(failed, "failed", "ok").astype(_STATUS_DTYPE))

    def _put(self, name: str, index: tuple, values: np.ndarray) -> None:
        try:
            self.group[name].vindex[index] = values
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged chunk, read back by the partial write
            raise _damage(self.path, name, e, self.spec) from None
