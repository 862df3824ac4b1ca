"""Bad input to the core functions: one clear error naming the parameter and the accepted values, never a silent
result or an error from deep inside. Grouped by category; each case failed (ran, or raised an obscure error) before
the check that now refuses it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchsde

import lesde
from lesde import separability
from lesde.schedules import Constant, Exponential, PowerLaw


@pytest.fixture
def model():
    return lesde.LESDE(2, 2, 3, alpha=1.0, noise=1.0)


def _run(model, **kw):
    return lesde.simulate(model, **{"t_end": 1.0, "dt": 0.1, "n_paths": 4, "progress": False, **kw})


# ------------------------------------------------------------------------------------------ time axes and paths


@pytest.mark.parametrize("t0, t1", [(0.0, 0.5), (0.2, 1.5)])
def test_a_brownian_motion_that_does_not_cover_the_run_is_refused(model, t0, t1):
    bm = torchsde.BrownianInterval(t0=t0, t1=t1, size=(4, model.brownian_size), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"bm covers times \[.*\] but the run needs \[0, 1\]"):
        _run(model, bm=bm, dtype=torch.float64)
    wrapped = torchsde.BrownianPath(t0=t0, w0=torch.zeros(4, model.brownian_size, dtype=torch.float64))
    with pytest.raises(ValueError, match="bm covers times"):  # a BrownianPath spans [t0, t0 + 1]
        _run(model, bm=wrapped, dtype=torch.float64, t_end=2.0)


def test_a_brownian_motion_covering_the_run_is_used(model):
    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(4, model.brownian_size), dtype=torch.float64)
    ds = _run(model, bm=bm, dtype=torch.float64)
    assert np.isfinite(ds.class_mean.values).all()


def test_save_times_must_be_one_dimensional(model):
    with pytest.raises(ValueError, match=r"save_times must be a 1-D sequence of times, got shape \(2, 2\)"):
        _run(model, save_times=[[0.0, 0.5], [0.7, 1.0]])


# ------------------------------------------------------------------------------------------ seeds


@pytest.mark.parametrize("seed", [2**32, 2**62, -1])
def test_seeds_are_32_bit_unsigned_integers_everywhere(model, seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        _run(model, seed=seed)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        lesde.sgd.run_sgd(lesde.sgd.UFM(2, 2, 3), lr=0.1, batch_size=1, steps=2, seed=seed, progress=False)


@pytest.mark.parametrize("seed", [1.0, True, "3"])
def test_a_seed_that_is_not_an_integer_is_a_type_error(model, seed):
    with pytest.raises(TypeError, match="seed must be an integer"):
        _run(model, seed=seed)


def test_the_largest_seed_runs(model):
    assert _run(model, seed=2**32 - 1, n_paths=2).attrs["seed"] == 2**32 - 1


def test_a_spec_seed_out_of_range_names_the_key():
    from lesde.config import ConfigError, check_simulate

    with pytest.raises(ConfigError, match=r"\[simulate\] seed = 4294967296 must be an integer in \[0, 2\*\*32\)"):
        check_simulate({"t_end": 1.0, "dt": 0.1, "n_paths": 2, "seed": 2**32})


# ------------------------------------------------------------------------------------------ schedules


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: PowerLaw(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 0.6])), "scale has 3, exponent has 2"),
        (lambda: Exponential([1.0, 2.0], [0.1, 0.2, 0.3]), "scale has 2, rate has 3"),
        (lambda: Constant(torch.ones(2, 2)), r"value must be a number or a 1-D sequence .* shape \(2, 2\)"),
    ],
)
def test_schedule_parameters_of_mismatched_lengths_are_refused_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_scalars_broadcast_against_per_path_parameters():
    s = PowerLaw(torch.tensor([1.0, 2.0]), 0.5)
    assert s.batch_shape == (2,) and torch.allclose(s(0.0), torch.tensor([1.0, 2.0], dtype=torch.float64))


# ------------------------------------------------------------------------------------------ separability


def test_wilson_interval_refuses_nan_counts():
    with pytest.raises(ValueError, match=r"successes must be finite counts; got nan"):
        separability.wilson_interval(float("nan"), 10)
    with pytest.raises(ValueError, match="trials must be finite counts; got inf"):
        separability.wilson_interval(np.array([1.0, 2.0]), np.array([10.0, np.inf]))


def test_half_precision_features_are_tested_in_float32(gen):
    X = torch.randn(5, 6, 2, generator=gen)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    for low in (torch.float16, torch.bfloat16):
        assert torch.equal(separability.separable(X.to(low), y), separability.separable(X.to(low).float(), y))
