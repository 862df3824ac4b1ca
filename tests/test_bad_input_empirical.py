"""Bad input to the public functions of :mod:`lesde.empirical` and to ``lesde estimate`` / ``lesde imitate``: each is
refused up front in one error naming the parameter (or the cause and the fix), never an obscure error from deep
inside and never an all-NaN result returned without a word."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from lesde.cli.main import main
from lesde.empirical import (
    Tracker,
    cnn,
    estimate,
    fit,
    imitate,
    label_noise_experiment,
    load_dataset,
    mlp,
    simulate_discrete,
    tail_index,
    track,
)
from lesde.empirical.fitting import FitError


@pytest.fixture(scope="module")
def data():
    return load_dataset("gaussian-mixture", classes=3, per_class=10)


KW = dict(lr=0.05, steps=8, n_runs=2, progress=False)


@pytest.fixture(scope="module")
def base(data):
    return track(mlp(10, 3, width=8), *data, **KW)


@pytest.fixture(scope="module")
def est(base):
    return estimate(base, window=2)


class NaNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(10, 3)

    def forward(self, x):
        return self.lin(x) * float("nan")


class NoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(10, 3))

    def forward(self, x):
        return x @ self.w


# ---------------------------------------------------------------- data and networks


@pytest.mark.parametrize(
    "kwargs, error, match",
    [(dict(per_class=-1), ValueError, "per_class must be an integer >= 1, got -1"),
     (dict(per_class=0), ValueError, "per_class must be an integer >= 1"),
     (dict(seed=-1), ValueError, r"seed must be an integer in \[0, 2\*\*32\)"),
     (dict(seed=2**62), ValueError, r"seed must be an integer in \[0, 2\*\*32\)"),
     (dict(classes=2.5), TypeError, "classes must be an int, a list of ints or None, got 2.5")],
)  # fmt: skip
def test_load_dataset_checks_its_arguments_up_front(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_dataset("gaussian-mixture", **{"classes": 3, **kwargs})


@pytest.mark.parametrize("channels, match", [((), "at least one convolution"), ((0,), "channels must be an integer")])
def test_cnn_refuses_empty_or_zero_channels(channels, match):
    with pytest.raises(ValueError, match=match):
        cnn((1, 10), 3, channels=channels)


def test_simulate_discrete_refuses_a_model_that_is_not_an_lesde():
    with pytest.raises(TypeError, match="model must be a lesde.LESDE"):
        simulate_discrete(None, lr=0.01, steps=5)


# ---------------------------------------------------------------- track: data and network that do not fit


def test_empty_inputs_are_refused(data):
    x, y = data
    with pytest.raises(ValueError, match=r"inputs hold no samples \(shape \(0, 10\)\)"):
        track(mlp(10, 3, width=8), x[:0], y[:0], **KW)


def test_inputs_that_do_not_fit_the_network_name_the_shape(data):
    with pytest.raises(ValueError, match=r"does not accept the inputs: one sample has shape \(10,\)"):
        track(mlp(12, 3, width=8), *data, **KW)


def test_penultimate_of_a_module_without_a_linear_is_refused(data):
    with pytest.raises(ValueError, match="penultimate.*has none"):
        track(NoLinear(), *data, feature="penultimate", **KW)


class UnusedLast(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(10, 3), nn.Linear(3, 3)

    def forward(self, x):
        return self.a(x)


def test_penultimate_of_a_linear_the_forward_never_calls_is_refused(data):
    """Not a shape error, not NaN features: the message names the module and the fix."""
    x, y = data
    with pytest.raises(ValueError, match="last nn.Linear 'b', which the network's forward never calls"):
        track(UnusedLast(), x, y, feature="penultimate", **KW)
    net = UnusedLast()
    with pytest.raises(ValueError, match="never calls"):
        Tracker(net, x, y, steps=2, optimizer=torch.optim.SGD(net.parameters(), lr=0.05), feature="penultimate")


@pytest.mark.parametrize("seed", [-5, 2**62])
def test_track_tracker_and_simulate_discrete_refuse_a_seed_out_of_range(data, seed):
    import lesde

    x, y = data
    match = r"seed must be an integer in \[0, 2\*\*32\)"
    with pytest.raises(ValueError, match=match):
        track(mlp(10, 3, width=8), x, y, seed=seed, **KW)
    net = mlp(10, 3, width=8)
    with pytest.raises(ValueError, match=match):
        Tracker(net, x, y, steps=2, optimizer=torch.optim.SGD(net.parameters(), lr=0.05), seed=seed)
    with pytest.raises(ValueError, match=match):
        simulate_discrete(lesde.LESDE(3, 3, 10, alpha=1.0, beta=0.2, noise=0.1), lr=0.01, steps=5, seed=seed)


def test_an_absent_cuda_device_is_refused(data):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    with pytest.raises(ValueError, match="device='cuda' but CUDA is not available"):
        track(mlp(10, 3, width=8), *data, device="cuda", **KW)


# ---------------------------------------------------------------- track: NaN and divergence reported, not recorded


def test_a_model_returning_nan_logits_is_refused_before_training(data):
    with pytest.raises(FloatingPointError, match="NaN or inf features or logits before any training"):
        track(NaNNet(), *data, **KW)


def test_a_diverging_learning_rate_is_reported_with_the_step(data):
    x, y = data
    with pytest.raises(FloatingPointError, match=r"the run diverged: .* from recorded step \d+ .*lower the learning"):
        track(mlp(10, 3, width=8), x * 1e3, y, **{**KW, "lr": 1e6})


# ---------------------------------------------------------------- Tracker.step: indices and labels


def tracker_after_one_step(data):
    x, y = data
    net = mlp(10, 3, width=8)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    tr = Tracker(net, x, y, steps=2, optimizer=opt)
    loss = nn.functional.cross_entropy(net(x[2:3]), y[2:3])
    opt.zero_grad()
    loss.backward()
    opt.step()
    return tr


@pytest.mark.parametrize(
    "index, label, match",
    [(2.7, 1, r"index must be an integer .* got 2\.7"), (2, 1.4, r"label must be an integer .* got 1\.4"),
     (True, 0, "index must be an integer"), (999, 0, "index must be an integer <= 29")],
)  # fmt: skip
def test_tracker_step_refuses_non_integer_or_out_of_range(data, index, label, match):
    tr = tracker_after_one_step(data)
    with pytest.raises((TypeError, ValueError), match=match):
        tr.step(index, label)
    tr.close()


# ---------------------------------------------------------------- estimate: degenerate tracks


def test_constant_features_are_refused_not_nan(base):
    const = base.assign(features=base.features * 0 + 1, increment=base.increment * 0)
    with pytest.raises(ValueError, match="features never move"):
        estimate(const, window=2)


def test_zero_regressors_give_an_error_not_all_nan(base):
    zero = base.assign(sampled_feature=base.sampled_feature * 0)
    with pytest.raises(ValueError, match="alpha is NaN in every window.*regressor is 0"):
        estimate(zero, window=2)


def test_means_form_on_a_short_track_is_not_all_nan(base):
    """Before: the default window of a short track was 1 step, whose slope is NaN in every window."""
    est = estimate(base, form="means")
    assert est.attrs["window"] >= 2 and np.isfinite(est.alpha.values).any()
    with pytest.raises(ValueError, match="window >= 2"):
        estimate(base, form="means", window=1)


def test_a_track_without_its_run_dim_or_lr_is_refused(base):
    with pytest.raises(ValueError, match=r"dims \('step', 'probe', 'feature'\).*isel\(run=\[0\]\)"):
        estimate(base.isel(run=0))
    with pytest.raises(ValueError, match="no 'lr' attr"):
        estimate(base.drop_attrs())
    with pytest.raises(TypeError, match="must be an xarray.Dataset"):
        estimate(np.zeros(3))


# ---------------------------------------------------------------- fit


def test_fit_refuses_empty_or_string_quantities(est):
    for q in ((), "alpha"):
        with pytest.raises(ValueError, match="quantities must be a non-empty tuple"):
            fit(est, quantities=q)


def test_a_fit_that_does_not_converge_is_a_clear_error(est, monkeypatch):
    from lesde.empirical import fitting

    def no_convergence(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: Number of calls to function has reached maxfev = 20000.")

    monkeypatch.setattr(fitting, "curve_fit", no_convergence)
    with pytest.raises(FitError, match="did not converge .*maxfev.*try model='auto'"):
        fit(est, model="power")
    with pytest.raises(FitError, match="model='auto': no model could be fitted to alpha"):
        fit(est, model="auto")


# ---------------------------------------------------------------- imitate


@pytest.mark.parametrize("other", ["classes", "lr"])
def test_imitate_refuses_an_estimate_of_another_track(base, other):
    if other == "classes":
        x4, y4 = load_dataset("gaussian-mixture", classes=4, per_class=10)
        src = track(mlp(10, 4, width=8), x4, y4, **KW)
        match = "num_classes=4 in the estimate, 3 in track_ds"
    else:
        src = track(
            mlp(10, 3, width=8), *load_dataset("gaussian-mixture", classes=3, per_class=10), **{**KW, "lr": 0.02}
        )
        match = "lr=0.02 in the estimate, 0.05 in track_ds"
    other_est = estimate(src, window=2)
    for elasticity in (other_est, fit(other_est, model="const")):
        with pytest.raises(ValueError, match=match):
            imitate(base, elasticity)


@pytest.mark.parametrize("kwargs, match", [(dict(noise=-1.0), "noise must be >= 0"),
                                           (dict(noise=float("nan")), "noise must be finite"),
                                           (dict(warn_above=float("nan")), "warn_above must be finite")])  # fmt: skip
def test_imitate_names_a_bad_noise_or_threshold(base, est, kwargs, match):
    with pytest.raises(ValueError, match=match):
        imitate(base, est, **kwargs)


# ---------------------------------------------------------------- label-noise experiment


def test_tail_index_names_an_unknown_quantity(est):
    with pytest.raises(ValueError, match="quantity='gamma' is not supported"):
        tail_index(est, "gamma")


@pytest.mark.parametrize(
    "rates, match", [((0.0, 0.2, 0.0), "rates lists 0 twice"), ((), "rates is empty"), ((1.5,), r"\[0, 1\)")]
)
def test_label_noise_rates_are_checked_before_training(rates, match, monkeypatch):
    from lesde.empirical import label_corruption

    monkeypatch.setattr(label_corruption, "run_experiment", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match=match):
        label_noise_experiment(rates=rates, tiny=True, progress=False)


def test_importing_the_label_noise_example_runs_nothing(monkeypatch):
    import lesde.empirical

    monkeypatch.setattr(lesde.empirical, "label_noise_experiment", lambda *a, **k: pytest.fail("ran on import"))
    monkeypatch.setattr(sys, "argv", ["pytest", "--not-an-option"])
    sys.modules.pop("lesde.examples.label_noise", None)
    module = importlib.import_module("lesde.examples.label_noise")
    assert callable(module.main)
    sys.modules.pop("lesde.examples.label_noise", None)


# ---------------------------------------------------------------- the command line


CLI = ["estimate", "--dataset", "gaussian-mixture", "--classes", "3", "--n-runs", "2", "--width", "8", "--quiet"]


def cli_error(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "extra, option",
    [(["--net", "cnn"], "--net"), (["--feature", "penultimate"], "--feature"), (["--record-every", "2"],
     "--record-every"), (["--fit", "exp"], "--fit"), (["--transform", "residual"], "--transform"),
     (["--init", "keep"], "--init"), (["--no-standardize"], "--standardize")],
)  # fmt: skip
def test_label_noise_mode_refuses_the_options_it_ignores(capsys, tmp_path, extra, option):
    code, err = cli_error(capsys, *CLI, "--steps", "20", "--label-noise", "0", "0.2", *extra, "--out",
                          str(tmp_path / "l.nc"))  # fmt: skip
    assert code == 2 and err.count("\n") == 0 and f"{option} does not apply to the label-corruption" in err
    assert not (tmp_path / "l.nc").exists()


def test_duplicate_rates_are_refused_before_training(capsys, tmp_path, monkeypatch):
    from lesde.empirical import label_corruption

    monkeypatch.setattr(label_corruption, "run_experiment", lambda *a, **k: pytest.fail("trained"))
    code, err = cli_error(capsys, *CLI, "--label-noise", "0", "0.2", "0", "--out", str(tmp_path / "l.nc"))
    assert code == 2 and "--label-noise lists the rate 0 twice" in err


@pytest.mark.parametrize("fit_model", ["auto", "power"])
def test_a_track_too_short_for_the_fit_is_a_usage_error(capsys, tmp_path, fit_model):
    """Before: ``--steps 1 --fit auto`` trained, then ended in 'RuntimeError: no model could be fitted'."""
    code, err = cli_error(capsys, *CLI, "--steps", "1", "--fit", fit_model, "--out", str(tmp_path / "s.nc"))
    assert code == 2 and "--steps 1 gives 1 estimate window" in err and f"--fit {fit_model} needs at least" in err


def test_imitate_on_a_file_that_is_not_an_estimate_is_one_line(capsys, tmp_path):
    path = tmp_path / "x.nc"
    xr.Dataset({"a": ("t", [1.0, 2.0])}).to_netcdf(path, engine="h5netcdf")
    code, err = cli_error(capsys, "imitate", str(path), "--out", str(tmp_path / "i.nc"))
    assert code == 2 and err.count("\n") == 0 and "is not a file written by lesde estimate" in err
    assert "Errno" not in err and not (tmp_path / "i.nc").exists()


@pytest.mark.parametrize(
    "extra, match",
    [(["--window", "0"], "--window must be an integer >= 1"),
     (["--form", "means", "--window", "1"], "--window must be an integer >= 2"),
     (["--n-runs", "0"], "n_runs must be an integer >= 1, got 0")],
)  # fmt: skip
def test_estimate_options_refused_before_training(capsys, tmp_path, monkeypatch, extra, match):
    """Before: --window 0 was refused only after the training, --n-runs 0 silently ran the default 8 runs."""
    from lesde.empirical.tracks import tracking

    monkeypatch.setattr(tracking, "run_track", lambda *a, **k: pytest.fail("trained"))
    code, err = cli_error(capsys, *CLI, "--steps", "20", *extra, "--out", str(tmp_path / "e.nc"))
    assert code == 2 and match in err
