"""Tests of lesde.empirical: data, tracking exactness, the discrete LE process, estimators, fits, imitation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr

import lesde
from lesde.cli.cmd_estimate import estimate_cli
from lesde.cli.cmd_imitate import imitate_cli
from lesde.empirical import (
    FitResult,
    ParamFit,
    cnn,
    estimate,
    fit,
    imitate,
    init_nets,
    load_dataset,
    mlp,
    simulate_discrete,
    track,
)
from lesde.empirical.fitting import fit_curve
from lesde.schedules import PowerLaw


def roundtrip(ds: xr.Dataset, tmp_path, name="x.nc") -> None:
    path = tmp_path / name
    ds.to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)


# ----------------------------------------------------------------------------------------------- data


def test_digits_subsets_imbalanced_and_relabelled():
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = load_dataset("digits", classes=[7, 2], per_class=[30, 12], seed=3)
    assert x.dtype == torch.float32 and tuple(x.shape) == (42, 1, 8, 8)
    assert y.tolist() == [0] * 30 + [1] * 12
    # every returned image is a digits image of the right original class, scaled to [0, 1]
    flat = d.data / 16.0
    for img, lab in zip(x.reshape(42, 64).double().numpy(), y.numpy()):
        match = np.flatnonzero(np.abs(flat - img).max(1) < 1e-6)
        assert match.size >= 1 and d.target[match[0]] == [7, 2][lab]
    x2, y2 = load_dataset("digits", classes=3)
    assert y2.bincount().tolist() == np.bincount(d.target)[:3].tolist()


def test_label_noise_flips_exact_fraction_to_other_classes():
    x, y_clean = load_dataset("digits", classes=4, per_class=50, seed=1)
    _, y = load_dataset("digits", classes=4, per_class=50, label_noise=0.2, seed=1)
    changed = (y != y_clean).sum().item()
    assert changed == 40  # round(0.2 * 200); every corrupted label differs from the clean one
    assert y.min() >= 0 and y.max() <= 3


def test_gaussian_mixture_separation():
    x, y = load_dataset("gaussian-mixture", classes=3, per_class=4000, separation=2.5, dim=6, seed=2)
    means = torch.stack([x[y == k].double().mean(0) for k in range(3)])
    dist = torch.cdist(means, means)
    # centres are orthonormal directions scaled by `separation`: pairwise distance separation * sqrt(2);
    # sample means err by ~ sqrt(dim / 4000) = 0.04
    off = dist[~torch.eye(3, dtype=bool)]
    assert torch.allclose(off, torch.full_like(off, 2.5 * 2**0.5), atol=0.15)
    within = (x - means[y].float()).pow(2).sum(1).mean().item()
    assert abs(within - 6.0) < 0.2  # unit isotropic noise in 6 dims


def test_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.standard_normal((20, 5)), y=np.array([1, 0] * 10))
    x, y = load_dataset(f"npz:{path}")
    assert tuple(x.shape) == (20, 5) and y.tolist() == [0] * 10 + [1] * 10
    np.testing.assert_allclose(x[:10].numpy(), np.load(path)["x"][1::2].astype(np.float32))


def test_mnist1d_generated_locally():
    x, y = load_dataset("mnist1d", classes=3, per_class=[20, 10, 5])
    assert tuple(x.shape) == (35, 1, 40) and y.bincount().tolist() == [20, 10, 5]


def test_load_dataset_errors():
    with pytest.raises(ValueError, match="accepted values"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="only"):
        load_dataset("digits", classes=2, per_class=1000)
    with pytest.raises(ValueError, match="one count per class"):
        load_dataset("digits", classes=3, per_class=[5, 5])
    with pytest.raises(ValueError, match="absent"):
        load_dataset("digits", classes=[3, 11])
    with pytest.raises(ValueError, match="label_noise"):
        load_dataset("digits", label_noise=1.0)


def test_nets_shapes():
    assert tuple(mlp((1, 40), 3, width=8)(torch.zeros(4, 1, 40)).shape) == (4, 3)
    h, logits = cnn((1, 8, 8), 5, channels=(4, 6), width=12)(torch.zeros(2, 1, 8, 8), penultimate=True)
    assert tuple(h.shape) == (2, 12) and tuple(logits.shape) == (2, 5)
    assert tuple(cnn((1, 40), 3, channels=(4,))(torch.zeros(2, 1, 40)).shape) == (2, 3)


# ----------------------------------------------------------------------------------------------- tracking


def _plain_loop(net, x, y, ds, lr, feature):
    """Reference: for each run, for each step, one autograd SGD step then a forward of the probes."""
    runs, steps = ds.sizes["run"], int(ds.attrs["steps"])
    order = ds.sampled_index.values[:, 1:]
    probes = torch.as_tensor(ds.sample_index.values)
    out = np.empty(ds.features.shape)
    for r, m in enumerate(init_nets(net, runs, int(ds.attrs["seed"]))):
        m = m.double()

        def feat(inp, m=m):
            h, logits = m(inp, penultimate=True)
            return h if feature == "penultimate" else logits

        with torch.no_grad():
            out[r, 0] = feat(x[probes]).numpy()
        for s in range(steps):
            i = int(order[r, s])
            m.zero_grad()
            F.cross_entropy(m(x[i : i + 1]), y[i : i + 1]).backward()
            with torch.no_grad():
                for p in m.parameters():
                    p -= lr * p.grad
                out[r, s + 1] = feat(x[probes]).numpy()
    return out


@pytest.mark.parametrize("arch,feature", [("mlp", "logits"), ("mlp", "penultimate"), ("cnn", "logits")])
def test_track_equals_plain_per_run_loop(arch, feature):
    x, y = load_dataset("gaussian-mixture", classes=3, per_class=6, dim=8, seed=4)
    x = x.double()
    net = mlp(8, 3, width=10) if arch == "mlp" else cnn((1, 8), 3, channels=(3,), width=7)
    if arch == "cnn":
        x = x[:, None]
    lr = 0.1
    ds = track(
        net, x, y, lr=lr, steps=15, n_runs=3, probes=10, feature=feature, seed=5, dtype=torch.float64, progress=False
    )
    ref = _plain_loop(net, x, y, ds, lr, feature)
    np.testing.assert_allclose(ds.features.values, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ds.increment.values[:, 1:], np.diff(ref, axis=1), rtol=0, atol=1e-12)
    # the sampled example's feature before the step, and its residual, from the reference features
    assert (ds.sampled_label.values[:, 1:] == y.numpy()[ds.sampled_index.values[:, 1:]]).all()
    assert ds.sampled_index.values[:, 1:].min() >= 0 and len(np.unique(ds.sampled_index.values[:, 1:])) > 5
    # the runs differ (different init and order)
    assert np.abs(ds.features.values[0] - ds.features.values[1]).max() > 1e-3


def test_track_record_every_and_residuals(tmp_path):
    x, y = load_dataset("gaussian-mixture", classes=3, per_class=5, seed=6)
    net = mlp(10, 3, width=12)
    kw = dict(lr=0.2, steps=12, n_runs=2, seed=1, dtype=torch.float64, progress=False)
    full = track(net, x, y, **kw)
    sub = track(net, x, y, record_every=4, **kw)
    assert sub.step.values.tolist() == [0, 4, 8, 12]
    for name in ("features", "increment", "sampled_feature", "sampled_residual", "sampled_index", "loss"):
        np.testing.assert_allclose(sub[name].values, full[name].sel(step=[0, 4, 8, 12]).values, atol=1e-12)
    # residual e_L - softmax(logits_{s-1}(x_I)), with the logits read from the probe features one step earlier
    prev = full.features.values[:, :-1]  # (R, S, P, K): probes are all samples, so x_I is among them
    idx = full.sampled_index.values[:, 1:]
    pos = np.argsort(full.sample_index.values)[idx]  # probe position of each sampled index
    logits = np.take_along_axis(prev, pos[..., None, None], axis=2)[:, :, 0]
    np.testing.assert_allclose(full.sampled_feature.values[:, 1:], logits, atol=1e-12)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    onehot = np.eye(3)[full.sampled_label.values[:, 1:]]
    np.testing.assert_allclose(full.sampled_residual.values[:, 1:], onehot - p, atol=1e-12)
    # loss and accuracy are the probes' mean cross-entropy and accuracy
    f = full.features.values[:, -1]
    ce = -np.log(np.exp(f) / np.exp(f).sum(-1, keepdims=True))[:, np.arange(len(y)), y.numpy()]
    np.testing.assert_allclose(full.loss.values[:, -1], ce.mean(1), atol=1e-12)
    np.testing.assert_allclose(full.accuracy.values[:, -1], (f.argmax(-1) == y.numpy()).mean(1))
    roundtrip(full, tmp_path)
    with pytest.raises(ValueError, match="penultimate"):
        track(
            torch.nn.Sequential(torch.nn.Conv1d(1, 3, 10), torch.nn.Flatten()),
            x[:, None],
            y,
            lr=0.1,
            steps=2,
            feature="penultimate",
            progress=False,
        )


# ----------------------------------------------------------------------------------------------- discrete process


def test_discrete_step_matches_definition(gen):
    K, m, lr = 3, 3, 0.05
    model = lesde.LESDE(K, m, [2, 3, 4], alpha=1.3, beta=-0.4, noise=0.0, transform="residual")
    x0 = torch.randn(9, m, generator=gen, dtype=torch.float64)
    ds = simulate_discrete(model, lr=lr, steps=3, n_runs=4, x0=x0, seed=2)
    # the residual transform: T_kl = u_k u_l^T / ||d_l||^2 with u_j = d_j = e_j - 1/K (m == K)
    d = np.eye(K) - 1.0 / K
    E = np.full((K, K), -0.4) + np.eye(K) * 1.7
    X = ds.features.values[:, 0]
    labels = ds.label.values
    for s in range(1, 4):
        I, L = ds.sampled_index.values[:, s], ds.sampled_label.values[:, s]
        XI = X[np.arange(4), I]  # (R, m)
        T = np.einsum("ka,lb->klab", d, d) / (d * d).sum(1)[None, :, None, None]
        step = lr * np.einsum("rk,rkab,rb->rka", E[:, L].T, T[:, L].transpose(1, 0, 2, 3), XI)  # (R, K, m)
        X = X + step[:, labels]
        np.testing.assert_allclose(ds.features.values[:, s], X, atol=1e-13)
        np.testing.assert_allclose(ds.sampled_feature.values[:, s], XI, atol=1e-13)
    assert (ds.sampled_label.values[:, 1:] == labels[ds.sampled_index.values[:, 1:]]).all()


def test_discrete_residual_and_layout_are_those_of_a_track(gen):
    """The discrete process's sampled_residual is e_L - softmax(sampled_feature), in float64 whatever the process's
    precision (its features play the role of logits when m == K), and its Dataset shares the track's layout."""
    model = lesde.LESDE(3, 3, [2, 3, 4], alpha=1.0, beta=0.3, noise=0.1)
    for dtype in (torch.float64, torch.float32):
        ds = simulate_discrete(model, lr=0.05, steps=6, n_runs=2, record_every=2, dtype=dtype, seed=1)
        assert ds.sampled_residual.dtype == np.float64 and ds.features.dtype == str(dtype).removeprefix("torch.")
        z = ds.sampled_feature.values[:, 1:].astype(np.float64)
        p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        np.testing.assert_allclose(ds.sampled_residual.values[:, 1:], np.eye(3)[ds.sampled_label.values[:, 1:]] - p,
                                   rtol=0, atol=1e-15)  # fmt: skip
        assert np.isnan(ds.sampled_residual.values[:, 0]).all() and (ds.sampled_index.values[:, 0] == -1).all()
    assert "sampled_residual" not in simulate_discrete(lesde.LESDE(3, 2, 2, alpha=1.0, noise=0.1), lr=0.1, steps=2)
    x, y = load_dataset("gaussian-mixture", classes=3, per_class=3, dim=3, seed=0)
    tr = track(mlp(3, 3, width=4), x, y, lr=0.1, steps=6, n_runs=2, record_every=2, progress=False)
    network_only = {"loss", "accuracy", "sampled_loss"}
    assert set(tr.data_vars) - network_only == set(ds.data_vars) and set(tr.coords) == set(ds.coords)
    for name in ds.variables:
        assert tr[name].dims == ds[name].dims and tr[name].attrs == ds[name].attrs or name == "time", name
    assert ds.time.attrs["long_name"].startswith("training time")


def test_discrete_class_frequencies_follow_pi():
    model = lesde.LESDE(3, 2, [10, 30, 60], alpha=0.0, beta=0.0, noise=0.0, class_sampling="uniform-sample")
    ds = simulate_discrete(model, lr=0.01, steps=2000, n_runs=4, probes=6)
    freq = np.bincount(ds.sampled_label.values[:, 1:].ravel(), minlength=3) / 8000
    np.testing.assert_allclose(freq, [0.1, 0.3, 0.6], atol=0.02)  # 4 sigma of a binomial with n = 8000
    m2 = lesde.LESDE(3, 2, [10, 30, 60], alpha=0.0, beta=0.0, noise=0.0, class_sampling="uniform-class")
    freq = np.bincount(
        simulate_discrete(m2, lr=0.01, steps=2000, n_runs=4, probes=6).sampled_label.values[:, 1:].ravel()
    )
    np.testing.assert_allclose(freq / 8000, [1 / 3] * 3, atol=0.022)


# ----------------------------------------------------------------------------------------------- estimators: ground truth

GROUND_TRUTH = {
    "K3-balanced": dict(K=3, counts=20, alpha=(2.0, 0.5), beta=(0.8, 0.8)),
    "K5-imbalanced": dict(K=5, counts=[8, 16, 12, 20, 6], alpha=(1.5, 0.6), beta=(-0.5, 0.4)),
}


def _ground_truth(case, steps, runs, lr=0.01, window=50):
    c = GROUND_TRUTH[case]
    model = lesde.LESDE(c["K"], c["K"], c["counts"], alpha=PowerLaw(*c["alpha"]), beta=PowerLaw(*c["beta"]), noise=0.1)
    ds = simulate_discrete(model, lr=lr, steps=steps, n_runs=runs, seed=11)
    est = estimate(ds, window=window)
    return model, ds, est, fit(est, "power")


def _check_recovery(model, est, fr, c):
    t = torch.as_tensor(est.time.values)
    for q in ("alpha", "beta"):
        truth = getattr(model, q)(t).numpy()
        rel = np.abs(est[q].values / truth - 1)
        assert rel.max() < 0.05, (q, rel.max())
        f = fr.fits[q]
        assert abs(f.params["exponent"] - c[q][1]) < 0.05
        assert abs(f.params["scale"] / c[q][0] - 1) < 0.05
        np.testing.assert_allclose(f.schedule(t).numpy(), truth, rtol=0.05)
        # the standard errors are calibrated: a correct model fits with chi^2 / n near 1
        assert 0.4 < f.chi2 / f.n < 2.0, (q, f.chi2 / f.n)
        # and the CI covers the truth in most windows
        cover = (est[f"{q}_lower"].values <= truth) & (truth <= est[f"{q}_upper"].values)
        assert cover.mean() >= 0.75
    # the full matrix: run-clustered errors with 8 runs follow Student's t with 7 dof; 99% intervals cover
    # (almost) every entry
    E_true = model.elasticity_matrix(t).numpy()
    z = np.abs(est.E.values - E_true) / est.E_se.values
    assert np.nanmean(z > 3.5) < 0.03, np.nanmean(z > 3.5)
    # the residual diffusion recovers sigma = 0.1
    np.testing.assert_allclose(est.noise.values, 0.1, rtol=0.05)


@pytest.mark.parametrize("case", list(GROUND_TRUTH))
def test_ground_truth_recovery(case, tmp_path):
    model, ds, est, fr = _ground_truth(case, steps=1000, runs=8)
    _check_recovery(model, est, fr, GROUND_TRUTH[case])
    roundtrip(est, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(GROUND_TRUTH))
def test_ground_truth_recovery_long(case):
    model, ds, est, fr = _ground_truth(case, steps=4000, runs=16, lr=0.005, window=100)
    _check_recovery(model, est, fr, GROUND_TRUTH[case])


def test_regression_pooling_equals_direct_computation(gen):
    """The vectorised cluster sums against a direct loop over (run, step, probe), self-pairs excluded."""
    model = lesde.LESDE(3, 3, 4, alpha=1.0, beta=0.3, noise=0.2)
    ds = simulate_discrete(model, lr=0.02, steps=12, n_runs=2, seed=3)
    est = estimate(ds, form="residual", window=6)
    lr = 0.02
    num = np.zeros((2, 3, 3))
    den = np.zeros((2, 3, 3))
    for r in range(2):
        for s in range(1, 13):
            v = lr * ds.sampled_residual.values[r, s]
            L, I = ds.sampled_label.values[r, s], ds.sampled_index.values[r, s]
            for p in range(12):
                if ds.sample_index.values[p] == I:
                    continue
                k = ds.label.values[p]
                num[(s - 1) // 6, k, L] += ds.increment.values[r, s, p] @ v
                den[(s - 1) // 6, k, L] += v @ v
    np.testing.assert_allclose(est.E.values, num / den, rtol=1e-12)
    d = np.eye(3, dtype=bool)
    np.testing.assert_allclose(est.alpha.values, num[:, d].sum(1) / den[:, d].sum(1), rtol=1e-12)
    np.testing.assert_allclose(est.beta.values, num[:, ~d].sum(1) / den[:, ~d].sum(1), rtol=1e-12)


def test_means_form_recovers_constant_elasticity(gen):
    # tight classes around centres whose deviations from their average have no zero coordinate: the estimator
    # takes logs of those deviations and is fragile near zero crossings
    K, n = 3, 10
    model = lesde.LESDE(K, K, n, alpha=1.0, beta=0.25, noise=0.0)
    centres = torch.tensor([[4.0, 0.0, 1.0], [0.0, 3.0, 1.5], [1.0, 1.2, 5.0]], dtype=torch.float64)
    x0 = centres.repeat_interleave(n, 0) + 0.01 * torch.randn(K * n, K, generator=gen, dtype=torch.float64)
    ds = simulate_discrete(model, lr=0.002, steps=1000, n_runs=8, x0=x0, seed=1)
    est = estimate(ds, form="means", window=250)
    np.testing.assert_allclose(est.alpha.values, 1.0, rtol=0.1)
    np.testing.assert_allclose(est.beta.values, 0.25, atol=0.05)


def test_estimate_errors():
    model = lesde.LESDE(3, 2, 4, noise=0.1)
    ds = simulate_discrete(model, lr=0.01, steps=4, n_runs=2)
    with pytest.raises(ValueError, match="accepted values"):
        estimate(ds, form="kernel")
    with pytest.raises(ValueError, match="residual"):
        estimate(ds, form="residual")


# ----------------------------------------------------------------------------------------------- fits


def test_fit_recovers_synthetic_parameters():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 20, 40)
    se = np.full_like(t, 0.01)
    cases = {
        "power": (lambda t: 3.0 * (1 + t) ** -0.7, {"scale": 3.0, "exponent": 0.7}),
        "exp": (lambda t: -1.5 * np.exp(-0.2 * t), {"scale": -1.5, "rate": 0.2}),
        "const": (lambda t: 0.4 + 0 * t, {"value": 0.4}),
    }
    for name, (f, truth) in cases.items():
        y = f(t) + se * rng.standard_normal(len(t))
        pf = fit_curve(t, y, se, name)
        for k, v in truth.items():
            assert abs(pf.params[k] - v) < 4 * pf.stderr[k], (name, k, pf.params[k], pf.stderr[k])
        ds = xr.Dataset(
            {"alpha": ("step", y), "alpha_se": ("step", se), "beta": ("step", y), "beta_se": ("step", se)},
            coords={"time": ("step", t)},
        )
        best = fit(ds, "auto")
        assert best.fits["alpha"].model == name  # AIC picks the generating form
        np.testing.assert_allclose(best.alpha(torch.as_tensor(t)).numpy(), f(t), atol=0.02)
    # the free-offset power law
    y = 2.0 * (3.0 + t) ** -1.2
    pf = fit_curve(t, y, np.full_like(t, 1e-6), "power", offset=None)
    np.testing.assert_allclose(
        [pf.params["scale"], pf.params["exponent"], pf.params["offset"]], [2.0, 1.2, 3.0], rtol=1e-4
    )
    fr = FitResult({"alpha": pf})
    back = FitResult.from_json(fr.to_json())
    assert back.fits["alpha"].params == pf.params and json.loads(fr.to_json())["fits"]["alpha"]["model"] == "power"
    with pytest.raises(ValueError, match="accepted values"):
        fit(ds, "logistic")


# ----------------------------------------------------------------------------------------------- imitation


def _const_fit(alpha, beta, noise):
    def pf(q, v):
        return ParamFit(q, "const", {"value": v}, {"value": 0.0}, 0.0, 2.0, 10)

    return FitResult({"alpha": pf("alpha", alpha), "beta": pf("beta", beta)}, noise)


def test_imitate_matches_its_own_discrete_process(tmp_path):
    model = lesde.LESDE(3, 3, 10, alpha=1.2, beta=0.3, noise=0.05)
    ds = simulate_discrete(model, lr=0.002, steps=1000, n_runs=4, seed=2)
    good = imitate(ds, _const_fit(1.2, 0.3, 0.05), paths_per_run=4, max_times=21)
    bad = imitate(ds, _const_fit(2.4, 0.3, 0.05), paths_per_run=4, max_times=21)
    err_good = good.relative_error.isel(time=-1).mean().item()
    err_bad = bad.relative_error.isel(time=-1).mean().item()
    assert good.relative_error.isel(time=0).max().item() < 1e-12  # both start at the network's class means
    # the discrete process carries sampling fluctuations of order sqrt(lr t) that the SDE with scalar noise lacks
    assert err_good < 0.2 and err_bad > 3 * err_good, (err_good, err_bad)
    # the network side of the comparison equals the class means computed here directly
    F_ = ds.features.isel(step=good.step.values).values
    lab = ds.label.values
    M = np.stack([F_[:, :, lab == k].mean(2) for k in range(3)], 2)
    np.testing.assert_allclose(good.class_mean.sel(process="network").values, M, atol=1e-12)
    assert set(good.process.values) == {"network", "le-sde", "frozen", "paper"} and "nc1_quotient" in good
    roundtrip(good, tmp_path)


def test_empirical_datasets_take_their_attrs_from_the_schema_table():
    """Every variable of a track, an estimate and an imitation that the table names carries the table's long_name
    and units, and every variable an estimate or imitation reports is in the table."""
    from lesde.schema import VARIABLE_ATTRS

    model = lesde.LESDE(3, 3, 4, alpha=1.0, beta=0.2, noise=0.05)
    ds = simulate_discrete(model, lr=0.01, steps=40, n_runs=2, seed=1)
    est = estimate(ds, window=10)
    imit = imitate(ds, _const_fit(1.0, 0.2, 0.05), max_times=5)
    x, y = load_dataset("gaussian-mixture", classes=3, per_class=3, dim=3, seed=0)
    tr = track(mlp(3, 3, width=4), x, y, lr=0.1, steps=4, n_runs=2, validation=(x, y), progress=False)
    for out in (ds, est, imit, tr):
        for name in out.variables:
            if name in VARIABLE_ATTRS and name != "time":
                assert {k: out[name].attrs.get(k) for k in VARIABLE_ATTRS[name]} == VARIABLE_ATTRS[name], name
    for out in (est, imit):
        assert set(out.data_vars) <= set(VARIABLE_ATTRS), set(out.data_vars) - set(VARIABLE_ATTRS)
    assert est.alpha_se.attrs["long_name"].startswith("standard error of alpha")
    assert tr.validation_accuracy.attrs["long_name"] == "accuracy on the held-out validation set"


def test_cli_jobs_end_to_end(tmp_path, capsys):
    out = tmp_path / "est.nc"
    est = estimate_cli(
        out=out, dataset="gaussian-mixture", classes=3, net="mlp", steps=60, n_runs=2, lr=0.05, probes=30, width=16,
        progress=False, window=10,
    )  # fmt: skip
    assert (tmp_path / "est_elasticity.png").stat().st_size > 1000
    with xr.open_dataset(out, engine="h5netcdf") as back:
        assert FitResult.from_json(back.attrs["fit"]).fits["alpha"].model == "power"
        assert back.sizes["step"] == est.sizes["step"]
    with xr.open_dataset(out, engine="h5netcdf", group="track") as tr:
        assert tr.features.sizes["probe"] == 30
    imit = imitate_cli(out, tmp_path / "imit.nc", paths_per_run=2, progress=False)
    assert (tmp_path / "imit_trajectories.png").exists() and imit.relative_error.sizes["run"] == 2
    text = capsys.readouterr().out
    assert "alpha" in text and "relative error" in text
