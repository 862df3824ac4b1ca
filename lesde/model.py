r"""The locally elastic SDE as a torchsde-contract ``nn.Module``.

$$ dX_i = \sum_l \pi_l\, E_{y_i l}(t)\, T_{y_i l}\, \bar X_l\, dt + \sigma\, dW_i $$

The state is flat, ``y`` of shape (batch, N*m), sample-major: sample i's features are ``y[:, i*m:(i+1)*m]``,
and samples are ordered by class (class 0 first), so ``labels`` is non-decreasing. The drift depends on the
state only through the K class means; everything below works on (B, K, m) means and broadcasts back.

```pycon
>>> import torch, torchsde, lesde
>>> model = lesde.LESDE(3, 4, 5, alpha=1.0, beta=-0.2)
>>> y0 = torch.randn(2, model.num_samples * model.dim)
>>> ys = torchsde.sdeint(model, y0, torch.tensor([0.0, 0.1]), dt=0.01, method="euler")
>>> ys.shape
torch.Size([2, 2, 60])

```
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .noise import parse_noise, sampling_diffusion, sampling_noise
from .schedules import Schedule, as_schedule
from .transforms import Transform, make_transform
from .validation import as_tensor, check_choice, check_int, free_host_bytes, gib

CLASS_SAMPLING = ("uniform-sample", "uniform-class")


class LESDE(nn.Module):
    r"""Locally elastic SDE over K classes of samples in $\mathbb{R}^m$.

    Parameters
    ----------
    num_classes : int
        K >= 2.
    dim : int
        Feature dimension m.
    samples_per_class : int or sequence of int
        n (balanced) or one n_k per class (imbalanced).
    alpha : float, Schedule or callable
        Intra-class (E_kk) and inter-class (E_kl, k != l) elasticity.
    beta : float, Schedule or callable
        Described with `alpha` above.
    elasticity : (K, K) array or callable t -> (K, K), optional
        A full elasticity matrix; overrides alpha and beta.
    transform : str or tensor
        ``"identity"``, ``"residual"``, ``"residual-projection"``, ``"softmax-residual"``, or a PSD tensor
        (m, m) / (K, K, m, m).
    noise : float, (K,) array, (m, m) array or "sampling"
        sigma, per-class sigmas, a PSD covariance, or the SGD-sampling fluctuation of the drift.
    class_sampling : "uniform-sample" | "uniform-class"
        pi_l = n_l / N, or pi_l = 1 / K.
    lr : float, optional
        Learning rate eta; needed by ``noise="sampling"``.

    Notes
    -----
    The model's tensors (``labels``, ``counts``, ``class_probs``, ``sigma_class``, ``noise_chol``, a tensor
    ``elasticity`` and the transform's tensors) are registered buffers, so ``.to()``, ``.double()`` and
    ``.cuda()`` move them like any module's; the schedules follow the device and stay float64. The drift and the
    diffusion cast the (tiny) parameters to the state's dtype and never copy between host and device per call.

    A subclass that overrides `f`, `g` or `g_prod` is honoured: ``method="euler"`` then steps
    the whole state through those methods, ``method="exact"`` refuses it (it relies on the class-mean structure
    of this class's drift), and torchsde methods call them as usual (see `has_standard_dynamics`).
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
        if isinstance(samples_per_class, (list, tuple, np.ndarray)) or torch.is_tensor(samples_per_class):
            counts = [check_int(f"samples_per_class[{k}]", c, 1) for k, c in enumerate(list(samples_per_class))]
            if len(counts) != K:
                raise ValueError(
                    f"samples_per_class has {len(counts)} entries; it must be one int or one per class "
                    f"(num_classes={K})"
                )
        else:
            counts = [check_int("samples_per_class", samples_per_class, 1)] * K
        N = sum(counts)
        # the per-sample buffers (labels and the cached per-sample sigmas and weights) must fit
        need = N * (8 + 8 + 8)
        if need > 0.25 * free_host_bytes():
            raise MemoryError(
                f"{N} samples need {gib(need)} for the model's per-sample tables alone, more than a quarter of the "
                f"{gib(free_host_bytes())} of free memory: use fewer samples_per_class"
            )
        self.num_samples = N
        self.balanced = len(set(counts)) == 1
        self.register_buffer("counts", torch.tensor(counts, dtype=torch.long))
        self.register_buffer("labels", torch.repeat_interleave(torch.arange(K), self.counts))  # (N,)
        self.class_sampling = check_choice("class_sampling", class_sampling, CLASS_SAMPLING)
        pi = self.counts.double() / N if class_sampling == "uniform-sample" else torch.full((K,), 1.0 / K)
        self.register_buffer("class_probs", pi.double())
        self.alpha = as_schedule(alpha, "alpha")
        self.beta = as_schedule(beta, "beta")
        E = self._check_elasticity(elasticity)
        if torch.is_tensor(E):
            self.register_buffer("elasticity", E)
        else:
            self.elasticity = E
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
        if tuple(E.shape) != (K, K):
            raise ValueError(
                f"elasticity must be a (K, K) = ({K}, {K}) matrix (or a callable t -> (K, K)), got shape "
                f"{tuple(E.shape)}"
            )
        return E

    def _init_noise(self, noise):
        spec = parse_noise(noise, self.num_classes, self.dim, self.num_samples, self.lr)
        self.noise_kind, self.noise_type, self.brownian_size = spec.kind, spec.noise_type, spec.brownian_size
        self.register_buffer("sigma_class", spec.sigma)
        self.register_buffer("noise_chol", spec.chol)

    def _make_spec(self, samples_per_class, alpha, beta, elasticity, transform, noise) -> dict:
        def plain(x, sched=None):
            if sched is not None:
                return sched.to_spec()
            if torch.is_tensor(x) or isinstance(x, np.ndarray):
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
        """The constructor arguments as a plain dict (the ``spec`` attr of the Datasets); `from_spec` inverts it."""
        return copy.deepcopy(self._spec)

    @classmethod
    def from_spec(cls, spec: dict) -> LESDE:
        """The model a `to_spec` dict (e.g. a Dataset's ``spec`` attr) describes; a callable schedule,
        stored only by its repr, cannot be rebuilt (ValueError)."""
        kwargs = {k: v for k, v in spec.items() if k != "model"}
        for key in ("alpha", "beta", "elasticity"):
            if isinstance(kwargs.get(key), dict) and kwargs[key].get("kind") == "Callable":
                raise ValueError(f"{key} is a Python callable ({kwargs[key].get('repr')}), which a spec cannot rebuild")
        return cls(**kwargs)

    def extra_repr(self) -> str:
        return json.dumps(
            {
                k: v
                for k, v in self._spec.items()
                if k in ("num_classes", "dim", "samples_per_class", "transform", "class_sampling")
            }
        )

    # ------------------------------------------------------------------ devices, dtypes, per-path parameters
    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        # schedules (and a callable elasticity's output) stay float64; they follow the buffers' device
        device = self.class_probs.device
        self.alpha, self.beta = self.alpha.to(device=device), self.beta.to(device=device)
        self._cache = {}
        return out

    def on(self, device: torch.device | str) -> LESDE:
        """A copy of the model on ``device`` (the original is unchanged). Parameters keep their dtype (float64):
        the drift casts them to the state's dtype, so one model serves float32 and float64 states."""
        new = copy.deepcopy(self)
        return new.to(device=torch.device(device))

    @property
    def param_batch(self) -> int | None:
        """Number of per-path parameter sets (schedule params with a leading dim), or None."""
        sizes = {s.batch_shape[0] for s in (self.alpha, self.beta) if len(s.batch_shape) > 0}
        if len(sizes) > 1 and 1 not in sizes:
            raise ValueError(f"alpha and beta have per-path parameters of different lengths {sorted(sizes)}")
        sizes.discard(1)
        return sizes.pop() if sizes else None

    def select_paths(self, index: slice | torch.Tensor) -> LESDE:
        """A shallow copy whose per-path schedule parameters are restricted to ``index`` (buffers shared)."""
        new = copy.copy(self)
        new._cache = {}
        new.alpha = self.alpha.select(index) if len(self.alpha.batch_shape) else self.alpha
        new.beta = self.beta.select(index) if len(self.beta.batch_shape) else self.beta
        return new

    @property
    def has_standard_dynamics(self) -> bool:
        """False when a subclass overrides the drift or the diffusion (f, g, g_prod or sampling_noise): the
        native integrators then may not use the class-mean structure of `f`."""
        cls = type(self)
        return all(getattr(cls, name) is getattr(LESDE, name) for name in ("f", "g", "g_prod", "sampling_noise"))

    def as_stratonovich(self) -> nn.Module:
        """This SDE as a Stratonovich torchsde module (same f and g), for torchsde's Stratonovich solvers.

        With sample-independent noise the diffusion does not depend on the state, so the Ito and Stratonovich
        forms of the LE-SDE coincide; with ``noise="sampling"`` they differ and this raises ValueError.
        """
        if self.noise_kind == "sampling":
            raise ValueError(
                "noise='sampling' is state dependent, so the Ito and Stratonovich forms of this SDE differ: use an "
                "Ito solver (torchsde euler, milstein or srk)"
            )
        return _Stratonovich(self)

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
            return E.to(self.class_probs.device)
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
        return self.class_sums(X) / self._cached(("n", X.dtype, X.device), lambda: self.counts.to(X)[:, None])

    def class_sums(self, values: torch.Tensor) -> torch.Tensor:
        """Sums over each class's samples: (B, N, ...) -> (B, K, ...).

        Balanced classes: a reshape and a sum. Otherwise a GEMM with the (K, N) one-hot matrix while it is small
        (deterministic on every device), and ``index_add_`` beyond 2^23 entries (never a dense K x N table).
        """
        B, N, rest = values.shape[0], values.shape[1], values.shape[2:]
        K = self.num_classes
        if self.balanced:
            return values.reshape(B, K, N // K, *rest).sum(2)
        if K * N <= 2**23:
            flat = values.reshape(B, N, -1)
            return torch.matmul(self.class_sum_matrix(values), flat).reshape(B, K, *rest)
        out = torch.zeros((B, K, *rest), dtype=values.dtype, device=values.device)
        return out.index_add_(1, self.labels, values)

    def _cached(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def class_sum_matrix(self, like: torch.Tensor) -> torch.Tensor:
        """(K, N) one-hot matrix A with A_ki = 1 when sample i is in class k, in ``like``'s dtype and device."""

        def build():
            return torch.nn.functional.one_hot(self.labels, self.num_classes).T.to(like)

        return self._cached(("sum", like.dtype, like.device), build)

    def averaging_matrix(self, like: torch.Tensor) -> torch.Tensor:
        """(K, N) matrix of class averages: `class_sum_matrix` with row k divided by n_k."""
        return self._cached(
            ("avg", like.dtype, like.device), lambda: self.class_sum_matrix(like) / self.counts.to(like)[:, None]
        )

    def sample_sigmas(self, like: torch.Tensor) -> torch.Tensor:
        """(N,) noise scale sigma_{y_i} of every sample, in ``like``'s dtype and device."""
        return self._cached(("sig", like.dtype, like.device), lambda: self.sigma_class.to(like)[self.labels])

    def weights_at(self, t, like: torch.Tensor) -> torch.Tensor:
        """The drift weights W(t) in ``like``'s dtype, checked against its batch when per path."""
        W = self.drift_weights(torch.as_tensor(t).detach()).to(device=like.device, dtype=like.dtype)
        if W.ndim == 3 and W.shape[0] != like.shape[0]:
            raise ValueError(f"per-path parameters have {W.shape[0]} entries but the state has batch {like.shape[0]}")
        return W

    def expand_to_samples(self, D: torch.Tensor) -> torch.Tensor:
        """Broadcast per-class (B, K, m) to per-sample (B, N, m) (a view when the classes are balanced)."""
        if self.balanced:
            B, K, m = D.shape
            return D.unsqueeze(2).expand(B, K, self.num_samples // K, m).reshape(B, self.num_samples, m)
        return D[:, self.labels]

    # ------------------------------------------------------------------ torchsde contract
    def f(self, t, y: torch.Tensor) -> torch.Tensor:
        M = self.class_means(y)  # (B, K, m)
        D = self.transform_apply(self.weights_at(t, y), M, M)  # (B, K, m)
        return self.expand_to_samples(D).reshape(y.shape)

    def g(self, t, y: torch.Tensor) -> torch.Tensor:
        B, N, m = y.shape[0], self.num_samples, self.dim
        if self.noise_kind in ("scalar", "per-class"):
            return self.sample_sigmas(y)[:, None].expand(N, m).reshape(1, N * m).expand(B, N * m)
        if self.noise_kind == "covariance":
            L = self.noise_chol.to(y)
            G = torch.block_diag(*([L] * N))  # (N*m, N*m): fine for the small problems torchsde is used on
            return G.expand(B, N * m, N * m)
        return sampling_diffusion(self, t, y)

    def _sampling_weights(self, like):
        """(N,) sqrt(w_j) = sqrt(pi_{y_j} / n_{y_j}): the probability that step samples j, square-rooted."""
        return self._cached(
            ("w", like.dtype, like.device), lambda: (self.class_probs / self.counts).sqrt().to(like)[self.labels]
        )

    def g_prod(self, t, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Diffusion times Brownian increment without forming the diffusion matrix."""
        B, N, m = y.shape[0], self.num_samples, self.dim
        if self.noise_kind in ("scalar", "per-class"):
            return (v.view(B, N, m) * self.sample_sigmas(y)[:, None]).reshape(B, N * m)
        if self.noise_kind == "covariance":
            return torch.matmul(v.view(B, N, m), self.noise_chol.to(y).T).reshape(B, N * m)
        return self.sampling_noise(t, y, v)

    def sampling_noise(self, t, y, z: torch.Tensor) -> torch.Tensor:
        r"""The SGD-sampling diffusion times ``z`` (B, N) without forming it (`lesde.noise.sampling_noise`)."""
        return sampling_noise(self, t, y, z)


class _Stratonovich(nn.Module):
    """A Stratonovich view of an LE-SDE with state-independent noise (see `LESDE.as_stratonovich`)."""

    sde_type = "stratonovich"

    def __init__(self, sde: LESDE):
        super().__init__()
        self.sde = sde
        self.noise_type = sde.noise_type
        self.brownian_size = sde.brownian_size

    def f(self, t, y):
        return self.sde.f(t, y)

    def g(self, t, y):
        return self.sde.g(t, y)

    def g_prod(self, t, y, v):
        return self.sde.g_prod(t, y, v)
