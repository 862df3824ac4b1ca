"""Integrators: one small module per method, one registry line each (no if/elif chains over method names).

Every method implements the protocol of :class:`lesde.integrators._base.Integrator` (name, orders, ``check``,
``memory``, ``plan``, ``integrate``). :func:`lesde.simulate` looks a method up with :func:`get`, calls its
``check`` before any work and never branches on the name. Adding a method means one module, one line in
:data:`REGISTRY` and one row in ``tests/test_correctness.py``.

>>> from lesde.integrators import get
>>> get("euler").strong_order, get("torchsde:srk").strong_order
(1.0, 1.5)
"""

from __future__ import annotations

import difflib

from ._base import MAX_STEPS, Grid, Integrator, Memory
from ._rng import PATH_BLOCK
from .euler import Euler
from .exact import Exact
from .torchsde_method import TorchsdeMethod, torchsde_methods

REGISTRY: dict[str, Integrator] = {
    "euler": Euler(),
    "exact": Exact(),
    **{f"torchsde:{name}": TorchsdeMethod(name) for name in torchsde_methods()},
}


def known_methods() -> list[str]:
    """Every method name :func:`lesde.simulate` accepts."""
    return list(REGISTRY)


def get(method: str) -> Integrator:
    """The integrator registered as ``method``; a ValueError lists the known names (and the nearest one)."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a string; accepted: {', '.join(REGISTRY)}")
    if method in REGISTRY:
        return REGISTRY[method]
    hint = ""
    if f"torchsde:{method}" in REGISTRY:
        hint = f" (did you mean 'torchsde:{method}'?)"
    else:
        close = difflib.get_close_matches(method, list(REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"method={method!r} is not known{hint}; accepted: {', '.join(REGISTRY)}")


def check(method: str, model, **options) -> str | None:
    """Why ``method`` cannot integrate ``model`` (a one-line reason), or None when it can.

    Raises ValueError only for a method name that is not known. Sweeps use this for ``method="auto"``.
    """
    return get(method).check(model, **options)


def resolve(method: str):
    """Backward-compatible alias of :func:`get` returning ``(integrator, {})``."""
    return get(method), {}


#: the native methods (kept for backward compatibility)
NATIVE = {name: REGISTRY[name] for name in ("euler", "exact")}

__all__ = [
    "Grid",
    "Integrator",
    "Memory",
    "REGISTRY",
    "NATIVE",
    "MAX_STEPS",
    "PATH_BLOCK",
    "get",
    "check",
    "resolve",
    "known_methods",
    "torchsde_methods",
]
