"""The softmax code (the GNC paper, Definition 2.1): the arrangement of K points in R^d maximizing the minimal
one-vs-rest distance, and that distance.

Decisions:

- ``softmax_code`` optimises the dual form of the one-vs-rest distance,
  ``dist(w_k, conv{w_j}_{j != k}) = max_{||u|| <= 1} min_{j != k} u^T (w_k - w_j)``,
  jointly over the code W and one unit "witness" u_k per point, with a log-sum-exp soft minimum whose temperature
  is annealed, from several random starts; the reported distance is then computed exactly (a small QP per point).
  For K <= d + 1 the answer is known (the GNC paper's Theorem 3.3: the simplex ETF) and returned directly unless
  ``closed_form=False``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..metrics.geometry import one_vs_rest_distance as _one_vs_rest_distance
from ..metrics.inputs import finite_features
from ..validation import check_int
from .closed_forms import simplex_etf

__all__ = ["one_vs_rest_distance", "softmax_code"]


def one_vs_rest_distance(code: Any, per_point: bool = False) -> Any:
    """Minimal one-vs-rest distance of a code (the GNC paper, Definition 2.1).

    $$ \\rho(W) = \\min_k \\operatorname{dist}(w_k, \\operatorname{conv}\\{w_j\\}_{j\\ne k}) $$

    The batched QP solver of the ``gnc2`` metric (`lesde.metrics.geometry.one_vs_rest_distance`), in float64.

    Parameters
    ----------
    code : (K, d) array-like, or (..., K, d) for a batch of codes
    per_point : bool
        Return the K distances instead of their minimum.

    Returns
    -------
    Any
        float for one code (numpy array (K,) with ``per_point``); for a batch, a numpy array (...) or (..., K).
    """
    W = finite_features("code", code).to(torch.float64)
    if W.shape[-2] < 2:
        raise ValueError(f"code must have shape (K, d) with K >= 2, got {tuple(W.shape)}")
    dist = _one_vs_rest_distance(W, per_point=per_point).cpu().numpy()
    return float(dist) if W.ndim == 2 and not per_point else dist


def _optimise_code(K: int, d: int, steps: int, restarts: int, seed: int) -> torch.Tensor:
    """Maximize a soft minimum of u_k^T (w_k - w_j) over unit codes W and witnesses U, several starts at once."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(restarts, K, d, generator=gen, dtype=torch.float64).requires_grad_(True)  # (R, K, d)
    U = W.detach().clone().requires_grad_(True)  # (R, K, d) witness starts at the outward direction w_k
    off = ~torch.eye(K, dtype=torch.bool)
    opt = torch.optim.Adam([W, U], lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=1e-4)
    for step in range(steps):
        # temperature annealed geometrically from 0.1 to 1e-4: smooth early, close to the hard minimum late
        tau = 0.1 * (1e-3) ** (step / max(steps - 1, 1))
        w = W / W.norm(dim=-1, keepdim=True)
        u = U / U.norm(dim=-1, keepdim=True)
        # margins[r, k, j] = u_k . (w_k - w_j): a lower bound on dist(w_k, conv(rest)) for any unit u_k
        margins = (u * w).sum(-1)[..., :, None] - u @ w.transpose(-1, -2)  # (R, K, K)
        soft_min = -tau * torch.logsumexp(-margins[:, off] / tau, dim=-1)  # (R,)
        opt.zero_grad()
        (-soft_min.sum()).backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return W / W.norm(dim=-1, keepdim=True)


def softmax_code(
    K: int, d: int, steps: int = 1000, restarts: int = 8, seed: int = 0, closed_form: bool = True
) -> dict[str, Any]:
    """A softmax code: K unit vectors in R^d maximizing the minimal one-vs-rest distance (GNC paper, Def. 2.1).

    $$ \\max_{W \\in \\mathcal{OB}(d, K)} \\min_k \\operatorname{dist}(w_k, \\operatorname{conv}\\{w_j\\}_{j\\ne k}) $$

    For K <= d + 1 this is the simplex ETF (distance K/(K-1)), returned directly when ``closed_form``; otherwise
    the code is optimised numerically (module docstring) and the best of ``restarts`` starts is kept.
    Examples: K = 4, d = 2 gives a square (distance 1); d + 1 < K <= 2d gives distance 1 (cross-polytope vertices).

    Returns
    -------
    dict[str, Any]
        dict with ``code`` (K, d) float64 unit rows and ``one_vs_rest_distance`` (float, computed exactly for the
        returned code).
    """
    K = check_int("K", K, minimum=2)
    d = check_int("d", d, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    restarts = check_int("restarts", restarts, minimum=1)
    if closed_form and K <= d + 1:
        code = simplex_etf(K, d)
    else:
        candidates = _optimise_code(K, d, steps, restarts, seed)  # (R, K, d)
        code = candidates[int(np.argmax(one_vs_rest_distance(candidates)))]  # all starts in one batched solve
    return {"code": code, "one_vs_rest_distance": one_vs_rest_distance(code)}
