"""The examples that ship with lesde: TOML configs for the config-driven commands and runnable scripts.

They are package data (read with `importlib.resources`), so an installed lesde has them wherever it runs:

```bash
lesde example list                        # name and one line about each
lesde example copy phase_diagram.toml .   # then: lesde sweep phase_diagram.toml --store phase.zarr
```

From Python, `copy` writes an example into a folder and `path` gives a readable path to the
packaged file (for `lesde.sweep.run` or `lesde.config.load_toml`).

Examples
--------
>>> import lesde.examples
>>> "phase_diagram.toml" in lesde.examples.names()
True
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import re
import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from ..atomic_write import atomic_path
from ..validation import check_bool, check_path

__all__ = ["names", "describe", "path", "copy", "UnknownExample", "ExampleExists"]

_SUFFIXES = (".toml", ".py")


class UnknownExample(ValueError):
    """NAME is not one of the shipped examples; the message lists the names."""


class ExampleExists(FileExistsError, ValueError):
    """The target file exists and ``force`` is off (bad input: exit code 2 on the command line)."""


def _files() -> dict[str, resources.abc.Traversable]:
    root = resources.files(__name__)
    return {f.name: f for f in root.iterdir() if f.name.endswith(_SUFFIXES) and not f.name.startswith("_")}


def names() -> list[str]:
    """The shipped examples' file names, sorted (``compare_sgd.toml``, ..., ``sgd_vs_sde.py``)."""
    return sorted(_files())


def _resolve(name: str) -> str:
    """A file name or its stem (``phase_diagram`` means ``phase_diagram.toml``) -> the file name."""
    files = _files()
    if name in files:
        return name
    matches = [f for f in files if Path(f).stem == name]
    if len(matches) == 1:
        return matches[0]
    raise UnknownExample(f"no example named {name!r}; the examples are: {', '.join(sorted(files))}")


def describe(name: str) -> str:
    """One line about an example: the first sentence of a script's docstring or of a config's first comment."""
    file = _resolve(name)
    text = _files()[file].read_text(encoding="utf-8")
    if file.endswith(".py"):
        lines = (ast.get_docstring(ast.parse(text)) or "").strip().splitlines()
    else:
        lines = [
            line.lstrip("#").strip() for line in itertools.takewhile(lambda x: x.startswith("#"), text.splitlines())
        ]
    paragraph = " ".join(itertools.takewhile(bool, (line.strip() for line in lines)))
    return re.split(r"(?<=\.)\s", paragraph, maxsplit=1)[0].rstrip(":")


@contextlib.contextmanager
def path(name: str) -> Iterator[Path]:
    """A context manager giving a file-system path to the packaged example (a temporary copy from a zip)."""
    with resources.as_file(_files()[_resolve(name)]) as p:
        yield Path(p)


def copy(name: str, dest: str | Path = ".", force: bool = False) -> Path:
    """Copy an example into the folder ``dest`` (created if missing) or to the file path ``dest``.

    Parameters
    ----------
    name : str
        An example's file name (see `names`) or its stem.
    dest : str or Path
        A folder (the file keeps its name) or, when it ends in the example's suffix, the target file.
    force : bool
        Overwrite an existing file; without it an existing target raises `ExampleExists`.

    Returns
    -------
    Path
        The written file.
    """
    file = _resolve(name)
    dest = check_path("dest", dest, ".")
    force = check_bool("force", force)
    target = dest if dest.suffix == Path(file).suffix and not dest.is_dir() else dest / file
    if target.exists() and not force:
        raise ExampleExists(f"{target} exists; pass --force (force=True) to overwrite it")
    if target.parent.exists() and not target.parent.is_dir():
        raise NotADirectoryError(
            f"dest={str(dest)!r} is a file, not a folder; give a folder or a file name ending in {Path(file).suffix}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with path(file) as src, atomic_path(target) as tmp:
        shutil.copyfile(src, tmp)
    return target
