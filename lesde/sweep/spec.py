"""The sweep spec: load it, check every key, type and range before any work, and hash its canonical form.

Sections: ``[model]`` and ``[simulate]`` (checked as in `lesde.config`; the sweep sets ``save``,
``device`` and ``progress`` itself and accepts ``method = "auto"``), ``[grid]`` (dotted parameter paths -> arrays
of values; each key must name a parameter: ``model.<LESDE argument>[.<schedule parameter>]`` or
``simulate.<argument>``) and the optional ``[sweep]``. Every cell's model is built once here, so a value that
makes one cell invalid is reported with the cell before any work, and an explicit ``method`` that cannot run a
cell is refused with `lesde.integrators.check`'s reason.

Canonical form: reals are floats (``t_end = 10`` and ``t_end = 10.0`` are the same spec), the ``[sweep]`` and
``[simulate]`` defaults are filled in, and the JSON has sorted keys and no whitespace; `spec_hash` is the
SHA-256 of it. The grid is kept as a list of [key, values] pairs: its order defines the dimensions.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import config as cfg
from ..integrators import check as method_reason
from ..simulate import save_times_for

__all__ = ["SweepSpec", "load_spec", "spec_hash", "cell_config", "cell_label", "time_axis", "SCHEDULE_FIELDS", "DEMO_SPEC",
           "demo_spec"]  # fmt: skip

SECTIONS = ("model", "simulate", "grid", "sweep")
#: simulate options a grid may not sweep (they change the time axis or the paths every cell shares)
UNSWEEPABLE_SIMULATE = ("t_end", "save_times", "n_save", "n_paths", "seed", "x0", "save", "device", "progress")
SCHEDULE_FIELDS = ("alpha", "beta")
SEPARABILITY = ("ncm", "margin", "linear")
SWEEP_DEFAULTS: dict[str, Any] = {
    "time": None,
    "separability": "ncm",
    "margin": 0.0,
    "confidence": 0.95,
    "cells_per_batch": None,
}
SIMULATE_DEFAULTS: dict[str, Any] = {"seed": 0, "method": "auto", "dtype": "float64"}


@dataclass
class SweepSpec:
    """A checked sweep: base ``model`` and ``simulate`` arguments, the ``grid`` (ordered) and ``sweep`` options.

    ``source`` (the file, or ``"spec"``) only names the spec in messages; it is not part of the hash.
    """

    model: dict[str, Any]
    simulate: dict[str, Any]
    grid: dict[str, list[Any]]
    sweep: dict[str, Any] = field(default_factory=dict)
    source: str = field(default="spec", compare=False)
    #: the canonical JSON as checked (a SweepSpec changed since is checked again by load_spec)
    checked: str = field(default="", compare=False, repr=False)

    @property
    def dims(self) -> list[str]:
        """Dimension name of each grid key: the key without a leading ``model.``, dots made underscores
        (``model.alpha.exponent`` -> ``alpha_exponent``; stores of lesde 0.1 spelled it ``alpha.exponent``)."""
        return [k.removeprefix("model.").replace(".", "_") for k in self.grid]

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
        """Canonical JSON (sorted keys, no whitespace): what `spec_hash` hashes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def load_spec(spec: str | Path | dict[str, Any] | SweepSpec) -> SweepSpec:
    """Parse and check a sweep spec from a TOML path or a dict with sections model, simulate, grid, sweep.

    Raises `lesde.config.ConfigError` (a ValueError) naming the file and the key for anything wrong:
    unknown sections or keys, a wrong type (a time given as a string), a value out of range (``confidence``
    outside (0, 1), ``chunk_size = 0``), a grid key that names no parameter, or a grid value that makes a cell's
    model invalid.
    """
    if isinstance(spec, SweepSpec):
        return spec if spec.checked and spec.checked == spec.to_json() else _check(spec.to_dict(), spec.source)
    if isinstance(spec, (str, Path)):
        return _check(cfg.load_toml(spec), str(spec))
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a TOML path, a dict or a SweepSpec, got {type(spec).__name__}")
    return _check(spec, "spec")


def time_axis(simulate: dict[str, Any]) -> np.ndarray:
    """The save times every cell shares (t = 0 first), from a checked ``[simulate]`` table."""
    s = simulate
    return save_times_for(s["t_end"], s["dt"], s.get("save_times"), s.get("n_save")).numpy()


def spec_hash(spec: SweepSpec | dict[str, Any] | str | Path) -> str:
    """SHA-256 (hex) of the canonical JSON of the checked spec."""
    return hashlib.sha256(load_spec(spec).to_json().encode()).hexdigest()


def _check(raw: dict[str, Any], source: str) -> SweepSpec:
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise cfg.ConfigError(f"{source}: unknown section(s) {unknown}; accepted: {', '.join(SECTIONS)}")
    model = cfg.check_model(cfg.table(raw, "model", source, required=False), f"{source}: [model]")
    simulate_in = {**SIMULATE_DEFAULTS, **cfg.table(raw, "simulate", source)}
    simulate = cfg.check_simulate(simulate_in, f"{source}: [simulate]", sweep=True)
    grid_in = raw.get("grid")
    if isinstance(grid_in, list):  # the canonical list-of-pairs form of SweepSpec.to_dict
        grid_in = {k: v for k, v in grid_in}
    grid_in = cfg.table({"grid": grid_in} if grid_in is not None else {}, "grid", source)
    if not grid_in:
        raise cfg.ConfigError(f"{source}: [grid] is empty; map dotted parameter paths to arrays of values")
    grid = {key: _grid_values(key, values, model, source) for key, values in grid_in.items()}
    sweep = _check_sweep({**SWEEP_DEFAULTS, **cfg.table(raw, "sweep", source, required=False)}, simulate, source)
    out = SweepSpec(model=model, simulate=simulate, grid=grid, sweep=sweep, source=source)
    _check_cells(out)
    out.checked = out.to_json()
    return out


def _grid_values(key: str, values: Any, model: dict[str, Any], source: str) -> list[Any]:
    where = f"{source}: [grid] {key!r}"
    if not isinstance(key, str):
        raise cfg.ConfigError(f"{where}: grid keys must be strings")
    section, _, rest = key.partition(".")
    parts = rest.split(".") if rest else []
    if section == "model" and parts:
        if parts[0] not in cfg.MODEL_KEYS:
            raise cfg.ConfigError(
                f"{where} names no parameter: {parts[0]!r} is not an LESDE argument; accepted: "
                f"{', '.join(cfg.MODEL_KEYS)}"
            )
        if len(parts) > 1:
            base = model.get(parts[0])
            if parts[0] not in SCHEDULE_FIELDS or len(parts) > 2:
                raise cfg.ConfigError(f"{where} names no parameter: only schedules (alpha, beta) have sub-keys")
            if not isinstance(base, dict):
                raise cfg.ConfigError(
                    f"{where}: [model] {parts[0]} is {base!r}, not a table; write it as an inline table, e.g. "
                    f'{parts[0]} = {{kind = "PowerLaw", scale = 1.0, exponent = 1.0}}'
                )
            accepted = ["kind", *cfg.schedule_params(base["kind"])]
            if parts[1] not in accepted:
                raise cfg.ConfigError(f"{where} names no parameter of {base['kind']}: accepted: {', '.join(accepted)}")
    elif section == "simulate" and len(parts) == 1:
        if parts[0] not in cfg.SIMULATE_KEYS:
            raise cfg.ConfigError(
                f"{where} names no parameter: accepted simulate arguments: {', '.join(cfg.SIMULATE_KEYS)}"
            )
        if parts[0] in UNSWEEPABLE_SIMULATE:
            raise cfg.ConfigError(
                f"{where}: {parts[0]!r} cannot be swept (every cell shares the time axis and paths); "
                f"sweepable simulate options exclude {', '.join(UNSWEEPABLE_SIMULATE)}"
            )
    else:
        raise cfg.ConfigError(f"{where} must be a dotted path starting with 'model.' or 'simulate.'")
    if not isinstance(values, (list, tuple)) or len(values) == 0:
        raise cfg.ConfigError(f"{where} needs a non-empty array of values, got {values!r}")
    values = [_canonical(parts[-1], v) for v in values]
    if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
        raise cfg.ConfigError(f"{where} has repeated values {values!r}")
    return values


def _canonical(key: str, value: Any) -> Any:
    """Reals as floats (grid values of integer parameters stay integers; cells check the types)."""
    if key in cfg.INT_KEYS or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [_canonical(key, v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(k, v) for k, v in value.items()}
    return value


def _check_sweep(sweep: dict[str, Any], simulate: dict[str, Any], source: str) -> dict[str, Any]:
    where = f"{source}: [sweep]"
    unknown = sorted(set(sweep) - set(SWEEP_DEFAULTS))
    if unknown:
        raise cfg.ConfigError(f"{where} has unknown key(s) {unknown}; accepted: {', '.join(SWEEP_DEFAULTS)}")
    out = dict(sweep)
    if out["time"] is not None:
        out["time"] = cfg.real(f"{where} time", out["time"], 0.0, strict=False)
        if out["time"] > simulate["t_end"]:
            raise cfg.ConfigError(f"{where} time = {out['time']:g} is after t_end = {simulate['t_end']:g}")
    out["separability"] = cfg.string(f"{where} separability", out["separability"], SEPARABILITY)
    out["margin"] = cfg.real(f"{where} margin", out["margin"], 0.0, strict=False)
    if out["margin"] != 0 and out["separability"] != "margin":
        raise cfg.ConfigError(
            f"{where} margin = {out['margin']:g} needs separability = 'margin' (got {out['separability']!r})"
        )
    conf = cfg.real(f"{where} confidence", out["confidence"])
    if not 0 < conf < 1:
        raise cfg.ConfigError(f"{where} confidence = {out['confidence']!r} must lie in (0, 1), e.g. 0.95")
    out["confidence"] = conf
    if out["cells_per_batch"] is not None:
        out["cells_per_batch"] = cfg.integer(f"{where} cells_per_batch", out["cells_per_batch"], 1)
    return out


# ----------------------------------------------------------------------------------------------------------------
# cells


def _set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``config[a][b][c] = value`` for key ``"a.b.c"``."""
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = copy.deepcopy(value)


def cell_index(spec: SweepSpec, cell: int) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(cell, spec.shape))


def cell_values(spec: SweepSpec, cell: int) -> dict[str, Any]:
    """Grid key -> the value of flat cell index ``cell`` (C order over the grid)."""
    return {key: values[i] for (key, values), i in zip(spec.grid.items(), cell_index(spec, cell))}


def cell_label(spec: SweepSpec, cell: int) -> str:
    """``alpha.exponent=0.5, alpha.scale=8`` for messages (the parameter paths of the grid keys)."""
    return ", ".join(
        f"{key.removeprefix('model.')}={json.dumps(v) if not isinstance(v, (int, float, str)) else v}"
        for key, v in cell_values(spec, cell).items()
    )


def cell_config(spec: SweepSpec, cell: int) -> dict[str, Any]:
    """The full {"model", "simulate"} arguments of flat cell index ``cell``; number schedules become Constant."""
    config = {"model": copy.deepcopy(spec.model), "simulate": copy.deepcopy(spec.simulate)}
    for key, value in cell_values(spec, cell).items():
        _set_dotted(config, key, value)
    model = config["model"]
    for name in SCHEDULE_FIELDS:
        value = model.get(name)
        # numbers become Constant schedules so that a swept alpha = [..] batches like any schedule parameter
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            model[name] = {"kind": "Constant", "value": float(value)}
    return config


def _check_cells(spec: SweepSpec) -> None:
    """Build every cell's model (and check its simulate options and method) before any work."""
    source = spec.source
    seen_simulate: set[str] = set()
    for cell in range(spec.n_cells):
        config = cell_config(spec, cell)
        where = f"{source}: [grid] cell {cell_label(spec, cell)}:"
        model_kw = cfg.check_model(config["model"], f"{where} [model]")
        model = cfg.build_model(model_kw, f"{where} [model]")
        key = json.dumps(config["simulate"], sort_keys=True)
        if key not in seen_simulate:
            seen_simulate.add(key)
            cfg.check_simulate(config["simulate"], f"{where} [simulate]", sweep=True)
        method = config["simulate"]["method"]
        if method != "auto":
            reason = method_reason(method, model)
            if reason:
                raise cfg.ConfigError(f"{where} [simulate] method = {method!r} cannot run this cell: {reason}")


#: The phase-diagram spec of ``lesde demo``: exponents on both sides of p = 1, scales on both sides of c = K/2 = 1.
#: The one phase-diagram spec of the project: the tests and benchmarks/phase_sweep.py derive theirs from it with
#: :func:`demo_spec`.
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


def demo_spec(
    exponents: list[float] | None = None,
    scales: list[float] | None = None,
    simulate: dict[str, Any] | None = None,
    sweep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A copy of `DEMO_SPEC` with another (p, c) grid and ``[simulate]``/``[sweep]`` entries replaced
    (a new ``t_end`` without a ``time`` summarises at the last save time)."""
    spec = copy.deepcopy(DEMO_SPEC)
    if exponents is not None:
        spec["grid"]["model.alpha.exponent"] = list(exponents)
    if scales is not None:
        spec["grid"]["model.alpha.scale"] = list(scales)
    spec["simulate"].update(simulate or {})
    spec["sweep"].update(sweep or {})
    if "t_end" in (simulate or {}) and "time" not in (sweep or {}):
        spec["sweep"]["time"] = None  # a run to another t_end summarises at its last time
    return spec
