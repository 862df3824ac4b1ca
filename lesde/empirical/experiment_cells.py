r"""The cells of an empirical experiment: what one cell is, how it is seeded, and what a worker runs for it.

An `Experiment` is ``settings x runs`` cells. Cell ``(i, r)`` loads setting ``i``'s data
(``experiment.data(**settings[i])``: ``(x, y)`` or ``(x, y, x_val, y_val)``), builds the network
(``experiment.net(input_shape, num_classes)``) and trains it by batch-size-1 SGD with every probe tracked, one run:
`track` with ``n_runs=1``. ``data`` and ``net`` are any callables that pickle and import on
the workers (module-level functions, ``functools.partial`` of them, dataclass instances such as
`DatasetLoader`).

Seeding, so that a run's numbers depend on ``(seed, setting, run)`` alone, not on ``n_runs``, on the other
settings, on which cells ran together or on where they ran:

- the run's initialisation and sample order come from the cell's seed
  $s_{i,r}$ = `lesde.cells.key_seed` ``(seed, {"setting": settings[i], "run": r})``: the cell is
  ``track(net, x, y, n_runs=1, seed=s_{i,r}, ...)``;
- the probes come from the experiment's ``seed`` (``select_probes(labels, probes, seed)``, as in a stacked
  track), the same for every run of a setting, so the runs pool into one estimate;
- the network is built under ``torch.manual_seed(key_seed(seed, {"setting": settings[i]}))``, so with
  ``init="keep"`` every run of a setting starts from the same weights on any machine.

A stacked ``track(n_runs=R, seed=seed)`` draws every run from one generator instead, so its numbers differ from
the cells' (both are samples of the same runs; only the cells' do not depend on grouping).

Failures: a cell whose data, network or training raises `CELL_FAILURES`, or whose probe features stop
being finite (a diverging run), is returned failed with its message; any other exception propagates (a bug is
not a result). Ctrl-C during a cell run here lets the current step finish and raises KeyboardInterrupt: an
interrupted run is never a result.

An experiment's identity (what a store must have been written by to be resumed) is `Experiment.describe`:
its numbers and settings, and its callables by import name and arguments, never by their code.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..cells import key_seed, worker_device
from ..validation import check_choice, check_int, check_positive_float, check_seed
from .data import load_dataset
from .tracks import Validation, track
from .tracks.track_inputs import DEFAULT_RUNS, INITS, select_probes

__all__ = ["Experiment", "DatasetLoader", "Cell", "CellResult", "run_cell", "canonical", "CELL_FAILURES", "DTYPES"]

#: what a cell may raise that makes it failed (anything else stops the experiment)
CELL_FAILURES = (ArithmeticError, ValueError, torch.linalg.LinAlgError)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _name(obj: Any) -> str:
    name = f"{obj.__module__}.{obj.__qualname__}"
    if "<" in obj.__qualname__:  # <lambda>, <locals>: nothing a worker or a later run could name
        raise ValueError(
            f"{name} cannot identify an experiment's data or net: define it at module level (a function, a "
            "functools.partial of one, or a dataclass instance)"
        )
    return name


def canonical(value: Any) -> Any:
    """``value`` as JSON-ready data that names it the same way in every process: numbers, strings, lists and
    dicts as they are; functions and classes by import name; ``functools.partial`` and dataclass instances by
    their function or class and arguments; arrays by their SHA-256."""
    import hashlib

    if isinstance(value, functools.partial):
        args = [canonical(a) for a in value.args]
        return {"partial": _name(value.func), "args": args, "keywords": canonical(dict(value.keywords))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"class": _name(type(value)), **fields}
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
        return _name(value)
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value.detach().cpu().numpy() if torch.is_tensor(value) else value)
        return {"array": str(arr.dtype), "shape": list(arr.shape), "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}
    raise ValueError(
        f"cannot record a {type(value).__name__} in an experiment's description: use numbers, strings, lists, "
        "dicts, arrays, module-level functions, functools.partial or dataclass instances"
    )


@dataclass(frozen=True)
class DatasetLoader:
    """An experiment's data from `load_dataset`, picklable for the workers.

    ``loader(**setting)`` loads the training split with these arguments and the setting's keywords (e.g.
    ``label_noise=0.2``); with ``validation`` it also returns the clean test split (same classes, seed and
    options), and with ``channel`` flat vectors become one-channel sequences (for a Conv1d network).
    """

    dataset: str
    classes: int | Sequence[int] | None = 3
    per_class: int | Sequence[int] | None = None
    seed: int = 0
    standardize: bool | None = None
    validation: bool = False
    channel: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, **setting) -> tuple:
        common = dict(classes=self.classes, seed=self.seed, **self.options)
        x, y = load_dataset(self.dataset, per_class=self.per_class, standardize=self.standardize, **common, **setting)
        out = [x, y]
        if self.validation:
            out += list(load_dataset(self.dataset, split="test", standardize=self.standardize, **common))
        if self.channel:
            out = [a[:, None] if i % 2 == 0 and a.ndim == 2 else a for i, a in enumerate(out)]
        return tuple(out)


@dataclass(frozen=True)
class Experiment:
    """Settings x runs of batch-size-1 training with every probe tracked (module docstring).

    ``data(**setting)`` returns ``(x, y)`` or ``(x, y, x_val, y_val)``; ``net(input_shape, num_classes)`` returns
    the ``nn.Module``; ``settings`` are keyword dicts for ``data`` (default: one setting, ``{}``). The other
    fields are those of `track` (``validation_every`` applies when ``data`` returns a
    validation set; ``dtype`` is ``"float32"`` or ``"float64"``).
    """

    data: Callable[..., tuple]
    net: Callable[..., torch.nn.Module]
    lr: float
    steps: int
    settings: Sequence[Mapping[str, Any]] = ({},)
    n_runs: int = DEFAULT_RUNS
    probes: int | None = 300
    record_every: int = 1
    feature: str = "logits"
    init: str = "reinit"
    validation_every: int | None = None
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self):
        checked = dict(lr=check_positive_float("lr", self.lr), seed=check_seed("seed", self.seed))
        for name in ("steps", "n_runs", "record_every", "probes", "validation_every"):
            value = getattr(self, name)
            checked[name] = value if value is None else check_int(name, value)
        for name, value in checked.items():  # plain numbers: lr=1 and lr=1.0 are one experiment
            object.__setattr__(self, name, value)
        check_choice("init", self.init, INITS)
        check_choice("dtype", self.dtype, DTYPES)
        settings = tuple(dict(s) for s in self.settings)
        if not settings or not all(isinstance(s, dict) for s in self.settings):
            raise ValueError("settings must be a non-empty sequence of keyword dicts for data (e.g. [{}])")
        keys = [canonical(s) for s in settings]
        if len({repr(k) for k in keys}) != len(keys):
            raise ValueError("settings lists a setting twice; its runs would be the same cells")
        object.__setattr__(self, "settings", settings)
        self.describe()  # every callable and value can be named, before any work

    @property
    def n_cells(self) -> int:
        return len(self.settings) * self.n_runs

    def cell_seed(self, setting: int, run: int) -> int:
        """The seed of cell (setting, run) (module docstring)."""
        return key_seed(self.seed, {"setting": canonical(self.settings[setting]), "run": int(run)})

    def setting_label(self, setting: int) -> str:
        s = self.settings[setting]
        return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items()) or "setting 0"

    def label(self, cell: int) -> str:
        """``"label_noise=0.2, run 1"``: the setting and the run of flat cell index ``cell``."""
        setting, run = divmod(cell, self.n_runs)
        return f"{self.setting_label(setting)}, run {run}"

    def describe(self) -> dict[str, Any]:
        """The experiment's identity as JSON-ready data (module docstring)."""
        return {f.name: canonical(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class Cell:
    """What a worker gets: the experiment, the cell's setting and run, and the device to train on."""

    experiment: Experiment
    setting: int
    run: int
    device: str = "cpu"

    @property
    def index(self) -> int:
        return self.setting * self.experiment.n_runs + self.run


@dataclass
class CellResult:
    """A cell's track (one run), or its error message; ``seconds`` and ``cpu_seconds``: the cell's wall time and
    its process's CPU time where it ran (on a loaded machine the CPU time is what the cell costs a free core)."""

    setting: int
    run: int
    track: xr.Dataset | None
    error: str | None
    seconds: float
    cpu_seconds: float = float("nan")


def _check_finite(tr: xr.Dataset) -> None:
    """FloatingPointError when the probes' features stop being finite: the run diverged."""
    finite = np.isfinite(tr["features"].values).reshape(tr.sizes["step"], -1).all(1)  # per recorded step
    if not finite.all():
        step = int(tr["step"].values[np.argmin(finite)])
        raise FloatingPointError(f"the run diverged: probe features are not finite from step {step} (try a smaller lr)")


def _track_cell(cell: Cell) -> xr.Dataset:
    exp = cell.experiment
    loaded = tuple(exp.data(**exp.settings[cell.setting]))
    if len(loaded) not in (2, 4):
        raise TypeError(f"data must return (x, y) or (x, y, x_val, y_val), got {len(loaded)} items")
    x, y = (torch.as_tensor(a) for a in loaded[:2])
    validation = Validation(*loaded[2:], every=exp.validation_every) if len(loaded) == 4 else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(key_seed(exp.seed, {"setting": canonical(exp.settings[cell.setting])}))
        net = exp.net(tuple(x.shape[1:]), int(y.max()) + 1)
    probes = None if exp.probes is None else select_probes(y.long(), min(exp.probes, len(y)), exp.seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="track interrupted", category=UserWarning)
        tr = track(net, x, y, lr=exp.lr, steps=exp.steps, n_runs=1, probes=probes, record_every=exp.record_every,
                   feature=exp.feature, seed=exp.cell_seed(cell.setting, cell.run), init=exp.init,
                   validation=validation, device=worker_device(cell.device), dtype=DTYPES[exp.dtype],
                   progress=False)  # fmt: skip
    if tr.attrs.get("interrupted"):
        raise KeyboardInterrupt(f"cell {exp.label(cell.index)} interrupted")
    return tr


def run_cell(cell: Cell) -> CellResult:
    """Train and track one cell; a failure of `CELL_FAILURES` or a diverging run gives a failed result."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        tr, error = _track_cell(cell), None
        _check_finite(tr)
    except CELL_FAILURES as e:
        tr, error = None, f"{type(e).__name__}: {e}"
    return CellResult(cell.setting, cell.run, tr, error, time.perf_counter() - t0, time.process_time() - cpu0)
