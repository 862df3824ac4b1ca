"""Optional dependencies (extras): one import helper with a one-line message naming the extra to install.

``pip install -e .`` installs what the core and ``lesde demo`` need; the heavy optional parts are extras:
``dask`` (distributed sweeps), ``data`` (scikit-learn's digits, mnist1d), ``bench`` (jax, diffrax), ``docs``
(mkdocs-material, mkdocstrings), ``test`` (pytest and every extra the tests need).
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: the modules each extra provides (what :func:`require_extra` checks)
EXTRAS = {
    "dask": ("distributed",),
    "data": ("sklearn", "mnist1d"),
    "bench": ("jax", "diffrax", "lineax"),
    "docs": ("mkdocs", "mkdocstrings"),
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise `MissingExtra`: "<feature> needs <module> (pip install 'lesde[extra]')"."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(
            f"{feature} needs the optional package {module.split('.')[0]!r}, which is not installed: "
            f"pip install 'lesde[{extra}]' (or: pip install -e '.[{extra}]' in a checkout)"
        ) from e


def require_extra(extra: str, feature: str) -> None:
    """Check, before any work, that every module of ``extra`` imports (a script's first line: a run that needs the
    extra halfway through stops at once instead); raise `MissingExtra` naming the first missing one."""
    if extra not in EXTRAS:
        raise ValueError(f"extra={extra!r} is not one of lesde's extras; accepted: {', '.join(EXTRAS)}")
    for module in EXTRAS[extra]:
        require(module, extra, feature)
