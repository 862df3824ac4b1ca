r"""The noise of the LE-SDE: what ``LESDE(noise=...)`` accepts, and the SGD-sampling diffusion.

``noise`` is a scalar $\sigma$ (every sample), per-class $\sigma_k$ (K,), a PSD covariance
$\Sigma$ (m, m) shared by the samples (held as $L$ with $L L^\top = \Sigma$, so a singular
covariance works), or ``"sampling"``: the fluctuation of the drift itself over the sampled example of one SGD step,

$$ G(t, X) = \sqrt{\eta}\,\big[\sqrt{w_j}\,(v^{(j)} - \bar v)\big]_{j=1..N}, \qquad
v^{(j)}_i = E(y_i, l_j)\, T(y_i, l_j)\, X_j, \quad \bar v = \sum_j w_j v^{(j)}, $$

with $w_j = \pi_{l_j} / n_{l_j}$ the probability that a step samples j (the LE-SDE paper's Section 3.2,
"drift of the sampled step"). `sampling_noise` computes $G z$ per class ($O(N m)$), and
`sampling_diffusion` forms the (N m, N) matrix for the torchsde methods that need it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .validation import as_tensor, check_choice

NOISE_KINDS = ("scalar", "per-class", "covariance", "sampling")


@dataclass
class NoiseSpec:
    """A parsed ``noise`` argument: its kind, per-class sigmas (K,) float64, the covariance factor L (m, m) or None,
    and the torchsde ``noise_type`` and ``brownian_size`` it implies."""

    kind: str
    sigma: torch.Tensor
    chol: torch.Tensor | None
    noise_type: str
    brownian_size: int


def parse_noise(noise, K: int, m: int, N: int, lr: float | None) -> NoiseSpec:
    """Check ``noise`` (a ValueError naming what is accepted) and return its `NoiseSpec`."""
    if isinstance(noise, str):
        check_choice("noise", noise, ["sampling"])
        if lr is None:
            raise ValueError("noise='sampling' needs the learning rate: pass lr=... (eta > 0)")
        return NoiseSpec("sampling", torch.zeros(K, dtype=torch.float64), None, "general", N)
    sig = as_tensor("noise", noise)
    chol = None
    if sig.ndim == 0:
        if sig < 0:
            raise ValueError(f"noise (sigma) must be >= 0, got {float(sig)}")
        kind, sigma = "scalar", sig.expand(K).clone()
    elif sig.ndim == 1:
        if sig.shape != (K,) or (sig < 0).any():
            raise ValueError(f"per-class noise must be {K} non-negative sigmas (num_classes={K}), got {sig.tolist()}")
        kind, sigma = "per-class", sig
    elif sig.ndim == 2:
        if sig.shape != (m, m):
            raise ValueError(f"noise covariance must have shape (dim, dim) = ({m}, {m}), got {tuple(sig.shape)}")
        if not torch.allclose(sig, sig.T):
            raise ValueError("noise covariance must be symmetric positive semi-definite")
        ev, vec = torch.linalg.eigh(sig)
        if ev.min() < -1e-10 * max(1.0, float(ev.abs().max())):
            raise ValueError(f"noise covariance is not positive semi-definite (min eigenvalue {float(ev.min()):.3g})")
        kind, sigma = "covariance", torch.ones(K, dtype=torch.float64)
        chol = vec * ev.clamp_min(0).sqrt()  # L with L L^T = Sigma (works when singular)
    else:
        raise ValueError(
            "noise must be a sigma, per-class sigmas (K,), a covariance (m, m) or 'sampling'; "
            f"got shape {tuple(sig.shape)}"
        )
    return NoiseSpec(kind, sigma, chol, "additive" if kind == "covariance" else "diagonal", N * m)


def sampling_diffusion(model, t, y: torch.Tensor) -> torch.Tensor:
    """The (B, N m, N) sampling diffusion: column j is sqrt(eta w_j) (v^(j) - vbar) (module docstring)."""
    B, N, m, K = y.shape[0], model.num_samples, model.dim, model.num_classes
    X = y.view(B, N, m)
    M = model.class_means(y)
    W = model.weights_at(t, y)
    E = (W / model.class_probs.to(W)).expand(B, -1, -1) if W.ndim == 2 else W / model.class_probs.to(W)
    V = torch.zeros(B * N, K, m, dtype=y.dtype, device=y.device)
    V[torch.arange(B * N, device=y.device), model.labels.repeat(B)] = X.reshape(B * N, m)
    v = model.transform_apply(E.repeat_interleave(N, 0), V, M.repeat_interleave(N, 0)).view(B, N, K, m)  # (B, j, K, m)
    vbar = model.transform_apply(W, M, M)  # (B, K, m)
    D = (v - vbar.unsqueeze(1)).reshape(B * N, K, m)
    cols = model.expand_to_samples(D).view(B, N, N, m)  # (B, j, N, m)
    cols = cols * (model.lr**0.5 * model._sampling_weights(y))[None, :, None, None]
    return cols.reshape(B, N, N * m).transpose(1, 2)  # (B, N*m, N)


def sampling_noise(model, t, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    r"""The sampling diffusion times z (B, N), per class: with $S_l = \sum_{j \in l} \sqrt{w_j} z_j X_j$,
    noise_k = $\sqrt\eta\,[\mathrm{op}(E, S)_k - \bar v_k \sum_j \sqrt{w_j} z_j]$; (B, N m)."""
    B, N, m = y.shape[0], model.num_samples, model.dim
    X = y.view(B, N, m)
    zw = z * model._sampling_weights(y)  # (B, N)
    S = model.class_sums(zw.unsqueeze(-1) * X)  # (B, K, m)
    M = model.class_means(y)
    W = model.weights_at(t, y)
    E = W / model.class_probs.to(W)
    noise = model.transform_apply(E, S, M) - model.transform_apply(W, M, M) * zw.sum(1)[:, None, None]
    return (model.lr**0.5) * model.expand_to_samples(noise).reshape(B, N * m)


__all__ = ["NOISE_KINDS", "NoiseSpec", "parse_noise", "sampling_diffusion", "sampling_noise"]
