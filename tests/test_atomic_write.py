"""Result files are written whole or not at all (lesde.atomic_write)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from lesde.atomic_write import atomic_path, write_netcdf


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    out = tmp_path / "r.nc"
    write_netcdf(xr.Dataset({"a": ("t", np.arange(3.0))}), out)
    with pytest.raises(OSError, match="disk full"), atomic_path(out) as tmp:
        tmp.write_bytes(b"half a file")
        raise OSError("disk full")
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["a"].values.tolist() == [0.0, 1.0, 2.0]
    assert [p.name for p in tmp_path.iterdir()] == ["r.nc"]


def test_a_folder_replaces_a_folder(tmp_path):
    out = tmp_path / "s.zarr"
    for value in (1.0, 2.0):
        with atomic_path(out) as tmp:
            xr.Dataset({"a": ("t", np.full(2, value))}).to_zarr(tmp)
    assert xr.open_zarr(out)["a"].values.tolist() == [2.0, 2.0]
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]
