"""What a ``lesde`` command prints besides its results: warnings as one line each, and what ``--quiet`` removes.

- Every Python warning raised while a command runs is one stderr line, ``lesde CMD: warning: <message>``: no
  library file path, no source line (``--debug`` keeps Python's own form, with both). ``--quiet`` never hides a
  warning.
- Every command that writes a file says so in a line of its own that starts with ``wrote `` (``wrote PATH``, maybe
  followed by what is in it). ``--quiet`` removes those lines (and the commands turn their progress bars off);
  tables, warnings and errors stay. The lines are dropped here, in one place, so every command, including
  one that prints its ``wrote`` line itself, follows the same rule.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from collections.abc import Iterator

from .failures import one_line

#: how every line a writing command prints about a file it wrote starts
WROTE = "wrote "
#: the help of every command's --quiet
QUIET = "no progress bars and no 'wrote FILE' lines (tables, warnings and errors are still printed)"


class _DropWrote(io.TextIOBase):
    """A text stream passing on every line except those starting with `WROTE` (complete lines only)."""

    def __init__(self, target):
        self.target = target
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if not line.startswith(WROTE):
                self.target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending and not self.pending.startswith(WROTE):
            self.target.write(self.pending)
            self.pending = ""
        self.target.flush()


@contextlib.contextmanager
def reporting(prefix: str, quiet: bool = False, debug: bool = False) -> Iterator[None]:
    """While a command runs: warnings as ``PREFIX: warning: ...`` lines (unless ``debug``), ``wrote`` lines dropped
    when ``quiet``."""
    with warnings.catch_warnings():
        # simulate's multi-line warning about an interrupted run: the command reports it in one line instead
        warnings.filterwarnings("ignore", message="simulate interrupted", category=UserWarning)
        if not debug:

            def show(message, category, filename, lineno, file=None, line=None):
                print(f"{prefix}: warning: {one_line(message)}", file=sys.stderr)

            warnings.showwarning = show
        if not quiet:
            yield
            return
        stream = _DropWrote(sys.stdout)
        try:
            with contextlib.redirect_stdout(stream):
                yield
        finally:
            stream.flush()


__all__ = ["reporting", "WROTE", "QUIET"]
