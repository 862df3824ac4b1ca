"""mkdocs hook: pages made from what the tests run, so that no generated copy can drift from it.

- Each jupytext percent script under docs/tutorials/ becomes a page (markdown cells as text, code cells as Python
  blocks); the script itself stays on the site for download.
- ``cli.md``, the command-line reference, is written from the ``lesde`` parser itself (every command, argument and
  default as ``lesde CMD --help`` states them).
- A tutorial's code cells are followed by what they printed, when ``docs/tutorials/outputs/NAME.json`` holds it
  (``python docs/capture_outputs.py NAME`` writes it), labelled as captured, with the run's date and machine.
- The version (``importlib.metadata``) and the license go in every page's footer; ``{{ lesde_version }}`` in a
  page is replaced by the version; the integrator table of "Choosing an integrator" is written from
  ``lesde.integrators.describe``.
"""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
from mkdocs.structure.files import File


def script_to_markdown(text: str, name: str, captured: dict | None = None) -> str:
    """A jupytext percent script -> a markdown page: its markdown cells, and its code cells as ```python, each
    followed by what it printed in ``captured`` (``docs/capture_outputs.py``'s record), labelled as captured."""
    notebook = jupytext.reads(text, fmt="py:percent")
    outputs = list(captured["outputs"]) if captured else []
    parts, code_index = [], -1
    for i, cell in enumerate(notebook.cells):
        source = cell.source.strip()
        if cell.cell_type == "code":
            code_index += 1
        if not source:
            continue
        if cell.cell_type == "markdown":
            parts.append(source)
            if i == 0:  # after the title
                parts.append(f"[Download the script]({name}) (run it with `python {name}`).")
                if captured:
                    size = "tiny (`LESDE_TUTORIAL_TINY=1`)" if captured["tiny"] else "full-size"
                    parts.append(
                        f"The outputs under the code cells were captured from the {size} run of this script on "
                        f"{captured['date']} ({captured['machine']}; {captured['seconds']:g} s in all), not re-run "
                        "when this site was built; progress bars are left out."
                    )
        else:
            parts.append(f"```python\n{source}\n```")
            output = outputs[code_index] if code_index < len(outputs) else ""
            if output.strip():
                parts.append(f"Output (captured):\n\n```text\n{output}\n```")
    return "\n\n".join(parts) + "\n"


def lesde_version() -> str:
    """The installed lesde's version (importlib.metadata), or pyproject.toml's when lesde is not installed."""
    import importlib.metadata

    try:
        return importlib.metadata.version("lesde")
    except importlib.metadata.PackageNotFoundError:
        import tomllib

        root = Path(__file__).resolve().parents[1]
        return tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]


def methods_table() -> str:
    """The integration methods, each with what ``lesde.integrators.describe`` says of it."""
    from lesde.integrators import describe, known_methods

    rows = ["| method | orders; what it is; what it supports |", "| --- | --- |"]
    rows += [f"| `{m}` | {describe(m).replace('|', '/')} |" for m in known_methods()]
    return "\n".join(rows)


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


def on_config(config):
    version = lesde_version()
    config["copyright"] = f"lesde {version} &middot; MIT License"
    config["extra"]["lesde_version"] = version
    return config


def on_page_markdown(markdown, page, config, files):
    markdown = markdown.replace("{{ lesde_version }}", config["extra"]["lesde_version"])
    if "<!-- lesde-methods-table -->" in markdown:
        markdown = markdown.replace("<!-- lesde-methods-table -->", methods_table())
    return markdown


def on_files(files, config):
    files.append(File.generated(config, "cli.md", content=cli_reference_markdown()))
    for file in list(files):
        path = Path(file.src_uri)
        if path.parent.as_posix() == "tutorials" and path.suffix == ".py":
            text = Path(file.abs_src_path).read_text(encoding="utf-8")
            record = Path(file.abs_src_path).parent / "outputs" / f"{path.stem}.json"
            captured = json.loads(record.read_text()) if record.is_file() else None
            page = File.generated(
                config, f"tutorials/{path.stem}.md", content=script_to_markdown(text, path.name, captured)
            )
            files.append(page)
    return files
