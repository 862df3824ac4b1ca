"""Cells -> batches, deterministically from the spec alone.

Cells that differ only in the numeric parameters of the ``alpha``/``beta`` schedules (scale, exponent, offset,
rate, value) run as one `lesde.simulate` call with per-path schedule tensors: cell j of a batch owns paths
``[j * n_paths, (j + 1) * n_paths)``. Anything else that is swept splits the cells into groups that run
separately. A group is cut into batches of ``cells_per_batch`` cells; the default keeps the flat state of a
batch (paths x N x m) under `BATCH_ELEMENTS` numbers.

Seeds belong to cells, not batches: cell c draws its paths from `cell_seed` (the spec seed and the
cell's own grid values), and a batch passes one seed per cell (``simulate(seed=[...])``: each cell's paths are
what ``simulate(n_paths=n_paths, seed=s_c)`` gives). A cell's numbers therefore do not depend on the batch it
runs in, on ``cells_per_batch``, the device's memory, which cells are already done, or which other cells the
grid holds: a failed batch can be rerun cell by cell, and a sweep whose grid lacks some cell gives the others
the same numbers.

``method = "auto"`` is resolved here, per group, with `lesde.integrators.check`: ``"exact"`` where it can
run the model, else ``"euler"``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..cells import key_seed
from ..config import build_model
from ..integrators import check as method_reason
from .spec import SCHEDULE_FIELDS, SweepSpec, cell_config, cell_values, load_spec

__all__ = ["Batch", "plan", "cell_seed", "BATCH_ELEMENTS"]

#: default memory budget of one batch: paths * N * m numbers of flat state
BATCH_ELEMENTS = 2**24
#: schedule kinds whose scalar parameters can be given per path (one value per path along a leading dim)
BATCHABLE_KINDS = ("Constant", "PowerLaw", "Exponential")
AUTO_ORDER = ("exact", "euler")


@dataclass
class Batch:
    """One simulate call: cells (flat indices) sharing everything but per-path schedule parameters.

    ``model`` holds the LESDE arguments with each batchable schedule parameter given as a list with one value
    per cell; `lesde.sweep.run_batch` expands them to one value per path. ``seeds[j]`` is the seed of
    ``cells[j]``; ``method`` is the resolved integration method.
    """

    batch_id: int
    cells: list[int]
    model: dict[str, Any]
    simulate: dict[str, Any]
    n_paths: int
    seeds: list[int]
    method: str
    separability: str
    margin: float
    confidence: float

    def subset(self, keep: list[int]) -> Batch:
        """The same batch restricted to the cells at positions ``keep`` (their numbers do not change)."""
        model = copy.deepcopy(self.model)
        for name in SCHEDULE_FIELDS:
            if _batchable(self.model, name, per_cell=True):
                for param, v in model[name].items():
                    if param != "kind":
                        model[name][param] = [v[j] for j in keep]
        return replace(self, cells=[self.cells[j] for j in keep], seeds=[self.seeds[j] for j in keep], model=model)


def cell_seed(spec: SweepSpec, cell: int) -> int:
    """The seed of a cell: ``SeedSequence([seed, sha256 of the cell's grid values])`` -> uint32
    (`lesde.cells.key_seed` of the sorted (grid key, value) pairs)."""
    return key_seed(spec.simulate["seed"], sorted(cell_values(spec, cell).items()))


def _batchable(model: dict[str, Any], name: str, per_cell: bool = False) -> bool:
    value = model.get(name)
    number = (list,) if per_cell else (int, float)
    return (
        isinstance(value, dict)
        and value.get("kind") in BATCHABLE_KINDS
        and all(isinstance(v, number) and not isinstance(v, bool) for k, v in value.items() if k != "kind")
    )


def _group_key(config: dict[str, Any]) -> str:
    """JSON of a cell's config with the per-path (batchable) schedule numbers blanked out."""
    keyed = copy.deepcopy(config)
    for name in SCHEDULE_FIELDS:
        if _batchable(keyed["model"], name):
            keyed["model"][name] = {k: (v if k == "kind" else None) for k, v in keyed["model"][name].items()}
    return json.dumps(keyed, sort_keys=True)


def _state_size(model: dict[str, Any]) -> int:
    spc = model.get("samples_per_class", 1)
    n_samples = sum(spc) if isinstance(spc, (list, tuple)) else int(spc) * int(model.get("num_classes", 2))
    return n_samples * int(model.get("dim", 1))


def _resolve_method(requested: str, model_kwargs: dict[str, Any]) -> str:
    if requested != "auto":
        return requested
    model = build_model(model_kwargs)
    return next(m for m in AUTO_ORDER if method_reason(m, model) is None)


def plan(spec: SweepSpec | dict[str, Any] | str | Path) -> list[Batch]:
    """Cut the grid into batches, deterministically from the spec alone (ids, cells, seeds and methods).

    Groups of cells with equal shapes are ordered by their first cell; each group is cut into consecutive runs
    of at most ``cells_per_batch`` cells.
    """
    spec = load_spec(spec)
    configs = [cell_config(spec, c) for c in range(spec.n_cells)]
    groups: dict[str, list[int]] = {}
    for cell, config in enumerate(configs):
        groups.setdefault(_group_key(config), []).append(cell)
    batches: list[Batch] = []
    for cells in groups.values():
        first = configs[cells[0]]
        method = _resolve_method(first["simulate"]["method"], first["model"])
        per_batch = spec.sweep["cells_per_batch"] or max(
            1, BATCH_ELEMENTS // (spec.n_paths * _state_size(first["model"]))
        )
        for start in range(0, len(cells), per_batch):
            chunk = cells[start : start + per_batch]
            model = copy.deepcopy(first["model"])
            for name in SCHEDULE_FIELDS:
                if _batchable(model, name):
                    for param in model[name]:
                        if param != "kind":
                            model[name][param] = [float(configs[c]["model"][name][param]) for c in chunk]
            batches.append(
                Batch(
                    batch_id=len(batches),
                    cells=chunk,
                    model=model,
                    simulate=copy.deepcopy(first["simulate"]),
                    n_paths=spec.n_paths,
                    seeds=[cell_seed(spec, c) for c in chunk],
                    method=method,
                    separability=spec.sweep["separability"],
                    margin=float(spec.sweep["margin"]),
                    confidence=float(spec.sweep["confidence"]),
                )
            )
    return batches
