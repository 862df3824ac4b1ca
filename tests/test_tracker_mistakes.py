"""Tracker in hand-written loops: the common loop mistakes are caught or recorded right, the optimizer is recorded,
several runs combine into the Dataset track gives, and validation is recorded as track records it."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lesde.empirical import Tracker, Validation, combine_runs, init_nets, load_dataset, mlp, track
from lesde.empirical.tracks.track_inputs import sample_order

RECORDED = ("features", "increment", "sampled_feature", "sampled_residual", "sampled_index", "sampled_label",
            "sampled_loss", "loss", "accuracy")  # fmt: skip


def assert_same_track(a, b, atol=1e-12):
    for v in RECORDED:
        np.testing.assert_allclose(a[v].values, b[v].values, atol=atol, rtol=0, equal_nan=True, err_msg=v)
    assert a.step.values.tolist() == b.step.values.tolist()


@pytest.fixture
def data():
    x, y = load_dataset("gaussian-mixture", classes=3, per_class=6, dim=8, seed=4)
    return x.double(), y


def _model(seed=5):
    return init_nets(mlp(8, 3, width=10), 1, seed)[0].double()


def test_penalty_forward_on_another_sample_is_not_recorded_as_the_trained_one(data):
    """A loss with a penalty on another sample runs a second grad-enabled batch-size-1 forward after the trained
    sample's: the recorded pre-step feature is still the trained sample's."""
    x, y = data
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    order, other = [3, 11, 0, 7, 15], [9, 2, 14, 5, 1]
    expected = []
    with Tracker(model, x, y, lr=0.1, probes=6) as tr:
        for i, j in zip(order, other):
            with torch.no_grad():
                expected.append(model(x[i : i + 1])[0].clone())
            opt.zero_grad()
            loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]) + 0.1 * model(x[j : j + 1]).pow(2).sum()
            loss.backward()
            opt.step()
            tr.step(i, y[i])
        ds = tr.dataset()
    got = ds.sampled_feature.values[0, 1:]
    np.testing.assert_allclose(got, torch.stack(expected).numpy(), rtol=0, atol=1e-12)
    assert ds.sampled_index.values[0, 1:].tolist() == order


def test_step_before_optimizer_step_raises(data):
    x, y = data
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tr = Tracker(model, x, y, lr=0.1)
    opt.zero_grad()
    F.cross_entropy(model(x[4:5]), y[4:5]).backward()
    with pytest.raises(RuntimeError, match=r"before the parameter update.*after optimizer.step\(\)"):
        tr.step(4, y[4])
    opt.step()
    tr.step(4, y[4])  # in the right order the same step is recorded
    assert tr.dataset().sizes["step"] == 2
    # an update through p.data bypasses the version counters: refused with the fix named
    opt.zero_grad()
    F.cross_entropy(model(x[2:3]), y[2:3]).backward()
    for p in model.parameters():
        p.data.add_(p.grad, alpha=-0.1)
    with pytest.raises(RuntimeError, match=r"p\.data"):
        tr.step(2, y[2])


def test_skipped_step_raises(data):
    """One missing tracker.step() would make the next increment span two updates."""
    x, y = data
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tr = Tracker(model, x, y, lr=0.1)
    for i in (3, 8):  # two optimizer steps, the first not recorded
        opt.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        opt.step()
    with pytest.raises(RuntimeError, match="went unrecorded"):
        tr.step(8, y[8])


def test_momentum_warns_and_the_optimizer_is_recorded(data):
    x, y = data
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.warns(UserWarning, match=r"SGD\(.*momentum=0.9.*\) is not plain SGD at lr=0.1"):
        tr = Tracker(model, x, y, optimizer=opt)
    ds = tr.dataset()
    assert ds.attrs["optimizer"] == "SGD" and tr.lr == 0.1
    assert json.loads(ds.attrs["optimizer_settings"])[0]["momentum"] == 0.9


@pytest.mark.parametrize(
    "make,warns",
    [
        (lambda p: torch.optim.SGD(p, lr=0.1), False),
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), True),  # step 2 mixes in step 1's gradient
        (lambda p: torch.optim.SGD(p, lr=0.05), True),  # another learning rate than the Tracker's
        (lambda p: torch.optim.Adam(p, lr=0.1), True),
    ],
)
def test_update_rule_checked_without_the_optimizer(data, make, warns):
    """Without optimizer=, the first steps' parameter change is compared with -lr * grad."""
    x, y = data
    model = _model()
    opt = make(model.parameters())
    tr = Tracker(model, x, y, lr=0.1)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for i in (3, 11, 0, 7):
            opt.zero_grad()
            F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
            opt.step()
            tr.step(i, y[i])
    hit = [m for m in w if "not -lr * gradient" in str(m.message)]
    assert len(hit) == int(warns), [str(m.message) for m in w]
    rule = tr.dataset().attrs["update_rule"]
    assert rule.startswith("not -lr * grad") if warns else rule == "-lr * grad on the first 3 steps"


def test_transformed_input_warns_once_and_records(data):
    x, y = data
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tr = Tracker(model, x, y, optimizer=opt)
    with pytest.warns(UserWarning, match="input is not inputs"):
        for i in (1, 2):
            opt.zero_grad()
            F.cross_entropy(model(x[i : i + 1] + 0.01), y[i : i + 1]).backward()  # an input pipeline's transform
            opt.step()
            tr.step(i, y[i])
    assert tr.dataset().sizes["step"] == 3


def test_several_trackers_combine_into_the_track_of_several_runs(data):
    x, y = data
    net, R, steps, seed = mlp(8, 3, width=10), 3, 12, 7
    val = Validation(x[::2], y[::2], every=5)
    ref = track(net, x, y, lr=0.1, steps=steps, n_runs=R, probes=9, seed=seed, validation=val, dtype=torch.float64,
                progress=False)  # fmt: skip
    order = sample_order(len(y), R, steps, seed)
    runs = []
    for r, model in enumerate(init_nets(net, R, seed)):
        model = model.double()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with Tracker(model, x, y, optimizer=opt, probes=9, seed=seed, run=r, steps=steps, validation=val) as tr:
            for s in range(steps):
                i = int(order[r, s])
                opt.zero_grad()
                F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
                opt.step()
                tr.step(i, y[i])
            runs.append(tr.dataset())
    mine = combine_runs(runs[::-1])  # any order: sorted by run
    assert_same_track(ref, mine)
    assert mine.run.values.tolist() == [0, 1, 2] and mine.attrs["n_runs"] == 3
    for v in ("validation_accuracy", "validation_loss"):
        np.testing.assert_allclose(mine[v].values, ref[v].values, rtol=0, atol=1e-12)
    assert mine.validation_step.values.tolist() == [0, 5, 10, 12]
    with pytest.raises(ValueError, match="runs repeat"):
        combine_runs([runs[0], runs[0]])
    with pytest.raises(ValueError, match="validation needs steps"):
        Tracker(_model(), x, y, lr=0.1, validation=val)
