"""The zarr store of an empirical experiment: a status per cell and each finished cell's track, resumable.

Layout (zarr format 2, no consolidated metadata, so attrs written later are never stale):

- the root: ``status(setting, run)`` (``"pending"``, ``"ok"`` or ``"failed"``), ``seconds(setting, run)`` and
  ``cpu_seconds(setting, run)`` (a finished cell's wall time and CPU time where it ran: what cluster sizes are
  planned from, and the only values a rerun does not reproduce), coordinates ``setting`` (labels such as ``"label_noise=0.2"``) and ``run``; attrs
  ``experiment`` (JSON of `Experiment.describe`), its ``experiment_hash``, ``settings``, ``n_runs``,
  ``seed``, ``store_version``, ``seeding`` and ``failed_cells`` (JSON: flat cell index -> label and error);
- ``tracks/s{i}-r{r}``: the track of cell (setting i, run r), a zarr group of its own.

Safety, as for sweep stores (the primitives are `lesde.cells`): the store is created whole before any cell
runs and written by one process at a time (`StoreBusy` for a second); a cell is written
track first (into a hidden folder renamed into place), then its times, its failure message and last its
``status``, with Ctrl-C held, so a process killed at any moment leaves a store whose ``ok`` cells are whole, and a
rerun recomputes the others. A store written by another experiment is refused, naming the first differences.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..cells import SEEDING, StoreError, open_locked, partial_folder, read_attrs, record_failures, remove_partials
from ..schema import make_dataset
from .experiment_cells import CellResult, Experiment

__all__ = ["ExperimentStore", "open_experiment_store", "open_experiment", "experiment_tracks", "STORE_VERSION"]

STORE_VERSION = 1
_STATUS_DTYPE = "<U7"
_KIND = "lesde empirical experiment"


def experiment_hash(description: dict) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def _fill(folder: Path, exp: Experiment) -> None:
    """The empty store: every cell pending."""
    import zarr

    shape = (len(exp.settings), exp.n_runs)
    description = exp.describe()
    ds = make_dataset(
        {
            "status": (("setting", "run"), np.full(shape, "pending", dtype=_STATUS_DTYPE)),
            "seconds": (("setting", "run"), np.full(shape, np.nan)),
            "cpu_seconds": (("setting", "run"), np.full(shape, np.nan)),
        },
        {"setting": [exp.setting_label(i) for i in range(shape[0])], "run": np.arange(shape[1])},
        attrs=dict(
            kind=_KIND,
            experiment=json.dumps(description, sort_keys=True),
            experiment_hash=experiment_hash(description),
            settings=json.dumps(description["settings"]),
            n_runs=exp.n_runs,
            seed=exp.seed,
            store_version=STORE_VERSION,
            seeding=f"cell (setting, run): track(n_runs=1, seed=key_seed(seed, {{setting, run}})); key_seed: {SEEDING}",
            failed_cells="{}",
        ),
    )
    ds["status"].attrs["long_name"] = "experiment cell status: pending, ok or failed (message in attrs failed_cells)"
    ds.to_zarr(str(folder), mode="a", zarr_format=2, consolidated=False)
    zarr.open_group(str(folder), mode="r+", zarr_format=2).create_group("tracks")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _differences(stored: Any, given: Any, where: str = "") -> list[str]:
    """Where two experiment descriptions differ: ``"steps: 120 in the store, 60 here"``, nested keys dotted."""
    if isinstance(stored, dict) and isinstance(given, dict):
        out = []
        for key in sorted(set(stored) | set(given)):
            at = f"{where}.{key}" if where else key
            if key not in stored or key not in given:
                out.append(f"{at}: {'absent' if key not in stored else _short(stored[key])} in the store, "
                           f"{'absent' if key not in given else _short(given[key])} here")  # fmt: skip
            else:
                out += _differences(stored[key], given[key], at)
        return out
    return [] if stored == given else [f"{where}: {_short(stored)} in the store, {_short(given)} here"]


def _check_existing(path: Path, exp: Experiment) -> None:
    attrs = read_attrs(path, "lesde experiment")
    if attrs.get("kind") != _KIND or "experiment_hash" not in attrs:
        raise StoreError(f"store {path} exists but is not a lesde experiment store (a sweep's, or another file)")
    if attrs.get("store_version") != STORE_VERSION:
        raise StoreError(f"store {path} has store_version {attrs.get('store_version')}, not {STORE_VERSION}")
    description = exp.describe()
    if attrs["experiment_hash"] != experiment_hash(description):
        diffs = _differences(json.loads(attrs["experiment"]), description) or ["the experiment hash"]
        more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
        raise StoreError(
            f"store {path} holds another experiment ({'; '.join(diffs[:3])}{more}); use a new store path, or "
            "delete the old store to recompute"
        )


@contextmanager
def open_experiment_store(path: str | Path, exp: Experiment) -> Iterator[ExperimentStore]:
    """The store at ``path`` for ``exp``, created if missing, locked for this process while the block runs."""
    path = Path(path)
    fill = functools.partial(_fill, exp=exp)
    with open_locked(path, fill, functools.partial(_check_existing, path, exp), user="experiment"):
        remove_partials(path / "tracks")  # cells a killed writer left half-written
        yield ExperimentStore(path, exp)


def _track_folder(path: Path, setting: int, run: int) -> Path:
    return path / "tracks" / f"s{setting}-r{run}"


class ExperimentStore:
    """A store opened for writing by `open_experiment_store` (this process holds its lock)."""

    def __init__(self, path: Path, exp: Experiment):
        import zarr

        self.path, self.experiment = path, exp
        self.group = zarr.open_group(str(path), mode="r+", zarr_format=2)

    def status(self) -> np.ndarray:
        """(setting, run) status of every cell."""
        return np.asarray(self.group["status"][...]).astype(str)

    def write(self, result: CellResult) -> None:
        """Write a cell: its track, its time, its failure message and last its status (module docstring)."""
        i, r = result.setting, result.run
        folder = _track_folder(self.path, i, r)
        if result.track is not None:
            with partial_folder(folder) as tmp:
                result.track.to_zarr(str(tmp), mode="w", zarr_format=2, consolidated=False)
        elif folder.exists():  # written by a run killed before its status: this attempt failed
            shutil.rmtree(folder)
        cell = i * self.experiment.n_runs + r
        failed = {cell: (self.experiment.label(cell), result.error)} if result.error else {}
        self.group["seconds"][i, r] = result.seconds
        self.group["cpu_seconds"][i, r] = result.cpu_seconds
        record_failures(self.group.attrs, [cell], failed)
        self.group["status"][i, r] = "failed" if result.error else "ok"


def _open(path: Path) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return xr.open_zarr(str(path), zarr_format=2, consolidated=False).load()


def open_experiment(store: str | Path) -> xr.Dataset:
    """An experiment store's summary: ``status``, ``seconds`` and ``cpu_seconds`` over ``(setting, run)``, and its
    attrs."""
    path = Path(store)
    if not path.exists():
        raise FileNotFoundError(f"store {path} does not exist")
    try:
        ds = _open(path)
    except Exception as e:  # noqa: BLE001 - anything that is not a readable zarr group
        raise StoreError(f"{path} is not a readable lesde experiment store ({type(e).__name__}: {e})") from None
    if ds.attrs.get("kind") != _KIND:
        raise StoreError(f"{path} is a zarr store but not a lesde experiment store")
    return ds


def experiment_tracks(store: str | Path, setting: int = 0) -> xr.Dataset:
    """The tracks of every run of setting ``setting`` (its index), one Dataset over ``run``, as
    `estimate` reads them; every run of the setting must be ``ok``.

    ``attrs`` say ``n_runs``, the experiment's ``seed``, each run's seed (``run_seeds``), the ``setting`` and the
    ``seeding``.
    """
    path = Path(store)
    summary = open_experiment(path)
    status = summary["status"].isel(setting=setting).values.astype(str)
    if (status != "ok").any():
        missing = [r for r, s in enumerate(status) if s != "ok"]
        raise StoreError(f"store {path}: runs {missing} of setting {setting} are not done ({status.tolist()})")
    runs = [_open(_track_folder(path, setting, r)).assign_coords(run=[r]) for r in range(len(status))]
    tr = xr.concat(runs, dim="run", join="exact", combine_attrs="override")
    tr.attrs.update(
        n_runs=len(runs),
        seed=summary.attrs["seed"],
        run_seeds=json.dumps([int(t.attrs["seed"]) for t in runs]),
        setting=str(summary["setting"].values[setting]),
        seeding=summary.attrs["seeding"],
    )
    return tr
