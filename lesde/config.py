"""TOML configs that mirror the Python API: ``[model]`` = ``LESDE(...)`` keyword arguments, ``[simulate]`` =
``simulate(...)`` keyword arguments. Schedules are inline tables, e.g.
``alpha = {kind = "PowerLaw", scale = 1.0, exponent = 0.5}``; dtypes are strings ("float32", "float64").

Example (``lesde example copy simulate.toml``):

```toml
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
```

Every key is checked before any work, by name and by type, and every error is a `ConfigError` whose
message starts with the file and the key (``run.toml: [simulate] t_end = '10' must be a number``). The checks
also put the numbers in canonical form: a number where a real is expected becomes a float, so ``t_end = 10`` and
``t_end = 10.0`` are the same config (sweep specs hash this form). The sweep spec (`lesde.sweep.spec`)
reuses the ``[model]`` and ``[simulate]`` checks.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import torch

from . import schedules
from .integrators import known_methods
from .model import LESDE
from .simulate import DTYPES, save_times_for, simulate
from .validation import SEED_LIMIT, check_path

__all__ = [
    "ConfigError",
    "load_toml",
    "table",
    "check_model",
    "check_simulate",
    "build_model",
    "model_from_config",
    "simulate_kwargs",
    "check_tables",
]

#: keys of [model] and [simulate] whose numbers are integers; every other number is a real (stored as float)
INT_KEYS = {"num_classes", "dim", "samples_per_class", "n_paths", "n_save", "seed", "chunk_size"}
MODEL_KEYS = [p for p in inspect.signature(LESDE.__init__).parameters if p != "self"]
#: simulate arguments a config may set (``bm``, a Brownian motion object, has no TOML form)
SIMULATE_KEYS = [p for p in inspect.signature(simulate).parameters if p not in ("model", "bm")]


class ConfigError(ValueError):
    """A bad config file or sweep spec. The message names the file (or ``spec`` for a dict) and the key."""


def load_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file, a folder or bad TOML raise with the file's name."""
    path = check_path("path", path, "simulate.toml")
    if not path.exists():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} is not a file")
    with path.open("rb") as fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a TOML text file ({e.reason})") from None


# ----------------------------------------------------------------------------------------------------------------
# typed values


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"a {type(value).__name__}"


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def real(where: str, value: Any, minimum: float | None = None, strict: bool = True) -> float:
    """A finite number as float; ``minimum`` with ``strict`` means ``> minimum``, else ``>= minimum``."""
    if not _is_real(value):
        raise ConfigError(f"{where} = {value!r} must be a number, got {_kind(value)}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{where} = {value!r} must be finite")
    if minimum is not None and (v <= minimum if strict else v < minimum):
        raise ConfigError(f"{where} = {value!r} must be {'>' if strict else '>='} {minimum:g}")
    return v


def integer(where: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} = {value!r} must be an integer >= {minimum}, got {_kind(value)}")
    if value < minimum:
        raise ConfigError(f"{where} = {value!r} must be an integer >= {minimum}")
    return int(value)


def string(where: str, value: Any, choices: list[str] | tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} = {value!r} must be a string, got {_kind(value)}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where} = {value!r} is not supported; accepted: {', '.join(map(repr, choices))}")
    return value


def reals(where: str, value: Any) -> Any:
    """A number or a (nested) array of numbers, with every number as float."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigError(f"{where} must not be an empty array")
        return [reals(f"{where}[{i}]", v) for i, v in enumerate(value)]
    return real(where, value)


def table(config: Any, name: str, source: str, required: bool = True) -> dict[str, Any]:
    """``config[name]`` checked to be a table (a TOML ``[name]`` section or an inline table)."""
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: must be a table of sections, got {_kind(config)}")
    if name not in config:
        if required:
            raise ConfigError(f"{source}: needs a [{name}] table; found: {', '.join(sorted(config)) or 'nothing'}")
        return {}
    value = config[name]
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{name}' must be a table ([{name}] section), got {_kind(value)} {value!r}")
    return dict(value)


def check_tables(config: dict[str, Any], accepted: list[str], source: str) -> None:
    """Refuse top-level tables other than ``accepted`` (a misspelt ``[simulte]`` is an error, not ignored)."""
    _unknown(f"{source}:", config, accepted)


def _unknown(where: str, given: dict, accepted: list[str]) -> None:
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown}; accepted: {', '.join(accepted)}")


# ----------------------------------------------------------------------------------------------------------------
# sections


def schedule_params(kind: str) -> list[str]:
    """Keyword arguments of a schedule kind (``"PowerLaw"`` -> scale, exponent, offset)."""
    return [p for p in inspect.signature(schedules.REGISTRY[kind].__init__).parameters if p != "self"]


def _schedule(where: str, value: Any) -> Any:
    if not isinstance(value, dict):
        return real(where, value)
    kind = string(f"{where}.kind", value.get("kind"), [k for k in schedules.REGISTRY])
    accepted = schedule_params(kind)
    _unknown(f"{where} ({kind})", {k: v for k, v in value.items() if k != "kind"}, accepted)
    required = [
        p
        for p, par in inspect.signature(schedules.REGISTRY[kind].__init__).parameters.items()
        if p != "self" and par.default is inspect.Parameter.empty
    ]
    missing = [p for p in required if p not in value]
    if missing:
        raise ConfigError(f"{where} ({kind}) needs {', '.join(missing)}")
    return {"kind": kind, **{k: reals(f"{where}.{k}", v) for k, v in value.items() if k != "kind"}}


def check_model(section: dict[str, Any], where: str = "[model]") -> dict[str, Any]:
    """Check names and types of ``LESDE`` arguments; return them in canonical form (reals as floats)."""
    _unknown(where, section, MODEL_KEYS)
    out: dict[str, Any] = {}
    for key, value in section.items():
        at = f"{where} {key}"
        if key == "num_classes":
            out[key] = integer(at, value, 2)
        elif key == "dim":
            out[key] = integer(at, value, 1)
        elif key == "samples_per_class":
            if isinstance(value, (list, tuple)):
                out[key] = [integer(f"{at}[{i}]", v, 1) for i, v in enumerate(value)]
            else:
                out[key] = integer(at, value, 1)
        elif key in ("alpha", "beta"):
            out[key] = _schedule(at, value)
        elif key == "transform":
            out[key] = value if isinstance(value, str) else reals(at, value)
        elif key == "noise":
            if isinstance(value, str) and value != "sampling":
                raise ConfigError(f"{at} = {value!r}: accepted: a number, per-class numbers, a matrix or 'sampling'")
            out[key] = value if value == "sampling" else reals(at, value)
        elif key == "class_sampling":
            out[key] = string(at, value)
        elif key == "lr":
            out[key] = real(at, value, 0.0)
        else:  # elasticity, and any argument a later LESDE adds
            out[key] = reals(at, value) if isinstance(value, (int, float, list)) else value
    return out


def build_model(kwargs: dict[str, Any], where: str = "[model]") -> LESDE:
    """``LESDE(**kwargs)``, its errors prefixed by ``where``."""
    for required in ("num_classes", "dim", "samples_per_class"):
        if required not in kwargs:
            raise ConfigError(f"{where} needs {required!r}")
    try:
        return LESDE(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where} {e}") from None


def check_simulate(section: dict[str, Any], where: str = "[simulate]", sweep: bool = False) -> dict[str, Any]:
    """Check names and types of ``simulate`` arguments; return them in canonical form.

    ``sweep=True``: the keys a sweep sets itself (save, device, progress) are refused and ``method = "auto"``
    is accepted.
    """
    accepted = [k for k in SIMULATE_KEYS if not (sweep and k in ("save", "device", "progress"))]
    for own in ("save", "device", "progress"):
        if sweep and own in section:
            raise ConfigError(f"{where} must not set {own!r}: the sweep sets it (save='metrics', --device, --quiet)")
    _unknown(where, section, accepted)
    for required in ("t_end", "dt", "n_paths"):
        if required not in section:
            raise ConfigError(f"{where} needs {required!r}")
    out: dict[str, Any] = {}
    for key, value in section.items():
        at = f"{where} {key}"
        if key in ("t_end", "dt", "x0_scale"):
            out[key] = real(at, value, 0.0)
        elif key == "n_paths" or key == "chunk_size":
            out[key] = integer(at, value, 1)
        elif key == "n_save":
            out[key] = integer(at, value, 2)
        elif key == "seed":
            out[key] = integer(at, value, 0)
            if out[key] >= SEED_LIMIT:
                raise ConfigError(f"{at} = {value!r} must be an integer in [0, 2**32)")
        elif key == "save_times":
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{at} must be an array of numbers, got {_kind(value)}")
            out[key] = [real(f"{at}[{i}]", v, 0.0, strict=False) for i, v in enumerate(value)]
        elif key == "method":
            out[key] = string(at, value, (["auto"] if sweep else []) + known_methods())
        elif key == "dtype":
            out[key] = string(at, value, list(DTYPES))
        elif key in ("save", "device"):
            out[key] = string(at, value)
        elif key == "progress":
            if not isinstance(value, bool):
                raise ConfigError(f"{at} = {value!r} must be true or false, got {_kind(value)}")
            out[key] = value
        elif key == "x0":
            out[key] = reals(at, value)
        else:  # an argument a later simulate adds: passed through
            out[key] = value
    try:
        save_times_for(out["t_end"], out["dt"], out.get("save_times"), out.get("n_save"))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where} {e}") from None
    return out


# ----------------------------------------------------------------------------------------------------------------
# the simulate command


def model_from_config(section: dict[str, Any], source: str = "config") -> LESDE:
    """``LESDE(**section)`` with the keys checked first."""
    return build_model(check_model(section, f"{source}: [model]"), f"{source}: [model]")


def simulate_kwargs(section: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """``simulate`` keyword arguments from a checked ``[simulate]`` table (dtype and x0 converted)."""
    kw = check_simulate(section, f"{source}: [simulate]")
    if "dtype" in kw:
        kw["dtype"] = DTYPES[kw["dtype"]]
    if "x0" in kw:
        kw["x0"] = torch.as_tensor(kw["x0"])
    return kw
