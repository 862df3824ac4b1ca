"""Empirical experiments on a Dask LocalCluster of 2 worker processes on 127.0.0.1: the same numbers as a local
run, bit for bit in float64, and a worker killed in the middle of a cell leaves that cell to be retried.

One cluster serves the module (starting 2 processes that import torch takes most of the time); the command line's
own LocalCluster (``--workers 2``) is the slow test at the end.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_experiments import OPTIONS, assert_same_store, tiny

from lesde.cells import failed_cells
from lesde.cells.executors import _local_cluster
from lesde.cli import main
from lesde.empirical import DatasetLoader, label_noise_experiment, open_experiment, run_experiment

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    c = _local_cluster(2)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> tuple[Path, xr.Dataset]:
    store = tmp_path_factory.mktemp("local") / "local.zarr"
    return store, label_noise_experiment(rates=(0.0, 0.6), tiny=True, dtype="float64", store=store, progress=False)


def test_a_2_worker_local_cluster_equals_the_local_run_bit_for_bit(tmp_path, cluster, local):
    """The tiny label-noise experiment (2 rates x 2 runs, float64) on the cluster: every cell's track and the
    estimates, tail indices and accuracies equal the local run's exactly."""
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    store = tmp_path / "dask.zarr"
    ds = label_noise_experiment(
        rates=(0.0, 0.6), tiny=True, dtype="float64", store=store, scheduler=cluster.scheduler_address, progress=False
    )
    local_store, local_ds = local
    assert_same_store(store, local_store)
    for name in local_ds.variables:
        np.testing.assert_array_equal(ds[name].values, local_ds[name].values, err_msg=name)
    assert np.isfinite(ds["tail_alpha"].values).all() and ds["tail_alpha"].shape == (2, 2)


@dataclasses.dataclass(frozen=True)
class KillOnce:
    """The tiny data, but the cell of rate ``victim`` waits to be killed when the file ``marker`` does not exist
    yet: it writes its worker's process id there first."""

    inner: DatasetLoader
    victim: float
    marker: str

    def __call__(self, **setting):
        if setting.get("label_noise") == self.victim and not os.path.exists(self.marker):
            Path(self.marker + ".tmp").write_text(str(os.getpid()))
            os.rename(self.marker + ".tmp", self.marker)
            time.sleep(120)
        return self.inner(**setting)


def _kill_when_started(marker: Path) -> None:
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(int(marker.read_text()), signal.SIGKILL)


def test_a_worker_killed_mid_cell_leaves_the_cell_to_retry(tmp_path, cluster, monkeypatch):
    """SIGKILL to the worker process running the cell of rate 0.6: the cell is recorded failed (KilledWorker;
    Dask's allowed-failures set to 0 so that it does not rerun the task elsewhere first), the other cell is
    written; a rerun leaves the failed cell alone, the rerun with retry_failed computes it, and the store equals
    an uninterrupted run's."""
    marker = tmp_path / "victim.pid"
    data = KillOnce(DatasetLoader("geomnist", per_class=24, validation=True, options=OPTIONS), 0.6, str(marker))
    exp = tiny(data=data, n_runs=1)
    reference = tmp_path / "reference.zarr"
    marker.write_text("")  # the uninterrupted run: no cell waits
    run_experiment(exp, reference, progress=False)
    marker.unlink()
    monkeypatch.setattr(cluster.scheduler, "allowed_failures", 0)
    killer = threading.Thread(target=_kill_when_started, args=(marker,))
    killer.start()
    store = tmp_path / "killed.zarr"
    summary = run_experiment(exp, store, scheduler=cluster.scheduler_address, progress=False)
    killer.join(timeout=130)
    assert summary["status"].values.tolist() == [["ok"], ["failed"]]
    failure = failed_cells(summary)[1]
    assert failure["cell"] == "label_noise=0.6, run 0" and failure["error"].startswith("KilledWorker: ")
    for name in ("seconds", "cpu_seconds"):  # a killed cell has no times
        assert np.isnan(summary[name].values[1, 0]) and summary[name].values[0, 0] > 0
    run_experiment(exp, store, progress=False)  # failed cells stay failed unless asked
    assert open_experiment(store)["status"].values.tolist() == [["ok"], ["failed"]]
    run_experiment(exp, store, progress=False, retry_failed=True)
    assert_same_store(store, reference)


@pytest.mark.slow
def test_the_command_line_starts_its_own_2_worker_cluster(tmp_path, local):
    """``lesde estimate --label-noise ... --workers 2`` (a LocalCluster that lesde starts on 127.0.0.1; ~40 s on
    2 loaded cores) writes the store of the local run, here in float32 on a Gaussian mixture."""
    argv = ["estimate", "--dataset", "gaussian-mixture", "--label-noise", "0", "0.6", "--width", "16", "--steps",
            "200", "--n-runs", "2", "--probes", "36", "--form", "means", "--quiet"]  # fmt: skip
    assert main([*argv, "--store", str(tmp_path / "l.zarr"), "--out", str(tmp_path / "l.nc")]) == 0
    assert main([*argv, "--store", str(tmp_path / "d.zarr"), "--out", str(tmp_path / "d.nc"), "--workers", "2"]) == 0
    assert_same_store(tmp_path / "d.zarr", tmp_path / "l.zarr")
