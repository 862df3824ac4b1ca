r"""The long-time angle of the centred class means: the simplex ETF where it is the limit, else the dominant mode.

``mean_cosine`` (the mean over pairs of cosines of the centred class means $\mu_k - \mu_G$, $\mu_G$ the
unweighted mean of the class means) has a deterministic limit when one mode of the class-mean drift
$\dot{\bar X} = A(t)\bar X$ outgrows every other mode the centring leaves visible and the diffusion: the centred
means then align with that mode's centred direction $P_c v$, whatever the start and the noise.

- **Simplex ETF (proven)**, balanced classes, uniform class probabilities, E(t) in the alpha/beta family: the
  ``residual`` transform moves only the coefficients $s_k = u_k^\top \bar X_k / \lVert d_k\rVert^2$, with
  $\dot s = \tfrac1K E(t) s$; the matrices E(t) commute, so the modes are fixed: the common mode (rate
  $(\alpha+(K-1)\beta)/K$, centred means $s\,u_k$, a simplex ETF) and the contrasts (rate
  $(\alpha-\beta)/K$). The limit is the ETF, cosine $-1/(K-1)$, when the common mode outgrows the
  contrasts ($\int \beta = +\infty$) and the diffusion ($e^{a}/\sqrt t \to \infty$). For
  ``residual-projection`` the rates are $(\alpha-\beta)/K$ (common, centred means
  $\propto (\alpha-\beta) u_k$) and $(\alpha + \beta/(K-1))/K$ (contrasts): the ETF needs
  $\int (-\beta) = +\infty$. Schedules Constant or PowerLaw (`lesde.theory.rate_asymptotics`).
- **Dominant mode**, any fixed transform and class balance with time-constant coefficients: the eigenvector
  $v$ of A of largest real part among those the centring does not annihilate, when that eigenvalue is real,
  positive, simple and strictly above the others; the predicted cosine is ``mean_cosine`` of $P_c v$. On
  imbalanced classes with the residual transform this is the Perron vector of $E\,\mathrm{diag}(\pi)$, and
  the limit is not the ETF (5/10/20 samples, alpha = 1, beta = 0.6: about -0.4974, not -0.5).
- Otherwise (identity transform: the dominant eigenvalue has multiplicity m, so the limit direction depends on the
  start; time-varying coefficients outside the commuting case; growth too slow) there is no deterministic limit,
  and `cosine_limit` says why.
"""

from __future__ import annotations

import numpy as np
import torch

from ..integrators.exact import unsupported_reason
from ..schedules import Constant
from .rate_asymptotics import beats_diffusion, diverges, leading_term

__all__ = ["cosine_limit", "ETF_PROVEN", "DOMINANT_MODE"]

ETF_PROVEN = (
    "simplex ETF, pairwise cosine -1/(K-1): the limit of the {transform} transform with balanced classes "
    "(Kothapalli et al., Section 3.2.3; its common mode outgrows the contrasts and the diffusion)"
)
DOMINANT_MODE = (
    "the dominant mode of the class-mean drift A = dense(E diag(pi), T) (eigenvalue {rate:.6g}, simple, above the "
    "next visible {gap:.6g}): mean_cosine of its centred direction; {why}"
)

#: (common-mode weights, contrast weights) on (alpha, beta), and the centred-means factor, per residual transform
_MODE_RATES = {
    "residual": (lambda K: (1.0 / K, (K - 1.0) / K), lambda K: (1.0 / K, -1.0 / K)),
    "residual-projection": (lambda K: (1.0 / K, -1.0 / K), lambda K: (1.0 / K, 1.0 / (K * (K - 1.0)))),
}


def cosine_limit(model) -> tuple[float | None, str]:
    """``(limit of mean_cosine, what it is)``, or ``(None, why there is none)``; see the module docstring."""
    reason = unsupported_reason(model)
    if reason is not None:
        return None, reason.replace("method='exact' needs", "the limit needs")
    if model.param_batch is not None:
        return None, "per-path parameters: one limit per path"
    K = model.num_classes
    balanced = bool((model.counts == model.counts[0]).all())
    uniform = torch.allclose(model.class_probs, torch.full_like(model.class_probs, 1.0 / K))
    name = model.transform.name
    if balanced and uniform and model.elasticity is None and name in _MODE_RATES:
        verdict = _residual_modes(model, name)
        if verdict is not None:
            return verdict
    fixed_E = model.elasticity is None or torch.is_tensor(model.elasticity)
    if not (fixed_E and isinstance(model.alpha, Constant) and isinstance(model.beta, Constant)):
        return None, "time-varying elasticity outside the balanced residual case: the dominant mode moves with t"
    return _dominant_mode(model)


def _residual_modes(model, name: str) -> tuple[float | None, str] | None:
    """The proven case: fixed modes, the ETF when the common mode wins; None when the schedules are not power laws."""
    K = model.num_classes
    common_w, contrast_w = (f(K) for f in _MODE_RATES[name])
    common = leading_term(model.alpha, model.beta, *common_w)
    gap = leading_term(model.alpha, model.beta, common_w[0] - contrast_w[0], common_w[1] - contrast_w[1])
    if common is None or gap is None:
        return None
    if beats_diffusion(*common) == 1.0 and diverges(*gap):
        return -1.0 / (K - 1), ETF_PROVEN.format(transform=name)
    return None, (
        f"the {name} transform's common mode (the ETF) does not outgrow both the contrasts and the diffusion for "
        "these alpha_t, beta_t: no deterministic limit of the angle"
    )


def _dominant_mode(model) -> tuple[float | None, str]:
    from ..metrics.kernels import means_metrics

    K, m = model.num_classes, model.dim
    W = model.drift_weights(0.0).cpu().double()
    A = model.transform.dense(W.to(model.class_probs.device)).cpu().numpy()  # (K m, K m)
    lam, V = np.linalg.eig(A)
    centre = np.kron(np.eye(K) - 1.0 / K, np.eye(m))
    seen = np.linalg.norm(centre @ V, axis=0) > 1e-9 * np.linalg.norm(V, axis=0)
    lam, V = lam[seen], V[:, seen]
    if lam.size == 0:
        return None, "no mode of the drift moves the centred class means"
    order = np.argsort(-lam.real)
    top = lam[order[0]]
    scale = max(1.0, float(np.abs(lam).max()))
    tied = np.abs(lam - top) <= 1e-9 * scale
    if abs(top.imag) > 1e-9 * scale or top.real <= 0 or tied.sum() > 1:
        why = (
            "a complex pair" if abs(top.imag) > 1e-9 * scale
            else "not growing" if top.real <= 0
            else f"of multiplicity {int(tied.sum())}, so the limit direction depends on the start"
        )  # fmt: skip
        return None, f"the dominant mode of the class-mean drift (eigenvalue {top.real:.6g}) is {why}"
    nxt = lam[order[1]].real if lam.size > 1 else -np.inf
    direction = (centre @ V[:, order[0]]).real.reshape(1, K, m)
    cos = means_metrics(torch.from_numpy(direction), torch.zeros(1, K, dtype=torch.float64), model.counts.cpu(),
                        names=["mean_cosine"])["mean_cosine"]  # fmt: skip
    value = float(cos[0])
    etf = abs(value + 1.0 / (K - 1)) <= 1e-12
    why = "here the simplex ETF" if etf else "not the simplex ETF (which is the limit only where it is proven)"
    return value, DOMINANT_MODE.format(rate=top.real, gap=nxt, why=why)
