"""lesde: a stochastic-dynamics engine for locally elastic SDEs (LE-SDE).

The package follows the data: ``schedules``, ``transforms`` and ``noise`` specify a model (``model.LESDE``),
``integrators`` step it, ``simulate`` turns trajectories into xarray Datasets, ``metrics`` and ``separability``
analyse them, ``sgd``, ``empirical`` and ``sweep`` build the larger workflows, ``theory`` sets predictions beside
them, ``plots`` draws them and ``cli`` (the ``lesde`` command) is the application on top.
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
    "config",
    "examples",
    "theory",
}


def __getattr__(name: str):
    # lazy imports keep `import lesde` fast and let each stage import only what it needs; the command line
    # (lesde.cli) is not among them: it is an application on top, imported by name where it is wanted
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lesde' has no attribute {name!r}")


# The two names every user meets, imported eagerly (this also makes `lesde.simulate` the function, not the
# module of the same name).
from .model import LESDE  # noqa: E402
from .simulate import SimulationOverflowError, simulate  # noqa: E402

__all__ = ["LESDE", "simulate", "SimulationOverflowError", *sorted(_SUBMODULES)]
