r"""The Gaussian law of the LE-SDE's class means at given times, from closed forms or the moment ODE.

With sample-independent noise and a fixed transform the class means (``vec`` row-major, ``n = K m`` entries) solve
the linear SDE $d\bar X = A(t)\,\bar X\,dt + dB_Q$ (`lesde.integrators.exact`), so from a Gaussian law
``(m0, C0)`` at ``t0`` they are Gaussian at every ``t`` with

$$ m(t) = \Phi(t)\, m_0, \qquad C(t) = \Phi(t)\, C_0\, \Phi(t)^\top + Q(t), \qquad
\dot\Phi = A\Phi,\ \ \dot Q = A Q + Q A^\top + Q_{\rm noise},\ \ \Phi(t_0) = I,\ Q(t_0) = 0 . $$

How ``(Phi, Q)`` is obtained depends on the coefficients (the plan of `lesde.integrators.exact.plan_for`):

``spectral`` (T = identity, alpha/beta family, uniform class probabilities)
    the closed form of `lesde.integrators.exact._Spectral` (two fixed modes; 1-D integrals by quadrature in
    log space), per interval between consecutive times;
``constant`` (time-constant coefficients)
    Van Loan's block exponential, exact, per interval;
``stepwise`` (time-varying otherwise)
    the moment ODE above, solved once from ``t0`` by ``scipy.integrate.solve_ivp`` (DOP853, rtol 1e-10) on the
    K-dimensional class axis for T = identity (the features are independent copies there) and on the dense
    (K m)-dimensional map otherwise. This is the law of the SDE itself; ``method="exact"``'s stepwise plan freezes
    the coefficients at each step's midpoint, O(dt^2) from it, and the other methods converge to it.

Every plan starts at ``t0`` (a simulation's t = 0) whatever times the caller asks for, so a Dataset cut to a later
window gets the law at its own times, not the start law moved to its first time.
"""

from __future__ import annotations

import numpy as np
import torch

from ..integrators.exact import _Spectral, _VanLoan, plan_for

__all__ = ["class_mean_law", "noise_factor"]


def noise_factor(model) -> torch.Tensor:
    """The (m, m) covariance Sigma of one sample's noise direction (identity for a scalar or per-class sigma)."""
    m = model.dim
    if model.noise_chol is None:
        return torch.eye(m, dtype=torch.float64)
    L = model.noise_chol.cpu().double()
    return L @ L.T


def _lift(model, Phi: torch.Tensor, Q: torch.Tensor, reduced: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(Phi, Q) on the class axis (K, K) -> the dense (K m, K m) pair; dense pairs are returned as they are."""
    if not reduced:
        return Phi, Q
    m = model.dim
    return torch.kron(Phi.contiguous(), torch.eye(m, dtype=torch.float64)), torch.kron(
        Q.contiguous(), noise_factor(model)
    )


def _interval_pairs(model, plan: str, times: np.ndarray, reduced: bool):
    """(Phi, Q) over each interval of ``times`` for the spectral and constant plans."""
    out = []
    if plan == "spectral":
        sp = _Spectral(model)
        for t_a, t_b in zip(times[:-1], times[1:]):
            Phi, F = sp.transition(float(t_a), float(t_b))
            Phi, F = (Phi[0], F[0]) if Phi.ndim == 3 else (Phi, F)
            out.append(_lift(model, Phi.contiguous(), (F @ F.T).contiguous(), reduced))
        return out
    vl = _VanLoan(model, reduced)
    for t_a, t_b in zip(times[:-1], times[1:]):
        Phi, F, _ = vl.transition(float(t_a), float(t_b - t_a), cache_key=round(float(t_b - t_a), 12))
        out.append(_lift(model, Phi, F @ F.T, reduced))
    return out


def _ode_pairs(model, times: np.ndarray, reduced: bool):
    """(Phi(t, t0), Q(t)) at each of ``times[1:]`` from the moment ODE, integrated once from ``times[0]``."""
    from scipy.integrate import solve_ivp

    K = model.num_classes
    if reduced:
        n = K
        Qn = (model.sigma_class.cpu().double() ** 2 / model.counts.cpu().double()).diag().numpy()
        basis = None
    else:
        n = K * model.dim
        Qn = _VanLoan(model, False).Q.numpy()
        # the dense map is linear in the weights W(t): A(t) = sum_kl W_kl(t) dense(e_k e_l^T), built once
        unit = torch.eye(K * K, dtype=torch.float64).reshape(K * K, K, K)
        basis = model.transform.dense(unit.to(model.class_probs.device)).cpu().numpy()  # (K K, n, n)

    pi = model.class_probs.cpu().double().numpy()

    def weights(t: float) -> np.ndarray:
        if model.elasticity is not None:
            return model.drift_weights(float(t)).cpu().double().numpy()
        # E(t) = (alpha - beta) I + beta 1 1^T from the two schedules: a tenth of drift_weights' overhead per call
        tt = torch.tensor(float(t), dtype=torch.float64)
        a, b = float(model.alpha(tt)), float(model.beta(tt))
        return ((a - b) * np.eye(K) + b) * pi

    def operator(t: float) -> np.ndarray:
        W = weights(t)  # (K, K)
        return W if basis is None else np.tensordot(W.reshape(-1), basis, axes=1)

    def rhs(t, y):
        A = operator(t)
        Phi, Q = y[: n * n].reshape(n, n), y[n * n :].reshape(n, n)
        AQ = A @ Q
        return np.concatenate([(A @ Phi).ravel(), (AQ + AQ.T + Qn).ravel()])

    y0 = np.concatenate([np.eye(n).ravel(), np.zeros(n * n)])
    sol = solve_ivp(rhs, (times[0], times[-1]), y0, method="DOP853", t_eval=times, rtol=1e-10, atol=1e-14)
    if not sol.success:
        raise RuntimeError(f"the class-mean moment ODE failed: {sol.message}")
    pairs = []
    for j in range(1, len(times)):
        y = sol.y[:, j]
        Phi = torch.from_numpy(y[: n * n].reshape(n, n).copy())
        Q = torch.from_numpy(y[n * n :].reshape(n, n).copy())
        pairs.append(_lift(model, Phi, 0.5 * (Q + Q.T), reduced))
    return pairs


def class_mean_law(
    model, times, mean0: torch.Tensor, cov0: torch.Tensor, t0: float = 0.0
) -> tuple[np.ndarray, np.ndarray, str]:
    """Mean ``(T, K m)`` and covariance ``(T, K m, K m)`` of vec(class means) at ``times`` (each >= ``t0``).

    ``mean0`` ``(K m,)`` and ``cov0`` ``(K m, K m)`` are the law at ``t0``. Returns float64 numpy arrays in the
    order of ``times`` and the plan used (module docstring). Raises ``ValueError`` where the law is not Gaussian
    (state-dependent noise or transform: `lesde.integrators.exact.unsupported_reason`).
    """
    times = np.asarray(times, dtype=np.float64)
    if times.size and times.min() < t0 - 1e-12 * max(1.0, abs(t0)):
        raise ValueError(f"times must be >= t0 = {t0:g} (the time of the start law); got {times.min():g}")
    plan = plan_for(model)
    reduced = bool(model.transform.is_identity)
    grid = np.unique(np.concatenate([[t0], np.maximum(times, t0)]))  # t0 first, sorted, no repeats
    if plan == "stepwise":
        pairs = _ode_pairs(model, grid, reduced)
    else:
        pairs = _interval_pairs(model, plan, grid, reduced)
    mean, cov = mean0.double(), cov0.double()
    at = {float(grid[0]): (mean, cov)}
    for t, (Phi, Q) in zip(grid[1:], pairs):
        if plan == "stepwise":  # Phi and Q run from t0, not from the previous time
            mean, cov = Phi @ mean0.double(), Phi @ cov0.double() @ Phi.T + Q
        else:
            mean, cov = Phi @ mean, Phi @ cov @ Phi.T + Q
        at[float(t)] = (mean, 0.5 * (cov + cov.T))
    chosen = [at[float(t)] for t in np.maximum(times, t0)]
    if not chosen:
        n = mean0.shape[0]
        return np.zeros((0, n)), np.zeros((0, n, n)), plan
    return (
        torch.stack([c[0] for c in chosen]).numpy(),
        torch.stack([c[1] for c in chosen]).numpy(),
        "moment ODE" if plan == "stepwise" else plan,
    )
