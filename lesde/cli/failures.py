"""How a failure of a ``lesde`` command reaches the user: one line on stderr and an exit code.

2 for bad input (arguments, config files, input files, output paths, stores, a missing extra), 1 for a run that
failed (a numerical failure, failed sweep cells, a lost cluster, anything unexpected), 130 for an interrupt.
"""

from __future__ import annotations

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class UsageError(ValueError):
    """A bad argument found after parsing (exit code 2)."""


class CellsFailed(RuntimeError):
    """Some sweep cells failed (the store holds the others); exit code 1."""


def one_line(e: BaseException) -> str:
    """The exception's message on one line (a KeyError names the missing key)."""
    text = " ".join(str(e).split())
    if isinstance(e, KeyError) and e.args:  # KeyError's str is the repr of the key
        text = f"missing {e.args[0]!r}"
    return text or type(e).__name__


def exit_code(e: BaseException) -> int:
    """2 for bad input, 1 for a failed run (numerical failures and anything unexpected), 130 for an interrupt."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    from ..extras import MissingExtra

    bad_input = (ValueError, TypeError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                 MissingExtra)  # fmt: skip
    return EXIT_USAGE if isinstance(e, (*bad_input, MemoryError)) else EXIT_FAILED


def known(e: BaseException) -> bool:
    """Failures whose message says it all: lesde's own, and the standard families (no hint at --debug)."""
    builtin = (ValueError, TypeError, OSError, MemoryError, ArithmeticError)
    return isinstance(e, builtin) or type(e).__module__.split(".")[0] == "lesde"


__all__ = ["EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED", "UsageError", "CellsFailed", "one_line", "exit_code",
           "known"]  # fmt: skip
