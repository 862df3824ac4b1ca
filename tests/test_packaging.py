"""Light installs: `import lesde` loads only the core, and a missing extra is one line naming the extra."""

import subprocess
import sys

import pytest

import lesde
from lesde import cli
from lesde import extras as _extras


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


def test_a_sweep_on_dask_without_the_extra_fails_before_any_work(monkeypatch, tmp_path):
    _missing(monkeypatch, "distributed")
    spec = tmp_path / "s.toml"
    spec.write_text(
        "[model]\nnum_classes = 2\ndim = 2\nsamples_per_class = 4\n"
        'alpha = { kind = "PowerLaw", scale = 1.0, exponent = 1.0 }\n'
        "[simulate]\nt_end = 1.0\ndt = 0.5\nn_paths = 4\n"
        "[grid]\n'model.alpha.exponent' = [0.5, 1.5]\n"
    )
    with pytest.raises(_extras.MissingExtra, match=r"lesde\[dask\]"):
        lesde.sweep.run(spec, tmp_path / "s.zarr", workers=1)
    assert not (tmp_path / "s.zarr").exists()  # refused before a store was opened
