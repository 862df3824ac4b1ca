"""Light installs: `import lesde` loads only the core, and a missing extra is one line naming the extra."""

import subprocess
import sys

import pytest

import lesde
from lesde import _extras, cli


def test_import_lesde_loads_only_the_core():
    code = (
        "import sys, lesde; heavy = ['xarray', 'pandas', 'sklearn', 'mnist1d', 'distributed', 'matplotlib', "
        "'jax', 'diffrax', 'zarr']; print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_version_is_the_distributions():
    import importlib.metadata

    assert lesde.__version__ == importlib.metadata.version("lesde")


def _missing(monkeypatch, name):
    real = _extras.importlib.import_module

    def fake(module, *a, **k):
        if module.split(".")[0] == name:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(module, *a, **k)

    monkeypatch.setattr(_extras.importlib, "import_module", fake)


def test_a_missing_extra_names_it(monkeypatch):
    _missing(monkeypatch, "sklearn")
    with pytest.raises(_extras.MissingExtra, match=r"pip install 'lesde\[data\]'"):
        lesde.empirical.load_dataset("digits", classes=3)


def test_a_missing_extra_on_the_command_line_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    _missing(monkeypatch, "mnist1d")
    lesde.empirical.data._mnist1d.cache_clear()  # an earlier test's generated set would hide the missing package
    code = cli.main(["estimate", "--dataset", "mnist1d", "--steps", "5", "--out", str(tmp_path / "e.nc")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "lesde[data]" in err[0] and "Traceback" not in err[0]
