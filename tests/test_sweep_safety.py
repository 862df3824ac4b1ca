"""Sweeps that never lie: Ctrl-C at every moment, failed cells, store creation, locking, damage, Dask failures.

Every interrupted run is rerun and must end equal, bit for bit, to the uninterrupted reference; every failed
cell must leave the others with the numbers a sweep without it gives.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from sweep_helpers import assert_same_store, overflowing, slow, small, to_toml

from lesde import sweep
from lesde._recorder import Recorder
from lesde.sweep import store as store_mod

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    store = tmp_path_factory.mktemp("reference") / "small.zarr"
    return sweep.run(small(), store, progress=False)


def n_ok(store: Path) -> int:
    return int((sweep.open_sweep(store)["status"] == "ok").sum())


def partials(store: Path) -> list[Path]:
    return list(store.parent.glob(f".{store.name}.partial-*"))


# ----------------------------------------------------------------------------------------------------------------
# Ctrl-C


def _sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # delivered to this (main) thread at once: KeyboardInterrupt here


def _at_plan(monkeypatch):
    real = sweep.runner.plan

    def plan(spec):
        _sigint()
        return real(spec)

    monkeypatch.setattr(sweep.runner, "plan", plan)


def _at_creation(monkeypatch):
    real = store_mod._layout

    def layout(*args):
        _sigint()  # held: creation completes first
        return real(*args)

    monkeypatch.setattr(store_mod, "_layout", layout)


def _mid_batch(monkeypatch):
    """SIGINT inside the integration of the second batch, after its first save time: simulate returns the
    completed part (t <= 10 of [0, 10, 100]); the sweep must not store it."""
    real, seen = Recorder._record, []

    def record(self, model, i, *args):
        if i == 1:
            seen.append(i)
            if len(seen) == 2:
                _sigint()
        return real(self, model, i, *args)

    monkeypatch.setattr(Recorder, "_record", record)


def _during_write(monkeypatch):
    real, calls = sweep.store.SweepStore.write, []

    def write(self, result):
        calls.append(result.batch_id)
        if len(calls) == 2:
            _sigint()  # held until the write ends
        return real(self, result)

    monkeypatch.setattr(sweep.store.SweepStore, "write", write)


def _between_batches(monkeypatch):
    real = sweep.runner.run_batch

    def run_batch(batch, device="cpu"):
        if batch.batch_id == 2:
            raise KeyboardInterrupt
        return real(batch, device)

    monkeypatch.setattr(sweep.runner, "run_batch", run_batch)


@pytest.mark.parametrize(
    "moment, ok_after",
    [(_at_plan, None), (_at_creation, 0), (_mid_batch, 2), (_during_write, 4), (_between_batches, 4)],
    ids=["before-the-store-exists", "during-creation", "mid-batch", "during-a-write", "between-batches"],
)
def test_sigint_then_rerun_equals_the_uninterrupted_store(tmp_path, monkeypatch, reference, moment, ok_after):
    store = tmp_path / "s.zarr"
    with monkeypatch.context() as m:
        moment(m)
        with pytest.raises(sweep.SweepInterrupted, match=f"{ok_after or 0} of 6 cells are in .*rerun the same"):
            sweep.run(small(), store, progress=False)
    if ok_after is None:
        assert not store.exists()
    else:
        partial = sweep.open_sweep(store)
        assert n_ok(store) == ok_after
        assert partial["time"].values.tolist() == [0.0, 10.0, 100.0]  # never a truncated time axis
        ok = (partial["status"] == "ok").values
        assert np.isfinite(partial["p_all_separable"].values[ok]).all()
        assert np.isnan(partial["p_all_separable"].values[~ok]).all()
        assert (partial["separable_pairs"].values[~ok] == -1).all()
    assert not partials(store)
    assert_same_store(sweep.run(small(), store, progress=False), reference)


def test_sigint_held_during_a_write_is_raised_after_it():
    order = []
    with pytest.raises(KeyboardInterrupt):
        with sweep.hold_sigint():
            _sigint()
            time.sleep(0.05)
            order.append("write finished")
    assert order == ["write finished"]


def _start_cli(spec_path: Path, store: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lesde.cli", "sweep", str(spec_path), "--store", str(store), "--quiet", *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _wait_for_cells(proc: subprocess.Popen, store: Path, cells: int, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists():
            try:
                if n_ok(store) >= cells:
                    return
            except (sweep.StoreError, OSError, KeyError):  # the store being created: briefly unreadable
                pass
        time.sleep(0.02)
    out, err = proc.communicate(timeout=60)
    pytest.fail(f"the sweep ended (rc {proc.returncode}) before {cells} cells were in: {err!r}")


@pytest.fixture(scope="module")
def slow_reference(tmp_path_factory):
    return sweep.run(slow(), tmp_path_factory.mktemp("slow") / "reference.zarr", progress=False)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGKILL, -9)], ids=["sigint", "sigkill"])
def test_signal_to_the_command_then_rerun_equals_the_uninterrupted_store(tmp_path, slow_reference, sig, code):
    toml = tmp_path / "slow.toml"
    toml.write_text(to_toml(slow()))
    store = tmp_path / "s.zarr"
    proc = _start_cli(toml, store)
    _wait_for_cells(proc, store, 1)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert 1 <= n_ok(store) < 6
    if sig == signal.SIGINT:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith("lesde sweep: interrupted: ") and "rerun the same command to resume" in lines[0]
    assert not partials(store)
    assert_same_store(sweep.run(toml, store, progress=False), slow_reference)


# ----------------------------------------------------------------------------------------------------------------
# failed cells


@pytest.fixture(scope="module")
def overflowed(tmp_path_factory):
    store = tmp_path_factory.mktemp("overflow") / "overflow.zarr"
    return sweep.run(overflowing(), store, progress=False), store


def test_an_overflowing_cell_fails_alone_and_the_others_equal_a_sweep_without_it(overflowed, tmp_path):
    ds, _ = overflowed
    assert ds["status"].values.tolist() == [["ok", "failed"], ["ok", "ok"]]
    assert ds["done"].values.tolist() == [[1, 0], [1, 1]]
    bad = ds.sel({"alpha_exponent": 0.5, "alpha_scale": 8.0})
    assert np.isnan(bad["p_all_separable"]).all() and np.isnan(bad["nc1_quotient"]).all()
    assert (bad["separable_pairs"] == -1).all() and (bad["all_separable_paths"] == -1).all()
    failed = sweep.failed_cells(ds)
    assert list(failed) == [1] and failed[1]["cell"] == "alpha.exponent=0.5, alpha.scale=8.0"
    assert failed[1]["error"].startswith("SimulationOverflowError: ")
    assert sweep.describe_failures(ds).startswith("1 of 4 cells failed: alpha.exponent=0.5, alpha.scale=8.0 (Simul")
    # the same cells in sweeps whose grids lack the overflowing cell (other batches, other neighbours)
    spec = overflowing()
    left = sweep.run(
        {**spec, "grid": {"model.alpha.exponent": [0.5, 1.0], "model.alpha.scale": [1.0]}}, tmp_path / "a.zarr",
        progress=False,
    )  # fmt: skip
    right = sweep.run(
        {**spec, "grid": {"model.alpha.exponent": [1.0], "model.alpha.scale": [8.0]}}, tmp_path / "b.zarr",
        progress=False,
    )  # fmt: skip
    for other in (left, right):
        mine = ds.sel({d: other[d].values for d in ("alpha_exponent", "alpha_scale")})
        for name in ("separable_pairs", "all_separable_paths", "p_all_separable", "p_all_separable_lower"):
            np.testing.assert_array_equal(mine[name].values, other[name].values, err_msg=name)
        for name in ("nc1_quotient", "etf_error", "cdnv"):  # metrics to rounding (batches of other sizes)
            np.testing.assert_allclose(mine[name].values, other[name].values, rtol=1e-12, err_msg=name)


def test_failed_cells_are_retried_only_when_asked(overflowed, tmp_path, monkeypatch):
    ds, store = overflowed
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    real, ran = sweep.runner.run_batch, []

    def run_batch(batch, device="cpu"):
        ran.append(list(batch.cells))
        return real(batch, device)

    monkeypatch.setattr(sweep.runner, "run_batch", run_batch)
    again = sweep.run(overflowing(), copy, progress=False)
    assert ran == []  # nothing pending: the failed cell is not retried
    assert_same_store(again, ds)
    retried = sweep.run(overflowing(), copy, progress=False, retry_failed=True)
    assert ran == [[1]]  # only the failed cell; it fails again, the same way
    assert_same_store(retried, ds)


def test_a_numerical_error_in_one_cell_is_isolated_and_a_retry_repairs_it(tmp_path, monkeypatch, reference):
    """A FloatingPointError raised for one cell's seed: its batch is split, the cell fails alone; the retry
    (without the fault) gives exactly the reference."""
    spec = small(cells_per_batch=6)
    victim = sweep.cell_seed(sweep.load_spec(spec), 3)
    real = sweep.batch.simulate

    def flaky(*args, seed, **kwargs):
        if victim in seed:
            raise FloatingPointError("injected: invalid value in the drift")
        return real(*args, seed=seed, **kwargs)

    store = tmp_path / "flaky.zarr"
    with monkeypatch.context() as m:
        m.setattr(sweep.batch, "simulate", flaky)
        ds = sweep.run(spec, store, progress=False)
    assert (ds["status"] == "failed").values.ravel().tolist() == [False, False, False, True, False, False]
    assert sweep.failed_cells(ds)[3]["error"] == "FloatingPointError: injected: invalid value in the drift"
    ok = (ds["status"] == "ok").values
    for name in ("p_all_separable", "separable_pairs"):
        np.testing.assert_array_equal(ds[name].values[ok], reference[name].values[ok])
    np.testing.assert_allclose(ds["nc1"].values[ok], reference["nc1"].values[ok], rtol=1e-12)
    repaired = sweep.run(spec, store, progress=False, retry_failed=True)
    assert sweep.failed_cells(repaired) == {} and bool((repaired["status"] == "ok").all())
    for name in ("p_all_separable", "separable_pairs", "all_separable_paths"):
        np.testing.assert_array_equal(repaired[name].values, reference[name].values)


def test_phase_plot_marks_failed_cells(overflowed, tmp_path):
    import matplotlib.image as mpimg

    from lesde.plots import phase_plot, save_figure
    from lesde.plots._style import THEORY

    ds, store = overflowed
    rgb = np.array([int(THEORY[i : i + 2], 16) / 255 for i in (1, 3, 5)])  # the crosses' vermillion

    def marked(img):
        return (np.abs(img[..., :3] - rgb) < 0.06).all(-1).sum()

    img = mpimg.imread(save_figure(phase_plot(sweep.open_sweep(store)), tmp_path / "failed.png"))
    healthy = ds.copy()
    healthy["status"] = xr.full_like(ds["status"], "ok")
    img2 = mpimg.imread(save_figure(phase_plot(healthy), tmp_path / "healthy.png"))
    red, red2 = marked(img), marked(img2)
    assert red > red2 + 50  # the cross and its legend entry
    assert sweep.format_table(ds).splitlines()[-1].split("|")[1].split() == ["fail", "1.00"]


# ----------------------------------------------------------------------------------------------------------------
# the store


def test_two_sweeps_creating_one_store_at_once(tmp_path, monkeypatch):
    """Both build their partial store at the same moment: one renames it into place and holds the lock, the
    other finds the store locked and stops with a clear message; no partial folder is left behind."""
    store = tmp_path / "race.zarr"
    spec = sweep.load_spec(small())
    time_axis = np.array([0.0, 10.0, 100.0])
    barrier, real = threading.Barrier(2), store_mod._layout
    release = threading.Event()
    outcomes: list = []

    def layout(*args):
        barrier.wait(timeout=30)  # both are inside creation now
        return real(*args)

    def open_it():
        try:
            with store_mod.open_store(store, spec, time_axis, list(sweep.runner.ONLINE_METRICS)):
                outcomes.append("created")
                release.wait(timeout=30)
        except sweep.StoreBusy as e:
            outcomes.append(str(e))
            release.set()

    monkeypatch.setattr(store_mod, "_layout", layout)
    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes, key=len)[0] == "created", outcomes
    assert "is in use by another lesde sweep" in sorted(outcomes, key=len)[1], outcomes
    assert not partials(store) and n_ok(store) == 0
    # and once the first is done, a second sweep uses the store
    assert n_ok(store) == 0 and bool((sweep.run(small(), store, progress=False)["status"] == "ok").all())


def test_two_commands_on_one_fresh_store(tmp_path, reference):
    toml = tmp_path / "small.toml"
    toml.write_text(to_toml(small()))
    store = tmp_path / "shared.zarr"
    procs = [_start_cli(toml, store) for _ in range(2)]
    results = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
    for code, err in results:
        assert "Traceback" not in err and "Errno" not in err, err
        assert code == 0 or (code == 2 and "is in use by another lesde sweep" in err), (code, err)
    assert any(code == 0 for code, _ in results)
    assert not partials(store)
    assert_same_store(sweep.run(small(), store, progress=False), reference)


def test_a_second_sweep_on_a_store_in_use_stops(tmp_path):
    store = tmp_path / "busy.zarr"
    spec = sweep.load_spec(small())
    with store_mod.open_store(store, spec, np.array([0.0, 10.0, 100.0]), list(sweep.runner.ONLINE_METRICS)):
        with pytest.raises(sweep.StoreBusy, match=f"store {store} is in use by another lesde sweep"):
            sweep.run(small(), store, progress=False)


def test_a_crash_during_creation_leaves_no_partial_folder(tmp_path, monkeypatch):
    store = tmp_path / "crash.zarr"

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(xr.Dataset, "to_zarr", disk_full)
        with pytest.raises(sweep.StoreError, match="cannot create store .*No space left on device"):
            sweep.run(small(), store, progress=False)
    assert not store.exists() and not partials(store)
    # a partial folder left by a process killed during creation is removed by the next sweep
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".crash.zarr.partial-{int(dead.stdout)}-deadbeef"
    (stale / "p_all_separable").mkdir(parents=True)
    alive = tmp_path / f".crash.zarr.partial-{os.getpid()}-cafe0000"  # a live creator's: left alone
    alive.mkdir()
    sweep.run(small(), store, progress=False)
    assert not stale.exists() and alive.exists()


def test_a_store_path_that_is_not_a_store(tmp_path):
    a_file = tmp_path / "file.zarr"
    a_file.write_text("not a store")
    with pytest.raises(sweep.StoreError, match="exists and is not a zarr store"):
        sweep.run(small(), a_file, progress=False)
    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    with pytest.raises(sweep.StoreError, match="not a readable lesde sweep store|not a lesde sweep store"):
        sweep.run(small(), other, progress=False)
    empty = tmp_path / "empty.zarr"
    empty.mkdir()  # an empty folder made beforehand is taken as the store's place
    assert bool((sweep.run(small(), empty, progress=False)["status"] == "ok").all())


def test_a_damaged_chunk_names_the_store_the_file_and_the_cells(tmp_path, reference):
    store = tmp_path / "damaged.zarr"
    sweep.run(small(), store, progress=False)
    chunk = store / "p_all_separable" / "1.0.0"  # row alpha.exponent = 1.0: cells (1.0, 1.0) and (1.0, 4.0)
    assert chunk.is_file()
    chunk.write_bytes(b"\x00garbage\xff" * 3)
    with pytest.raises(sweep.StoreError) as err:
        sweep.open_sweep(store)
    msg = str(err.value)
    assert f"store {store} is damaged: p_all_separable cannot be read from chunk file {chunk}" in msg
    assert "(cells alpha.exponent=1.0, alpha.scale=1.0; alpha.exponent=1.0, alpha.scale=4.0)" in msg
    status = store / "status" / "2.0"
    status.write_bytes(b"\x01\x02")
    with pytest.raises(sweep.StoreError, match=rf"status cannot be read from chunk file {status} .*alpha.exponent=2.0"):
        sweep.run(small(), store, progress=False)


# ----------------------------------------------------------------------------------------------------------------
# Dask


def _assert_same_numbers(a: xr.Dataset, b: xr.Dataset) -> None:
    assert (a["status"] == "ok").all() and (b["status"] == "ok").all()
    for name in b.data_vars:
        if b[name].dtype.kind in "fi":
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_dask_scheduler_matches_local(tmp_path, reference):
    """Join a running (in-process, 2 workers) cluster by address; results arrive out of order, numbers agree."""
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        dist = sweep.run(small(), tmp_path / "dask.zarr", scheduler=c.scheduler_address, progress=False)
    _assert_same_numbers(dist, reference)


@pytest.mark.slow
def test_dask_local_cluster_processes_match_local(tmp_path, reference):
    """workers=2: a LocalCluster of 2 processes (~30 s on 2 loaded cores: each worker imports torch)."""
    dist = sweep.run(small(), tmp_path / "dask.zarr", executor="dask", workers=2, progress=False)
    _assert_same_numbers(dist, reference)


def test_with_every_dask_worker_gone_the_sweep_fails_in_bounded_time(tmp_path):
    import distributed

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        with distributed.Client(c) as client:
            client.retire_workers()
            deadline = time.monotonic() + 30
            while client.nthreads() and time.monotonic() < deadline:
                time.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(sweep.WorkersGone, match=r"no Dask worker has been connected for 1 s; 3 batches were not"):
            sweep.run(
                small(), tmp_path / "gone.zarr", scheduler=c.scheduler_address, worker_timeout=1.0, progress=False
            )
        assert time.monotonic() - t0 < 20
    assert n_ok(tmp_path / "gone.zarr") == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_fails_in_bounded_time(tmp_path):
    import dask

    t0 = time.monotonic()
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(sweep.SchedulerUnreachable, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:"):
            sweep.run(small(), tmp_path / "u.zarr", scheduler=f"tcp://127.0.0.1:{_free_port()}", progress=False)
    assert time.monotonic() - t0 < 20


def test_the_local_cluster_listens_on_127_0_0_1_only():
    import psutil

    from lesde.cells.executors import _local_cluster

    cluster = _local_cluster(1)
    try:
        me = psutil.Process()
        pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
        listening = [
            c.laddr for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids
        ]
        ports = {a.port for a in listening}
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert len(listening) >= 3, listening  # scheduler, its HTTP server (dashboard), the worker
        assert {a.ip for a in listening} == {"127.0.0.1"}, listening
        assert int(cluster.scheduler_address.rsplit(":", 1)[1]) in ports
        assert 8787 not in ports  # the dashboard on a free port, not the fixed default
    finally:
        cluster.close()
