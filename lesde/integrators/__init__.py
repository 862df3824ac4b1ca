"""Integrators: one small module per method, one registry line each (no if/elif chains over method names).

Every method implements the protocol of `lesde.integrators.protocol.Integrator` (name, orders, ``check``,
``memory``, ``plan``, ``integrate``). `lesde.simulate` looks a method up with `get`, calls its
``check`` before any work and never branches on the name. Adding a method means one module, one line in
`REGISTRY` and one row in ``tests/test_correctness.py``.

```pycon
>>> from lesde.integrators import get
>>> get("euler").strong_order, get("torchsde:srk").strong_order
(1.0, 1.5)

```
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
    """Add ``integrator`` to `REGISTRY` under its ``name``, after `
    check_contract`; ``lesde.simulate(..., method=integrator.name)`` then runs it. A name already registered is
    refused unless ``replace``. Returns the integrator."""
    check_contract(integrator)
    if integrator.name in REGISTRY and not replace:
        raise ValueError(f"an integrator named {integrator.name!r} is registered already; pass replace=True")
    REGISTRY[integrator.name] = integrator
    return integrator


def known_methods() -> list[str]:
    """Every method name `lesde.simulate` accepts."""
    return list(REGISTRY)


#: what each built-in method is and which models it takes, for ``lesde methods`` (a registered method without an
#: entry is described by the first line of its class docstring)
_SUMMARIES = {
    "euler": "native Euler-Maruyama; every LE-SDE (any transform, schedule, noise; strong order 0.5 with "
    "noise='sampling') and any torchsde-contract module",
    "exact": "exact Gaussian transitions of the class means; LE-SDE with a fixed transform and sample-independent "
    "noise (not noise='sampling', no bm=)",
    "torchsde:euler": "torchsde's Euler-Maruyama (Ito); also noise='sampling' (strong order 0.5 there)",
    "torchsde:milstein": "torchsde's Milstein (Ito); refuses noise='sampling'",
    "torchsde:srk": "torchsde's stochastic Runge-Kutta (Ito, space-time Levy area); refuses noise='sampling'",
}
#: torchsde's Stratonovich solvers: run on the LE-SDE's Stratonovich form, the same SDE for its additive noise
_STRATONOVICH = (
    "torchsde's {solver} (Stratonovich; the same SDE for the LE-SDE's additive noise); refuses noise='sampling'"
)


def describe(method: str) -> str:
    """One line about ``method``: its strong and weak orders and what it is and takes (``lesde methods``).

    ```pycon
    >>> from lesde.integrators import describe
    >>> describe("euler").split(";")[0]
    'strong order 1, weak order 1'

    ```
    """
    integrator = get(method)
    if integrator.strong_order is None and integrator.weak_order is None:
        orders = "exact in law at the save times (no step error)"
    else:
        orders = ", ".join(f"{kind} order {'-' if v is None else f'{v:g}'}"
                           for kind, v in (("strong", integrator.strong_order), ("weak", integrator.weak_order)))  # fmt: skip
    what = _SUMMARIES.get(method)
    if what is None and isinstance(integrator, TorchsdeMethod):
        what = _STRATONOVICH.format(solver=integrator.solver.replace("_", "-"))
    if what is None:
        doc = (type(integrator).__doc__ or "").strip()
        what = doc.splitlines()[0] if doc else type(integrator).__name__
    return f"{orders}; {what}"


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
    "describe",
    "torchsde_methods",
]
