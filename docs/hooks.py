"""mkdocs hook: each jupytext percent script under docs/tutorials/ becomes a page (markdown cells as text, code
cells as Python blocks); the script itself stays on the site for download. Written here because the page must
be the script the tests run, with no generated copy to drift from it."""

from __future__ import annotations

from pathlib import Path

import jupytext
from mkdocs.structure.files import File


def script_to_markdown(text: str, name: str) -> str:
    """A jupytext percent script -> a markdown page: its markdown cells, and its code cells as ```python."""
    notebook = jupytext.reads(text, fmt="py:percent")
    parts = []
    for i, cell in enumerate(notebook.cells):
        source = cell.source.strip()
        if not source:
            continue
        if cell.cell_type == "markdown":
            parts.append(source)
            if i == 0:  # after the title
                parts.append(f"[Download the script]({name}) (run it with `python {name}`).")
        else:
            parts.append(f"```python\n{source}\n```")
    return "\n\n".join(parts) + "\n"


def on_files(files, config):
    for file in list(files):
        path = Path(file.src_uri)
        if path.parent.as_posix() == "tutorials" and path.suffix == ".py":
            text = Path(file.abs_src_path).read_text(encoding="utf-8")
            page = File.generated(config, f"tutorials/{path.stem}.md", content=script_to_markdown(text, path.name))
            files.append(page)
    return files
