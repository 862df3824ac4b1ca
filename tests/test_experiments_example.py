"""The user-network example (lesde/examples/cnn_on_arrays.py) at its tiny size: a small CNN factory and an
``.npz`` loader of the user's own, run as an experiment of tracked runs into a store, estimated from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from lesde.cells import StoreError
from lesde.empirical import experiment_tracks, open_experiment

EXAMPLE = Path(__file__).resolve().parents[1] / "lesde" / "examples" / "cnn_on_arrays.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load_example():
    spec = importlib.util.spec_from_file_location("cnn_on_arrays", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.filterwarnings("ignore::UserWarning")  # 60 steps: the power-law fit's chi2/dof warnings
def test_the_cnn_example_runs_tiny_and_its_store_names_the_arrays(tmp_path, capsys):
    mod = _load_example()
    est, png = mod.run(tmp_path, tiny=True)
    store = tmp_path / "cnn_on_arrays.zarr"
    assert open_experiment(store)["status"].values.tolist() == [["ok", "ok"]]
    tracks = experiment_tracks(store)
    assert dict(tracks.features.sizes) == {"run": 2, "step": 61, "probe": 30, "feature": 3}
    assert tracks.attrs["net"].startswith("Sequential(\n  (0): Conv2d(1, 4, kernel_size=(3, 3)")
    with xr.open_dataset(tmp_path / "cnn_on_arrays.nc", engine="h5netcdf") as ds:
        assert ds.attrs["form"] == "feature" and ds.sizes["step"] == 6 and np.isfinite(ds.alpha.values).all()
        np.testing.assert_array_equal(ds.alpha.values, est.alpha.values)
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert "2 runs x 60 steps x 30 probes; median alpha" in capsys.readouterr().out
    # other arrays under the same name: the store refuses them, naming the digest that differs
    arrays = tmp_path / "cnn_on_arrays_arrays.npz"
    with np.load(arrays) as f:
        data = {k: f[k] for k in f.files}
    data["x"] = data["x"][::-1].copy()
    np.savez(arrays, **data)
    with pytest.raises(StoreError, match=r"holds another experiment \(data\.keywords\.digest: [0-9a-f]+"):
        mod.run(tmp_path, tiny=True)
    with pytest.raises(ValueError, match="changed since the experiment started"):
        mod.load_arrays(str(arrays), digest="0" * 64)
    assert [a.shape for a in mod.load_arrays(str(arrays))] == [(72, 1, 16, 16), (72,), (24, 1, 16, 16), (24,)]
