"""Griffe extension: the reStructuredText idioms of lesde's numpydoc docstrings, rewritten as Markdown for
mkdocstrings (the docstrings stay what ``help()`` and Sphinx-style readers expect).

- ``:func:`~a.b.c```, ``:class:``, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``, ``:exc:`` -> a code span;
- ``:math:`x``` -> ``$x$`` and ``.. math::`` blocks -> ``$$ ... $$`` (pymdownx.arithmatex renders both);
- simple RST tables (``===  ===`` rules) -> Markdown tables;
- a paragraph ending in ``::`` (an RST literal block) -> ``:`` and a fenced block;
- a ``Returns`` section written as prose (no indented description) -> one unnamed entry with that description,
  and a parameter written ``name : prose.`` (the description where the type goes) -> the name and its
  description.

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
_SECTIONS = {"parameters", "other parameters", "returns", "yields", "receives", "raises", "warns", "attributes"}


def _is_header(lines: list[str], i: int) -> bool:
    """A numpydoc section header: a line underlined by dashes of its length."""
    return (
        i + 1 < len(lines)
        and bool(lines[i].strip())
        and set(lines[i + 1].strip()) == {"-"}
        and len(lines[i + 1].strip()) == len(lines[i].strip())
    )


def _prose_returns(lines: list[str]) -> list[str]:
    """Returns sections whose entries have no indented description become one unnamed entry (``:``)."""
    out, i = [], 0
    while i < len(lines):
        if _is_header(lines, i) and lines[i].strip().lower() in ("returns", "yields"):
            base = _indent(lines[i])
            j = i + 2
            while j < len(lines) and not _is_header(lines, j):
                j += 1
            body = lines[i + 2 : j]
            if body and all(_indent(x) <= base for x in body if x.strip()):
                tail = []
                while body and not body[-1].strip():
                    tail.append(body.pop())
                out += lines[i : i + 2] + [" " * base + ":"] + ["    " + x if x.strip() else x for x in body] + tail
                i = j
                continue
        out.append(lines[i])
        i += 1
    return out


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


_ENTRY = re.compile(r"^(\s*)([\w*, ]+?) : (.+)$")


def _prose_types(lines: list[str]) -> list[str]:
    """``name : some prose.`` with no indented description (the description written where the type goes)
    -> ``name`` with the prose as its description, in the parameter sections."""
    out, section = [], None
    for i, line in enumerate(lines):
        if _is_header(lines, i):
            section = line.strip().lower()
        m = _ENTRY.match(line)
        nxt = next((x for x in lines[i + 1 :] if x.strip()), "")
        if (
            m
            and section in ("parameters", "other parameters", "attributes")
            and _indent(nxt) <= len(m.group(1))
            and (m.group(3).rstrip().endswith(".") or ";" in m.group(3) or "``" in m.group(3))
        ):
            out += [m.group(1) + m.group(2), m.group(1) + "    " + m.group(3)]
            continue
        if m and section in _SECTIONS and "``" in m.group(3):  # a type is shown verbatim: no code markup in it
            line = f"{m.group(1)}{m.group(2)} : {m.group(3).replace('``', '')}"
        out.append(line)
    return out


def rst_to_markdown(text: str) -> str:
    lines = _prose_returns(_prose_types(text.splitlines()))
    out: list[str] = []
    section = None  # the numpydoc section the line is in (lower case), None before any
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if _is_header(lines, i):
            section = stripped.lower()
        if stripped.startswith(".. math::"):
            # inside an entry of a parameter-like section the block keeps the entry's indentation; in free text
            # (e.g. under an RST definition-list term) it goes to the margin, where arithmatex sees a block
            base = _indent(line) if section in _SECTIONS else 0
            first = stripped[len(".. math::") :].strip()
            body, i = _block(lines, i + 1, _indent(line))
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
