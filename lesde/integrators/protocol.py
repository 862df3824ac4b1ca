r"""The integrator protocol (diffrax style: one small class per method), the time grid every method steps on, and
the check that a method meets the protocol before it is registered.

A method is one module defining a subclass of `Integrator` that declares its ``name`` and orders
(``strong_order`` for the LE-SDE's state-independent noise, ``strong_order_state_dependent`` for
``noise="sampling"``, None when it cannot run it; ``weak_order``) and four methods. These signatures are the calls
`lesde.simulate` makes, checked by `check_contract` when a method is registered
(`lesde.integrators.register`); extra keywords a method does not use are taken by ``**options``:

``check(model, save="means", *, bm=None, **options) -> str | None``
    Why the method cannot integrate ``model`` with this save mode (a one-line reason), or None. Called before any
    work, and by sweeps for ``method="auto"``.
``plan(model, save, *, bm=None, **options) -> str``
    Which of its internal paths it takes (recorded in the Dataset's ``integrator_plan`` attr).
``memory(model, save, itemsize, *, n_state=None, bm=None, grid=None, **options) -> Memory``
    The device working memory: `Memory` ``(fixed, per_path)`` bytes. ``itemsize`` is the state's bytes per
    number, ``n_state`` the numbers in one path's state, ``grid`` the `Grid` of the run.
``integrate(model, start, grid, rng, record, save, *, bm=None, rows=None, **options) -> None``
    Advance the paths ``rows`` (a slice of the run's paths) from ``grid.times[0]`` through every save time,
    calling ``record(i, **parts)`` at save index ``i`` (0 included). ``start`` is a
    `lesde.integrators.start.Start`: ``start.full(rows, rng, start.dtype, rng.device)`` gives the initial
    states (B, *shape). ``rng`` is a `lesde.integrators.seeding.PathRNG` over those paths:
    ``rng.normal(shape, dtype, steps=n)`` draws (B, n, *shape) standard normals, block by block, so the numbers do
    not depend on the chunking; ``rng.device`` is the run's device. ``parts`` are what the method has: ``state``
    (B, N, m) or (B, D); or ``means`` (B, K, m) with ``deviations`` (B, N, m) or ``within`` (B, K) numpy.
    ``bm`` is a user's Brownian motion (a method that cannot follow one says so in ``check``).

Example: a full-state Euler-Maruyama for the LE-SDE in a few lines (``tests/test_simulate.py`` registers and runs
it):

```python
class ToyEuler(Integrator):
    name, strong_order, weak_order = "toy-euler", 1.0, 1.0

    def memory(self, model, save, itemsize, *, n_state=None, bm=None, grid=None, **options):
        return Memory(0, 4 * (n_state or 1) * itemsize)

    def integrate(self, model, start, grid, rng, record, save, *, bm=None, rows=None, **options):
        X = start.full(rows, rng, start.dtype, rng.device)  # (B, N, m)
        record(0, state=X)
        for i, t0, t1, n, h in grid.intervals():
            Z = rng.normal(X.shape[1:], X.dtype, steps=n)  # (B, n, N, m)
            for j in range(n):
                flat = X.reshape(len(X), -1)
                t = torch.tensor(t0 + j * h, dtype=torch.float64)
                X = X + (model.f(t, flat) * h + model.g_prod(t, flat, h**0.5 * Z[:, j].reshape(len(X), -1))).view_as(X)
            record(i + 1, state=X)
```
"""

from __future__ import annotations

import inspect
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

    def check(self, model, save: str = "means", *, bm=None, **options: Any) -> str | None:
        """Why this method cannot integrate ``model`` (one line), or None; the default accepts every model."""
        return None

    def plan(self, model, save: str, *, bm=None, **options: Any) -> str:
        """Which internal path the method takes (the Dataset's ``integrator_plan``); the default names none."""
        return ""

    def memory(self, model, save: str, itemsize: int, *, n_state: int | None = None, bm=None, grid: Grid | None = None,
               **options: Any) -> Memory:  # fmt: skip  # pragma: no cover - abstract
        raise NotImplementedError

    def integrate(self, model, start, grid: Grid, rng, record, save: str, *, bm=None, rows: slice | None = None,
                  **options: Any) -> None:  # fmt: skip  # pragma: no cover - abstract
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


#: the calls lesde.simulate makes: method -> (positional arguments, keyword arguments)
CALLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "check": (("model",), ("save", "bm")),
    "plan": (("model", "save"), ("bm",)),
    "memory": (("model", "save", "itemsize"), ("n_state", "bm", "grid")),
    "integrate": (("model", "start", "grid", "rng", "record", "save"), ("bm", "rows")),
}


def check_contract(integrator: Any) -> None:
    """Refuse (TypeError naming the method and what it lacks) an integrator that does not meet the protocol:
    an `Integrator` with a ``name``, orders, and the four methods accepting the calls in `CALLS`."""
    if not isinstance(integrator, Integrator):
        raise TypeError(f"an integrator must be an instance of lesde.integrators.Integrator, got {type(integrator)!r}")
    if not isinstance(integrator.name, str) or not integrator.name:
        raise TypeError(f"{type(integrator).__name__} has no name (a non-empty str class attribute)")
    for order in ("strong_order", "strong_order_state_dependent", "weak_order"):
        value = getattr(integrator, order)
        if value is not None and not isinstance(value, (int, float)):
            raise TypeError(f"{type(integrator).__name__}.{order} must be a number or None, got {value!r}")
    for method, (args, kwargs) in CALLS.items():
        signature = inspect.signature(getattr(integrator, method))
        try:
            signature.bind(*args, **{k: None for k in kwargs})
        except TypeError as e:
            raise TypeError(
                f"{type(integrator).__name__}.{method}{signature} does not accept the call lesde.simulate makes, "
                f"{method}({', '.join(args)}, {', '.join(f'{k}=...' for k in kwargs)}): {e} (see lesde.integrators."
                "protocol)"
            ) from None


__all__ = ["Grid", "Memory", "Integrator", "MAX_STEPS", "CALLS", "check_contract", "is_lesde", "structured"]
