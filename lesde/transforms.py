r"""Transforms $T_{kl} \in \mathbb{R}^{m\times m}$ of the LE-SDE drift.

Each transform is one small class with a single job, `Transform.apply`:

$$ \text{out}_k = \sum_l W_{kl}\, T_{kl}\, V_l , $$

with ``W`` of shape (K, K) or (B, K, K) (the elasticity already weighted by the class probabilities) and
``V`` of shape (B, K, m). The drift is ``apply(E * pi, class_means)``; the SGD-sampling noise and the
discrete LE process reuse the same operator. Low-rank transforms never form the (K, K, m, m) blocks.

The residual family uses $d_j = e_j - \tfrac1K 1_K$ and $u_j = U d_j$ with
$U = [I_K; 0] \in \mathbb{R}^{m\times K}$ (the first K coordinates; a fixed orthonormal choice the
spec leaves open).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .validation import as_tensor


class Transform(nn.Module):
    """Base class: ``apply(W, V, means)``; tensors are registered buffers (``model.to(...)`` moves them)."""

    name: str = ""
    #: True when T depends on the state (recomputed from the class means each evaluation)
    state_dependent: bool = False

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.K, self.m = num_classes, dim
        self._cast_cache: dict = {}

    def apply(self, W: torch.Tensor, V: torch.Tensor, means: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def _on(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Buffer ``name`` in the dtype and device of ``like`` (cast once and cached: called every step)."""
        t = getattr(self, name)
        if t.dtype == like.dtype and t.device == like.device:
            return t
        key = (name, like.dtype, like.device)
        if key not in self._cast_cache:
            self._cast_cache[key] = t.to(like)
        return self._cast_cache[key]

    def _apply(self, fn, recurse=True):
        self._cast_cache = {}
        return super()._apply(fn, recurse)

    @property
    def is_identity(self) -> bool:
        return False

    def dense(self, W: torch.Tensor) -> torch.Tensor:
        """The ``(..., K*m, K*m)`` matrix of the linear map vec(V) -> vec(apply(W, V)) (fixed transforms only).

        Computed in W's dtype and on W's device, for one (K, K) or a batch (S, K, K) of weights in one call.
        """
        if self.state_dependent:
            raise ValueError(f"transform {self.name!r} depends on the state; it has no fixed matrix")
        Km = self.K * self.m
        basis = torch.eye(Km, dtype=W.dtype, device=W.device).view(Km, self.K, self.m)  # (Km, K, m)
        if W.ndim == 2:
            return self.apply(W, basis).reshape(Km, Km).T
        S = W.shape[0]
        out = self.apply(W.repeat_interleave(Km, 0), basis.repeat(S, 1, 1))  # (S*Km, K, m)
        return out.reshape(S, Km, Km).transpose(1, 2)

    def to_spec(self) -> Any:
        return self.name


def _mix(W: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """(W s) over the class axis for s (B, K): one GEMM when W is shared, (B, K, K) batched otherwise."""
    if W.ndim == 2:
        return s @ W.T  # (B, K)
    return torch.matmul(W, s.unsqueeze(-1)).squeeze(-1)


def _residual_vectors(K: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    d = torch.eye(K, dtype=torch.float64) - 1.0 / K  # (K, K) rows d_j
    u = torch.zeros(K, m, dtype=torch.float64)
    u[:, :K] = d  # U = first K coordinates
    return u, (d * d).sum(-1)  # (K, m), ||d_j||^2 (K,)


class Identity(Transform):
    """$T_{kl} = I_m$: the drift of class k is $\\sum_l W_{kl} \\bar X_l$."""

    name = "identity"

    @property
    def is_identity(self):
        return True

    def apply(self, W, V, means=None):
        if W.ndim == 2:  # shared W: one GEMM over (B*m, K) rather than B tiny batched products
            return torch.matmul(V.transpose(-1, -2), W.T).transpose(-1, -2)  # (B, K, m), a view
        return torch.matmul(W, V)  # (B, K, m)


class Residual(Transform):
    """$T_{kl} = u_k u_l^\\top / \\|d_l\\|^2$: class k is pushed along its own simplex-ETF direction."""

    name = "residual"

    def __init__(self, num_classes, dim):
        super().__init__(num_classes, dim)
        if dim < num_classes:
            raise ValueError(
                f"transform={self.name!r} needs dim >= num_classes, got dim={dim} < num_classes={num_classes}"
            )
        u, c = _residual_vectors(num_classes, dim)
        self.register_buffer("u", u)  # (K, m)
        self.register_buffer("c", c)  # (K,)

    def apply(self, W, V, means=None):
        u, c = self._on("u", V), self._on("c", V)
        s = (V * u).sum(-1) / c  # (B, K): u_l . V_l / ||d_l||^2
        return _mix(W, s).unsqueeze(-1) * u  # (B, K, m)


class ResidualProjection(Residual):
    """$T_{kl} = u_l u_l^\\top / \\|d_l\\|^2$ (the original public code's variant)."""

    name = "residual-projection"

    def apply(self, W, V, means=None):
        u, c = self._on("u", V), self._on("c", V)
        s = (V * u).sum(-1) / c  # (B, K)
        return torch.matmul(W * s.unsqueeze(-2), u)  # (B, K, m): sum_l W_kl s_l u_l


class SoftmaxResidual(Transform):
    """Logit space (m == K): $d_j(t) = e_j - \\mathrm{softmax}(\\bar X_j(t))$, recomputed from the state."""

    name = "softmax-residual"
    state_dependent = True

    def __init__(self, num_classes, dim):
        super().__init__(num_classes, dim)
        if dim != num_classes:
            raise ValueError(
                f"transform='softmax-residual' works in logit space and needs dim == num_classes, "
                f"got dim={dim}, num_classes={num_classes}"
            )

    def apply(self, W, V, means=None):
        if means is None:
            raise ValueError("transform='softmax-residual' needs the class means of the state (argument means)")
        eye = torch.eye(self.K, dtype=V.dtype, device=V.device)
        d = eye - torch.softmax(means, dim=-1)  # (B, K, K) rows d_j
        c = (d * d).sum(-1).clamp_min(torch.finfo(V.dtype).tiny)  # (B, K)
        s = (V * d).sum(-1) / c  # (B, K)
        return _mix(W, s).unsqueeze(-1) * d  # (B, K, m)


def _check_psd(name: str, T: torch.Tensor) -> None:
    diag = torch.diagonal(T, dim1=-2, dim2=-1)
    if not (diag > 0).all():
        raise ValueError(f"{name}: every transform block must have a positive diagonal (T_ii > 0)")
    sym = 0.5 * (T + T.transpose(-1, -2))
    if not torch.allclose(T, sym, atol=1e-10 * float(T.abs().max())):
        raise ValueError(f"{name}: every transform block must be symmetric positive semi-definite")
    ev = torch.linalg.eigvalsh(sym)
    if (ev < -1e-10 * ev.abs().amax(-1, keepdim=True).clamp_min(1.0)).any():
        raise ValueError(
            f"{name}: a transform block is not positive semi-definite (min eigenvalue {float(ev.min()):.3g})"
        )


class UserMatrix(Transform):
    """One user matrix T (m, m) for every pair of classes."""

    name = "matrix"

    def __init__(self, num_classes, dim, T):
        super().__init__(num_classes, dim)
        T = as_tensor("transform", T)
        if T.shape != (dim, dim):
            raise ValueError(f"transform matrix must have shape (dim, dim) = ({dim}, {dim}), got {tuple(T.shape)}")
        _check_psd("transform", T)
        self.register_buffer("T", T)

    def apply(self, W, V, means=None):
        return torch.matmul(Identity.apply(self, W, V), self._on("T", V).T)

    def to_spec(self):
        return {"kind": "matrix", "T": self.T.tolist()}


class UserBlocks(Transform):
    """User blocks T (K, K, m, m)."""

    name = "blocks"

    def __init__(self, num_classes, dim, T):
        super().__init__(num_classes, dim)
        T = as_tensor("transform", T)
        K, m = num_classes, dim
        if T.shape != (K, K, m, m):
            raise ValueError(
                f"transform blocks must have shape (K, K, m, m) = ({K}, {K}, {m}, {m}), got {tuple(T.shape)}"
            )
        _check_psd("transform", T)
        self.register_buffer("T", T)

    def apply(self, W, V, means=None):
        return torch.einsum("...kl,klij,...lj->...ki", W, self._on("T", V), V)

    def to_spec(self):
        return {"kind": "blocks", "T": self.T.tolist()}


REGISTRY: dict[str, type[Transform]] = {
    "identity": Identity,
    "residual": Residual,
    "residual-projection": ResidualProjection,
    "softmax-residual": SoftmaxResidual,
}


def make_transform(transform: Any, num_classes: int, dim: int) -> Transform:
    """Build a transform from a name in `REGISTRY`, a tensor (m, m) or (K, K, m, m), or a spec dict."""
    if isinstance(transform, Transform):
        return transform
    if isinstance(transform, str):
        if transform not in REGISTRY:
            raise ValueError(
                f"transform={transform!r} is not supported; accepted values: "
                f"{', '.join(map(repr, REGISTRY))}, or a tensor of shape (m, m) or (K, K, m, m)"
            )
        return REGISTRY[transform](num_classes, dim)
    if isinstance(transform, dict) and "T" in transform:
        transform = transform["T"]
    try:
        T = torch.as_tensor(transform, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"transform must be a name ({', '.join(REGISTRY)}) or a tensor, got {type(transform).__name__}"
        ) from None
    if T.ndim == 2:
        return UserMatrix(num_classes, dim, T)
    if T.ndim == 4:
        return UserBlocks(num_classes, dim, T)
    raise ValueError(f"transform tensor must have shape (m, m) or (K, K, m, m), got {tuple(T.shape)}")
