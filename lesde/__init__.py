"""lesde: a stochastic-dynamics engine for locally elastic SDEs (LE-SDE).

The package follows the data: ``schedules`` and ``transforms`` specify a model (``model.LESDE``), ``integrators``
step it, ``simulate`` turns trajectories into xarray Datasets, ``metrics`` / ``separability`` / ``ufm`` analyse
them, ``sgd``, ``empirical`` and ``sweep`` build the larger workflows, ``plots`` and ``cli`` present them.
"""

from __future__ import annotations

import importlib
import importlib.metadata

try:
    __version__ = importlib.metadata.version("lesde")  # one source: the installed distribution's metadata
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree not installed
    __version__ = "0.0.0+unknown"

_SUBMODULES = {
    "schedules",
    "transforms",
    "integrators",
    "metrics",
    "separability",
    "sgd",
    "empirical",
    "sweep",
    "plots",
    "cli",
    "config",
    "examples",
    "theory",
}


def __getattr__(name: str):
    # lazy imports keep `import lesde` fast and let each stage import only what it needs
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lesde' has no attribute {name!r}")


# The two names every user meets, imported eagerly (this also makes `lesde.simulate` the function, not the
# module of the same name).
from .model import LESDE  # noqa: E402
from .simulate import SimulationOverflowError, simulate  # noqa: E402

__all__ = ["LESDE", "simulate", "SimulationOverflowError", *sorted(_SUBMODULES)]
