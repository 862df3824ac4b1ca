"""Griffe extension: the reStructuredText idioms of lesde's numpydoc docstrings, rewritten as Markdown for
mkdocstrings (the docstrings stay what ``help()`` and Sphinx-style readers expect).

- ``:func:`~a.b.c```, ``:class:``, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``, ``:exc:`` -> a code span;
- ``:math:`x``` -> ``$x$`` and ``.. math::`` blocks -> ``$$ ... $$`` (pymdownx.arithmatex renders both);
- simple RST tables (``===  ===`` rules) -> Markdown tables;
- a paragraph ending in ``::`` (an RST literal block) -> ``:`` and a fenced block.

No library does this conversion for griffe (mkdocstrings renders numpydoc sections, and the text inside them
as Markdown), hence these few regular expressions.
"""

from __future__ import annotations

import re
import textwrap

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj):`~?([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")
_RULE = re.compile(r"^( *)(=+)( +=+)+ *$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
    """The lines indented deeper than ``base`` from ``start`` (blank lines inside kept), and the next index."""
    out, i = [], start
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
        out.append(lines[i])
        i += 1
    while out and not out[-1].strip():
        out.pop()
        i -= 1
    return out, i


def _table(lines: list[str], start: int) -> tuple[list[str], int]:
    """A simple RST table from its first rule at ``start`` -> Markdown rows, and the index after it."""
    pad = " " * _indent(lines[start])
    rule = lines[start]
    cols = [(m.start(), m.end()) for m in re.finditer(r"=+", rule)]
    bounds = [(a, cols[j + 1][0] if j + 1 < len(cols) else None) for j, (a, _) in enumerate(cols)]
    rows, i, rules = [], start + 1, 1
    while i < len(lines) and rules < 3:
        line = lines[i]
        if _RULE.match(line):
            rules += 1
        elif line.strip():
            cells = [line[a:b].strip() if b else line[a:].strip() for a, b in bounds]
            if rows and not cells[0]:  # a continuation line of the previous row
                rows[-1] = [f"{p} {c}".strip() for p, c in zip(rows[-1], cells)]
            else:
                rows.append(cells)
        i += 1
    md = [pad + "| " + " | ".join(rows[0]) + " |", pad + "|" + " --- |" * len(cols)]
    md += [pad + "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows[1:]]
    return [""] + md + [""], i


def rst_to_markdown(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(".. math::"):
            base = _indent(line)
            first = stripped[len(".. math::") :].strip()
            body, i = _block(lines, i + 1, base)
            math = ([first] if first else []) + textwrap.dedent("\n".join(body)).strip("\n").splitlines()
            out += ["", " " * base + "$$", *(" " * base + m for m in math), " " * base + "$$", ""]
            continue
        if _RULE.match(line):
            md, i = _table(lines, i)
            out += md
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            base = _indent(line)
            body, j = _block(lines, i + 1, base)
            if body:
                out.append(line[:-2].rstrip() + (":" if not line[:-2].rstrip().endswith(":") else ""))
                code = textwrap.dedent("\n".join(body)).strip("\n").splitlines()
                out += ["", " " * base + "```text", *(" " * base + c for c in code), " " * base + "```", ""]
                i = j
                continue
        out.append(line)
        i += 1
    text = "\n".join(out)
    text = _MATH.sub(lambda m: "$" + m.group(1).strip() + "$", text)
    return _ROLE.sub(
        lambda m: f"`{m.group(1).split('.')[-1] if m.group(0).split('`')[1].startswith('~') else m.group(1)}`", text
    )


class RstToMarkdown(griffe.Extension):
    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
