"""LESDE construction, the drift against its dense definition, and every bad input of issue 2."""

import numpy as np
import pytest
import torch
import torchsde

import lesde
from lesde.transforms import _residual_vectors


def dense_drift(model, X, t):
    """sum_l pi_l E_kl T_kl Xbar_l with explicit (K, K, m, m) blocks, in numpy."""
    K, m = model.num_classes, model.dim
    labels = model.labels.numpy()
    E = model.elasticity_matrix(t).numpy()
    pi = model.class_probs.numpy()
    Xb = np.stack([X[:, labels == k].mean(1) for k in range(K)], 1)  # (B, K, m)
    name = model.transform.name
    if name == "identity":
        T = np.broadcast_to(np.eye(m), (K, K, m, m))
    else:
        u, c = (a.numpy() for a in _residual_vectors(K, m))
        if name == "residual":
            T = np.einsum("ki,lj->klij", u, u) / c[None, :, None, None]
        else:
            T = np.einsum("li,lj->lij", u, u)[None].repeat(K, 0) / c[None, :, None, None]
    D = np.einsum("l,kl,klij,blj->bki", pi, E, T, Xb)
    return D[:, labels]


@pytest.mark.parametrize("transform", ["identity", "residual", "residual-projection"])
@pytest.mark.parametrize("counts", [4, [2, 3, 5]])
@pytest.mark.parametrize("class_sampling", ["uniform-sample", "uniform-class"])
def test_drift_matches_dense_definition(transform, counts, class_sampling, gen):
    model = lesde.LESDE(3, 4, counts, alpha=1.3, beta=-0.4, transform=transform, class_sampling=class_sampling)
    y = torch.randn(5, model.num_samples * 4, generator=gen, dtype=torch.float64)
    f = model.f(0.0, y).view(5, model.num_samples, 4).numpy()
    np.testing.assert_allclose(f, dense_drift(model, y.view(5, -1, 4).numpy(), 0.0), rtol=1e-12, atol=1e-12)


def test_user_blocks_equal_identity_blocks(gen):
    K, m = 3, 2
    blocks = torch.eye(m, dtype=torch.float64).expand(K, K, m, m)
    a = lesde.LESDE(K, m, 3, alpha=1.0, beta=0.2, transform=blocks)
    b = lesde.LESDE(K, m, 3, alpha=1.0, beta=0.2)
    c = lesde.LESDE(K, m, 3, alpha=1.0, beta=0.2, transform=torch.eye(m))
    y = torch.randn(4, 9 * m, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(a.f(0.0, y), b.f(0.0, y))
    torch.testing.assert_close(c.f(0.0, y), b.f(0.0, y))


def test_softmax_residual_direction(gen):
    model = lesde.LESDE(3, 3, 2, alpha=1.0, transform="softmax-residual")
    y = torch.randn(2, 18, generator=gen, dtype=torch.float64)
    M = model.class_means(y)
    d = torch.eye(3, dtype=torch.float64) - torch.softmax(M, -1)
    D = model.transform_apply(model.drift_weights(0.0), M, M)  # class k moves along d_k
    cos = torch.nn.functional.cosine_similarity(D, d, dim=-1).abs()
    torch.testing.assert_close(cos, torch.ones_like(cos))


@pytest.mark.parametrize("noise", [0.7, [0.5, 1.0, 2.0], "cov", "sampling"])
def test_g_prod_matches_g(noise, gen):
    m = 3
    if noise == "cov":
        noise = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.5]])
    model = lesde.LESDE(
        3,
        m,
        [2, 3, 2],
        alpha=1.0,
        beta=0.3,
        transform="residual-projection" if noise == "sampling" else "identity",
        noise=noise,
        lr=0.1,
    )
    y = torch.randn(3, model.num_samples * m, generator=gen, dtype=torch.float64)
    v = torch.randn(3, model.brownian_size, generator=gen, dtype=torch.float64)
    G = model.g(0.0, y)
    ref = G * v if model.noise_type == "diagonal" else torch.einsum("bij,bj->bi", G, v)
    torch.testing.assert_close(model.g_prod(0.0, y, v), ref)


def test_sampling_noise_covariance_is_the_sgd_sampling_covariance(gen):
    """Column j of g is sqrt(eta w_j)(v_j - vbar): g g^T = eta Cov_{L,I}[E T X_I] over (L, I) ~ pi_L / n_L."""
    model = lesde.LESDE(2, 2, [2, 3], alpha=1.0, beta=0.5, noise="sampling", lr=0.2)
    y = torch.randn(1, 10, generator=gen, dtype=torch.float64)
    G = model.g(0.0, y)[0]
    X = y.view(5, 2)
    labels = model.labels
    pi, E = model.class_probs, model.elasticity_matrix(0.0)
    vs, ws = [], []
    for j in range(5):
        L = labels[j]
        vs.append(torch.cat([E[labels[i], L] * X[j] for i in range(5)]))
        ws.append(pi[L] / model.counts[L])
    V, w = torch.stack(vs), torch.stack(ws).double()
    mean = (w[:, None] * V).sum(0)
    cov = ((V - mean).T * w) @ (V - mean)
    torch.testing.assert_close(G @ G.T, 0.2 * cov)


def test_spec_is_json():
    import json

    model = lesde.LESDE(
        3, 4, [1, 2, 3], alpha=lesde.schedules.PowerLaw(1.0, 0.5), transform="residual", noise=[1, 2, 3]
    )
    spec = json.loads(json.dumps(model.to_spec()))
    assert spec["alpha"] == {"kind": "PowerLaw", "scale": 1.0, "exponent": 0.5, "offset": 1.0}
    assert spec["samples_per_class"] == [1, 2, 3]


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(num_classes=1), ValueError, "num_classes"),
        (dict(num_classes=2.5), TypeError, "num_classes"),
        (dict(samples_per_class=0), ValueError, "samples_per_class"),
        (dict(samples_per_class=-3), ValueError, "samples_per_class"),
        (dict(samples_per_class=[2, 3]), ValueError, "samples_per_class"),
        (dict(samples_per_class=[2, 0, 3]), ValueError, r"samples_per_class\[1\]"),
        (dict(dim=2, transform="residual"), ValueError, "dim >= num_classes"),
        (dict(dim=2, transform="residual-projection"), ValueError, "dim >= num_classes"),
        (dict(transform="rotate"), ValueError, "identity"),
        (dict(dim=2, transform=[[1.0, 2.0], [2.0, 1.0]]), ValueError, "positive semi-definite"),
        (dict(dim=2, transform=[[0.0, 0.0], [0.0, 1.0]]), ValueError, "positive diagonal"),
        (dict(dim=2, transform=[[1.0, 0.5], [0.0, 1.0]]), ValueError, "symmetric"),
        (dict(dim=2, transform=torch.eye(3)), ValueError, "shape"),
        (dict(alpha=float("nan")), ValueError, "alpha"),
        (dict(beta=float("inf")), ValueError, "beta"),
        (dict(noise=float("nan")), ValueError, "noise"),
        (dict(noise=-1.0), ValueError, "noise"),
        (dict(noise=[1.0, 2.0]), ValueError, "per-class"),
        (dict(noise=[[1.0, 3.0], [3.0, 1.0]], dim=2), ValueError, "covariance"),
        (dict(noise="sampling"), ValueError, "lr"),
        (dict(noise="thermal"), ValueError, "sampling"),
        (dict(lr=float("nan"), noise="sampling"), ValueError, "lr"),
        (dict(elasticity=[[1.0, float("nan"), 0], [0, 1, 0], [0, 0, 1]]), ValueError, "elasticity"),
        (dict(elasticity=torch.eye(2)), ValueError, "elasticity"),
        (dict(class_sampling="weighted"), ValueError, "uniform-sample"),
    ],
)
def test_bad_constructor_input(kwargs, err, match):
    args = dict(num_classes=3, dim=4, samples_per_class=2) | kwargs
    with pytest.raises(err, match=match):
        lesde.LESDE(**args)


def test_schedule_returning_wrong_shape():
    model = lesde.LESDE(3, 2, 2, alpha=lambda t: torch.ones(5))
    with pytest.raises(ValueError, match="alpha.*shape"):
        model.f(0.0, torch.zeros(1, 12))
    model = lesde.LESDE(3, 2, 2, elasticity=lambda t: torch.eye(2))
    with pytest.raises(ValueError, match="elasticity.*shape"):
        model.f(0.0, torch.zeros(1, 12))


@pytest.mark.parametrize(
    "transform", ["identity", "residual", "residual-projection", "softmax-residual", "matrix", "blocks"]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_transform_runs_in_both_precisions_through_torchsde_and_simulate(transform, dtype):
    """Parameters are stored in float64; the drift must follow the state's dtype (a float32 torchsde call)."""
    K, m = 3, 3
    T = {"matrix": torch.eye(m) * 2.0, "blocks": torch.eye(m).expand(K, K, m, m) * 0.5}.get(transform, transform)
    model = lesde.LESDE(
        K, m, [2, 3, 2], alpha=lesde.schedules.PowerLaw(1.0, 0.5), beta=0.2, transform=T, noise=[0.5, 1.0, 1.5]
    )
    y0 = torch.randn(2, model.num_samples * m, generator=torch.Generator().manual_seed(0), dtype=dtype)
    ys = torchsde.sdeint(model, y0, torch.tensor([0.0, 0.1], dtype=dtype), dt=0.05, method="euler")
    assert ys.dtype == dtype and torch.isfinite(ys).all()
    ds = lesde.simulate(model, t_end=0.1, dt=0.05, n_paths=2, dtype=dtype, progress=False)
    assert str(ds.class_mean.dtype) == str(dtype).split(".")[-1]


def test_from_spec_rebuilds_the_model_to_spec_describes():
    from lesde.schedules import PowerLaw

    LESDE = lesde.LESDE
    model = LESDE(3, 4, [4, 5, 6], alpha=PowerLaw(2.0, 0.5), beta=0.3, transform="residual", noise=[1.0, 0.5, 2.0])
    again = LESDE.from_spec(model.to_spec())
    assert again.to_spec() == model.to_spec()
    assert torch.equal(again.sigma_class, model.sigma_class) and again.transform.name == model.transform.name
    with pytest.raises(ValueError, match="alpha is a Python callable"):
        LESDE.from_spec(LESDE(2, 2, 3, alpha=lambda t: 1.0 + 0 * t).to_spec())
