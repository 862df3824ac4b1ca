r"""Euler steps of the class means: one GEMM per step in the layout that makes it one.

The class-mean SDE is :math:`d\bar X = B(t)\,\bar X\,dt + \mathrm{diag}(\sigma_k/\sqrt{n_k})\,dW\,L^\top` with
:math:`B(t)_{kl} = \pi_l E_{kl}(t) T_{kl}`. One Euler step is :math:`\bar X \leftarrow (I + hB(t_s))\bar X +
\text{noise}`; the step maps :math:`I + hB(t_s)` of a group of steps are built in one vectorised call, and each
step is then a single in-place GEMM into the noise buffer (which becomes the state: two buffers ping-pong):

``identity``
    T = I: the map acts on the class index only. State (B, m, K), i.e. a (B m, K) matrix, and the step is one
    ``addmm`` with the K x K map (``baddbmm`` with per-path maps, as sweeps batch them). A noise covariance
    :math:`\Sigma = V\Lambda V^\top` is handled by stepping the rotated means :math:`\bar X V` (the drift commutes
    with any map of the features), whose noise is independent per feature with scale :math:`\sqrt{\lambda_j}`.
``dense``
    Fixed transforms with K m <= :data:`DENSE_MAX`: state (B, K m), one ``addmm`` with the (K m)^2 map.
``structured``
    Everything else (state-dependent transforms, larger K m, per-path maps of other transforms): the transform's
    own low-rank ``apply`` each step.

Noise is drawn per step and per path block (see :mod:`lesde.integrators._rng`): K m numbers per path per step,
in (m, K) order for the identity layout and (K, m) otherwise, whatever the chunking.
"""

from __future__ import annotations

import math

import torch

from ._rng import step_groups

#: largest K m for the dense layout of fixed non-identity transforms
DENSE_MAX = 128
#: bytes of step maps built at once (groups of steps share one vectorised build)
OPS_BYTES = 16 * 2**20

__all__ = ["EulerMeans", "operator_bytes", "step_groups", "layout"]


def layout(model) -> str:
    tr = model.transform
    if tr.is_identity:
        return "identity"
    if not tr.state_dependent and model.param_batch is None and model.num_classes * model.dim <= DENSE_MAX:
        return "dense"
    return "structured"


def _map_bytes(model) -> int:
    """Bytes of one step's map (float64), per-path maps included."""
    n = model.num_classes * model.dim if layout(model) == "dense" else model.num_classes
    return n * n * 8 * (model.param_batch or 1)


def operator_bytes(model) -> int:
    """Peak bytes of building one group of step maps: about six float64 copies (E(t), E diag(pi), I + hW, its
    transpose, the cast, the eye/ones tables) of the group, which holds at least one step."""
    one = _map_bytes(model)
    return 6 * one * max(1, OPS_BYTES // one)


class EulerMeans:
    """The (B, K, m) class means of a chunk, stepped by Euler-Maruyama in place."""

    def __init__(self, model, M: torch.Tensor, rng):
        self.model, self.rng = model, rng
        self.kind = layout(model)
        self.per_path = model.param_batch is not None
        B, K, m = M.shape
        dtype = M.dtype
        scale = (model.sigma_class / model.counts.double().sqrt()).to(device=M.device)  # (K,) per class
        self.rot = None
        chol = model.noise_chol
        if self.kind == "identity":
            feat = torch.ones(m, dtype=torch.float64, device=M.device)
            if chol is not None:  # Sigma = L L^T = V diag(lam) V^T: step M V, noise sqrt(lam_j) per feature
                lam, V = torch.linalg.eigh(chol.double() @ chol.double().T)
                self.rot = V.to(dtype)
                feat = lam.clamp_min(0).sqrt()
                M = M @ self.rot
            self.S = M.transpose(1, 2).contiguous()  # (B, m, K)
            self.noise_scale = feat[:, None] * scale[None, :]  # (m, K)
            self.chol_T = None
        else:
            self.S = M.reshape(B, K * m).clone() if self.kind == "dense" else M.clone()
            self.noise_scale = scale[:, None].expand(K, m)  # (K, m)
            if self.kind == "dense":
                self.noise_scale = self.noise_scale.reshape(K * m)
            self.chol_T = None if chol is None else chol.to(dtype).T
        self.N = torch.empty_like(self.S)
        uniform = bool((self.noise_scale == self.noise_scale.flatten()[0]).all())
        self.uniform = float(self.noise_scale.flatten()[0]) if uniform else None
        self.noise_scale = self.noise_scale.to(dtype)

    # ------------------------------------------------------------------ the state as class means
    def means(self) -> torch.Tensor:
        B = self.S.shape[0]
        K, m = self.model.num_classes, self.model.dim
        if self.kind == "identity":
            M = self.S.transpose(1, 2)  # (B, K, m) view
            return M @ self.rot.T if self.rot is not None else M
        return self.S.view(B, K, m)

    # ------------------------------------------------------------------ one save interval
    def _noise(self, sqrt_h: float) -> torch.Tensor:
        """Fill the spare buffer with this step's class-mean noise and return it."""
        N = self.N
        if self.uniform is not None:
            self.rng.fill(N, std=self.uniform * sqrt_h)
        else:
            self.rng.fill(N)
            N.mul_(self.noise_scale * sqrt_h)
        if self.chol_T is not None:
            K, m = self.model.num_classes, self.model.dim
            N.copy_(torch.matmul(N.view(-1, K, m), self.chol_T).view_as(N))
        return N

    def _maps(self, times: torch.Tensor, h: float) -> torch.Tensor | None:
        """Step maps of a group of steps in the layout's GEMM form (None for the structured layout)."""
        if self.kind == "structured":
            return None
        W = self.model.drift_weights(times.to(self.S.device))  # (S, K, K) or (S, P, K, K), float64
        if self.kind == "dense":
            W = self.model.transform.dense(W)  # (S, Km, Km)
        eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
        return (eye + h * W).transpose(-1, -2).contiguous().to(self.S.dtype)  # transposed: right-multiplied

    def advance(self, t0: float, steps: int, h: float) -> None:
        sqrt_h = math.sqrt(h)
        model = self.model
        times = t0 + h * torch.arange(steps, dtype=torch.float64)
        K = model.num_classes
        group = max(1, OPS_BYTES // _map_bytes(model))
        for g0 in range(0, steps, group):
            tg = times[g0 : g0 + group]
            maps = self._maps(tg, h)
            if maps is None:  # structured: the weights of every step of the group in one call
                W_all = model.drift_weights(tg.to(self.S.device)).to(self.S.dtype)
            for j in range(len(tg)):
                N = self._noise(sqrt_h)
                if self.kind == "identity" and self.per_path:
                    N.baddbmm_(self.S, maps[j])  # (B, m, K) += (B, m, K) @ (B, K, K)
                elif self.kind == "identity":
                    N.view(-1, K).addmm_(self.S.view(-1, K), maps[j])  # (B m, K) += (B m, K) @ (K, K)
                elif self.kind == "dense":
                    N.addmm_(self.S, maps[j])  # (B, K m) += (B, K m) @ (K m, K m)
                else:
                    N.add_(self.S).add_(model.transform_apply(W_all[j], self.S, self.S), alpha=h)
                self.S, self.N = N, self.S
