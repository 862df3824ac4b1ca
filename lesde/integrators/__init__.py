"""Integrators: one small module per method, one registry line each (no if/elif chains over method names).

Every method implements the protocol of :class:`lesde.integrators.protocol.Integrator` (name, orders, ``check``,
``memory``, ``plan``, ``integrate``). :func:`lesde.simulate` looks a method up with :func:`get`, calls its
``check`` before any work and never branches on the name. Adding a method means one module, one line in
:data:`REGISTRY` and one row in ``tests/test_correctness.py``.

>>> from lesde.integrators import get
>>> get("euler").strong_order, get("torchsde:srk").strong_order
(1.0, 1.5)
"""

from __future__ import annotations

import difflib

from .euler import Euler
from .exact import Exact
from .protocol import MAX_STEPS, Grid, Integrator, Memory, check_contract
from .seeding import PATH_BLOCK
from .torchsde_method import TorchsdeMethod, torchsde_methods

REGISTRY: dict[str, Integrator] = {
    "euler": Euler(),
    "exact": Exact(),
    **{f"torchsde:{name}": TorchsdeMethod(name) for name in torchsde_methods()},
}
for _method in REGISTRY.values():
    check_contract(_method)


def register(integrator: Integrator, replace: bool = False) -> Integrator:
    """Add ``integrator`` to :data:`REGISTRY` under its ``name``, after :func:`~lesde.integrators.protocol.
    check_contract`; ``lesde.simulate(..., method=integrator.name)`` then runs it. A name already registered is
    refused unless ``replace``. Returns the integrator."""
    check_contract(integrator)
    if integrator.name in REGISTRY and not replace:
        raise ValueError(f"an integrator named {integrator.name!r} is registered already; pass replace=True")
    REGISTRY[integrator.name] = integrator
    return integrator


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


__all__ = [
    "Grid",
    "Integrator",
    "Memory",
    "REGISTRY",
    "MAX_STEPS",
    "PATH_BLOCK",
    "get",
    "register",
    "check_contract",
    "check",
    "known_methods",
    "torchsde_methods",
]
