"""Faults around the empirical track and the commands that write its results: SIGKILL and Ctrl-C at random moments
of ``track(checkpoint=...)`` (with and without a validation set) then a rerun identical to an uninterrupted track,
checkpoint paths that hold something else, corrupt and truncated checkpoints, a full disk, and ``lesde estimate`` /
``lesde imitate`` killed or interrupted (exit 130, never a file that claims a success it did not have, the previous
file intact)."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from lesde.empirical import load_dataset, mlp, track
from lesde.empirical.tracks import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
STEPS, EVERY = 40, 4


@pytest.fixture(scope="module")
def data():
    return load_dataset("gaussian-mixture", classes=3, per_class=10)


def run(data, store=None, validation=False, **kw):
    """The track every test compares: float64, so that "identical" means bit for bit."""
    x, y = data
    options = dict(lr=0.05, steps=STEPS, n_runs=2, seed=3, dtype=torch.float64, progress=False)
    if validation:
        options.update(validation=(x[::3], y[::3]), validation_every=6)
    if store is not None:
        options.update(checkpoint=store, checkpoint_every=EVERY)
    return track(mlp(10, 3, width=8), x, y, **{**options, **kw})


@pytest.fixture(scope="module")
def reference(data):
    return {v: run(data, validation=v) for v in (False, True)}


def assert_identical(a: xr.Dataset, b: xr.Dataset) -> None:
    """Every variable and coordinate equal bit for bit (the attrs differ by their creation time only)."""
    assert set(a.variables) == set(b.variables)
    for k in a.variables:
        np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)
    assert "interrupted" not in b.attrs


def _child(store, validation):  # runs in a forked process: the parent's imports are already done
    torch.set_num_threads(1)
    run(load_dataset("gaussian-mixture", classes=3, per_class=10), store, validation)


def kill_at_random(store, validation, sig, rng) -> None:
    """Start the checkpointed track in a forked process and send ``sig`` after a random delay, while it runs (a
    child that finished first is run again, on a fresh store, with a shorter delay)."""
    ctx = multiprocessing.get_context("fork")
    delay = rng.uniform(0.05, 1.2)  # the child trains for ~1.7 s on the 2-core machine
    for _ in range(5):
        shutil.rmtree(store, ignore_errors=True)
        p = ctx.Process(target=_child, args=(str(store), validation))
        p.start()
        time.sleep(delay)
        hit = p.is_alive()
        if hit:
            os.kill(p.pid, sig)
        p.join(60)
        if p.is_alive():  # pragma: no cover - a hung child must not hang the suite
            p.kill()
            pytest.fail(f"the tracked child did not stop within 60 s of signal {sig}")
        if hit:
            return
        delay /= 3
    pytest.fail("the tracked child always finished before the signal")


# ---------------------------------------------------------------- kill / Ctrl-C and resume


@pytest.mark.parametrize("validation", [False, True], ids=["no-validation", "validation"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_or_interrupted_track_resumes_bit_for_bit(data, reference, tmp_path, sig, validation):
    rng = random.Random(f"{sig}-{validation}")
    store = tmp_path / "track.zarr"
    kill_at_random(store, validation, sig, rng)
    assert_identical(reference[validation], run(data, store, validation))


@pytest.mark.slow
@pytest.mark.parametrize("validation", [False, True], ids=["no-validation", "validation"])
def test_many_kills_in_a_row_still_resume_bit_for_bit(data, reference, tmp_path, validation):
    rng = random.Random(validation)
    store = tmp_path / "track.zarr"
    ctx = multiprocessing.get_context("fork")
    for i in range(6):  # kills in a row on one store: each run resumes the previous one's checkpoint
        p = ctx.Process(target=_child, args=(str(store), validation))
        p.start()
        time.sleep(rng.uniform(0.05, 0.6))
        if p.is_alive():
            os.kill(p.pid, (signal.SIGKILL, signal.SIGINT)[i % 2])
        p.join(60)
    assert_identical(reference[validation], run(data, store, validation))


def test_checkpoint_without_validation_is_resumed_and_reread(data, reference, tmp_path):
    """Before: the loader read validation arrays saved only with a validation set (KeyError validation_accuracy)."""
    store = tmp_path / "plain.zarr"
    first = run(data, store)
    again = run(data, store)  # a finished store: read back, no training
    assert_identical(reference[False], first)
    assert_identical(reference[False], again)


# ---------------------------------------------------------------- paths that hold something else


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.is_dir() else [path.read_text()]


@pytest.mark.parametrize("kind", ["file", "other-zarr", "sweep-like", "stray-state"])
def test_a_checkpoint_path_holding_something_else_is_refused_untouched(data, tmp_path, kind):
    path = tmp_path / "thing"
    if kind == "file":
        path.write_text("results")
    elif kind == "other-zarr":
        xr.Dataset({"a": ("t", np.arange(3.0))}).to_zarr(path, zarr_format=2, consolidated=False)
    elif kind == "sweep-like":
        xr.Dataset({"status": ("cell", np.array(["ok"]))}).to_zarr(path, zarr_format=2)
        (path / "cells").mkdir()
    else:
        (path / "state_a").mkdir(parents=True)
    before = _listing(path)
    with pytest.raises(CheckpointError, match="thing"):
        run(data, path)
    assert _listing(path) == before


def test_an_empty_folder_is_a_fresh_checkpoint(data, reference, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_identical(reference[False], run(data, tmp_path / "empty"))


# ---------------------------------------------------------------- corrupt and truncated checkpoints


@pytest.fixture()
def half_done(data, tmp_path, monkeypatch):
    """A store interrupted by Ctrl-C after step 13 (the track's own Ctrl-C path), and its progress."""
    from lesde.empirical.tracks import tracking

    calls = []
    real = tracking._step

    def step(req, plan, prog, s):
        real(req, plan, prog, s)
        calls.append(s)
        if s == 13:
            os.kill(os.getpid(), signal.SIGINT)

    store = tmp_path / "half.zarr"
    with monkeypatch.context() as m:
        m.setattr(tracking, "_step", step)
        with pytest.warns(UserWarning, match="interrupted after step 13"):
            part = run(data, store)
    assert part.attrs["interrupted"] == 1
    return store, json.loads((store / "progress" / ".zattrs").read_text())


def test_interrupted_store_holds_a_complete_checkpoint(half_done, data, reference):
    store, prog = half_done
    assert prog["completed_step"] == 13 and prog["state"] in ("state_a", "state_b")
    assert_identical(reference[False], run(data, store))


@pytest.mark.parametrize(
    "damage",
    ["progress-json", "progress-state", "state-chunks", "buffer-chunks", "buffer-metadata"],
)
def test_a_corrupt_or_truncated_checkpoint_names_its_path(half_done, data, damage):
    store, prog = half_done
    state = store / prog["state"]
    if damage == "progress-json":
        (store / "progress" / ".zattrs").write_text('{"completed_st')
    elif damage == "progress-state":
        shutil.rmtree(state)
    elif damage == "state-chunks":
        for f in (state / "p0").iterdir():
            if not f.name.startswith("."):
                f.unlink()
    elif damage == "buffer-chunks":
        for f in (store / "buffer" / "features").iterdir():
            if not f.name.startswith("."):
                f.write_bytes(f.read_bytes()[:7])
    else:
        (store / "buffer" / "features" / ".zarray").write_text("{")
    with pytest.raises(CheckpointError, match=str(store)):
        run(data, store)


def test_a_checkpoint_of_other_settings_is_refused(half_done, data):
    store, _ = half_done
    with pytest.raises(CheckpointError, match="different settings"):
        run(data, store, lr=0.07)


# ---------------------------------------------------------------- a full disk


@pytest.fixture()
def small_disk(tmp_path):
    """A 400 KiB tmpfs (root only; skipped where mounting is not possible), unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_is_one_error_and_the_checkpoint_resumes(data, reference, small_disk):
    store = small_disk / "track.zarr"
    with pytest.raises(OSError, match=r"checkpoint .*track\.zarr.*(No space|space left)") as info:
        run(data, store, steps=240)
    assert "last complete checkpoint is kept" in str(info.value)
    saved = json.loads((store / "progress" / ".zattrs").read_text())
    assert 0 < saved["completed_step"] < 240
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    full = run(data, steps=240)
    assert_identical(full, run(data, store, steps=240))


# ---------------------------------------------------------------- lesde estimate and lesde imitate


ESTIMATE = ["estimate", "--dataset", "gaussian-mixture", "--classes", "3", "--n-runs", "2", "--width", "8",
            "--probes", "12", "--seed", "1"]  # fmt: skip


def lesde(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "lesde.cli", *args], env=env, text=True, **kw)


def previous(path: Path) -> None:
    """A previous result at ``path``: a NetCDF file with a marker attr."""
    xr.Dataset({"old": ("t", np.arange(3.0))}, attrs={"marker": "previous"}).to_netcdf(path, engine="h5netcdf")


def what_is_at(path: Path) -> str:
    """'previous', 'interrupted' or 'complete', from the file at path (which must be readable whole)."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        if ds.attrs.get("marker") == "previous":
            return "previous"
        return "interrupted" if ds.attrs.get("interrupted") else "complete"


def wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        if proc.poll() is not None or time.time() > end:
            pytest.fail(f"{text!r} never appeared: {path.read_text() if path.exists() else ''}")
        time.sleep(0.05)


def test_ctrl_c_during_lesde_estimate_exits_130_and_marks_the_result(tmp_path):
    out, err = tmp_path / "est.nc", tmp_path / "stderr.txt"
    previous(out)
    with open(err, "w") as fh:
        p = lesde(*ESTIMATE, "--steps", "200000", "--record-every", "10", "--out", str(out),
                  stdout=subprocess.DEVNULL, stderr=fh)  # fmt: skip
        wait_for(err, "step", p)  # the progress bar of the track: training has started
        time.sleep(random.Random(0).uniform(0.2, 1.0))
        p.send_signal(signal.SIGINT)
        assert p.wait(120) == 130
    state = what_is_at(out)
    assert state in ("previous", "interrupted"), err.read_text()
    if state == "interrupted":
        with xr.open_dataset(out, engine="h5netcdf") as ds:
            done = int(ds.attrs["steps_completed"])
            assert ds.attrs["steps"] == done < 200000 and ds.attrs["steps_requested"] == 200000
        assert "interrupted after step" in err.read_text()


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_sigkill_of_lesde_estimate_never_leaves_a_false_or_broken_file(tmp_path, seed):
    out = tmp_path / "est.nc"
    previous(out)
    p = lesde(*ESTIMATE, "--steps", "300", "--quiet", "--out", str(out), stdout=subprocess.DEVNULL,
              stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(random.Random(seed).uniform(1.0, 12.0))
    p.kill()
    p.wait(60)
    state = what_is_at(out)  # readable whole: the previous file or the finished one
    assert state in ("previous", "complete")
    if state == "complete":
        with xr.open_dataset(out, engine="h5netcdf", group="track") as tr:
            assert "features" in tr


def test_a_kill_while_the_estimate_is_written_leaves_the_previous_file(tmp_path, monkeypatch):
    """The NetCDF is written to a temporary file: an interrupt inside the write (here while the track group is
    appended) leaves the previous file and no temporary file."""
    from lesde.cli.cmd_estimate import estimate_cli

    out = tmp_path / "est.nc"
    previous(out)
    real = xr.Dataset.to_netcdf

    def interrupted(self, path=None, *args, **kwargs):
        if kwargs.get("group") == "track":
            raise KeyboardInterrupt
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        estimate_cli(out=out, dataset="gaussian-mixture", classes=3, n_runs=2, width=8, probes=12, steps=60,
                     progress=False)  # fmt: skip
    assert what_is_at(out) == "previous"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".nc") == ["est.nc"]


@pytest.fixture(scope="module")
def estimate_file(tmp_path_factory):
    from lesde.cli.cmd_estimate import estimate_cli

    out = tmp_path_factory.mktemp("est") / "est.nc"
    estimate_cli(out=out, dataset="gaussian-mixture", classes=3, n_runs=2, width=8, probes=12, steps=80,
                 progress=False)  # fmt: skip
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_lesde_imitate_killed_or_interrupted_leaves_the_previous_file(tmp_path, estimate_file, sig):
    out = tmp_path / "imit.nc"
    previous(out)
    p = lesde("imitate", str(estimate_file), "--out", str(out), "--paths-per-run", "64", "--quiet",
              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    time.sleep(random.Random(int(sig)).uniform(1.0, 8.0))
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        finished = ds.attrs.get("source") == "imitate"
        assert finished or ds.attrs.get("marker") == "previous"
    if sig == signal.SIGINT and not finished:
        assert p.returncode == 130, err
