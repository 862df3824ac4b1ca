"""Geometry of class means and classifier rows: unit rows, cosines, simplex-ETF distance, one-vs-rest distance."""

from __future__ import annotations

import math

import torch

from .inputs import pair_index

# one-vs-rest distance: accelerated projected gradient in blocks of these many iterations (300 in all), each block
# followed by the exact KKT solve on the detected support and a duality-gap certificate; certified QPs leave the batch
_QP_BLOCKS = (5, 5, 10, 20, 40, 80, 140)


def unit_rows(v: torch.Tensor, floor: float) -> torch.Tensor:
    """Rows divided by their norm; rows with squared norm <= floor become exactly 0 (their cosines are 0)."""
    sq = (v * v).sum(-1, keepdim=True)
    ok = sq > floor
    return torch.where(ok, v / torch.where(ok, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(v))


def unit_matrix(v: torch.Tensor, floor: float) -> torch.Tensor:
    """v / ||v||_F over the last two dims; 0 where ||v||_F^2 <= floor."""
    sq = (v * v).sum(dim=(-2, -1), keepdim=True)
    ok = sq > floor
    return torch.where(ok, v / torch.where(ok, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(v))


def safe_ratio(num: torch.Tensor, den: torch.Tensor, floor: float, cap: float) -> torch.Tensor:
    """num / den for non-negative scatters: 0 when num <= floor, ``cap`` when only den <= floor, at most cap."""
    den_zero = den <= floor
    ratio = (num / torch.where(den_zero, torch.ones_like(den), den)).clamp(max=cap)
    out = torch.where(den_zero, torch.full_like(ratio, cap), ratio)
    return torch.where(num <= floor, torch.zeros_like(out), out)


def coefficient_of_variation(norms: torch.Tensor, floor: float) -> torch.Tensor:
    """std/mean over the last dim (Bessel std); 0 when the mean norm is ~0."""
    mean = norms.mean(-1)
    std = norms.std(-1, correction=1) if norms.shape[-1] > 1 else torch.zeros_like(mean)
    ok = mean * mean > floor
    return torch.where(ok, std / torch.where(ok, mean, torch.ones_like(mean)), torch.zeros_like(mean))


def pair_cosines(gram: torch.Tensor, floor: float) -> torch.Tensor:
    """Cosines of the K(K-1)/2 pairs k < l of rows, from their Gram (..., K, K); rows with squared norm <= floor
    have direction 0, so their cosines are 0. (The Gram is shared with nc1, equinorm and etf_error.)"""
    sq = gram.diagonal(dim1=-2, dim2=-1)  # (..., K)
    ok = sq > floor
    inv = torch.where(ok, torch.where(ok, sq, torch.ones_like(sq)).rsqrt(), torch.zeros_like(sq))
    i, j = pair_index(gram.shape[-1], gram.device)
    return gram[..., i, j] * inv[..., i] * inv[..., j]  # (..., K(K-1)/2)


def equiangular(cos: torch.Tensor) -> torch.Tensor:
    """std (Bessel) of the pair cosines (..., K(K-1)/2); 0 for a single pair (K = 2)."""
    if cos.shape[-1] < 2:
        return torch.zeros(cos.shape[:-1], dtype=cos.dtype, device=cos.device)
    return cos.std(-1, correction=1)


def maxangle(cos: torch.Tensor, K: int) -> torch.Tensor:
    # |cos + 1/(K-1)| is symmetric, so the mean over k < l equals the mean over k != l
    return (cos + 1.0 / (K - 1)).abs().mean(-1)


def etf_error(gram: torch.Tensor, floor: float) -> torch.Tensor:
    """|| G / ||G||_F - (I - 11^T/K) / sqrt(K-1) ||_F of a Gram G (..., K, K) of K rows; G = 0 below the floor."""
    K = gram.shape[-1]
    trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    fro = torch.linalg.matrix_norm(gram)[..., None, None]
    ok = trace > K * floor
    g = torch.where(ok, gram / torch.where(ok, fro, torch.ones_like(fro)), torch.zeros_like(gram))
    eye = torch.eye(K, dtype=gram.dtype, device=gram.device)
    etf = (eye - 1.0 / K) / math.sqrt(K - 1)
    return torch.linalg.matrix_norm(g - etf)


def _project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each last-dim vector onto the probability simplex (Duchi et al. 2008)."""
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1.0
    ind = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    rho = (u - css / ind > 0).sum(-1, keepdim=True).clamp(min=1)  # the condition holds on a prefix
    theta = css.gather(-1, rho - 1) / rho.to(v.dtype)
    return (v - theta).clamp(min=0)


def _objective(A: torch.Tensor, g: torch.Tensor, c: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """||w_k - sum_j lam_j w_j||^2 from the Gram blocks: lam^T A lam - 2 g^T lam + c."""
    return ((A @ lam[..., None])[..., 0] * lam).sum(-1) - 2 * (g * lam).sum(-1) + c


def _polish(A: torch.Tensor, g: torch.Tensor, c: torch.Tensor, lam: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """The better of ``best`` and the iterate ``lam``, then on the supports of ``lam`` (three thresholds) the exact
    KKT solve [2 A_SS 1; 1^T 0][lam_S; nu] = [2 g_S; 1], each solution kept where feasible and no worse."""
    n = lam.shape[-1]
    dt, dev = lam.dtype, lam.device
    eye = torch.eye(n, dtype=dt, device=dev)
    value, lam_value = _objective(A, g, c, best), _objective(A, g, c, lam)
    best = torch.where((lam_value < value)[..., None], lam, best)
    value = torch.minimum(value, lam_value)
    for tol in (1e-3, 1e-6, 1e-9):
        support = lam > tol * lam.amax(-1, keepdim=True)  # (P, n)
        both = support[..., :, None] & support[..., None, :]
        kkt = torch.zeros((*A.shape[:-2], n + 1, n + 1), dtype=dt, device=dev)
        kkt[..., :n, :n] = torch.where(both, 2 * A, eye.expand_as(A))
        kkt[..., :n, n] = support.to(dt)
        kkt[..., n, :n] = support.to(dt)
        rhs = torch.cat([torch.where(support, 2 * g, torch.zeros_like(g)), torch.ones_like(g[..., :1])], -1)
        sol, info = torch.linalg.solve_ex(kkt, rhs[..., None])
        cand = torch.where(support, sol[..., :n, 0], torch.zeros_like(g))
        feasible = torch.isfinite(cand).all(-1) & (info == 0) & (cand >= -1e-12).all(-1)
        cand = torch.where(feasible[..., None], cand.clamp(min=0), best)
        cand = cand / cand.sum(-1, keepdim=True)
        cand_value = _objective(A, g, c, cand)
        better = feasible & (cand_value <= value)
        best = torch.where(better[..., None], cand, best)
        value = torch.where(better, cand_value, value)
    return best


def one_vs_rest_distance(rows: torch.Tensor, per_point: bool = False) -> torch.Tensor:
    """dist(w_k, conv{w_j : j != k}) for the rows of ``rows`` (..., K, m), batched over the leading dims.

    $$ \\rho(W) = \\min_k \\min_{\\lambda \\in \\Delta_{K-1}} \\|w_k - \\textstyle\\sum_{j \\ne k} \\lambda_j w_j\\| $$

    The K simplex-constrained QPs per item are solved on the Gram matrix by accelerated projected gradient (FISTA,
    step 1 / Gershgorin bound). Before it and after each block of iterations (5, 5, 10, 20, ... 300 in all) the
    exact KKT system on the detected support is solved, and the duality gap
    $\\nabla f(\\lambda)^\\top\\lambda - \\min_j \\nabla f(\\lambda)_j$ (an upper bound on the suboptimality
    of the convex QP) certifies the answer: certified QPs leave the batch, so the iterations go to the few hard
    ones (a configuration near a simplex ETF is certified before the first iteration; random codes with d >= K - 1
    within about 15). The distances are then measured on the rows themselves (no Gram cancellation), so a point
    inside the hull of the others gets distance ~eps, not sqrt(eps).

    Returns (..., K) with ``per_point``, else the minimum over k (...). (The GNC paper, Definition 2.1.)
    """
    K = rows.shape[-2]
    dev, dt = rows.device, rows.dtype
    gram = rows @ rows.mT  # (..., K, K)
    others = torch.tensor([[j for j in range(K) if j != k] for k in range(K)], device=dev).reshape(K, K - 1)
    n = K - 1
    A = gram[..., others[:, :, None], others[:, None, :]].reshape(-1, n, n)  # (P, n, n)  Gram of the rest
    g = gram[..., torch.arange(K, device=dev)[:, None], others].reshape(-1, n)  # (P, n)  <w_k, w_j>
    c = gram.diagonal(dim1=-2, dim2=-1).reshape(-1)  # (P,)  ||w_k||^2; P = items x K problems
    # certificate tolerance on the squared distance: a few rounding errors of the item's largest squared norm
    scale = gram.diagonal(dim1=-2, dim2=-1).amax(-1, keepdim=True).expand(*gram.shape[:-1]).reshape(-1)
    tol = 16 * K * torch.finfo(dt).eps * scale.clamp(min=torch.finfo(dt).tiny)  # (P,)
    lip = 2 * A.abs().sum(-1).amax(-1, keepdim=True).clamp(min=torch.finfo(dt).tiny)  # (P, 1)

    best = torch.full(g.shape, 1.0 / n, dtype=dt, device=dev)  # (P, n)
    active = torch.arange(best.shape[0], device=dev)  # the uncertified problems
    lam, y, t = best, best, 1.0  # FISTA state of the active problems
    for block in (*_QP_BLOCKS, 0):
        Aa, ga = A[active], g[active]
        cand = _polish(Aa, ga, c[active], lam, best[active])
        best = best.index_copy(0, active, cand)
        grad = 2 * ((Aa @ cand[..., None])[..., 0] - ga)
        open_ = (grad * cand).sum(-1) - grad.amin(-1) > tol[active]  # duality gap >= f(cand) - f*
        if block == 0 or not bool(open_.any()):
            break
        active, Aa, ga, lam, y, lipa = active[open_], Aa[open_], ga[open_], lam[open_], y[open_], lip[active][open_]
        for _ in range(block):
            step = 2 * ((Aa @ y[..., None])[..., 0] - ga)
            new = _project_simplex(y - step / lipa)
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            y = new + ((t - 1) / t_new) * (new - lam)
            lam, t = new, t_new
    lam = best.reshape(*gram.shape[:-1], n)  # (..., K, n)
    weights = torch.zeros(gram.shape, dtype=dt, device=dev)  # (..., K, K), zero diagonal
    weights.scatter_(-1, others.expand(lam.shape), lam)
    dist = torch.linalg.vector_norm(rows - weights @ rows, dim=-1)  # (..., K)
    return dist if per_point else dist.amin(-1)
