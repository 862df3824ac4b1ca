"""Every ``>>>`` example in lesde's docstrings runs as shown: with only the imports it states (an empty namespace,
not the module's), in a temporary folder, under ELLIPSIS and NORMALIZE_WHITESPACE. The examples are small by
design (the whole set takes seconds); ``lesde.examples``' scripts and ``__main__`` modules are not imported
(tests/test_examples_import.py checks that importing them runs nothing)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import lesde

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules() -> list[str]:
    names = ["lesde"]
    for info in pkgutil.walk_packages(lesde.__path__, "lesde."):
        if info.name.startswith("lesde.examples.") or info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


def _tests():
    out = []
    for name in _modules():
        module = importlib.import_module(name)
        for test in doctest.DocTestFinder(exclude_empty=True).find(module, name, globs={}):
            if test.examples and test.name not in {t.name for t in out}:
                out.append(test)
    return out


TESTS = _tests()


def test_the_public_api_has_examples():
    assert sum(len(t.examples) for t in TESTS) >= 100


@pytest.mark.parametrize("test", TESTS, ids=[t.name for t in TESTS])
def test_docstring_example_runs_as_shown(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    monkeypatch.setenv("MPLBACKEND", "Agg")
    report = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)
