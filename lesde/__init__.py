"""lesde: a stochastic-dynamics engine for locally elastic SDEs (LE-SDE).

The package follows the data: ``schedules``, ``transforms`` and ``noise`` specify a model (``model.LESDE``),
``integrators`` step it, ``simulate`` turns trajectories into xarray Datasets, ``metrics`` and ``separability``
analyse them, ``sgd``, ``empirical`` and ``sweep`` build the larger workflows, ``theory`` sets predictions beside
them, ``plots`` draws them and ``cli`` (the ``lesde`` command) is the application on top.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import signal
import sys


def _interrupted_at_start_up(signum, frame) -> None:
    # exit at once: nothing has been read or written yet, and a KeyboardInterrupt raised inside torch's or xarray's
    # imports would end in a traceback before the command's own handler exists
    print("lesde: interrupted while starting", file=sys.stderr, flush=True)
    os._exit(130)


def _is_the_command() -> bool:
    """Whether this process is the ``lesde`` command (its entry script, or ``python -m lesde.cli``) importing lesde."""
    if sys.argv[:1] == ["-m"]:  # argv[0] while ``python -m`` imports the packages of the module it runs
        return any(a in ("lesde.cli", "lesde.cli.__main__", "-mlesde.cli") for a in getattr(sys, "orig_argv", ()))
    return bool(sys.argv) and os.path.basename(sys.argv[0]) in ("lesde", "lesde.exe")


# Ctrl-C while the command starts (the imports of torch and xarray take seconds) exits 130 with one line; the
# command's main restores Python's handler once it can report an interrupt itself. A library import is untouched.
if _is_the_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_at_start_up)

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
