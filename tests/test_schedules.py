import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from lesde.schedules import Constant, Exponential, PowerLaw, Tabulated, as_schedule


@pytest.mark.parametrize(
    "sched, fn",
    [
        (Constant(0.7), lambda t: 0.7),
        (PowerLaw(2.0, 0.5), lambda t: 2.0 * (1 + t) ** -0.5),
        (PowerLaw(1.5, 1.0, offset=2.0), lambda t: 1.5 / (2.0 + t)),
        (PowerLaw(1.5, 1.0 + 1e-10), lambda t: 1.5 * (1 + t) ** -(1.0 + 1e-10)),
        (Exponential(3.0, 0.25), lambda t: 3.0 * math.exp(-0.25 * t)),
        (Exponential(3.0, 0.0), lambda t: 3.0),
        (Tabulated([0.0, 1.0, 4.0], [1.0, 3.0, 0.5]), lambda t: float(np.interp(t, [0, 1, 4], [1, 3, 0.5]))),
        (as_schedule(lambda t: torch.sin(t) + 2.0), lambda t: math.sin(t) + 2.0),
    ],
)
def test_values_and_integrals(sched, fn):
    for t in [0.0, 0.3, 2.5, 7.0]:
        assert float(sched(t)) == pytest.approx(fn(t), rel=1e-12)
    for t0, t1 in [(0.0, 1.0), (0.5, 6.0), (2.0, 2.0)]:
        ref = quad(fn, t0, t1, limit=200, points=[1.0, 4.0] if t0 < 1 < t1 else None)[0]
        assert float(sched.integral(t0, t1)) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_batched_parameters_broadcast():
    s = PowerLaw(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 1.0, 1.5]))
    assert s.batch_shape == (3,)
    v = s(torch.tensor([[0.0], [3.0]]))  # (2, 3)
    assert v.shape == (2, 3)
    np.testing.assert_allclose(v[1].numpy(), [1 / 2, 2 / 4, 3 / 8])
    sub = s.select(torch.tensor([2, 0]))
    np.testing.assert_allclose(sub.integral(0.0, 3.0).numpy(), s.integral(0.0, 3.0).numpy()[[2, 0]])


def test_spec_round_trip():
    for s in [Constant(1.0), PowerLaw(2.0, 0.7, 3.0), Exponential(1.0, 0.1), Tabulated([0, 1], [2, 3])]:
        again = as_schedule(s.to_spec())
        assert type(again) is type(s)
        assert float(again(1.7)) == float(s(1.7))


@pytest.mark.parametrize(
    "bad, err",
    [
        (float("nan"), ValueError),
        ({"kind": "Nope"}, ValueError),
        ("fast", TypeError),
        ({"kind": "PowerLaw", "scale": 1.0}, TypeError),
    ],
)
def test_bad_schedules(bad, err):
    with pytest.raises(err, match="alpha"):
        as_schedule(bad, "alpha")


def test_callable_wrong_shape_is_refused():
    s = as_schedule(lambda t: torch.ones(3), "alpha")
    with pytest.raises(ValueError, match="alpha.*shape"):
        s(torch.tensor(0.5))
