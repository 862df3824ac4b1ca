"""simulate(): moments against closed forms, strong order, coupling with torchsde, Datasets, bad input."""

import math

import numpy as np
import pytest
import torch
import torchsde
import xarray as xr
from scipy.integrate import quad_vec, solve_ivp
from scipy.linalg import expm

import lesde
from lesde.integrators import Integrator, Memory
from lesde.schedules import PowerLaw


def mean_operator(model, t):
    """B(t) = E(t) diag(pi) for T = identity: d Xbar = B Xbar dt + D^(1/2) dW (per feature)."""
    return (model.elasticity_matrix(t) * model.class_probs).numpy()


def noise_diag(model):
    return np.diag(model.sigma_class.numpy() ** 2 / model.counts.numpy())


def closed_form_constant(model, M0, t):
    """Mean expm(Bt) M0 and covariance int_0^t e^{Bs} D e^{B^T s} ds (per feature coordinate)."""
    B, D = mean_operator(model, 0.0), noise_diag(model)
    cov = quad_vec(lambda s: expm(B * s) @ D @ expm(B * s).T, 0, t, epsabs=1e-12)[0]
    return expm(B * t) @ M0, cov


def closed_form_ode(model, M0, t):
    """Time-varying coefficients: dm/dt = B(t) m, dC/dt = B C + C B^T + D (scipy, tight tolerances)."""
    K = model.num_classes
    D = noise_diag(model)

    def rhs(s, z):
        B = mean_operator(model, s)
        mm, C = z[: K * M0.shape[1]].reshape(K, -1), z[K * M0.shape[1] :].reshape(K, K)
        return np.concatenate([(B @ mm).ravel(), (B @ C + C @ B.T + D).ravel()])

    z0 = np.concatenate([M0.ravel(), np.zeros(K * K)])
    z = solve_ivp(rhs, (0, t), z0, rtol=1e-10, atol=1e-12).y[:, -1]
    return z[: M0.size].reshape(M0.shape), z[M0.size :].reshape(K, K)


def run_to_t1(model, method, paths, x0, seed, n_save=2, **kw):
    """float64 simulation to t = 1 from a fixed start: one jump for exact, dt = 0.01 for euler."""
    return lesde.simulate(
        model,
        t_end=1.0,
        dt=0.5 if method == "exact" else 0.01,
        n_paths=paths,
        n_save=n_save,
        method=method,
        dtype=torch.float64,
        x0=x0,
        seed=seed,
        progress=False,
        **kw,
    )


def check_moments(ds, mean_ref, cov_ref, paths):
    """Sample mean within 4.5 standard errors; sample covariance within 4.5 of its standard errors."""
    M = ds.class_mean.isel(time=-1).values.astype(np.float64)  # (P, K, m)
    K, m = M.shape[1:]
    mean_hat = M.mean(0)
    se = np.sqrt(np.diag(cov_ref))[:, None] / math.sqrt(paths)
    assert np.all(np.abs(mean_hat - mean_ref) < 4.5 * se), (mean_hat, mean_ref)
    Mc = (M - mean_hat).transpose(2, 0, 1).reshape(m * paths, K)  # features are i.i.d. copies
    cov_hat = Mc.T @ Mc / (m * paths - 1)
    se_cov = np.sqrt((cov_ref**2 + np.outer(np.diag(cov_ref), np.diag(cov_ref))) / (m * paths))
    assert np.all(np.abs(cov_hat - cov_ref) < 4.5 * se_cov), (cov_hat, cov_ref)


@pytest.mark.parametrize("counts", [3, [2, 3, 6]], ids=["balanced", "imbalanced"])
@pytest.mark.parametrize("method", ["exact", "euler"])
@pytest.mark.parametrize("save", ["means", "full"], ids=["in-law", "samples"])
def test_constant_coefficients_moments_at_t1(counts, method, save):
    """euler and exact, with the within-class statistics in law (save="means") or per sample (save="full")."""
    model = lesde.LESDE(3, 2, counts, alpha=1.2, beta=-0.3, noise=[0.8, 1.0, 1.3])
    x0 = torch.linspace(-1, 1, model.num_samples * 2).view(-1, 2)  # deterministic start
    M0 = model.class_means(x0[None].double())[0].numpy()
    paths = 6000
    ds = run_to_t1(model, method, paths, x0, seed=3, n_save=3, save=save)
    mean_ref, cov_ref = closed_form_constant(model, M0, 1.0)
    check_moments(ds, mean_ref, cov_ref, paths)
    # within-class variance: deviations are Brownian projected to zero class mean,
    # E within_var(t) = within_var(0) + sigma_k^2 m t (n_k - 1) / n_k
    n = model.counts.numpy()
    wv_ref = ds.within_var.isel(time=0).values.mean(0) + model.sigma_class.numpy() ** 2 * 2 * (n - 1) / n
    wv = ds.within_var.isel(time=-1).values
    se = wv.std(0) / math.sqrt(paths)
    assert np.all(np.abs(wv.mean(0) - wv_ref) < 4.5 * se), (wv.mean(0), wv_ref)


@pytest.mark.parametrize("counts", [4, [2, 3, 6]], ids=["balanced-spectral", "imbalanced-stepwise"])
def test_time_varying_exact_moments(counts):
    model = lesde.LESDE(3, 2, counts, alpha=PowerLaw(2.0, 0.7), beta=PowerLaw(-0.5, 1.2), noise=0.9)
    x0 = torch.linspace(-1, 1, model.num_samples * 2).view(-1, 2)
    M0 = model.class_means(x0[None].double())[0].numpy()
    ds = lesde.simulate(
        model,
        t_end=1.0,
        dt=0.01,
        n_paths=6000,
        n_save=3,
        method="exact",
        dtype=torch.float64,
        x0=x0,
        seed=4,
        progress=False,
    )
    assert ds.exact_plan == ("spectral" if counts == 4 else "stepwise")
    mean_ref, cov_ref = closed_form_ode(model, M0, 1.0)
    check_moments(ds, mean_ref, cov_ref, 6000)


def test_exact_spectral_is_deterministic_part_exact():
    """With sigma = 0 the spectral plan reproduces the ODE solution to quadrature accuracy, at any spacing."""
    model = lesde.LESDE(4, 2, 2, alpha=PowerLaw(1.5, 0.5), beta=PowerLaw(0.4, 2.0), noise=0.0)
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    M0 = model.class_means(x0[None].double())[0].numpy()
    ds = lesde.simulate(
        model,
        t_end=5.0,
        dt=5.0,
        n_paths=1,
        save_times=[0, 0.3, 5.0],
        method="exact",
        dtype=torch.float64,
        x0=x0,
        progress=False,
    )
    mean_ref, _ = closed_form_ode(model, M0, 5.0)
    np.testing.assert_allclose(ds.class_mean.isel(path=0, time=-1).values, mean_ref, rtol=1e-8)


def coupled_brownian(B, size, seed, dt=None):
    return torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(B, size), dtype=torch.float64, entropy=seed, dt=dt)


def run_native(model, y0, dt, bm, t_end=1.0):
    """Native euler following the Brownian motion bm from y0 (B, N*m): the state at t_end, (B, N*m)."""
    B = y0.shape[0]
    ds = lesde.simulate(
        model, t_end=t_end, dt=dt, n_paths=B, n_save=2, x0=y0, bm=bm, save="full", dtype=torch.float64,
        progress=False,
    )  # fmt: skip
    return torch.from_numpy(ds.features.isel(time=-1).values).reshape(B, -1)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(transform="identity", noise=0.7),
        dict(transform="residual", samples_per_class=[2, 3, 4], noise=[0.5, 1.0, 1.5]),
        dict(transform="residual-projection", noise="sampling", lr=0.1),
        dict(transform="softmax-residual", noise=torch.tensor([[1.0, 0.2, 0.0], [0.2, 1.0, 0.0], [0, 0, 0.5]])),
    ],
)
def test_native_euler_equals_torchsde_euler(kwargs):
    args = dict(num_classes=3, dim=3, samples_per_class=3, alpha=PowerLaw(1.5, 0.5), beta=-0.2) | kwargs
    model = lesde.LESDE(**args)
    y0 = torch.randn(4, model.num_samples * 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    bm = coupled_brownian(4, model.brownian_size, seed=7)
    ref = torchsde.sdeint(model, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), bm=bm, dt=0.0625, method="euler")
    ours = run_native(model, y0, 0.0625, bm)  # dyadic: both step at exactly the same times
    torch.testing.assert_close(ours, ref[-1], rtol=1e-12, atol=1e-12)


def test_euler_strong_order_one():
    """Additive noise: Euler-Maruyama has strong order 1. Errors on coupled Brownian paths vs a fine solution."""
    model = lesde.LESDE(3, 2, 2, alpha=PowerLaw(2.0, 0.5), beta=-0.3, noise=1.0)
    B = 200
    y0 = torch.randn(B, model.num_samples * 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    bm = coupled_brownian(B, model.brownian_size, seed=11, dt=2**-10)
    ref = run_native(model, y0, 2**-10, bm)
    dts = [2**-k for k in (3, 4, 5, 6)]
    errs = [float((run_native(model, y0, dt, bm) - ref).norm(dim=1).mean()) for dt in dts]
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert 0.85 < slope < 1.15, (slope, errs)


def test_same_seed_same_output_and_chunking_runs():
    model = lesde.LESDE(3, 2, 3, alpha=1.0, beta=0.1)
    kw = dict(t_end=0.5, dt=0.05, n_paths=10, save="full", progress=False)
    a = lesde.simulate(model, seed=5, **kw)
    b = lesde.simulate(model, seed=5, **kw)
    c = lesde.simulate(model, seed=6, **kw)
    xr.testing.assert_equal(a.features, b.features)
    assert not np.allclose(a.features.values[:, -1], c.features.values[:, -1])
    d = lesde.simulate(model, seed=5, chunk_size=3, **kw)
    xr.testing.assert_equal(d.features, a.features)  # chunks group whole blocks of paths: same numbers
    assert d.attrs["chunk_size"] == 10 and np.isfinite(d.features.values).all()


@pytest.mark.parametrize("save", ["full", "means"])
@pytest.mark.parametrize("method", ["euler", "exact", "torchsde:srk"])
def test_netcdf_round_trip(tmp_path, save, method):
    model = lesde.LESDE(3, 3, [2, 3, 4], alpha=PowerLaw(1.0, 0.5), transform="residual")
    ds = lesde.simulate(model, t_end=0.2, dt=0.05, n_paths=4, save=save, method=method, progress=False)
    ds.to_netcdf(tmp_path / "run.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "run.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)
    assert ds.class_mean.attrs["long_name"] and ds.attrs["method"] == method
    if save == "full":
        np.testing.assert_array_equal(ds.label.values, [0, 0, 1, 1, 1, 2, 2, 2, 2])
        np.testing.assert_allclose(
            ds.features.groupby("label").mean("sample").transpose("path", "time", "label", "feature").values,
            ds.class_mean.values,
            rtol=1e-5,
            atol=1e-6,
        )


def test_residual_transform_drives_cosines_to_simplex():
    K = 4
    # beta > 0 couples the classes: the common mode (rate alpha + (K-1) beta) outgrows the contrast modes
    # (rate alpha - beta), so every class mean ends up at the same multiple of its ETF direction u_k.
    model = lesde.LESDE(K, 6, 5, alpha=1.0, beta=1.0, transform="residual", noise=0.1)
    ds = lesde.simulate(model, t_end=12.0, dt=0.01, n_paths=4, n_save=4, progress=False, dtype=torch.float64)
    M = ds.class_mean.isel(time=-1).values  # (P, K, m)
    C = M - M.mean(1, keepdims=True)
    C /= np.linalg.norm(C, axis=-1, keepdims=True)
    cos = np.einsum("pkm,plm->pkl", C, C)[:, ~np.eye(K, dtype=bool)]
    np.testing.assert_allclose(cos, -1 / (K - 1), atol=2e-3)


def test_overflow_names_time_and_suggests_float64():
    model = lesde.LESDE(2, 2, 3, alpha=400.0, beta=0.0)
    with pytest.raises(lesde.SimulationOverflowError, match=r"t=.*float64"):
        lesde.simulate(model, t_end=2.0, dt=0.01, n_paths=2, progress=False)


def test_float64_exact_reaches_huge_separations_without_overflow():
    """alpha = 4 (1+t)^-1/2, K = 2, t = 1e4: separation ~ e^400, beyond float64 if variances are formed naively."""
    model = lesde.LESDE(2, 2, 20, alpha=PowerLaw(4.0, 0.5), beta=0.0)
    ds = lesde.simulate(
        model, t_end=1e4, dt=1.0, n_paths=3, n_save=5, method="exact", dtype=torch.float64, progress=False
    )
    M = ds.class_mean.isel(time=-1).values
    assert np.isfinite(M).all() and np.isfinite(ds.within_var.values).all()
    assert np.log(np.abs(M[:, 0] - M[:, 1]).max()) > 300
    with pytest.raises(lesde.SimulationOverflowError, match="float64"):
        lesde.simulate(model, t_end=1e4, dt=1.0, n_paths=3, n_save=5, method="exact", progress=False)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(dt=0.0), ValueError, "dt"),
        (dict(dt=-0.1), ValueError, "dt"),
        (dict(dt=2.0), ValueError, "dt=2.0 must not exceed t_end"),
        (dict(t_end=float("nan")), ValueError, "t_end"),
        (dict(save_times=[0.0, 0.5, 0.5]), ValueError, "strictly increasing"),
        (dict(save_times=[0.0, 0.7, 0.3]), ValueError, "strictly increasing"),
        (dict(save_times=[0.0, 2.0]), ValueError, "save_times"),
        (dict(method="rk4"), ValueError, "euler.*exact.*torchsde:srk"),
        (dict(save="everything"), ValueError, "full"),
        (dict(n_paths=0), ValueError, "n_paths"),
        (dict(device="cuda"), ValueError, "CUDA"),
        (dict(dtype=torch.float16), ValueError, "float32"),
        (dict(x0=torch.zeros(3, 3)), ValueError, "x0"),
    ],
)
def test_bad_simulate_input(kwargs, err, match):
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    args = dict(t_end=1.0, dt=0.1, n_paths=2, progress=False) | kwargs
    with pytest.raises(err, match=match):
        lesde.simulate(lesde.LESDE(3, 2, 2), **args)


def test_exact_refuses_state_dependent_models():
    for model in [lesde.LESDE(3, 3, 2, transform="softmax-residual"), lesde.LESDE(3, 2, 2, noise="sampling", lr=0.1)]:
        with pytest.raises(ValueError, match="method='euler'"):
            lesde.simulate(model, t_end=1.0, dt=0.1, n_paths=2, method="exact", progress=False)


def test_request_too_large_fails_before_work():
    model = lesde.LESDE(10, 512, 1000)
    with pytest.raises(MemoryError, match="GiB"):
        lesde.simulate(model, t_end=1.0, dt=0.1, n_paths=10**6, save="full", progress=False)


def test_per_path_parameters_match_separate_runs():
    """A batched run with per-path exponents gives the same class means as one run per exponent (sigma = 0)."""
    ps = torch.tensor([0.5, 1.0, 1.5])
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(t_end=2.0, dt=0.01, n_save=3, dtype=torch.float64, x0=x0, progress=False)
    for method in ["euler", "exact"]:
        batched = lesde.simulate(
            lesde.LESDE(3, 2, 2, alpha=PowerLaw(1.0, ps), noise=0.0), n_paths=3, method=method, **kw
        )
        for i, p in enumerate(ps.tolist()):
            one = lesde.simulate(
                lesde.LESDE(3, 2, 2, alpha=PowerLaw(1.0, p), noise=0.0), n_paths=1, method=method, **kw
            )
            np.testing.assert_allclose(
                batched.class_mean.isel(path=i).values, one.class_mean.isel(path=0).values, rtol=1e-10
            )


def test_generic_torchsde_module():
    class OU(torch.nn.Module):
        noise_type, sde_type, brownian_size = "diagonal", "ito", 2

        def f(self, t, y):
            return -y

        def g(self, t, y):
            return torch.ones_like(y)

    ds = lesde.simulate(
        OU(),
        t_end=5.0,
        dt=0.01,
        n_paths=4000,
        n_save=2,
        x0=torch.zeros(2),
        dtype=torch.float64,
        progress=False,
        save="full",
    )
    var = ds.state.isel(time=-1).var("path").values
    np.testing.assert_allclose(var, 0.5 * (1 - math.exp(-10)), rtol=0.08)


def test_interrupted_run_returns_the_completed_part():
    """Ctrl-C mid-run: simulate warns and returns what is complete (here the first chunk up to t = 0.6: the step
    from t = 0.6 is the first whose elasticity is asked for after t > 0.55)."""

    def alpha(t):
        if (t > 0.55).any():
            raise KeyboardInterrupt
        return torch.ones_like(t)

    model = lesde.LESDE(3, 2, 2, alpha=alpha)
    with pytest.warns(UserWarning, match="interrupted"):
        ds = lesde.simulate(model, t_end=1.0, dt=0.1, n_save=11, n_paths=256, chunk_size=128, progress=False)
    assert ds.sizes["path"] == 128 and float(ds.time[-1]) == pytest.approx(0.6)
    assert np.isfinite(ds.class_mean.values).all() and "KeyboardInterrupt" in ds.attrs["interrupted"]


def dense_operator(model):
    """(K m, K m) matrix of the class-mean drift, built in numpy from the transform blocks T_kl."""
    from lesde.transforms import _residual_vectors

    K, m = model.num_classes, model.dim
    E, pi = model.elasticity_matrix(0.0).numpy(), model.class_probs.numpy()
    u, c = (a.numpy() for a in _residual_vectors(K, m))
    T = {
        "identity": np.broadcast_to(np.eye(m), (K, K, m, m)),
        "residual": np.einsum("ki,lj->klij", u, u) / c[None, :, None, None],
        "residual-projection": np.einsum("li,lj->lij", u, u)[None].repeat(K, 0) / c[None, :, None, None],
    }[model.transform.name]
    return np.einsum("l,kl,klij->kilj", pi, E, T).reshape(K * m, K * m)


@pytest.mark.parametrize("transform", ["residual", "residual-projection"])
@pytest.mark.parametrize("method", ["exact", "euler"])
def test_dense_transform_moments(transform, method):
    """Fixed non-identity transforms: the (K m)-dim mean and covariance at t = 1 against expm / quadrature."""
    model = lesde.LESDE(3, 3, [2, 3, 4], alpha=1.5, beta=0.4, transform=transform, noise=[0.6, 1.0, 1.2])
    x0 = torch.linspace(-1, 1, model.num_samples * 3).view(-1, 3)
    m0 = model.class_means(x0[None].double())[0].numpy().ravel()
    A = dense_operator(model)
    Q = np.kron(np.diag(model.sigma_class.numpy() ** 2 / model.counts.numpy()), np.eye(3))
    mean_ref = expm(A) @ m0
    cov_ref = quad_vec(lambda s: expm(A * s) @ Q @ expm(A * s).T, 0, 1, epsabs=1e-12)[0]
    paths = 6000
    ds = run_to_t1(model, method, paths, x0, seed=8)
    if method == "exact":
        assert ds.exact_plan == "constant"
    V = ds.class_mean.isel(time=-1).values.reshape(paths, -1)
    se = np.sqrt(np.diag(cov_ref)) / math.sqrt(paths)
    assert np.all(np.abs(V.mean(0) - mean_ref) < 4.5 * se + 1e-12)
    cov_hat = np.cov(V.T)
    se_cov = np.sqrt((cov_ref**2 + np.outer(np.diag(cov_ref), np.diag(cov_ref))) / paths)
    assert np.all(np.abs(cov_hat - cov_ref) < 4.5 * se_cov + 1e-12)


@pytest.mark.parametrize("method", ["exact", "euler"])
def test_covariance_noise_moments(method):
    """Noise covariance Sigma (m x m): each class mean's feature covariance is C_kk Sigma."""
    Sigma = torch.tensor([[1.0, 0.6], [0.6, 2.0]])
    model = lesde.LESDE(2, 2, 4, alpha=1.0, beta=0.3, noise=Sigma)
    paths = 8000
    ds = run_to_t1(model, method, paths, torch.zeros(8, 2), seed=9)
    B = mean_operator(model, 0.0)
    D = np.diag(1.0 / model.counts.numpy())
    C = quad_vec(lambda s: expm(B * s) @ D @ expm(B * s).T, 0, 1, epsabs=1e-12)[0]
    for k in range(2):
        cov_hat = np.cov(ds.class_mean.isel(time=-1, **{"class": k}).values.T)
        np.testing.assert_allclose(cov_hat, C[k, k] * Sigma.numpy(), rtol=0.08, atol=0.02 * C[k, k])
    # within-class variance grows by tr(Sigma) (n-1)/n per unit time
    wv = ds.within_var.isel(time=-1).values.mean(0) - ds.within_var.isel(time=0).values.mean(0)
    np.testing.assert_allclose(wv, 3.0 * 3 / 4, rtol=0.05)


@pytest.mark.parametrize("method", ["euler", "exact"])
def test_moments_on_device(device, method):
    """The same closed-form check on every available device (the cuda case is marked gpu and skips without CUDA)."""
    model = lesde.LESDE(3, 2, [2, 3, 4], alpha=1.2, beta=-0.3, noise=[0.8, 1.0, 1.3])
    x0 = torch.linspace(-1, 1, model.num_samples * 2).view(-1, 2)
    M0 = model.class_means(x0[None].double())[0].numpy()
    ds = run_to_t1(model, method, 6000, x0, seed=3, n_save=3, device=device)
    assert ds.attrs["device"].startswith(device.type)
    mean_ref, cov_ref = closed_form_constant(model, M0, 1.0)
    check_moments(ds, mean_ref, cov_ref, 6000)


# ------------------------------------------------------------------------------------------ the integrator protocol


class ToyEuler(Integrator):
    """Full-state Euler-Maruyama written to the documented protocol (lesde.integrators.protocol), nothing else."""

    name, strong_order, weak_order = "toy-euler", 1.0, 1.0

    def memory(self, model, save, itemsize, *, n_state=None, bm=None, grid=None, **options):
        return Memory(0, 4 * (n_state or 1) * itemsize)

    def integrate(self, model, start, grid, rng, record, save, *, bm=None, rows=None, **options):
        X = start.full(rows, rng, start.dtype, rng.device)  # (B, N, m)
        record(0, state=X)
        for i, t0, _t1, n, h in grid.intervals():
            Z = rng.normal(X.shape[1:], X.dtype, steps=n)  # (B, n, N, m)
            for j in range(n):
                flat = X.reshape(len(X), -1)
                t = torch.tensor(t0 + j * h, dtype=torch.float64)
                dW = h**0.5 * Z[:, j].reshape(len(X), -1)
                X = X + (model.f(t, flat) * h + model.g_prod(t, flat, dW)).view_as(X)
            record(i + 1, state=X)


@pytest.fixture
def toy_euler():
    from lesde.integrators import REGISTRY, register

    yield register(ToyEuler())
    REGISTRY.pop("toy-euler")


def test_an_integrator_written_to_the_protocol_runs(toy_euler, gen):
    """A method registered from outside the package runs through simulate: deterministically it is the native Euler
    recursion, with noise its moments are those of the native Euler (same model, same grid)."""
    model = lesde.LESDE(3, 3, 4, alpha=1.0, beta=0.25, transform="residual", noise=0.0)
    x0 = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    kw = dict(t_end=1.0, dt=0.05, n_paths=2, n_save=5, x0=x0, dtype=torch.float64, progress=False, save="means")
    toy, native = lesde.simulate(model, method="toy-euler", **kw), lesde.simulate(model, method="euler", **kw)
    assert toy.attrs["method"] == "toy-euler" and toy.attrs["strong_order"] == 1.0
    np.testing.assert_allclose(toy.class_mean.values, native.class_mean.values, rtol=1e-12, atol=1e-12)
    noisy = lesde.LESDE(2, 2, 3, alpha=0.5, noise=1.0)
    kw = dict(t_end=1.0, dt=0.1, n_paths=4000, n_save=2, dtype=torch.float64, progress=False, seed=3)
    a, b = lesde.simulate(noisy, method="toy-euler", **kw), lesde.simulate(noisy, method="euler", **kw)
    va, vb = a.class_mean.isel(time=-1).var("path"), b.class_mean.isel(time=-1).var("path")
    np.testing.assert_allclose(va.values, vb.values, rtol=0.12)  # 4000 paths: the variance's s.e. is ~2.2%


def test_an_integrator_not_meeting_the_protocol_is_refused():
    from lesde.integrators import register

    class OldSignature(ToyEuler):
        name = "old-signature"

        def memory(self, model, save, itemsize):  # the call passes n_state=, bm=, grid=
            return Memory(0, 0)

    with pytest.raises(TypeError, match=r"OldSignature.memory.*does not accept the call lesde.simulate makes.*n_state"):
        register(OldSignature())
    with pytest.raises(ValueError, match="registered already"):
        register(lesde.integrators.get("euler"))
    with pytest.raises(TypeError, match="must be an instance of lesde.integrators.Integrator"):
        register(object())
