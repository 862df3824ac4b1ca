"""Input checks shared by every stage: each error names the parameter and what is accepted."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; accepted values: {', '.join(map(repr, choices))}")
    return value


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int,))
        and not (torch.is_tensor(value) and value.numel() == 1 and not value.is_floating_point())
    ):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_positive_float(name: str, value: Any, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {v}")
    return v


def as_tensor(name: str, value: Any, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Convert to a float tensor and refuse NaN/inf, naming the parameter."""
    try:
        t = torch.as_tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a number or an array of numbers, got {type(value).__name__}") from None
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf; every entry must be finite")
    return t
