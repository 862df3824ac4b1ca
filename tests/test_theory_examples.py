"""``lesde compare-theory`` on what every shipped example and config writes: predictions with finite distances and
exit 0, or one line saying what would apply and exit 2 (never NaN z-scores with exit 0)."""

from __future__ import annotations

import json
import os
import runpy
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from sweep_helpers import to_toml

import lesde
import lesde.examples
from lesde import cli
from lesde.config import load_toml

EXAMPLES = Path(lesde.examples.__file__).parent


def _compare_theory(capsys, source: Path, tmp_path: Path) -> tuple[int, str, xr.Dataset | None]:
    capsys.readouterr()
    out = tmp_path / f"theory_{source.stem}.nc"
    code = cli.main(["compare-theory", str(source), "--out", str(out)])
    captured = capsys.readouterr()
    if code == 2:
        assert captured.err.count("\n") == 1 and "predictions exist for" in captured.err, captured.err
        return code, captured.err, None
    assert code == 0, captured.err
    ds = xr.load_dataset(out, engine="h5netcdf")
    added = json.loads(ds.attrs["theory_predictions"])
    distances = [n for n in added if n.endswith(("_zscore", "_distance", "_gap", "_agreement"))]
    assert distances, added
    for name in distances:  # every distance attached has values: no all-NaN z-score is reported as a result
        assert np.isfinite(ds[name].values).any(), name
    return code, captured.out, ds


def _shortened(name: str, tmp_path: Path, section: str, changes: dict, grid: dict | None = None) -> Path:
    config = load_toml(EXAMPLES / name)
    config[section].update(changes)
    if grid is not None:
        config["grid"] = grid
    path = tmp_path / name
    path.write_text(to_toml(config))
    return path


def test_compare_sgd_example_gets_the_regularised_ce_prediction(tmp_path, capsys):
    """compare_sgd.toml (CE UFM with weight decay, save='metrics') gets the Zhu et al. minimizer: objective gap
    and NC metrics there."""
    from lesde.sgd import UFM, compare

    config = load_toml(EXAMPLES / "compare_sgd.toml")  # run here without the command's figure
    problem = UFM(**{k: v for k, v in config["problem"].items() if k != "kind"})
    run = {k: v for k, v in config["run"].items() if k != "dtype"} | {"t_end": 1.0, "n_runs": 2, "progress": False}
    compare(problem, **run).to_netcdf(tmp_path / "cmp.nc", engine="h5netcdf")
    code, text, ds = _compare_theory(capsys, tmp_path / "cmp.nc", tmp_path)
    assert code == 0 and "loss_gap" in text and float(ds["ce_rho"]) > 0
    assert "Zhu et al." in ds["loss_gap"].attrs["prediction"]


def test_no_prediction_is_one_line_and_exit_two(tmp_path, capsys):
    """An LE-SDE with state-dependent noise and the identity transform: no law, no angle limit."""
    model = lesde.LESDE(2, 2, 4, alpha=1.0, beta=0.0, noise="sampling", lr=0.1)
    lesde.simulate(model, t_end=0.2, dt=0.1, n_paths=2, save="means", progress=False).to_netcdf(
        tmp_path / "sim.nc", engine="h5netcdf"
    )
    code, err, _ = _compare_theory(capsys, tmp_path / "sim.nc", tmp_path)
    assert code == 2 and "sample-independent noise" in err


@pytest.mark.slow
def test_every_shipped_example_and_config(tmp_path, capsys, monkeypatch):
    """Each example of ``lesde example list`` at a tiny size: the configs through their commands, the scripts
    through their own tiny modes (theory_comparison.py writes a figure only: it attaches itself, and
    tests/test_theory.py runs it)."""
    codes = {}
    sim = _shortened("simulate.toml", tmp_path, "simulate", {"t_end": 1.0, "n_save": 5, "n_paths": 64})
    assert cli.main(["simulate", str(sim), "--out", str(tmp_path / "sim.nc"), "--quiet"]) == 0
    codes["simulate.toml"] = _compare_theory(capsys, tmp_path / "sim.nc", tmp_path)[0]

    grid = {"model.alpha.exponent": [0.5, 1.5], "model.alpha.scale": [0.5, 4.0]}
    phase = _shortened("phase_diagram.toml", tmp_path, "simulate", {"n_paths": 50}, grid)
    assert cli.main(["sweep", str(phase), "--store", str(tmp_path / "phase.zarr"), "--quiet"]) == 0
    codes["phase_diagram.toml"] = _compare_theory(capsys, tmp_path / "phase.zarr", tmp_path)[0]

    cmp = _shortened("compare_sgd.toml", tmp_path, "run", {"t_end": 1.0, "n_runs": 2, "n_save": 5})
    assert cli.main(["compare-sgd", str(cmp), "--out", str(tmp_path / "cmp.nc")]) == 0
    codes["compare_sgd.toml"] = _compare_theory(capsys, tmp_path / "cmp.nc", tmp_path)[0]

    from lesde.examples.residual_collapse import run as residual_run

    residual_run(tmp_path, tiny=True)
    codes["residual_collapse.py"] = _compare_theory(capsys, tmp_path / "residual_collapse.nc", tmp_path)[0]

    monkeypatch.setenv("LESDE_TINY", "1")
    monkeypatch.setenv("LESDE_OUT", str(tmp_path))
    runpy.run_path(str(EXAMPLES / "sgd_vs_sde.py"), run_name="__main__")
    code, err, _ = _compare_theory(capsys, tmp_path / "sgd_vs_sde.nc", tmp_path)
    codes["sgd_vs_sde.py"] = code
    assert "stacked over ['problem']" in err

    monkeypatch.setattr("sys.argv", ["label_noise.py", "--tiny", "--out", str(tmp_path / "label_noise.nc")])
    runpy.run_path(str(EXAMPLES / "label_noise.py"), run_name="__main__")
    code, err, _ = _compare_theory(capsys, tmp_path / "label_noise.nc", tmp_path)
    codes["label_noise.py"] = code
    assert "empirical elasticity" in err

    shipped = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".toml") and p.stem != "__init__"}
    assert shipped - set(codes) == {"theory_comparison.py"}
    assert codes == {
        "simulate.toml": 0,
        "phase_diagram.toml": 0,
        "compare_sgd.toml": 0,
        "residual_collapse.py": 0,
        "sgd_vs_sde.py": 2,
        "label_noise.py": 2,
    }
    assert os.path.exists(tmp_path / "theory_phase.nc")
