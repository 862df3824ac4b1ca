"""mkdocs hook: pages made from what the tests run, so that no generated copy can drift from it.

- Each jupytext percent script under docs/tutorials/ becomes a page (markdown cells as text, code cells as Python
  blocks); the script itself stays on the site for download.
- ``cli.md``, the command-line reference, is written from the ``lesde`` parser itself (every command, argument and
  default as ``lesde CMD --help`` states them).
"""

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


def _argument_row(action) -> str | None:
    """One table row for an argparse action: the flags (or the positional's name), its default, its help."""
    import argparse

    if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
        return None
    name = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.option_strings and action.nargs != 0 and action.metavar is not None:
        name += f" `{action.metavar}`"
    elif action.option_strings and action.nargs != 0 and action.choices:
        name += " `{" + ",".join(map(str, action.choices)) + "}`"
    if action.required or not action.option_strings:
        default = "required"
    elif action.default in (None, argparse.SUPPRESS) or isinstance(action, argparse._StoreTrueAction):
        default = ""
    else:
        default = f"`{action.default}`"
    text = " ".join((action.help or "").split()).replace("|", "\\|")
    if action.choices and not action.option_strings:
        text += " (one of: " + ", ".join(f"`{c}`" for c in action.choices) + ")"
    return f"| {name} | {default} | {text} |"


def _command_section(name: str, parser, level: int = 2) -> list[str]:
    import argparse

    out = [f"{'#' * level} `{parser.prog}`", "", " ".join((parser.description or "").split()), ""]
    out += ["```text", parser.format_usage().strip(), "```", ""]
    rows = [r for r in map(_argument_row, parser._actions) if r]
    if rows:
        out += ["| argument | default | what it does |", "| --- | --- | --- |", *rows, ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                out += _command_section(sub_name, sub, level + 1)
    return out


def cli_reference_markdown() -> str:
    """The command-line reference page, from ``lesde.cli.build_parser()``."""
    import argparse

    from lesde.cli import build_parser

    parser = build_parser()
    lines = [
        "# Command-line reference",
        "",
        "Every `lesde` command, argument and default, generated from the parser the command runs (what "
        "`lesde CMD --help` prints). A failure is one line on stderr with exit code 2 (bad input), 1 (a failed "
        "run) or 130 (interrupted); `--debug` shows the traceback.",
        "",
        "```text",
        parser.format_usage().strip(),
        "```",
        "",
    ]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                lines += _command_section(name, sub)
    return "\n".join(lines) + "\n"


def on_files(files, config):
    files.append(File.generated(config, "cli.md", content=cli_reference_markdown()))
    for file in list(files):
        path = Path(file.src_uri)
        if path.parent.as_posix() == "tutorials" and path.suffix == ".py":
            text = Path(file.abs_src_path).read_text(encoding="utf-8")
            page = File.generated(config, f"tutorials/{path.stem}.md", content=script_to_markdown(text, path.name))
            files.append(page)
    return files
