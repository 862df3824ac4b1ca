"""Package layout, measured from the code's own imports (function-level imports included):

- no import cycle between lesde's modules;
- the application layer on top: no module outside ``lesde/cli/`` imports ``lesde.cli`` or argparse;
- the presentation layer reads Datasets only: no module outside ``lesde/plots/`` and ``lesde/cli/`` imports
  ``lesde.plots`` or matplotlib (the shipped example scripts are applications and may), and ``lesde.plots``
  imports no other lesde package;
- no cross-package import of a private module (``lesde.x._y`` is imported only by ``lesde.x``'s own modules);
- one file name, one module: no two modules under ``lesde/`` share a file name (``__init__``, ``__main__`` and the
  examples aside);
- small modules and functions: no module over 400 lines, no function over 80 lines (docstring aside) unless its
  docstring says why (a paragraph starting "Long because");
- comments and docstrings say why the code is as it is, never which issue, session or round asked for it.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections import Counter
from pathlib import Path

import lesde

ROOT = Path(lesde.__file__).parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _imports(name: str, path: Path, is_pkg: bool) -> set[str]:
    """Every module name ``name`` imports anywhere in its body, absolute (``from . import x`` gives the package
    and the package's ``x``)."""
    package = name if is_pkg else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _graph() -> dict[str, set[str]]:
    """module -> the lesde modules it imports anywhere in its body (``from . import x`` counts as x)."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for name, (path, is_pkg) in mods.items():
        package = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _all_imports() -> dict[str, set[str]]:
    return {name: _imports(name, path, is_pkg) for name, (path, is_pkg) in _modules().items()}


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_checker_sees_function_level_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    graph = _graph()
    assert "lesde.metrics.kernels" in graph["lesde.separability"]  # a module-level import
    assert "lesde.sweep" in graph["lesde.cli.cmd_sweep"]  # a function-level import


def test_no_import_cycle():
    assert _cycles(_graph()) == [], "import cycles"


def test_only_the_application_layer_imports_the_cli_and_argparse():
    bad = {
        name: sorted(t for t in targets if _in(t, "lesde.cli") or _in(t, "argparse"))
        for name, targets in _all_imports().items()
        if not _in(name, "lesde.cli") and not _in(name, "lesde.examples")
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_only_presentation_and_applications_import_plots_and_matplotlib():
    free = ("lesde.plots", "lesde.cli", "lesde.examples")
    bad = {
        name: sorted(t for t in targets if _in(t, "lesde.plots") or _in(t, "matplotlib"))
        for name, targets in _all_imports().items()
        if not any(_in(name, p) for p in free)
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_plots_import_no_package_that_makes_their_datasets():
    bad = {
        name: sorted(t for t in targets if _in(t, "lesde") and not _in(t, "lesde.plots"))
        for name, targets in _all_imports().items()
        if _in(name, "lesde.plots")
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_no_cross_package_import_of_a_private_module():
    mods = _modules()
    bad = []
    for name, targets in _all_imports().items():
        path, is_pkg = mods[name]
        package = name if is_pkg else name.rpartition(".")[0]
        for t in targets:
            if t not in mods or not _in(t, "lesde"):
                continue
            private = [i for i, part in enumerate(t.split(".")) if part.startswith("_") and not part.startswith("__")]
            if private and ".".join(t.split(".")[: private[0]]) != package:
                bad.append((name, t))
    assert bad == []


def test_module_file_names_are_unique():
    names = Counter(
        p.name for p in ROOT.rglob("*.py") if p.name not in ("__init__.py", "__main__.py") and "examples" not in p.parts
    )
    assert {n: c for n, c in names.items() if c > 1} == {}


def test_no_module_over_400_lines():
    long = {
        str(p.relative_to(ROOT.parent)): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_long_functions_say_why():
    long = {}
    for p in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node) or ""
                body = node.body[1:] if doc else node.body
                n = node.end_lineno - body[0].lineno + 1 if body else 0
                if n > MAX_FUNCTION_LINES and "Long because" not in doc:
                    long[f"{p.relative_to(ROOT.parent)}:{node.name}"] = n
    assert long == {}


#: words that date a comment: the tracker's vocabulary and the history of the code
HISTORY = re.compile(r"\b(issues?|sessions?|tickets?|round \d+|since \d+\.\d+|used to be|no longer|formerly)\b", re.I)


def test_comments_and_docstrings_say_why_not_what_was_asked():
    found = []
    for p in ROOT.rglob("*.py"):
        text = p.read_text()
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT or (
                tok.type == tokenize.STRING and tok.string.lstrip("rbuRBU").startswith(('"""', "'''"))
            ):
                for m in HISTORY.finditer(tok.string):
                    found.append(f"{p.relative_to(ROOT.parent)}:{tok.start[0]}: {m.group(0)!r}")
    assert found == []
