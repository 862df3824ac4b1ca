r"""Exact Gaussian transitions of the (linear) LE-SDE: no time stepping error at all.

Split $X_i = \bar X_{y_i} + Z_i$. With sample-independent noise the deviations $Z_i$ are driftless
(Brownian motion projected to zero class mean) and the class means solve the linear SDE

$$ d\bar X = B(t)\,\bar X\,dt + D^{1/2} dB\,L_\Sigma^\top,\qquad B(t)_{kl} = \pi_l E_{kl}(t) T_{kl},
\quad D = \mathrm{diag}(\sigma_k^2 / n_k). $$

Three plans, chosen once up front (``plan_for``) and recorded in the Dataset attrs:

``spectral``
    T = identity, E(t) in the alpha/beta family, uniform class probabilities. B(t) = sum_j r_j(t) P_j with fixed
    projectors (contrast mode, rate (alpha-beta)/K; common mode, rate (alpha+(K-1)beta)/K). Any save spacing
    is exact: the transition is $\Phi = \sum_j e^{\Delta a_j} P_j$ and the noise covariance is
    $\sum_{jj'} P_j D P_{j'} I_{jj'}$ with 1-D integrals
    $I_{jj'} = \int_{t_0}^{t_1} e^{a_j(t_1)-a_j(u) + a_{j'}(t_1)-a_{j'}(u)}\,du$, evaluated in log space by
    composite Gauss-Legendre quadrature on a grid refined geometrically at both ends (the integrand can be
    sharply peaked there). Working in logs lets float64 reach separations of e^700 without overflow.
``constant``
    Time-constant coefficients, any fixed transform: Van Loan's block matrix exponential gives the exact
    transition over each save interval (cached per interval length).
``stepwise``
    Time-varying coefficients otherwise: coefficients frozen at each step's midpoint and the Van Loan transition
    applied per step, exact for piecewise-constant coefficients.

With the identity transform every plan works on the K-dimensional class axis (the features are independent
copies, correlated only by the noise covariance's right factor); other transforms use the dense (K m)-dim map.
"""

from __future__ import annotations

import numpy as np
import torch

from ..schedules import Constant
from .protocol import Integrator, Memory, is_lesde
from .start import deviation_bytes, deviations_for, in_law_applies

_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)


def unsupported_reason(model) -> str | None:
    if not is_lesde(model):
        return "method='exact' needs an LESDE model (it uses the mean/deviation split of the LE-SDE)"
    if not model.has_standard_dynamics:
        return (
            f"method='exact' samples the closed-form class-mean dynamics of LESDE.f and LESDE.g, but "
            f"{type(model).__name__} overrides them; use method='euler' (which steps your f and g) or a torchsde method"
        )
    if model.transform.state_dependent:
        return (
            f"method='exact' needs a fixed transform; transform={model.transform.name!r} depends on the state "
            "(use method='euler')"
        )
    if model.noise_kind == "sampling":
        return (
            "method='exact' needs sample-independent noise; noise='sampling' depends on the state (use method='euler')"
        )
    return None


def plan_for(model) -> str:
    reason = unsupported_reason(model)
    if reason:
        raise ValueError(reason)
    K = model.num_classes
    uniform = torch.allclose(model.class_probs, torch.full_like(model.class_probs, 1.0 / K))
    if model.transform.is_identity and model.elasticity is None and uniform:
        return "spectral"
    fixed_E = model.elasticity is None or torch.is_tensor(model.elasticity)
    if fixed_E and isinstance(model.alpha, Constant) and isinstance(model.beta, Constant):
        return "constant"
    return "stepwise"


# ---------------------------------------------------------------------------------------------- helpers
def _psd_sqrt(C: torch.Tensor) -> torch.Tensor:
    """A square root F with F F^T = C for symmetric PSD C (..., n, n); Cholesky, eigh when singular."""
    C = 0.5 * (C + C.transpose(-1, -2))
    L, info = torch.linalg.cholesky_ex(C)
    if int(info.max()) == 0:
        return L
    ev, V = torch.linalg.eigh(C)
    return V * ev.clamp_min(0).sqrt().unsqueeze(-2)


def _unique_params(model):
    """Unique per-path parameter sets: (alpha_u, beta_u, inverse index (P,)) or (alpha, beta, None)."""
    P = model.param_batch
    if P is None:
        return model.alpha, model.beta, None
    cols = []
    for s in (model.alpha, model.beta):
        for v in s.params.values():
            v = v.reshape(v.shape[0], -1) if v.ndim > 1 else v.reshape(-1, 1)
            cols.append(v.expand(P, v.shape[1]) if v.shape[0] == 1 else v)
    keys = torch.cat(cols, 1)  # (P, n_params)
    uniq, inv = torch.unique(keys, dim=0, return_inverse=True)
    rep = torch.empty(len(uniq), dtype=torch.long, device=keys.device).scatter_(
        0, inv, torch.arange(P, device=keys.device)
    )
    sel = [s.select(rep) if len(s.batch_shape) else s for s in (model.alpha, model.beta)]
    return sel[0], sel[1], inv


def _nodes(t0: float, t1: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature nodes/weights on [t0, t1], panels refined geometrically towards both ends."""
    g = np.geomspace(1e-9, 0.5, 36)
    brk = np.unique(np.concatenate([[0.0], g, 1.0 - g, [1.0]]))
    a, b = brk[:-1, None], brk[1:, None]
    x = (a + (b - a) * (_GL_X + 1) / 2).ravel()
    w = ((b - a) / 2 * _GL_W).ravel()
    L = t1 - t0
    return torch.from_numpy(t0 + L * x), torch.from_numpy(L * w)


# ---------------------------------------------------------------------------------------------- plans
class _Spectral:
    """Closed-form transitions for the balanced alpha/beta family with T = identity."""

    def __init__(self, model):
        K = model.num_classes
        self.K = K
        alpha, beta, self.inv = _unique_params(model)
        self.alpha, self.beta = alpha.to(device="cpu"), beta.to(device="cpu")  # transitions are built on the host
        one = torch.full((K, K), 1.0 / K, dtype=torch.float64)
        self.P = torch.stack([torch.eye(K, dtype=torch.float64) - one, one])  # (2, K, K): contrast, common
        self.D = torch.diag(model.sigma_class.cpu().double() ** 2 / model.counts.cpu().double())  # (K, K)
        self.PDP = torch.einsum("jab,bc,kcd->jkad", self.P, self.D, self.P)  # (2, 2, K, K)
        self.modes = (0, 1) if K > 1 else (1,)

    def _log_growth(self, u, t1):
        """a_j(t1) - a_j(u) for both modes: (2, Q, U) (U unique parameter sets)."""
        A = self.alpha.integral(u[:, None], t1)
        Bi = self.beta.integral(u[:, None], t1)
        A, Bi = torch.broadcast_tensors(A, Bi)
        return torch.stack([(A - Bi) / self.K, (A + (self.K - 1) * Bi) / self.K])

    def transition(self, t0: float, t1: float):
        """(Phi, F): M(t1) = Phi M(t0) + F xi, each (U, K, K) or (K, K)."""
        u, w = _nodes(t0, t1)
        la = self._log_growth(u, t1)  # (2, Q, U)
        delta = self._log_growth(torch.tensor([t0], dtype=torch.float64), t1)[:, 0]  # (2, U)
        logw = torch.log(w)[:, None]
        logI = torch.logsumexp(la[:, None] + la[None, :] + logw, dim=2)  # (2, 2, U)
        half = 0.5 * torch.diagonal(logI, dim1=0, dim2=1).T  # (2, U): log s_j
        corr = torch.exp(logI - half[:, None] - half[None, :])  # (2, 2, U), bounded by Cauchy-Schwarz
        C = torch.einsum("jkab,jku->uab", self.PDP, corr)  # (U, K, K)
        S = torch.einsum("ju,jab->uab", torch.exp(half), self.P)
        Phi = torch.einsum("ju,jab->uab", torch.exp(delta), self.P)
        return Phi, S @ _psd_sqrt(C)


class _VanLoan:
    """Exact transition for coefficients frozen over a step (Van Loan's block exponential)."""

    def __init__(self, model, reduced: bool):
        self.model, self.reduced = model, reduced
        m = model.dim
        D = torch.diag(model.sigma_class.cpu().double() ** 2 / model.counts.cpu().double())
        if reduced:
            self.Q = D
        else:
            Sig = (
                model.noise_chol.cpu().double() @ model.noise_chol.cpu().double().T
                if model.noise_chol is not None
                else torch.eye(m, dtype=torch.float64)
            )
            self.Q = torch.kron(D, Sig)
        self.inv = None
        self._cache: dict = {}

    def _operator(self, t: float) -> torch.Tensor:
        W = self.model.drift_weights(t).cpu()  # (K, K) or (P, K, K)
        if W.ndim == 3:
            uniq, self.inv = torch.unique(W.reshape(W.shape[0], -1), dim=0, return_inverse=True)
            W = uniq.view(-1, *W.shape[1:])
        else:
            self.inv = None
        if self.reduced:
            return W
        dev = self.model.class_probs.device
        return self.model.transform.dense(W.to(dev)).cpu()  # float64, on the model's device, then to the host

    def transition(self, t: float, h: float, cache_key=None):
        if cache_key is not None and cache_key in self._cache:
            return self._cache[cache_key]
        A = self._operator(t)  # (n, n) or (U, n, n)
        n = A.shape[-1]
        Q = self.Q.expand(A.shape)
        top = torch.cat([-A, Q], -1)
        bot = torch.cat([torch.zeros_like(A), A.transpose(-1, -2)], -1)
        G = torch.linalg.matrix_exp(torch.cat([top, bot], -2) * h)
        G12, G22 = G[..., :n, n:], G[..., n:, n:]
        Phi = G22.transpose(-1, -2)
        out = (Phi, _psd_sqrt(Phi @ G12), self.inv)
        if cache_key is not None:
            self._cache[cache_key] = out
        return out


# ---------------------------------------------------------------------------------------------- the method
class Exact(Integrator):
    """Exact Gaussian transitions of the class means; the deviations exactly per save interval."""

    name = "exact"
    strong_order = None  # no stepping error: exact in law at the save times (no pathwise coupling to a dW)
    strong_order_state_dependent = None
    weak_order = None

    def check(self, model, save="means", bm=None, **_):
        if bm is not None:
            return "method='exact' samples transitions in law and cannot follow a given Brownian motion (bm=)"
        return unsupported_reason(model)

    def plan(self, model, save, **_):
        return plan_for(model) + (" (within-class statistics in law)" if in_law_applies(model, save) else "")

    def memory(self, model, save, itemsize, **_):
        K, m = model.num_classes, model.dim
        U = model.param_batch or 1
        plan = plan_for(model)
        n = K if model.transform.is_identity else K * m
        if plan == "spectral":
            fixed = 8 * (4 * K * K * 2 + 3 * U * K * K + 4 * 600 * U)
        else:
            fixed = 8 * U * (2 * n) ** 2 * 6
        per_path = 8 * (2 * n * n if model.param_batch else 0) + 8 * 4 * K * m  # gathered maps, float64 means
        return Memory(fixed, per_path + deviation_bytes(model, save, itemsize))

    def integrate(self, model, start, grid, rng, record, save, rows=None, **_):
        plan = plan_for(model)
        dev, dtype = rng.device, start.dtype
        M, deviations = deviations_for(model, start, rows, rng, dtype, dev, in_law=in_law_applies(model, save))
        B, K, m = M.shape
        chol_T = None if model.noise_chol is None else model.noise_chol.to(device=dev, dtype=torch.float64).T
        reduced = model.transform.is_identity
        record(0, means=M, **deviations.parts())

        def apply(M, Phi, F, inv):
            """M <- Phi M + F xi (L_Sigma^T on the right for reduced covariance noise); per-path gather by inv."""
            Phi, F = Phi.to(device=dev, dtype=torch.float64), F.to(device=dev, dtype=torch.float64)
            if inv is not None:
                inv = inv.to(dev)
                Phi, F = Phi[inv], F[inv]
            elif Phi.ndim == 3:
                Phi, F = Phi[0], F[0]
            xi = rng.normal((K, m), dtype).double()
            if reduced:
                noise = F @ xi
                if chol_T is not None:
                    noise = noise @ chol_T
                return (Phi @ M.double() + noise).to(dtype)
            v = M.reshape(B, K * m, 1).double()
            out = Phi @ v + F @ xi.reshape(B, K * m, 1)
            return out.view(B, K, m).to(dtype)

        if plan == "spectral":
            sp = _Spectral(model)
            for i, t0, t1, _n, _h in grid.intervals():
                Phi, F = sp.transition(t0, t1)
                M = apply(M, Phi, F, sp.inv)
                deviations.advance(t1 - t0)
                record(i + 1, means=M, **deviations.parts())
            return
        vl = _VanLoan(model, reduced)
        for i, t0, t1, n, h in grid.intervals():
            if plan == "constant":  # one exact jump over the whole interval
                Phi, F, inv = vl.transition(t0, t1 - t0, cache_key=round((t1 - t0) * 1e12))
                M = apply(M, Phi, F, inv)
            else:
                for s in range(n):
                    Phi, F, inv = vl.transition(t0 + (s + 0.5) * h, h)
                    M = apply(M, Phi, F, inv)
            deviations.advance(t1 - t0)
            record(i + 1, means=M, **deviations.parts())
