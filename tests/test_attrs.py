"""The Dataset builder (lesde.schema.make_dataset): dims from VARIABLE_DIMS, table attrs, time kinds, provenance
written once and round-tripping through netCDF and zarr."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import lesde
from lesde.schema import TIME_ATTRS, VARIABLE_ATTRS, VARIABLE_DIMS, finalize, make_dataset


def _example(**kw):
    return make_dataset(
        {
            "features": torch.zeros(2, 3, 4, 5, dtype=torch.float64),  # (path, time) + VARIABLE_DIMS: tensors accepted
            "nc1": np.ones((2, 3)),
            "E": (("step", "class", "class_other"), np.zeros((7, 2, 2))),  # a layout of its own
        },
        {
            "time": [0.0, 0.5, 1.0],
            "label": ("sample", torch.tensor([0, 0, 1, 1])),
            **{dim: np.arange(n) for dim, n in [("path", 2), ("sample", 4), ("feature", 5), ("step", 7)]},
            **{dim: np.arange(2) for dim in ("class", "class_other")},
        },
        lead=("path", "time"),
        **kw,
    )


def test_dims_from_the_table_and_the_lead():
    ds = _example(time="sde")
    assert ds.features.dims == ("path", "time", *VARIABLE_DIMS["features"]) == ("path", "time", "sample", "feature")
    assert ds.nc1.dims == ("path", "time") and ds.E.dims == ("step", "class", "class_other")
    assert ds.label.dims == ("sample",) and ds.label.values.tolist() == [0, 0, 1, 1]
    assert VARIABLE_DIMS["class_mean"] == ("class", "feature") and VARIABLE_DIMS["gnc2"] == ()
    with pytest.raises(ValueError, match=r"variable 'features' has 3 dims .*\('path', 'time', 'sample', 'feature'\)"):
        make_dataset({"features": np.zeros((2, 3, 4))}, lead=("path", "time"))


def test_attrs_index_coordinates_and_time_kinds():
    ds = _example(time="training", attrs={"seed": 3, "spec": {"K": 2}, "flag": True})
    assert ds.time.attrs == TIME_ATTRS["training"] and "step x learning rate" in ds.time.attrs["long_name"]
    assert _example(time="sde").time.attrs["long_name"] == "SDE time t"
    for name in ("path", "sample", "feature", "step", "class", "class_other", "label"):
        assert "units" not in ds[name].attrs, name  # index coordinates and the categorical label: no units
        assert ds[name].attrs["long_name"] == VARIABLE_ATTRS[name]["long_name"]
    assert ds.nc1.attrs == VARIABLE_ATTRS["nc1"] and ds.E.attrs["units"] == "1"
    assert ds.attrs["seed"] == 3 and ds.attrs["spec"] == '{"K": 2}' and ds.attrs["flag"] == 1
    assert ds.attrs["lesde_version"] == lesde.__version__ and ds.attrs["torch_version"] == str(torch.__version__)
    assert {"xarray_version", "python_version", "created"} <= set(ds.attrs)
    with pytest.raises(ValueError, match=r"time='wall' is not a kind of time axis; accepted values: \['sde', 'train"):
        _example(time="wall")


def test_attrs_are_plain_and_round_trip(tmp_path):
    ds = _example(time="sde", attrs={"torch": torch.__version__, "arr": np.arange(3), "none": None})
    assert type(ds.attrs["torch"]) is str and type(ds.attrs["torch_version"]) is str  # TorchVersion made plain
    assert ds.attrs["arr"] == "[0, 1, 2]" and ds.attrs["none"] == "None"
    ds.to_netcdf(tmp_path / "a.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "a.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)
    ds.to_zarr(tmp_path / "a.zarr", zarr_format=2)
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "a.zarr").load(), ds)


def test_dataarrays_stay_lazy_and_finalize_matches():
    import dask.array as da

    lazy = xr.DataArray(da.ones((4, 3), chunks=2), dims=("path", "time"))
    ds = make_dataset({"nc1": lazy})
    assert isinstance(ds.nc1.data, da.Array) and ds.nc1.attrs["long_name"].startswith("NC1")
    # finalize: a Dataset built by hand gets the same annotations (old index units dropped, attrs made plain)
    hand = xr.Dataset({"nc1": (("path",), np.ones(2)), "other": (("path",), np.ones(2))}, coords={"path": [0, 1]})
    hand["path"].attrs["units"] = "1"
    hand.attrs["torch"] = torch.__version__
    out = finalize(hand, seed=1)
    assert "units" not in out.path.attrs and out.other.attrs["units"] == "1" and type(out.attrs["torch"]) is str
    assert out.attrs["seed"] == 1 and out.attrs["lesde_version"] == lesde.__version__
