"""TOML configs that mirror the Python API: ``[model]`` = ``LESDE(...)`` keyword arguments, ``[simulate]`` =
``simulate(...)`` keyword arguments. Schedules are inline tables, e.g.
``alpha = {kind = "PowerLaw", scale = 1.0, exponent = 0.5}``; dtypes are strings ("float32", "float64").

Example (``examples/simulate.toml``)::

    [model]
    num_classes = 4
    dim = 8
    samples_per_class = 20
    alpha = {kind = "PowerLaw", scale = 2.0, exponent = 0.5}
    beta = 0.5
    transform = "residual"
    noise = 1.0

    [simulate]
    t_end = 10.0
    dt = 0.01
    n_paths = 64
    n_save = 51
    method = "euler"
    save = "means"
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import torch

from .model import LESDE
from .simulate import DTYPES, simulate


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    with path.open("rb") as fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML: {e}") from None


def _check_keys(section: str, given: dict, fn) -> None:
    accepted = [p for p in inspect.signature(fn).parameters if p not in ("self", "model")]
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ValueError(f"[{section}] has unknown key(s) {unknown}; accepted: {', '.join(accepted)}")


def model_from_config(section: dict[str, Any]) -> LESDE:
    """``LESDE(**section)`` with the keys checked first."""
    _check_keys("model", section, LESDE.__init__)
    return LESDE(**section)


def simulate_kwargs(section: dict[str, Any]) -> dict[str, Any]:
    kw = dict(section)
    _check_keys("simulate", kw, simulate)
    if "dtype" in kw:
        name = kw["dtype"]
        if name not in DTYPES:
            raise ValueError(f"[simulate] dtype={name!r} is not supported; accepted: {', '.join(DTYPES)}")
        kw["dtype"] = DTYPES[name]
    if "x0" in kw:
        kw["x0"] = torch.as_tensor(kw["x0"])
    return kw


def simulate_from_config(config: dict[str, Any], **overrides: Any):
    """Build the model and run ``simulate`` from a parsed config dict; ``overrides`` win over the file."""
    for key in ("model", "simulate"):
        if key not in config:
            raise ValueError(f"config needs a [{key}] table; found tables: {sorted(config)}")
    model = model_from_config(config["model"])
    kw = simulate_kwargs(config["simulate"]) | {k: v for k, v in overrides.items() if v is not None}
    return simulate(model, **kw)
