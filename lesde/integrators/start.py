r"""The initial state and the within-class deviations, shared by the native integrators.

With sample-independent noise the LE-SDE splits into the class means (which carry all the dynamics) and the
within-class deviations $Z_i = X_i - \bar X_{y_i}$, a Brownian motion projected to zero class mean that
the drift never sees. Two exact representations of the deviations:

`SampleDeviations`
    every $Z_i$, advanced once per save interval by its exact Gaussian increment
    $\sqrt{\Delta t}\,\sigma_k(\xi_i - \bar\xi_k)$ (times $L_\Sigma^\top$ for a covariance). Needed when
    individual samples are recorded (``save="full"``, ``"metrics"``) or the noise is a covariance.
`WithinInLaw`
    only what ``save="means"`` records, the within-class sum of squares $S_k = \sum_{i \in k}\|Z_i\|^2$.
    In an orthonormal basis of the zero-class-mean subspace (dimension $d_k = m(n_k - 1)$) the deviations
    are a $d_k$-dimensional Brownian motion with scale $\sigma_k$, so $S_k$ is a squared Bessel
    process: given $S_k(t_0)$,

$$ S_k(t_1) = \big(\sqrt{S_k(t_0)} + \sigma_k\sqrt{\Delta t}\,\xi\big)^2 + \sigma_k^2\Delta t\,\chi^2_{d_k-1}, $$

    a scaled noncentral $\chi^2_{d_k}$ with noncentrality $S_k(t_0)/(\sigma_k^2\Delta t)$ (exact in law,
    jointly over the save times), and at t = 0 with $X_i \sim N(0, s^2 I)$:
    $S_k(0) = s^2\chi^2_{d_k}$, independent of the class means $\bar X_k(0) \sim N(0, s^2/n_k\, I)$.
    No per-sample state exists at all; the draws use one numpy generator per path block (torch has no
    generator-aware chi-square sampler).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Start:
    """The initial condition: ``x0`` (shared (N, m) / (D,), or per path (n_paths, N, m) / (n_paths, D)) or
    i.i.d. N(0, scale^2) samples; ``shape`` is one path's state shape."""

    x0: torch.Tensor | None
    scale: float
    shape: tuple[int, ...]
    n_paths: int
    dtype: torch.dtype

    def _given(self, rows: slice, dtype, device) -> torch.Tensor:
        x0 = self.x0
        if x0.ndim == len(self.shape) + 1 and x0.shape[0] == self.n_paths:
            return x0[rows].to(device=device, dtype=dtype).clone()
        B = rows.stop - rows.start
        return x0.to(device=device, dtype=dtype).expand(B, *self.shape).clone()

    def full(self, rows: slice, rng, dtype, device) -> torch.Tensor:
        """(B, *shape) initial states of the paths ``rows`` of the run (a fresh tensor)."""
        if self.x0 is not None:
            return self._given(rows, dtype, device)
        X = rng.normal(self.shape, dtype)
        return X.mul_(self.scale) if self.scale != 1.0 else X

    def means_and_within(self, model, rows: slice, rng, dtype, device) -> tuple[torch.Tensor, np.ndarray]:
        """Class means (B, K, m) and within-class sums of squares S_k (B, K) (float64 numpy) at t = 0."""
        K, m = model.num_classes, model.dim
        if self.x0 is not None and self.x0.ndim == 2:  # shared start: the same for every path
            X = self.x0.to(device=device, dtype=torch.float64)[None]
            M = model.class_means(X)
            S = _sum_squares(model, X, M)
            B = rows.stop - rows.start
            return M.to(dtype).expand(B, K, m).clone(), np.repeat(S, B, axis=0)
        if self.x0 is not None:
            X = self._given(rows, torch.float64, device)
            M = model.class_means(X)
            return M.to(dtype), _sum_squares(model, X, M)
        n = model.counts.to(device=device, dtype=dtype)
        M = rng.normal((K, m), dtype).mul_((self.scale / n.sqrt())[:, None])
        df = m * (model.counts.cpu().numpy() - 1)
        S = np.empty((rng.n_paths, K))
        for (r, _), g in zip(rng.per_block(), rng.numpy_generators()):
            S[r] = self.scale**2 * _chisquare(g, df, S[r].shape)
        return M, S


def _sum_squares(model, X: torch.Tensor, M: torch.Tensor) -> np.ndarray:
    Z = X - model.expand_to_samples(M)
    return model.class_sums((Z * Z).sum(-1)).cpu().numpy()  # (B, K)


def _chisquare(g: np.random.Generator, df: np.ndarray, shape) -> np.ndarray:
    """chi^2 with ``df`` (K,) degrees of freedom, 0 where df = 0."""
    out = g.chisquare(np.maximum(df, 1), size=shape)
    return np.where(df > 0, out, 0.0)


class SampleDeviations:
    """Every within-class deviation Z (B, N, m), advanced exactly once per save interval."""

    def __init__(self, model, Z: torch.Tensor, rng):
        self.model, self.Z, self.rng = model, Z, rng
        self.sig = model.sample_sigmas(Z)[:, None]  # (N, 1)
        self.chol_T = None if model.noise_chol is None else model.noise_chol.to(Z).T

    def advance(self, dt: float) -> None:
        xi = self.rng.normal(self.Z.shape[1:], self.Z.dtype)  # (B, N, m)
        xi.sub_(self.model.expand_to_samples(self.model.class_means(xi)))
        if self.chol_T is not None:
            xi = xi @ self.chol_T
        self.Z.addcmul_(xi, self.sig, value=math.sqrt(dt))

    def parts(self) -> dict:
        return {"deviations": self.Z}


class WithinInLaw:
    """The within-class sums of squares S_k (B, K), advanced by their exact squared-Bessel law (host numpy)."""

    def __init__(self, model, S: np.ndarray, rng):
        if model.noise_kind not in ("scalar", "per-class"):
            raise ValueError("the in-law within-class statistics need scalar or per-class noise")
        self.S, self.rng = S, rng
        self.sig2 = model.sigma_class.cpu().double().numpy() ** 2  # (K,)
        self.df = model.dim * (model.counts.cpu().numpy() - 1)  # (K,)
        self.n = model.counts.cpu().numpy().astype(np.float64)

    def advance(self, dt: float) -> None:
        v = self.sig2 * dt  # (K,)
        for (r, _), g in zip(self.rng.per_block(), self.rng.numpy_generators()):
            S = self.S[r]
            z = g.standard_normal(S.shape)
            rest = _chisquare(g, self.df - 1, S.shape)
            new = (np.sqrt(S) + np.sqrt(v) * z) ** 2 + v * rest
            self.S[r] = np.where(self.df > 0, new, 0.0)

    def parts(self) -> dict:
        return {"within": self.S / self.n}


def deviations_for(model, start: Start, rows: slice, rng, dtype, device, in_law: bool):
    """(class means M (B, K, m), deviations object) at t = 0."""
    if in_law:
        M, S = start.means_and_within(model, rows, rng, dtype, device)
        return M, WithinInLaw(model, S, rng)
    X = start.full(rows, rng, dtype, device)
    M = model.class_means(X).contiguous()
    Z = X.sub_(model.expand_to_samples(M))  # X is a fresh tensor: the deviations overwrite it
    return M, SampleDeviations(model, Z, rng)


#: state-sized copies live at once on the per-sample path, by save mode (measured peak RSS, see
#: tests/test_memory.py): the deviations, one increment or the recorded X = M + Z, and a reduction temporary;
#: save="metrics" adds the normalised copy the metrics work on
SAMPLE_COPIES = {"full": 3, "means": 3, "metrics": 4}


def deviation_bytes(model, save: str, itemsize: int) -> int:
    """Per-path working bytes of the within-class deviations for ``save`` (0 on the in-law path)."""
    if in_law_applies(model, save):
        return model.num_classes * 8 * 2  # S_k on the host, and its update
    return SAMPLE_COPIES[save] * model.num_samples * model.dim * itemsize


def in_law_applies(model, save: str) -> bool:
    """save="means" records only class means and within-class variances, which the in-law representation gives
    exactly for scalar and per-class noise; a covariance keeps the per-sample deviations."""
    return save == "means" and model.noise_kind in ("scalar", "per-class")
