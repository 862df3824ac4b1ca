"""The API reference states what the code does: every parameter table row names a parameter of the signature,
and its default is the signature's (the rendered pages and the docstrings griffe reads, checked both ways).

- The fast check loads every object an API page renders (``::: path`` and its ``members`` option) with griffe,
  parses its docstring the way mkdocstrings does (numpy style) and compares each parameter row with the
  signature.
- The site check builds the site once (``mkdocs build --strict``, a few seconds) into a temporary folder and
  reads the parameter tables of the rendered API pages, so that what a reader sees is what is compared.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe")
yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
API = REPO / "docs" / "api"
DIRECTIVE = re.compile(r"^::: ([\w.]+)\n((?:    .*\n|\n)*)", re.M)
PARAMETER_SECTIONS = {"parameters", "other_parameters"}


def _directives() -> list[tuple[str, str, dict]]:
    """(page, object path, options) of every ``:::`` directive on the API pages."""
    out = []
    for page in sorted(API.glob("*.md")):
        for m in DIRECTIVE.finditer(page.read_text()):
            block = yaml.safe_load(m.group(2)) if m.group(2).strip() else None
            out.append((page.name, m.group(1), (block or {}).get("options") or {}))
    return out


def _package():
    return griffe.load("lesde", search_paths=[str(REPO)], docstring_parser="numpy", resolve_aliases=False)


def _get(package, path: str):
    obj = package
    for part in path.split(".")[1:]:
        obj = obj.members[part]
    return obj.final_target if obj.is_alias else obj


def _rendered(obj, members) -> list:
    """The object and the members mkdocstrings renders under it (public, with a docstring; no submodules)."""
    out = [obj]
    if members is False or obj.kind.value not in ("module", "class"):
        return out
    for name, member in obj.members.items():
        if name.startswith("_") or (isinstance(members, list) and name not in members):
            continue
        if member.is_alias or member.kind.value == "module" or member.docstring is None:
            continue
        out += _rendered(member, None)
    return out


def _signature(obj) -> dict[str, str] | None:
    """Parameter name -> its default as a string ("required" when none); None for objects without one."""
    if obj.kind.value not in ("function", "class"):
        return None
    try:
        params = obj.parameters
    except Exception:  # a class without __init__
        return None
    return {p.name: "required" if p.default is None else str(p.default) for p in params}


def _api_objects():
    package = _package()
    seen = {}
    for page, path, options in _directives():
        for obj in _rendered(_get(package, path), options.get("members")):
            seen.setdefault(obj.path, (page, obj))
    return list(seen.values())


def _mismatches_in_docstrings() -> tuple[list[str], int, set[str]]:
    bad, rows, names = [], 0, set()
    for page, obj in _api_objects():
        names.add(obj.path)
        signature = _signature(obj)
        if obj.docstring is None or signature is None:
            continue
        for section in obj.docstring.parse("numpy"):
            if section.kind.value not in PARAMETER_SECTIONS:
                continue
            for param in section.value:
                rows += 1
                name = param.name.lstrip("*")
                if name not in signature:
                    bad.append(f"{page}: {obj.path}: {param.name} is not a parameter of the signature")
                    continue
                shown = "required" if param.value is None else str(param.value)
                if shown != signature[name]:
                    bad.append(f"{page}: {obj.path}({name}=...) shows {shown!r}, the signature has {signature[name]!r}")
    return bad, rows, names


def test_every_parameter_row_names_a_parameter_and_states_its_default():
    bad, rows, _ = _mismatches_in_docstrings()
    assert rows > 200, rows  # the check saw the API's tables
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad)


def test_the_documented_objects_include_what_users_reach_for():
    _, _, names = _mismatches_in_docstrings()
    wanted = {
        "lesde.model.LESDE.on",
        "lesde.model.LESDE.to_spec",
        "lesde.simulate.simulate",
        "lesde.empirical.tracks.tracker.Tracker",
        "lesde.metrics.kernels.METRIC_NAMES",
        "lesde.sweep.locking.StoreBusy",
    }
    found = {w for w in wanted if w in names or any(n.endswith("." + w.rsplit(".", 1)[1]) for n in names)}
    assert found == wanted, wanted - found


# ------------------------------------------------------------------ the built site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists():
        pytest.skip("mkdocs is not installed (the docs extra)")
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out


ANCHOR = re.compile(r'<h[1-6] id="(lesde\.[\w.]+)"')
TABLE = re.compile(r'doc-section-title">(Parameters|Other Parameters):</span></p>\s*<table>(.*?)</table>', re.S)
ROW = re.compile(r"<tr class=\"doc-section-item\">(.*?)</tr>", re.S)
CELL = re.compile(r"<td>(.*?)</td>", re.S)


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())


def _plain(default: str) -> str:
    """A default as the page shows it: one kind of quote, names without their module (``float32``)."""
    return re.sub(r"\b[A-Za-z_]\w*\.(?=[A-Za-z_])", "", default.replace("'", '"'))


def test_the_rendered_parameter_tables_match_the_signatures(site):
    package = _package()
    bad, rows = [], 0
    for page in sorted((site / "api").glob("*/index.html")):
        text = page.read_text()
        anchors = [(m.start(), m.group(1)) for m in ANCHOR.finditer(text)]
        for table in TABLE.finditer(text):
            owner = max((a for a in anchors if a[0] < table.start()), default=(0, None))[1]
            assert owner, f"{page}: a parameter table under no object"
            obj = _get(package, owner)
            signature = _signature(obj)
            assert signature is not None, f"{page}: {owner} has a parameter table but no signature"
            for row in ROW.finditer(table.group(2)):
                cells = [_text(c) for c in CELL.findall(row.group(1))]
                name, default = cells[0].lstrip("*"), cells[-1]
                rows += 1
                if name not in signature:
                    bad.append(f"{page.parent.name}: {owner}: {name} is not a parameter of the signature")
                elif _plain(default) != _plain(signature[name]):
                    bad.append(
                        f"{page.parent.name}: {owner}({name}=...) shows {default!r}, signature {signature[name]!r}"
                    )
    assert rows > 200, rows
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad)


def test_lesde_on_is_on_the_lesde_page(site):
    text = (site / "api" / "model" / "index.html").read_text()
    assert 'id="lesde.model.LESDE.on"' in text


def test_no_example_renders_as_a_blockquote(site):
    hits = []
    for page in site.rglob("*.html"):
        for quote in re.findall(r"<blockquote>(.*?)</blockquote>", page.read_text(), re.S):
            if "&gt;&gt;&gt;" in quote or ">>>" in quote:
                hits.append(str(page.relative_to(site)))
    assert not hits, hits


def test_no_page_loads_anything_from_the_internet(site):
    remote = re.compile(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="(?:https?:)?//', re.I)
    hits = [str(p.relative_to(site)) for p in site.rglob("*.html") if remote.search(p.read_text())]
    assert not hits, hits


def test_no_rest_markup_is_left_on_the_api_pages(site):
    leftovers = re.compile(r":(?:func|class|meth|mod|math|attr|data|exc):`|\.\. (?:math|code-block)::")
    hits = [
        f"{p.parent.name}: {m.group(0)}"
        for p in (site / "api").glob("*/index.html")
        for m in leftovers.finditer(p.read_text())
    ]
    assert not hits, hits


def test_no_formula_in_prose_renders_as_emphasis(site):
    """``K*m`` or ``x_{i}`` in plain prose would be Markdown emphasis (or attributes): formulas go in code or math."""
    bad = []
    for page in (site / "api").glob("*/index.html"):
        for m in re.finditer(r"<em(?: [^>]*)?>([^<]*)</em>|<em [^>]*>", page.read_text()):
            if m.group(0).startswith("<em ") or re.search(r"[,=()^{}]", m.group(1) or ""):
                bad.append(f"{page.parent.name}: {m.group(0)[:80]}")
    assert not bad, bad
