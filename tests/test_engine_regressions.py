"""Regression tests for the engine defects of issue 9 (one test each) and its bad-input list."""

import math

import numpy as np
import pytest
import torch
import torchsde

import lesde
from lesde.integrators import PATH_BLOCK, REGISTRY, get
from lesde.schedules import PowerLaw, Tabulated


class BrownianMotion(torch.nn.Module):
    """dX = dW in D dimensions (a generic torchsde module)."""

    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, D=3):
        super().__init__()
        self.brownian_size = D

    def f(self, t, y):
        return torch.zeros_like(y)

    def g(self, t, y):
        return torch.ones_like(y)


@pytest.mark.parametrize("method", ["torchsde:euler", "torchsde:srk", "torchsde:milstein", "euler"])
def test_save_times_off_the_step_grid_have_the_right_variance(method):
    """Save times [0.3, 0.7, 1] with dt 0.25: Var X(0.7) must be 0.7 (linear interpolation gave 0.664)."""
    P = 6000
    ds = lesde.simulate(
        BrownianMotion(),
        t_end=1.0,
        dt=0.25,
        n_paths=P,
        save_times=[0.3, 0.7, 1.0],
        x0=torch.zeros(3),
        dtype=torch.float64,
        method=method,
        seed=1,
        progress=False,
    )
    var = ds.state.var("path").mean("component").values  # (time,)
    se = np.sqrt(2 / (3 * P)) * np.array([0.3, 0.7, 1.0])  # sd of a variance estimate over 3P samples
    np.testing.assert_array_less(np.abs(var[1:] - [0.3, 0.7, 1.0]), 4.5 * se)


def test_torchsde_long_runs_do_not_recurse():
    """2.1e4 steps through torchsde (a RecursionError before the Brownian interval was built with dt)."""
    ds = lesde.simulate(
        BrownianMotion(1), t_end=2.1, dt=1e-4, n_paths=1, n_save=2, x0=torch.zeros(1), method="torchsde:euler",
        progress=False,
    )  # fmt: skip
    assert np.isfinite(ds.state.values).all()


class Damped(lesde.LESDE):
    """A subclass with its own drift: -X on top of the LE-SDE drift."""

    def f(self, t, y):
        return super().f(t, y) - y


def test_overridden_drift_is_honoured_by_euler_and_refused_by_exact():
    model = Damped(2, 2, 3, alpha=0.5, noise=0.0)
    x0 = torch.ones(6, 2)
    kw = dict(t_end=1.0, dt=1e-3, n_paths=1, n_save=2, x0=x0, dtype=torch.float64, progress=False)
    ds = lesde.simulate(model, method="euler", **kw)
    assert ds.attrs["integrator_plan"] == "generic"
    # all class means equal 1: growth alpha pi_k = 0.25 from the LE-SDE drift, -1 from the override
    np.testing.assert_allclose(ds.class_mean.isel(time=-1).values, math.exp(0.25 - 1.0), rtol=1e-3)
    with pytest.raises(ValueError, match="overrides"):
        lesde.simulate(model, method="exact", **kw)
    with pytest.raises(ValueError, match="overrides"):
        lesde.simulate(model, method="exact", **(kw | {"save": "full"}))
    assert lesde.integrators.check("exact", model) and lesde.integrators.check("euler", model) is None


def test_within_var_overflow_is_detected_while_the_state_is_finite():
    """noise 1e20 and x0_scale 1e20 in float32: ||X_i - Xbar||^2 ~ 1e40 overflows although X ~ 1e20 does not."""
    model = lesde.LESDE(2, 2, 3, noise=1e20)
    for save in ("means", "full"):
        with pytest.raises(lesde.SimulationOverflowError, match="within-class variance"):
            lesde.simulate(model, t_end=1.0, dt=0.1, n_paths=2, x0_scale=1e20, save=save, progress=False)


def test_tabulated_schedules_with_per_path_values():
    times = [0.0, 0.5, 2.0]
    values = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0], [0.3, 0.3, 0.3]])
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(t_end=2.0, dt=0.01, n_save=3, x0=x0, dtype=torch.float64, progress=False)
    for method in ("euler", "exact"):
        batched = lesde.simulate(lesde.LESDE(3, 2, 2, alpha=Tabulated(times, values), noise=0.0), n_paths=3,
                                 method=method, **kw)  # fmt: skip
        for i in range(3):
            one = lesde.simulate(lesde.LESDE(3, 2, 2, alpha=Tabulated(times, values[i]), noise=0.0), n_paths=1,
                                 method=method, **kw)  # fmt: skip
            np.testing.assert_allclose(batched.class_mean.isel(path=i).values, one.class_mean.isel(path=0).values,
                                       rtol=1e-9, atol=1e-12)  # fmt: skip


def test_elasticity_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"elasticity must be a \(K, K\)"):
        lesde.LESDE(3, 2, 2, elasticity=torch.ones(2, 3, 3))


# ---------------------------------------------------------------------------------------------- seeds
def test_same_seed_same_numbers_whatever_the_chunking_and_threads():
    model = lesde.LESDE(3, 2, [2, 3, 4], alpha=1.0, beta=0.1, noise=[0.5, 1.0, 2.0])
    kw = dict(t_end=0.5, dt=0.05, n_paths=3 * PATH_BLOCK + 5, save="full", progress=False, seed=7)
    ref = lesde.simulate(model, **kw)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for chunk in (1, 16, 64, PATH_BLOCK + 1, 10**6):
            other = lesde.simulate(model, chunk_size=chunk, **kw)
            np.testing.assert_array_equal(other.features.values, ref.features.values)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("method", ["euler", "exact", "torchsde:euler"])
@pytest.mark.parametrize("save", ["means", "full"])
def test_seed_groups_equal_separate_runs(method, save):
    model = lesde.LESDE(3, 3, 2, alpha=PowerLaw(1.0, 0.5), beta=-0.2, transform="residual")
    kw = dict(t_end=0.4, dt=0.1, save=save, method=method, progress=False)
    both = lesde.simulate(model, n_paths=2 * 70, seed=[11, 12], **kw)
    for g, s in enumerate((11, 12)):
        one = lesde.simulate(model, n_paths=70, seed=s, **kw)
        np.testing.assert_array_equal(both.class_mean.values[70 * g : 70 * (g + 1)], one.class_mean.values)
        np.testing.assert_array_equal(both.within_var.values[70 * g : 70 * (g + 1)], one.within_var.values)
    assert both.attrs["seed"] == "[11, 12]"


# ---------------------------------------------------------------------------------------------- the protocol
def test_every_method_declares_the_protocol():
    model = lesde.LESDE(3, 3, 2)
    for name, integ in REGISTRY.items():
        assert integ.name == name and get(name) is integ
        assert integ.check(model) is None or isinstance(integ.check(model), str)
        mem = integ.memory(model, "means", 4, n_state=18)
        assert mem.fixed >= 0 and mem.per_path > 0
    assert get("euler").orders(model) == (1.0, 1.0)
    assert get("euler").orders(lesde.LESDE(3, 3, 2, noise="sampling", lr=0.1)) == (0.5, 1.0)
    with pytest.raises(ValueError, match="did you mean 'torchsde:srk'"):
        get("srk")


def test_simulate_asks_check_before_any_work(monkeypatch):
    integ = get("euler")
    calls = []
    monkeypatch.setattr(type(integ), "check", lambda self, model, **kw: "it cannot, for a test")
    monkeypatch.setattr(type(integ), "integrate", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match="it cannot, for a test"):
        lesde.simulate(lesde.LESDE(2, 2, 2), t_end=1.0, dt=0.1, n_paths=2, progress=False)
    assert not calls


# ---------------------------------------------------------------------------------------------- the model module
def test_buffers_move_with_the_module():
    model = lesde.LESDE(3, 3, [2, 3, 4], noise=torch.eye(3), transform="residual", elasticity=torch.eye(3))
    names = {n for n, _ in model.named_buffers()}
    assert {"labels", "counts", "class_probs", "sigma_class", "noise_chol", "elasticity", "transform.u"} <= names
    model.float()
    assert model.class_probs.dtype == torch.float32 and model.transform.u.dtype == torch.float32
    model.double()
    assert model.noise_chol.dtype == torch.float64 and model.alpha.params["value"].dtype == torch.float64
    moved = model.on("cpu")
    assert moved is not model and moved.labels is not model.labels


def test_public_helper_methods():
    model = lesde.LESDE(3, 2, [1, 2, 3], noise=[0.5, 1.0, 2.0])
    X = torch.randn(4, 6, 2, dtype=torch.float64)
    np.testing.assert_allclose(model.class_sums(X)[:, 2].numpy(), X[:, 3:].sum(1).numpy())
    np.testing.assert_allclose((model.averaging_matrix(X) @ X).numpy(), model.class_means(X).numpy())
    np.testing.assert_allclose(model.sample_sigmas(X).numpy(), [0.5, 1.0, 1.0, 2.0, 2.0, 2.0])
    assert model.weights_at(0.0, X).shape == (3, 3)
    assert model.expand_to_samples(model.class_means(X)).shape == X.shape


def test_as_stratonovich_runs_torchsde_midpoint():
    model = lesde.LESDE(3, 2, 2, alpha=1.0, noise=0.5)
    y0 = torch.zeros(4, 12)
    ys = torchsde.sdeint(model.as_stratonovich(), y0, torch.tensor([0.0, 0.5]), dt=0.05, method="midpoint")
    assert ys.shape == (2, 4, 12) and torch.isfinite(ys).all()
    with pytest.raises(ValueError, match="Ito and Stratonovich"):
        lesde.LESDE(3, 2, 2, noise="sampling", lr=0.1).as_stratonovich()


# ---------------------------------------------------------------------------------------------- bad input
SIM = dict(t_end=1.0, dt=0.1, n_paths=2, progress=False)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(dt=1e-9), ValueError, "steps"),
        (dict(n_save=10**8), ValueError, "n_save"),
        (dict(n_save=2.5), TypeError, "n_save"),
        (dict(save_times=[0.0, 1 + 2j]), TypeError, "complex"),
        (dict(t_end=1 + 0j), TypeError, "complex"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(seed=2**63), ValueError, "seed"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(seed=[1, 2, 3]), ValueError, "divide n_paths"),
        (dict(x0_scale=0.0), ValueError, "x0_scale"),
        (dict(x0_scale=float("inf")), ValueError, "x0_scale"),
        (dict(x0_scale=-1.0), ValueError, "x0_scale"),
        (dict(x0=torch.zeros(5, 2)), ValueError, r"x0 has shape \(5, 2\)"),
        (dict(x0=torch.zeros(3, 4, 2)), ValueError, "x0 has shape"),
        (dict(x0=torch.zeros(4, 2, dtype=torch.complex64)), TypeError, "complex"),
        (dict(x0=torch.full((4, 2), float("nan"))), ValueError, "x0"),
        (dict(device="gpu"), ValueError, "accepted here: 'cpu'"),
        (dict(device="tpu:0"), ValueError, "device"),
        (dict(device="cuda:7"), ValueError, "CUDA|cuda"),
        (dict(chunk_size=0), ValueError, "chunk_size"),
        (dict(method="srk"), ValueError, "torchsde:srk"),
        (dict(progress="yes"), TypeError, "progress"),
        (dict(bm=torchsde.BrownianInterval(0.0, 1.0, size=(3, 8))), ValueError, "bm has shape"),
    ],
)
def test_bad_simulate_input_is_refused_up_front(kwargs, err, match):
    with pytest.raises(err, match=match):
        lesde.simulate(lesde.LESDE(2, 2, 2), **(SIM | kwargs))


def test_mps_float64_is_refused():
    from lesde.validation import check_device

    with pytest.raises(ValueError, match="mps"):
        check_device("mps", torch.float64)


def test_huge_requests_fail_before_work():
    with pytest.raises(MemoryError, match="GiB"):  # K = 20000: the K x K operators alone
        lesde.simulate(lesde.LESDE(20000, 2, 1), method="exact", **SIM)
    with pytest.raises(MemoryError, match="GiB"):
        lesde.simulate(lesde.LESDE(20000, 2, 1), method="euler", **SIM)
    with pytest.raises(MemoryError, match="samples"):  # 1e9 samples: the model's tables alone
        lesde.LESDE(2, 2, 5 * 10**8)
    with pytest.raises(MemoryError, match="output"):
        lesde.simulate(lesde.LESDE(10, 512, 1000), save="full", **(SIM | {"n_paths": 10**6}))


def test_numpy_numbers_are_accepted_everywhere():
    model = lesde.LESDE(
        np.int64(3), np.int32(2), np.array([2, 3, 4]), alpha=np.float32(1.5), beta=np.float64(-0.1),
        noise=np.array([0.5, 1.0, 1.5]), lr=np.float32(0.1),
    )  # fmt: skip
    ds = lesde.simulate(model, t_end=np.float64(0.5), dt=np.float32(0.1), n_paths=np.int64(3), n_save=np.int64(3),
                        seed=np.uint32(4), x0_scale=np.float64(2.0), progress=False)  # fmt: skip
    assert ds.sizes["path"] == 3 and ds.sizes["time"] == 3
    assert lesde.LESDE(3, 2, 2, alpha=PowerLaw(np.float32(1.0), np.float64(0.5))).alpha(0.0) == 1.0


def test_attrs_t_end_is_the_last_save_time_and_exact_is_not_suggested_to_exact():
    model = lesde.LESDE(2, 2, 3)
    ds = lesde.simulate(model, t_end=1.0, dt=0.1, n_paths=2, save_times=[0.2, 0.6], progress=False)
    assert ds.attrs["t_end"] == pytest.approx(0.6) and float(ds.time[-1]) == pytest.approx(0.6)
    hot = lesde.LESDE(2, 2, 20, alpha=PowerLaw(4.0, 0.5))
    kw = dict(t_end=1e4, dt=1.0, n_paths=3, n_save=5, progress=False)
    with pytest.raises(lesde.SimulationOverflowError) as info:
        lesde.simulate(hot, method="exact", **kw)
    assert "float64" in str(info.value) and "method='exact'" not in str(info.value)
    with pytest.raises(lesde.SimulationOverflowError, match="method='exact'"):
        lesde.simulate(lesde.LESDE(2, 2, 3, alpha=400.0), t_end=2.0, dt=0.01, n_paths=2, progress=False)


@pytest.mark.gpu
def test_drift_and_diffusion_make_no_host_to_device_copies():
    """On CUDA, f, g_prod and the simulate loop's step move nothing from the host once the model is on the GPU."""
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    from torch.profiler import ProfilerActivity, profile

    model = lesde.LESDE(3, 4, [2, 3, 4], alpha=PowerLaw(1.0, 0.5), beta=0.2, transform="residual",
                        noise=[0.5, 1.0, 1.5]).cuda()  # fmt: skip
    y = torch.randn(8, model.num_samples * 4, device="cuda")
    t = torch.tensor(0.3, device="cuda")
    v = torch.randn_like(y)
    model.f(t, y), model.g_prod(t, y, v)  # caches
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            model.f(t, y)
            model.g_prod(t, y, v)
        torch.cuda.synchronize()
    copies = [e for e in prof.events() if "HtoD" in e.name]
    assert not copies, [e.name for e in copies]
