r"""Euler steps of the class means: one GEMM per step in the layout that makes it one.

The class-mean SDE is $d\bar X = B(t)\,\bar X\,dt + \mathrm{diag}(\sigma_k/\sqrt{n_k})\,dW\,L^\top$ with
$B(t)_{kl} = \pi_l E_{kl}(t) T_{kl}$. One Euler step is $\bar X \leftarrow (I + hB(t_s))\bar X +
\text{noise}$; the step maps $I + hB(t_s)$ of a group of steps are built in one vectorised call.

``identity`` (T = I, shared maps)
    The map acts on the class index only: the state is a (K, B m) matrix and each step is one short-wide GEMM
    with the K x K map (BLAS's best shape here; a (B m, K) x (K, K) product or B batched (K, K) x (K, m) products
    are 3-30x slower), plus the noise. A noise covariance $\Sigma = V\Lambda V^\top$ is handled by stepping
    the rotated means $\bar X V$ (the drift commutes with any map of the features), whose noise is
    independent per feature with scale $\sqrt{\lambda_j}$.
``batched`` (T = I, per-path maps, as sweeps batch parameter cells)
    State (B, K, m), one ``baddbmm`` with the (B, K, K) maps per step.
``dense`` (fixed transforms with K m <= `DENSE_MAX`)
    State (B, K m), one ``addmm`` with the (K m)^2 map.
``structured``
    Everything else (state-dependent transforms, larger K m, per-path maps of other transforms): the transform's
    own low-rank ``apply`` each step.

The noise is drawn per step and per path block into a contiguous (B, K, m) buffer, each block's (b, K, m)
slab from its own generator (`lesde.integrators.seeding`), whatever the layout, so every layout of the same
model sees the same numbers.
"""

from __future__ import annotations

import math

import torch

from .seeding import step_groups

#: largest K m for the dense layout of fixed non-identity transforms
DENSE_MAX = 128
#: bytes of step maps built at once (groups of steps share one vectorised build)
OPS_BYTES = 16 * 2**20

__all__ = ["EulerMeans", "operator_bytes", "step_groups", "layout"]


def layout(model) -> str:
    tr = model.transform
    if tr.is_identity:
        return "batched" if model.param_batch is not None else "identity"
    if not tr.state_dependent and model.param_batch is None and model.num_classes * model.dim <= DENSE_MAX:
        return "dense"
    return "structured"


def _map_bytes(model) -> int:
    """Bytes of one step's map (float64), per-path maps included."""
    n = model.num_classes * model.dim if layout(model) == "dense" else model.num_classes
    return n * n * 8 * (model.param_batch or 1)


def operator_bytes(model, max_steps: int | None = None) -> int:
    """Peak bytes of building one group of step maps: about six float64 copies (E(t), E diag(pi), I + hW, its
    transpose, the cast, the eye/ones tables) of the group, which holds at least one step and at most the
    longest save interval's ``max_steps``."""
    one = _map_bytes(model)
    group = max(1, OPS_BYTES // one)
    return 6 * one * (group if max_steps is None else max(1, min(group, max_steps)))


class EulerMeans:
    """The (B, K, m) class means of a chunk, stepped by Euler-Maruyama."""

    def __init__(self, model, M: torch.Tensor, rng):
        self.model, self.rng = model, rng
        self.kind = layout(model)
        B, K, m = M.shape
        dtype = M.dtype
        scale = (model.sigma_class / model.counts.double().sqrt()).to(device=M.device)  # (K,) per class
        feat = torch.ones(m, dtype=torch.float64, device=M.device)
        self.rot = self.chol_T = None
        chol = model.noise_chol
        if chol is not None and self.kind in ("identity", "batched"):
            # Sigma = L L^T = V diag(lam) V^T: step M V, whose noise is independent with scale sqrt(lam_j)
            lam, V = torch.linalg.eigh(chol.double() @ chol.double().T)
            self.rot, feat = V.to(dtype), lam.clamp_min(0).sqrt()
            M = M @ self.rot
        elif chol is not None:
            self.chol_T = chol.to(dtype).T
        self.noise_scale = (scale[:, None] * feat[None, :]).to(dtype)  # (K, m)
        first = self.noise_scale.flatten()[0]
        self.uniform = float(first) if bool((self.noise_scale == first).all()) else None
        if self.kind == "identity":
            self.S = M.permute(1, 0, 2).reshape(K, B * m).contiguous()  # (K, B m)
        else:
            self.S = M.reshape(B, K * m).clone() if self.kind == "dense" else M.contiguous().clone()
        self.T = torch.empty_like(self.S)  # the next state (two buffers ping-pong: no allocation per step)
        self.noise = torch.empty((B, K, m), dtype=dtype, device=M.device)  # one step's noise, per path

    # ------------------------------------------------------------------ the state as class means
    def means(self) -> torch.Tensor:
        K, m = self.model.num_classes, self.model.dim
        if self.kind == "identity":
            M = self.S.view(K, -1, m).permute(1, 0, 2)  # (B, K, m) view
        else:
            M = self.S.view(-1, K, m)
        return M @ self.rot.T if self.rot is not None else M

    # ------------------------------------------------------------------ one save interval
    def _draw(self, sqrt_h: float) -> torch.Tensor:
        """This step's class-mean noise (B, K, m)."""
        N = self.noise
        if self.uniform is not None:
            self.rng.fill(N, std=self.uniform * sqrt_h)
        else:
            self.rng.fill(N)
            N.mul_(self.noise_scale * sqrt_h)
        if self.chol_T is not None:
            N = torch.matmul(N, self.chol_T)
        return N

    def _maps(self, times: torch.Tensor, h: float) -> torch.Tensor | None:
        """Step maps I + h B(t_s) of a group of steps (None for the structured layout)."""
        if self.kind == "structured":
            return None
        W = self.model.drift_weights(times.to(self.S.device))  # (S, K, K) or (S, P, K, K), float64
        if self.kind == "dense":
            W = self.model.transform.dense(W)  # (S, Km, Km)
        eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
        maps = eye + h * W
        if self.kind == "dense":
            maps = maps.transpose(-1, -2)  # right-multiplied: (B, Km) @ (Km, Km)
        return maps.contiguous().to(self.S.dtype)

    def advance(self, t0: float, steps: int, h: float) -> None:
        sqrt_h = math.sqrt(h)
        model = self.model
        K, m = model.num_classes, model.dim
        times = t0 + h * torch.arange(steps, dtype=torch.float64)
        group = max(1, OPS_BYTES // _map_bytes(model))
        for g0 in range(0, steps, group):
            tg = times[g0 : g0 + group]
            maps = self._maps(tg, h)
            if maps is None:  # structured: the weights of every step of the group in one call
                W_all = model.drift_weights(tg.to(self.S.device)).to(self.S.dtype)
            for j in range(len(tg)):
                N = self._draw(sqrt_h)
                S, T = self.S, self.T
                if self.kind == "identity":
                    torch.mm(maps[j], S, out=T)  # (K, K) @ (K, B m)
                    T.view(K, -1, m).add_(N.permute(1, 0, 2))
                elif self.kind == "batched":
                    torch.baddbmm(N, maps[j], S, out=T)  # (B, K, m) + (B, K, K) @ (B, K, m)
                elif self.kind == "dense":
                    torch.addmm(N.view(-1, K * m), S, maps[j], out=T)  # (B, K m) @ (K m, K m)
                else:
                    torch.add(S, model.transform_apply(W_all[j], S, S), alpha=h, out=T).add_(N)
                self.S, self.T = T, S
