r"""The locally elastic SDE (DESIGN.md section 2) as a torchsde-contract ``nn.Module``.

.. math::

    dX_i = \sum_l \pi_l\, E_{y_i l}(t)\, T_{y_i l}\, \bar X_l\, dt + \sigma\, dW_i

The state is flat, ``y`` of shape (batch, N*m), sample-major: sample i's features are ``y[:, i*m:(i+1)*m]``,
and samples are ordered by class (class 0 first), so ``labels`` is non-decreasing. The drift depends on the
state only through the K class means; everything below works on (B, K, m) means and broadcasts back.

>>> import torch, torchsde, lesde
>>> model = lesde.LESDE(3, 4, 5, alpha=1.0, beta=-0.2)
>>> y0 = torch.randn(2, model.num_samples * model.dim)
>>> ys = torchsde.sdeint(model, y0, torch.tensor([0.0, 0.1]), dt=0.01, method="euler")
>>> ys.shape
torch.Size([2, 2, 60])
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ._validate import as_tensor, check_choice, check_int
from .schedules import Schedule, as_schedule
from .transforms import Transform, make_transform

CLASS_SAMPLING = ("uniform-sample", "uniform-class")
NOISE_KINDS = ("scalar", "per-class", "covariance", "sampling")


class LESDE(nn.Module):
    r"""Locally elastic SDE over K classes of samples in :math:`\mathbb{R}^m`.

    Parameters
    ----------
    num_classes : int
        K >= 2.
    dim : int
        Feature dimension m.
    samples_per_class : int or sequence of int
        n (balanced) or one n_k per class (imbalanced).
    alpha, beta : float, Schedule or callable
        Intra-class (E_kk) and inter-class (E_kl, k != l) elasticity.
    elasticity : (K, K) array or callable t -> (K, K), optional
        A full elasticity matrix; overrides alpha and beta.
    transform : str or tensor
        ``"identity"``, ``"residual"``, ``"residual-projection"``, ``"softmax-residual"``, or a PSD tensor
        (m, m) / (K, K, m, m).
    noise : float, (K,) array, (m, m) array or "sampling"
        sigma, per-class sigmas, a PSD covariance, or the SGD-sampling fluctuation of the drift.
    class_sampling : {"uniform-sample", "uniform-class"}
        pi_l = n_l / N, or pi_l = 1 / K.
    lr : float, optional
        Learning rate eta; needed by ``noise="sampling"``.
    """

    sde_type = "ito"

    def __init__(
        self,
        num_classes: int,
        dim: int,
        samples_per_class: int | list[int] | tuple[int, ...],
        alpha: float | Schedule | Callable = 1.0,
        beta: float | Schedule | Callable = 0.0,
        elasticity: Any = None,
        transform: str | torch.Tensor = "identity",
        noise: float | torch.Tensor | str = 1.0,
        class_sampling: str = "uniform-sample",
        lr: float | None = None,
    ):
        super().__init__()
        K = check_int("num_classes", num_classes, minimum=2)
        m = check_int("dim", dim, minimum=1)
        self.num_classes, self.dim = K, m
        if isinstance(samples_per_class, (list, tuple)) or torch.is_tensor(samples_per_class):
            counts = [check_int(f"samples_per_class[{k}]", c, 1) for k, c in enumerate(list(samples_per_class))]
            if len(counts) != K:
                raise ValueError(
                    f"samples_per_class has {len(counts)} entries; it must be one int or one per class "
                    f"(num_classes={K})"
                )
        else:
            counts = [check_int("samples_per_class", samples_per_class, 1)] * K
        self.counts = torch.tensor(counts, dtype=torch.long)
        self.num_samples = int(self.counts.sum())
        self.balanced = len(set(counts)) == 1
        self.labels = torch.repeat_interleave(torch.arange(K), self.counts)  # (N,)
        self.class_sampling = check_choice("class_sampling", class_sampling, CLASS_SAMPLING)
        pi = (
            self.counts.double() / self.num_samples if class_sampling == "uniform-sample" else torch.full((K,), 1.0 / K)
        )
        self.class_probs = pi.double()
        self.alpha = as_schedule(alpha, "alpha")
        self.beta = as_schedule(beta, "beta")
        self.elasticity = self._check_elasticity(elasticity)
        self.transform: Transform = make_transform(transform, K, m)
        self.lr = None if lr is None else float(as_tensor("lr", lr))
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        self._init_noise(noise)
        self._spec = self._make_spec(samples_per_class, alpha, beta, elasticity, transform, noise)
        self._cache: dict = {}

    # ------------------------------------------------------------------ construction helpers
    def _check_elasticity(self, elasticity):
        if elasticity is None:
            return None
        if callable(elasticity) and not torch.is_tensor(elasticity):
            return elasticity
        E = as_tensor("elasticity", elasticity)
        K = self.num_classes
        if E.shape[-2:] != (K, K):
            raise ValueError(f"elasticity must have shape (K, K) = ({K}, {K}), got {tuple(E.shape)}")
        return E

    def _init_noise(self, noise):
        K, m = self.num_classes, self.dim
        self.noise_chol = None
        if isinstance(noise, str):
            check_choice("noise", noise, ["sampling"])
            if self.lr is None:
                raise ValueError("noise='sampling' needs the learning rate: pass lr=... (eta > 0)")
            self.noise_kind = "sampling"
            self.sigma_class = torch.zeros(K, dtype=torch.float64)
            self.noise_type, self.brownian_size = "general", self.num_samples
            return
        sig = as_tensor("noise", noise)
        if sig.ndim == 0:
            if sig < 0:
                raise ValueError(f"noise (sigma) must be >= 0, got {float(sig)}")
            self.noise_kind, self.sigma_class = "scalar", sig.expand(K).clone()
        elif sig.ndim == 1:
            if sig.shape != (K,) or (sig < 0).any():
                raise ValueError(
                    f"per-class noise must be {K} non-negative sigmas (num_classes={K}), got {sig.tolist()}"
                )
            self.noise_kind, self.sigma_class = "per-class", sig
        elif sig.ndim == 2:
            if sig.shape != (m, m):
                raise ValueError(f"noise covariance must have shape (dim, dim) = ({m}, {m}), got {tuple(sig.shape)}")
            if not torch.allclose(sig, sig.T):
                raise ValueError("noise covariance must be symmetric positive semi-definite")
            ev, vec = torch.linalg.eigh(sig)
            if ev.min() < -1e-10 * max(1.0, float(ev.abs().max())):
                raise ValueError(
                    f"noise covariance is not positive semi-definite (min eigenvalue {float(ev.min()):.3g})"
                )
            self.noise_kind, self.sigma_class = "covariance", torch.ones(K, dtype=torch.float64)
            self.noise_chol = vec * ev.clamp_min(0).sqrt()  # L with L L^T = Sigma (works when singular)
        else:
            raise ValueError(
                f"noise must be a sigma, per-class sigmas (K,), a covariance (m, m) or 'sampling'; "
                f"got shape {tuple(sig.shape)}"
            )
        if self.noise_kind == "covariance":
            self.noise_type, self.brownian_size = "additive", self.num_samples * m
        else:
            self.noise_type, self.brownian_size = "diagonal", self.num_samples * m

    def _make_spec(self, samples_per_class, alpha, beta, elasticity, transform, noise) -> dict:
        def plain(x, sched=None):
            if sched is not None:
                return sched.to_spec()
            if torch.is_tensor(x):
                return x.tolist()
            if callable(x):
                return {"kind": "Callable", "repr": getattr(x, "__qualname__", repr(x))}
            return x

        return {
            "model": "LESDE",
            "num_classes": self.num_classes,
            "dim": self.dim,
            "samples_per_class": self.counts.tolist(),
            "alpha": plain(alpha, self.alpha),
            "beta": plain(beta, self.beta),
            "elasticity": None if elasticity is None else plain(elasticity),
            "transform": self.transform.to_spec(),
            "noise": noise if isinstance(noise, str) else as_tensor("noise", noise).tolist(),
            "class_sampling": self.class_sampling,
            "lr": self.lr,
        }

    def to_spec(self) -> dict:
        return copy.deepcopy(self._spec)

    def extra_repr(self) -> str:
        return json.dumps(
            {
                k: v
                for k, v in self._spec.items()
                if k in ("num_classes", "dim", "samples_per_class", "transform", "class_sampling")
            }
        )

    # ------------------------------------------------------------------ batching over per-path parameters
    @property
    def param_batch(self) -> int | None:
        """Number of per-path parameter sets (schedule params with a leading dim), or None."""
        sizes = {s.batch_shape[0] for s in (self.alpha, self.beta) if len(s.batch_shape) > 0}
        if len(sizes) > 1 and 1 not in sizes:
            raise ValueError(f"alpha and beta have per-path parameters of different lengths {sorted(sizes)}")
        sizes.discard(1)
        return sizes.pop() if sizes else None

    def select_paths(self, index: slice | torch.Tensor) -> LESDE:
        """A shallow copy whose per-path schedule parameters are restricted to ``index``."""
        new = copy.copy(self)
        new._cache = {}
        new.alpha = self.alpha.select(index) if len(self.alpha.batch_shape) else self.alpha
        new.beta = self.beta.select(index) if len(self.beta.batch_shape) else self.beta
        return new

    def on(self, device: torch.device | str, dtype: torch.dtype) -> LESDE:
        """A shallow copy with every parameter tensor on ``device``; schedules stay float64 for accuracy."""
        new = copy.copy(self)
        new._cache = {}
        device = torch.device(device)
        new.alpha, new.beta = self.alpha.to(device), self.beta.to(device)
        new.transform = self.transform.to(device=device, dtype=dtype)
        if torch.is_tensor(self.elasticity):
            new.elasticity = self.elasticity.to(device)
        new.labels = self.labels.to(device)
        new.class_probs = self.class_probs.to(device)
        new.sigma_class = self.sigma_class.to(device)
        new.noise_chol = None if self.noise_chol is None else self.noise_chol.to(device=device, dtype=dtype)
        return new

    # ------------------------------------------------------------------ the drift's pieces
    def elasticity_matrix(self, t: float | torch.Tensor) -> torch.Tensor:
        """E(t): (K, K), or (P, K, K) with per-path parameters; with t of shape (S,) a leading (S,) dim is added."""
        K = self.num_classes
        if self.elasticity is not None:
            if torch.is_tensor(self.elasticity):
                return self.elasticity
            E = torch.as_tensor(self.elasticity(t), dtype=torch.float64)
            if E.shape[-2:] != (K, K) or not torch.isfinite(E).all():
                raise ValueError(
                    f"elasticity callable must return a finite (K, K) = ({K}, {K}) matrix, got shape "
                    f"{tuple(E.shape)} at t={t}"
                )
            return E
        t = torch.as_tensor(t, dtype=torch.float64, device=self.class_probs.device)
        tt = t.reshape(t.shape + (1,) * max(len(self.alpha.batch_shape), len(self.beta.batch_shape)))
        a, b = self.alpha(tt), self.beta(tt)
        for name, v in (("alpha", a), ("beta", b)):
            if not torch.isfinite(v).all():
                raise ValueError(f"{name} schedule returned NaN or inf at t={t.flatten()[:4].tolist()}")
        a, b = torch.broadcast_tensors(a, b)
        eye = torch.eye(K, dtype=torch.float64, device=a.device)
        return (a - b)[..., None, None] * eye + b[..., None, None] * torch.ones_like(eye)

    def drift_weights(self, t) -> torch.Tensor:
        """W(t) = E(t) diag(pi): the weights the transform operator receives."""
        return self.elasticity_matrix(t) * self.class_probs

    def transform_apply(self, W: torch.Tensor, V: torch.Tensor, means: torch.Tensor | None = None) -> torch.Tensor:
        """out_k = sum_l W_kl T_kl V_l, (B, K, m)."""
        return self.transform.apply(W.to(V.dtype), V, means)

    def class_means(self, y: torch.Tensor) -> torch.Tensor:
        """(B, K, m) class means of a flat state (B, N*m) or (B, N, m)."""
        X = y.reshape(y.shape[0], self.num_samples, self.dim)
        if self.balanced:
            return X.view(X.shape[0], self.num_classes, -1, self.dim).mean(2)
        return torch.matmul(self._averaging(X), X)

    def _averaging(self, like: torch.Tensor) -> torch.Tensor:
        key = ("avg", like.dtype, like.device)
        if key not in self._cache:
            A = torch.zeros(self.num_classes, self.num_samples, dtype=like.dtype, device=like.device)
            labels = self.labels.to(like.device)
            A[labels, torch.arange(self.num_samples, device=like.device)] = 1.0
            self._cache[key] = A / A.sum(1, keepdim=True)  # (K, N)
        return self._cache[key]

    def _expand(self, D: torch.Tensor) -> torch.Tensor:
        """Broadcast per-class (B, K, m) to per-sample (B, N, m)."""
        if self.balanced:
            B, K, m = D.shape
            return D.unsqueeze(2).expand(B, K, self.num_samples // K, m).reshape(B, self.num_samples, m)
        return D[:, self.labels.to(D.device)]

    def _weights_for(self, t, y):
        W = self.drift_weights(torch.as_tensor(t).detach()).to(device=y.device, dtype=y.dtype)
        if W.ndim == 3 and W.shape[0] != y.shape[0]:
            raise ValueError(f"per-path parameters have {W.shape[0]} entries but the state has batch {y.shape[0]}")
        return W

    # ------------------------------------------------------------------ torchsde contract
    def f(self, t, y: torch.Tensor) -> torch.Tensor:
        M = self.class_means(y)  # (B, K, m)
        D = self.transform_apply(self._weights_for(t, y), M, M)  # (B, K, m)
        return self._expand(D).reshape(y.shape)

    def _sigma_samples(self, like):
        key = ("sig", like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = self.sigma_class.to(like)[self.labels.to(like.device)]  # (N,)
        return self._cache[key]

    def g(self, t, y: torch.Tensor) -> torch.Tensor:
        B, N, m = y.shape[0], self.num_samples, self.dim
        if self.noise_kind in ("scalar", "per-class"):
            return self._sigma_samples(y)[:, None].expand(N, m).reshape(1, N * m).expand(B, N * m)
        if self.noise_kind == "covariance":
            L = self.noise_chol.to(y)
            G = torch.block_diag(*([L] * N))  # (N*m, N*m): fine for the small problems torchsde is used on
            return G.expand(B, N * m, N * m)
        # sampling: column j is sqrt(eta w_j) (v^{(j)} - vbar), v^{(j)}_i = E(y_i, l_j) T(y_i, l_j) X_j
        X = y.view(B, N, m)
        M = self.class_means(y)
        W = self._weights_for(t, y)
        E = (W / self.class_probs.to(W)).expand(B, -1, -1) if W.ndim == 2 else W / self.class_probs.to(W)
        labels = self.labels.to(y.device)
        V = torch.zeros(B * N, self.num_classes, m, dtype=y.dtype, device=y.device)
        V[torch.arange(B * N, device=y.device), labels.repeat(B)] = X.reshape(B * N, m)
        Ej = E.repeat_interleave(N, 0)  # (B*N, K, K)
        Mj = M.repeat_interleave(N, 0)
        v = self.transform_apply(Ej, V, Mj).view(B, N, self.num_classes, m)  # (B, j, K, m)
        vbar = self.transform_apply(W, M, M)  # (B, K, m)
        cols = self._expand_cols(v - vbar.unsqueeze(1))  # (B, j, N, m)
        w = (self.class_probs.to(y)[labels] / self.counts.to(y)[labels]).sqrt()  # (N,) sqrt(w_j)
        cols = cols * (self.lr**0.5 * w)[None, :, None, None]
        return cols.reshape(B, N, N * m).transpose(1, 2)  # (B, N*m, N)

    def _expand_cols(self, D):
        B, J, K, m = D.shape
        return self._expand(D.reshape(B * J, K, m)).view(B, J, self.num_samples, m)

    def g_prod(self, t, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Diffusion times Brownian increment without forming the diffusion matrix."""
        B, N, m = y.shape[0], self.num_samples, self.dim
        if self.noise_kind in ("scalar", "per-class"):
            return (v.view(B, N, m) * self._sigma_samples(y)[:, None]).reshape(B, N * m)
        if self.noise_kind == "covariance":
            return torch.matmul(v.view(B, N, m), self.noise_chol.to(y).T).reshape(B, N * m)
        return self.sampling_noise(t, y, v)

    def sampling_noise(self, t, y, z: torch.Tensor) -> torch.Tensor:
        r"""sqrt(eta) sum_j sqrt(w_j) (v^{(j)} - vbar) z_j, computed per class:
        S_l = sum_{j in l} sqrt(w_j) z_j X_j, noise_k = sqrt(eta) [op(E, S)_k - vbar_k sum_j sqrt(w_j) z_j]."""
        B, N, m = y.shape[0], self.num_samples, self.dim
        X = y.view(B, N, m)
        labels = self.labels.to(y.device)
        w = (self.class_probs.to(y)[labels] / self.counts.to(y)[labels]).sqrt()  # (N,)
        zw = z * w  # (B, N)
        S = torch.matmul(self._class_sum(y), zw.unsqueeze(-1) * X)  # (B, K, m)
        M = self.class_means(y)
        W = self._weights_for(t, y)
        E = W / self.class_probs.to(W)
        noise = self.transform_apply(E, S, M) - self.transform_apply(W, M, M) * zw.sum(1)[:, None, None]
        return (self.lr**0.5) * self._expand(noise).reshape(B, N * m)

    def _class_sum(self, like):
        key = ("sum", like.dtype, like.device)
        if key not in self._cache:
            A = torch.zeros(self.num_classes, self.num_samples, dtype=like.dtype, device=like.device)
            A[self.labels.to(like.device), torch.arange(self.num_samples, device=like.device)] = 1.0
            self._cache[key] = A
        return self._cache[key]
