"""Tracking: both engines, the Tracker in a hand-written loop, init="keep", validation, checkpoints and
resume, and the bad inputs that are refused up front."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr

from lesde.empirical import Checkpoint, Tracker, Validation, cnn, init_nets, load_dataset, mlp, track
from lesde.empirical.tracks import _engine
from lesde.empirical.tracks.track_inputs import sample_order

RECORDED = (
    "features",
    "increment",
    "sampled_feature",
    "sampled_residual",
    "sampled_index",
    "sampled_label",
    "sampled_loss",
    "loss",
    "accuracy",
)


@pytest.fixture
def data():
    x, y = load_dataset("gaussian-mixture", classes=3, per_class=6, dim=8, seed=4)
    return x.double(), y


def assert_same_track(a: xr.Dataset, b: xr.Dataset, atol=1e-12):
    for v in RECORDED:
        np.testing.assert_allclose(a[v].values, b[v].values, atol=atol, rtol=0, equal_nan=True, err_msg=v)
    assert a.step.values.tolist() == b.step.values.tolist()


def _user_loop(net, x, y, steps, seed, lr, **kw):
    """A hand-written training loop: torch.optim.SGD, an evaluation forward between steps, the Tracker."""
    model = init_nets(net, 1, seed)[0].double()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    order = sample_order(len(y), 1, steps, seed)[0]
    with Tracker(model, x, y, lr=lr, seed=seed, **kw) as tr:
        for s in range(steps):
            i = int(order[s])
            opt.zero_grad()
            F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
            opt.step()
            with torch.no_grad():
                model(x[:5])  # evaluation forwards (no grad) are ignored by the tracker
            tr.step(i, y[i])
        return tr.dataset()


@pytest.mark.parametrize("feature,record_every", [("logits", 1), ("penultimate", 3), ("body.2", 2)])
def test_tracker_in_user_loop_equals_track(data, feature, record_every):
    x, y = data
    net = mlp(8, 3, width=10)
    kw = dict(probes=10, feature=feature, record_every=record_every)
    ref = track(net, x, y, lr=0.1, steps=15, n_runs=1, seed=5, dtype=torch.float64, progress=False, **kw)
    mine = _user_loop(net, x, y, 15, 5, 0.1, **kw)
    assert_same_track(ref, mine)
    assert mine.attrs["source"] == "tracker" and mine.sizes["run"] == 1
    # the recorded features are not trivially equal: the network moved
    assert np.abs(np.diff(mine.features.values, axis=1)).max() > 1e-3


def test_tracker_cnn_and_errors(data):
    x, y = data
    net = cnn((1, 8), 3, channels=(3,), width=7)
    ref = track(net, x[:, None], y, lr=0.1, steps=6, n_runs=1, seed=2, dtype=torch.float64, progress=False)
    assert ref.attrs["engine"] == "functional"
    assert_same_track(ref, _user_loop(net, x[:, None], y, 6, 2, 0.1))
    model = mlp(8, 3, width=4).double()
    tr = Tracker(model, x, y, lr=0.1)
    with pytest.raises(RuntimeError, match="no training forward"):
        tr.step(0, y[0])
    model(x[:2]).sum().backward()
    with pytest.raises(ValueError, match="batch-size-1"):
        tr.step(0, y[0])
    model(x[:1])
    with pytest.raises(ValueError, match="label=2 but sample 0 has label 0"):
        tr.step(0, 2)
    with pytest.raises(ValueError, match="index"):
        tr.step(99, 0)
    tr.close()
    with pytest.raises(RuntimeError, match="closed"):
        tr.step(0, 0)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_engines_agree(data, arch, monkeypatch):
    """The fused MLP engine and the functional engine give the same track (and both equal a plain loop, which
    test_empirical.test_track_equals_plain_per_run_loop checks)."""
    x, y = data
    net = mlp(8, 3, width=10, depth=3) if arch == "mlp" else cnn((1, 8), 3, channels=(3,), width=7)
    xx = x if arch == "mlp" else x[:, None]
    kw = dict(lr=0.1, steps=12, n_runs=3, probes=9, seed=3, dtype=torch.float64, progress=False, feature="penultimate")
    monkeypatch.setattr(_engine, "FORCE", "functional")
    a = track(net, xx, y, **kw)
    monkeypatch.setattr(_engine, "FORCE", None)
    b = track(net, xx, y, **kw)
    assert a.attrs["engine"] == "functional" and b.attrs["engine"] == ("mlp" if arch == "mlp" else "functional")
    assert_same_track(a, b)


def _seq(kind: str) -> torch.nn.Module:
    nn = torch.nn
    if kind == "no-bias":  # the second Linear without a bias: no ones column
        return nn.Sequential(nn.Flatten(), nn.Linear(8, 7), nn.ReLU(), nn.Linear(7, 6, bias=False), nn.ReLU(),
                             nn.Linear(6, 3))  # fmt: skip
    if kind == "linear-linear":  # no ReLU between the first two Linears
        return nn.Sequential(nn.Linear(8, 7, bias=False), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))
    return mlp(8, 3, width=7, depth=3)


@pytest.mark.parametrize(
    "kind,feature",
    [("mlp", f) for f in ("logits", "penultimate", "body", "body.0", "body.1", "body.2", "body.3", "body.6")]
    + [("no-bias", f) for f in ("logits", "2", "3", "4")]
    + [("linear-linear", f) for f in ("logits", "0", "1", "2")],
)
def test_mlp_engine_every_feature_and_layout(data, kind, feature, monkeypatch):
    """The fused MLP engine records what the generic engine records, for every feature position, bias-free layers
    and Linear-Linear chains, with and without a recording stride, with validation forwards in between."""
    x, y = data
    net = _seq(kind)
    kw = dict(lr=0.2, steps=11, n_runs=3, probes=9, seed=2, dtype=torch.float64, progress=False, feature=feature,
              record_every=2, validation=(x[:5], y[:5]), validation_every=3)  # fmt: skip
    monkeypatch.setattr(_engine, "FORCE", "functional")
    a = track(net, x, y, **kw)
    monkeypatch.setattr(_engine, "FORCE", "mlp")
    b = track(net, x, y, **kw)
    assert a.attrs["engine"] == "functional" and b.attrs["engine"] == "mlp"
    assert_same_track(a, b)
    np.testing.assert_allclose(a.validation_loss.values, b.validation_loss.values, atol=1e-12, rtol=0)
    assert np.abs(np.diff(b.loss.values, axis=1)).max() > 1e-4  # the network moved
    b1 = track(net, x, y, **{**kw, "record_every": 1})
    monkeypatch.setattr(_engine, "FORCE", "functional")
    a1 = track(net, x, y, **{**kw, "record_every": 1})
    assert_same_track(a1, b1)


def test_init_keep_and_validation(data):
    x, y = data
    net = mlp(8, 3, width=10)
    kw = dict(lr=0.1, steps=10, n_runs=2, seed=1, dtype=torch.float64, progress=False)
    keep = track(net, x, y, init="keep", validation=(x[:9], y[:9]), validation_every=4, **kw)
    with torch.no_grad():
        f0 = net.double()(x).numpy()
    for r in range(2):  # both runs start from the given weights; they differ by their sample order only
        np.testing.assert_allclose(keep.features.values[r, 0], f0, atol=1e-12)
    assert np.abs(keep.features.values[0, -1] - keep.features.values[1, -1]).max() > 1e-4
    re = track(net, x, y, **kw)
    assert np.abs(re.features.values[:, 0] - f0).max() > 1e-3  # the default re-initialises
    assert keep.validation_step.values.tolist() == [0, 4, 8, 10]
    with torch.no_grad():  # validation accuracy at step 0 is that of the given weights on the held-out samples
        acc0 = (net(x[:9]).argmax(1) == y[:9]).double().mean().item()
    np.testing.assert_allclose(keep.validation_accuracy.values[:, 0], acc0)
    assert np.isfinite(keep.validation_loss.values).all()


def test_checkpoint_resume_equals_uninterrupted(data, tmp_path, monkeypatch):
    x, y = data
    net = mlp(8, 3, width=10)
    kw = dict(
        lr=0.1,
        steps=23,
        n_runs=2,
        probes=7,
        record_every=2,
        seed=4,
        dtype=torch.float64,
        progress=False,
        validation=(x[:6], y[:6]),
        validation_every=5,
    )
    full = track(net, x, y, **kw)
    store = tmp_path / "track.zarr"
    # Ctrl-C at step 13 (between two checkpoints): the step finishes, the checkpoint is written, the part returned
    real = _engine.MLPEngine.sgd_step
    calls = []

    def interrupting(self, *a, **k):
        calls.append(1)
        if len(calls) == 13:
            signal.raise_signal(signal.SIGINT)
        return real(self, *a, **k)

    monkeypatch.setattr(_engine.MLPEngine, "sgd_step", interrupting)
    with pytest.warns(UserWarning, match="interrupted after step 13"):
        part = track(net, x, y, checkpoint=store, checkpoint_every=5, **kw)
    assert part.attrs["interrupted"] == 1 and part.step.values[-1] == 12
    assert_same_track(part, full.sel(step=part.step))
    monkeypatch.setattr(_engine.MLPEngine, "sgd_step", real)
    resumed = track(net, x, y, checkpoint=store, checkpoint_every=5, **kw)
    assert len(calls) == 13  # the resumed run did not redo steps 1..13 through the interrupted engine
    assert_same_track(resumed, full, atol=0)
    np.testing.assert_array_equal(resumed.validation_accuracy.values, full.validation_accuracy.values)
    # a finished store returns the track without training; different settings are refused
    again = track(net, x, y, checkpoint=store, checkpoint_every=5, **kw)
    assert_same_track(again, full, atol=0)
    with pytest.raises(ValueError, match="different settings"):
        track(net, x, y, checkpoint=store, **{**kw, "lr": 0.2})


def test_option_objects_equal_the_keywords(data, tmp_path):
    """Checkpoint(path, every) and Validation(x, y, every) give the track the keyword pairs give; mixing the two
    spellings of one interval is refused."""
    x, y = data
    net = mlp(8, 3, width=6)
    kw = dict(lr=0.1, steps=9, n_runs=2, probes=7, seed=2, dtype=torch.float64, progress=False)
    ref = track(net, x, y, validation=(x[:5], y[:5]), validation_every=4, checkpoint=tmp_path / "a.zarr",
                checkpoint_every=3, **kw)  # fmt: skip
    obj = track(net, x, y, validation=Validation(x[:5], y[:5], every=4), checkpoint=Checkpoint(tmp_path / "b.zarr", 3),
                **kw)  # fmt: skip
    assert_same_track(ref, obj, atol=0)
    assert ref.validation_step.values.tolist() == obj.validation_step.values.tolist() == [0, 4, 8, 9]
    np.testing.assert_array_equal(ref.validation_loss.values, obj.validation_loss.values)
    assert Checkpoint("c.zarr").every == 1000 and Validation(x, y).every is None
    # the store the object wrote is the one the keywords resume (same settings, same fingerprint)
    again = track(net, x, y, validation=(x[:5], y[:5]), validation_every=4, checkpoint=tmp_path / "b.zarr",
                  checkpoint_every=3, **kw)  # fmt: skip
    assert_same_track(again, ref, atol=0)
    with pytest.raises(ValueError, match="inside the Checkpoint"):
        track(net, x, y, checkpoint=Checkpoint(tmp_path / "c.zarr"), checkpoint_every=5, **kw)
    with pytest.raises(ValueError, match="inside the Validation"):
        track(net, x, y, validation=Validation(x, y), validation_every=5, **kw)
    with pytest.raises(ValueError, match="Checkpoint every must be an integer >= 1"):
        Checkpoint("c.zarr", every=0)
    with pytest.raises(TypeError, match="Checkpoint path"):
        Checkpoint(3)
    with pytest.raises(TypeError, match="Validation every"):
        Validation(x, y, every=2.5)
    with pytest.raises(TypeError, match="validation must be a pair"):
        track(net, x, y, validation=(x, y, 3), **kw)
    with pytest.raises(ValueError, match="validation_every must be an integer >= 1"):
        track(net, x, y, validation=(x, y), validation_every=0, **kw)
    with pytest.raises(ValueError, match="checkpoint_every must be an integer >= 1"):
        track(net, x, y, checkpoint_every=0, **kw)
    with pytest.raises(ValueError, match="shaped like the training inputs"):
        track(net, x, y, validation=(x[:, :4], y), **kw)
    with pytest.raises(ValueError, match="validation labels go up to 3"):
        track(net, x, y, validation=(x[:4], torch.tensor([0, 1, 2, 3])), **kw)


def test_bad_inputs_are_refused(data):
    x, y = data
    net = mlp(8, 3, width=4)
    kw = dict(lr=0.1, steps=3, n_runs=1, progress=False)
    with pytest.raises(TypeError, match="labels must be integers"):
        track(net, x, y.double(), **kw)
    with pytest.raises(ValueError, match=r"classes \[1\] have no samples"):
        track(net, x, torch.where(y == 1, 2, y), **kw)
    with pytest.raises(ValueError, match="labels go up to 3 but the network returns 3 logits"):
        track(net, torch.cat([x, x[:1]]), torch.cat([y, torch.tensor([3])]), **kw)
    with pytest.raises(ValueError, match=">= 0"):
        track(net, x, y - 1, **kw)
    bad = x.clone()
    bad[4, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf in 1 samples \\(first: sample 4\\)"):
        track(net, bad, y, **kw)
    with pytest.raises(ValueError, match="record_every=5 exceeds steps=3"):
        track(net, x, y, record_every=5, **kw)
    with pytest.raises(TypeError, match="probes"):
        track(net, x, y, probes=2.5, **kw)
    with pytest.raises(TypeError, match="probes"):
        track(net, x, y, probes=np.array([0.0, 1.0]), **kw)
    with pytest.raises(ValueError, match="twice"):
        track(net, x, y, probes=[1, 1, 2], **kw)
    with pytest.raises(ValueError, match="probes must be indices"):
        track(net, x, y, probes=[0, 99], **kw)
    with pytest.raises(ValueError, match="accepted values"):
        track(net, x, y, init="zeros", **kw)
    with pytest.raises(ValueError, match="submodules"):
        track(net, x, y, feature="body.9", **kw)
    with pytest.raises(MemoryError, match=r"need .* GiB but only .* GiB are free"):
        track(net, x, y, lr=0.1, steps=10**9, n_runs=64, progress=False)
    with pytest.raises(TypeError, match="dtype must be a floating-point torch dtype"):
        track(net, x, y, **{**kw, "dtype": torch.int64})
    with pytest.raises(TypeError, match="feature must be"):
        track(net, x, y, feature=3, **kw)
    with pytest.raises(TypeError, match="seed must be an integer"):
        track(net, x, y, seed=1.5, **kw)
    with pytest.raises(ValueError, match="not a torch device"):
        track(net, x, y, device="gpu0", **kw)
    with pytest.raises(TypeError, match="BatchNorm1d"):
        track(torch.nn.Sequential(torch.nn.Linear(8, 3), torch.nn.BatchNorm1d(3)), x, y, **kw)
    with pytest.raises(TypeError, match="unexpected keyword argument 'runs'"):  # the 0.1 spelling of n_runs
        track(net, x, y, lr=0.1, steps=2, runs=2, progress=False)
    ds = track(net, x, y, lr=0.1, steps=2, n_runs=2, progress=False)
    assert ds.sizes["run"] == 2 and ds.attrs["n_runs"] == 2
