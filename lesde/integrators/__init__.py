"""Integrators: one small module per method, registered by name (no if/elif chains over methods).

Every integrator has the signature ``integrate(model, x0, grid, gen, record, **options)``: it advances the
state from ``grid.times[0]`` through every save time and calls ``record(i, state)`` at save index ``i``
(including ``i = 0``). ``grid`` is a :class:`Grid`. States are (B, N, m) for an LE-SDE and (B, D) for any other
torchsde-contract module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import euler, exact, torchsde_method


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


NATIVE = {"euler": euler.integrate, "exact": exact.integrate}


def torchsde_methods() -> list[str]:
    """torchsde's fixed-step methods (the adjoint-only one excluded)."""
    from torchsde.settings import METHODS

    names = (v for k, v in vars(METHODS).items() if not k.startswith("_") and isinstance(v, str))
    return sorted(n for n in names if not n.startswith("adjoint"))


def known_methods() -> list[str]:
    return [*NATIVE, *(f"torchsde:{m}" for m in torchsde_methods())]


def resolve(method: str):
    """Return (integrate function, options) for a method name, or raise listing the known ones."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a string; accepted: {', '.join(known_methods())}")
    if method in NATIVE:
        return NATIVE[method], {}
    if method.startswith("torchsde:") and method.split(":", 1)[1] in torchsde_methods():
        return torchsde_method.integrate, {"name": method.split(":", 1)[1]}
    raise ValueError(f"method={method!r} is not known; accepted: {', '.join(known_methods())}")


def check(method: str, model, **options) -> str | None:
    """Why ``method`` cannot integrate ``model`` (a one-line reason), or None when it can.

    Raises ValueError only for a method name that is not known. Sweeps use this for ``method="auto"``.
    """
    resolve(method)
    if method == "exact":
        return exact.unsupported_reason(model)
    if method.startswith("torchsde:"):
        name = method.split(":", 1)[1]
        if name in torchsde_method.STRATONOVICH and getattr(model, "noise_kind", None) == "sampling":
            return (
                f"method={method!r} is a Stratonovich solver; noise='sampling' is state dependent so the Ito and "
                "Stratonovich forms differ: use torchsde:euler, torchsde:milstein or torchsde:srk"
            )
    return None


__all__ = ["Grid", "check", "resolve", "known_methods", "NATIVE"]
