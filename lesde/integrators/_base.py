"""The integrator protocol (diffrax style: one small class per method) and the time grid every method steps on.

A method is one module defining a subclass of :class:`Integrator` that declares

- ``name`` and its orders: ``strong_order`` for the LE-SDE's state-independent (additive) noise,
  ``strong_order_state_dependent`` for ``noise="sampling"`` (None when the method cannot run it), ``weak_order``;
- ``check(model, save, **options) -> str | None``: why it cannot run this model (None when it can), called by
  :func:`lesde.simulate` before any work and by sweeps for ``method="auto"``;
- ``memory(model, save, itemsize) -> Memory``: the bytes of working memory it needs on the device;
- ``plan(model, save) -> str``: which of its internal paths it will take (recorded in the Dataset attrs);
- ``integrate(model, start, grid, rng, record, save, **options)``: advance from ``grid.times[0]`` through every
  save time, calling ``record(i, ...)`` at save index ``i`` (including 0) with what it has: ``state`` (B, N, m)
  or (B, D), or ``means`` (B, K, m) with ``deviations`` (B, N, m) or ``within`` (B, K) numpy.

and registers one line in :data:`lesde.integrators.REGISTRY`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

#: the largest number of steps one run may take (beyond it a run is refused up front: use a larger dt or exact)
MAX_STEPS = 10**8


@dataclass(frozen=True)
class Grid:
    """Save times and the equal sub-steps between consecutive save times (each step <= dt)."""

    times: tuple[float, ...]
    steps: tuple[int, ...]  # steps[i] sub-steps between times[i] and times[i+1]

    @classmethod
    def make(cls, times: torch.Tensor, dt: float) -> Grid:
        t = [float(x) for x in times]
        # ceil with a tolerance, so save times that are multiples of dt give exactly-dt steps
        steps = tuple(max(1, math.ceil((b - a) / dt - 1e-9)) for a, b in zip(t[:-1], t[1:]))
        return cls(tuple(t), steps)

    def intervals(self):
        """(i, t0, t1, n_steps, h) for each save interval."""
        for i, n in enumerate(self.steps):
            t0, t1 = self.times[i], self.times[i + 1]
            yield i, t0, t1, n, (t1 - t0) / n

    @property
    def total_steps(self) -> int:
        return sum(self.steps)

    def truncated(self, n_times: int) -> Grid:
        return Grid(self.times[:n_times], self.steps[: max(0, n_times - 1)])


@dataclass(frozen=True)
class Memory:
    """Device working memory of a run: ``fixed`` bytes whatever the paths, plus ``per_path`` bytes per path."""

    fixed: int
    per_path: int

    def total(self, n_paths: int) -> int:
        return self.fixed + n_paths * self.per_path


class Integrator:
    """Base class of the methods; see the module docstring for the protocol."""

    name: ClassVar[str] = ""
    strong_order: ClassVar[float | None] = None
    strong_order_state_dependent: ClassVar[float | None] = None
    weak_order: ClassVar[float | None] = None

    def check(self, model, save: str = "means", **options: Any) -> str | None:
        return None

    def memory(self, model, save: str, itemsize: int) -> Memory:  # pragma: no cover - abstract
        raise NotImplementedError

    def plan(self, model, save: str) -> str:
        return ""

    def integrate(self, model, start, grid: Grid, rng, record, save: str, **options: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    def orders(self, model) -> tuple[float | None, float | None]:
        """(strong, weak) order this method has on ``model``."""
        dependent = getattr(model, "noise_kind", None) == "sampling"
        return (self.strong_order_state_dependent if dependent else self.strong_order), self.weak_order

    def __repr__(self) -> str:
        return f"<integrator {self.name!r}: strong order {self.strong_order}, weak order {self.weak_order}>"


def is_lesde(model) -> bool:
    from ..model import LESDE

    return isinstance(model, LESDE)


def structured(model) -> bool:
    """An LE-SDE whose drift and diffusion are the class's own (the class-mean structure may be used)."""
    return is_lesde(model) and model.has_standard_dynamics


def state_numbers(model) -> int:
    """Numbers in one path's state."""
    if is_lesde(model):
        return model.num_samples * model.dim
    return int(getattr(model, "state_size", 0) or getattr(model, "brownian_size", 0) or 1)


__all__ = ["Grid", "Memory", "Integrator", "MAX_STEPS", "is_lesde", "structured", "state_numbers"]
