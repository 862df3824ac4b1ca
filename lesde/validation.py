"""Input checks shared by every stage: each error names the parameter and what is accepted.

numpy scalars and 0-d arrays are accepted wherever a Python number is (``np.int64(3)`` is an int here), and
complex input is refused with a message rather than silently losing its imaginary part.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; accepted values: {', '.join(map(repr, choices))}")
    return value


def _scalar(value: Any) -> Any:
    """A 0-d numpy array / one-element tensor as its Python scalar; anything else unchanged."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if torch.is_tensor(value) and value.numel() == 1 and value.ndim <= 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in [minimum, maximum] (Python, numpy or 0-d tensor integers; never bool or float)."""
    v = _scalar(value)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise TypeError(f"{name} must be an integer {bound}, got {value!r} of type {type(value).__name__}")
    v = int(v)
    if v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {v}")
    return v


def check_real(name: str, value: Any) -> float:
    """A finite real number (Python, numpy or 0-d tensor); complex, bool and strings are refused."""
    v = _scalar(value)
    if isinstance(v, complex) or (isinstance(v, numbers.Complex) and not isinstance(v, numbers.Real)):
        raise TypeError(f"{name} must be a real number, got the complex value {v!r}")
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def check_positive_float(name: str, value: Any, allow_zero: bool = False) -> float:
    v = check_real(name, value)
    if v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {v}")
    return v


def as_tensor(name: str, value: Any, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Convert to a real float tensor and refuse complex, NaN and inf, naming the parameter."""
    if value.is_complex() if torch.is_tensor(value) else np.iscomplexobj(value):
        raise TypeError(f"{name} must be real; complex values are not supported")
    try:
        t = torch.as_tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a number or an array of numbers, got {type(value).__name__}") from None
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf; every entry must be finite")
    return t


def check_path(name: str, value: Any, example: str = "out.nc") -> Path:
    """A file-system path (str or os.PathLike, not empty) as a Path; anything else refused naming ``name``."""
    if isinstance(value, (str, os.PathLike)) and str(value):
        return Path(value)
    raise TypeError(f"{name} must be a path (str or pathlib.Path) such as {example!r}, got {value!r:.60}")


def check_bool(name: str, value: Any) -> bool:
    """True or False (numpy bools too); a string such as "no", which Python would read as True, is refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r:.60}")


#: seeds are unsigned 32-bit integers everywhere: the range every generator lesde seeds accepts, whose values every
#: file format and coordinate (float64 included) stores exactly
SEED_LIMIT = 2**32


def check_seed(name: str, value: Any) -> int:
    """A seed: an integer in [0, 2**32) (Python, numpy or 0-d tensor; never bool or float)."""
    v = _scalar(value)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer in [0, 2**32), got {value!r} of type {type(value).__name__}")
    if not 0 <= int(v) < SEED_LIMIT:
        raise ValueError(f"{name} must be an integer in [0, 2**32) = [0, {SEED_LIMIT}), got {int(v)}")
    return int(v)


DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device(device: Any, dtype: torch.dtype | None = None, name: str = "device") -> torch.device:
    """A torch device that exists here and supports ``dtype``; otherwise ValueError saying what is accepted."""
    accepted = ["'cpu'"]
    if torch.cuda.is_available():
        accepted += ["'cuda'", *(f"'cuda:{i}'" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if mps:
        accepted.append("'mps'")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name}={device!r} is not a torch device; accepted here: {', '.join(accepted)}") from None
    if dev.type not in DEVICE_TYPES:
        raise ValueError(f"{name}={str(device)!r} is not supported; accepted here: {', '.join(accepted)}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={str(device)!r} but CUDA is not available here; accepted: {', '.join(accepted)}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name}={str(device)!r} but only {torch.cuda.device_count()} CUDA device(s) exist; "
                f"accepted: {', '.join(accepted)}"
            )
    if dev.type == "mps":
        if not mps:
            raise ValueError(f"{name}={str(device)!r} but MPS is not available here; accepted: {', '.join(accepted)}")
        if dtype == torch.float64:
            raise ValueError(f"{name}='mps' does not support float64; use dtype=torch.float32 or another device")
    return dev


def free_host_bytes() -> int:
    """Host memory available to a new allocation: Linux's MemAvailable (free pages plus the page cache the kernel
    can reclaim), else the POSIX count of free pages, else 8 GiB."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def check_memory(need: int, what: str, advice: str) -> None:
    """Refuse up front (MemoryError with the numbers) what would not fit in 90% of the free host memory: a
    preallocated record that fails half-way through a long run wastes the run."""
    free = free_host_bytes()
    if need > 0.9 * free:
        raise MemoryError(f"{what} need {gib(need)} but only {gib(free)} are free; {advice}")
