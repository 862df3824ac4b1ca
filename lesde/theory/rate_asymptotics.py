r"""Long-time behaviour of a rate built from alpha_t and beta_t in the power-law family.

Both the separability phase (`lesde.theory.phase_predictions`) and the simplex-ETF limit
(`lesde.theory.mean_direction`) ask the same question of a mode of the class-mean drift: with the mode's rate
$r(t) = u\,\alpha_t + v\,\beta_t$ and $a(t) = \int_0^t r$, does $e^{a(t)}$ beat the
$\sqrt t$ of the diffusion? For schedules ``Constant`` (exponent 0) and ``PowerLaw`` $c\,(o + t)^{-p}$,
$r(t) \sim C\, t^{-q}$ as $t \to \infty$ and

- $q < 1$: $a \sim C t^{1-q} / (1-q)$, so $e^{a}/\sqrt t \to \infty$ iff $C > 0$;
- $q = 1$: $e^{a} \sim t^{C}$, so $e^{a}/\sqrt t \to \infty$ iff $2C > 1$ (the 2c/K rule:
  $C = c/K$ for the contrast rate $(\alpha - \beta)/K$ with $\alpha = c(1+t)^{-1}$, $\beta = 0$);
  $2C = 1$ is the boundary, where the ratio grows like $\sqrt{\log t}$ only;
- $q > 1$ or $C = 0$: $a$ stays bounded and the spread wins.
"""

from __future__ import annotations

import math

from ..schedules import Constant, PowerLaw

__all__ = ["leading_term", "beats_diffusion", "diverges"]


def _terms(schedule, weight: float) -> list[tuple[float, float, float]] | None:
    """``[(coefficient, exponent, offset)]`` of ``weight * schedule``; None outside Constant / PowerLaw."""
    if schedule.batch_shape != ():
        return None
    p = {k: float(v) for k, v in schedule.params.items()}
    if isinstance(schedule, Constant):
        return [(weight * p["value"], 0.0, 0.0)]
    if isinstance(schedule, PowerLaw):
        return [(weight * p["scale"], p["exponent"], p["offset"])]
    return None


def leading_term(alpha, beta, u: float, v: float) -> tuple[float, float] | None:
    """``(C, q)`` with ``u alpha_t + v beta_t ~ C t^-q`` as t -> infinity (C = 0: identically zero), or None when a
    schedule is not Constant or PowerLaw (or carries a batch of parameters)."""
    parts = [_terms(alpha, u), _terms(beta, v)]
    if parts[0] is None or parts[1] is None:
        return None
    terms = [t for t in parts[0] + parts[1] if t[0] != 0.0]
    if not terms:
        return 0.0, 0.0
    q = min(t[1] for t in terms)
    lead = [t for t in terms if math.isclose(t[1], q, rel_tol=0, abs_tol=1e-12)]
    C = sum(t[0] for t in lead)
    if C != 0.0 or len(lead) == 1:
        return C, q
    # equal exponents and cancelling scales: c[(o1 + t)^-q - (o2 + t)^-q] ~ c q (o2 - o1) t^(-q-1)
    (c1, _, o1), (_, _, o2) = lead[:2]
    C_next = c1 * q * (o2 - o1)
    rest = [t for t in terms if t not in lead]
    if C_next == 0.0:
        return leading_term_of(rest)
    return _combine([(C_next, q + 1.0)], rest)


def leading_term_of(terms: list[tuple[float, float, float]]) -> tuple[float, float]:
    """The leading ``(C, q)`` of a sum of power-law terms ``(coefficient, exponent, offset)``."""
    if not terms:
        return 0.0, 0.0
    return _combine([], terms)


def _combine(known: list[tuple[float, float]], terms: list[tuple[float, float, float]]) -> tuple[float, float]:
    pairs = known + [(c, q) for c, q, _ in terms]
    q = min(p[1] for p in pairs)
    return sum(c for c, e in pairs if math.isclose(e, q, rel_tol=0, abs_tol=1e-12)), q


def beats_diffusion(C: float, q: float) -> float:
    """1.0 when $e^{a(t)} / \\sqrt t \\to \\infty$ for a rate ``~ C t^-q``, 0.0 when it does not, NaN on the
    boundary q = 1, 2C = 1 (module docstring)."""
    if q < 1:
        return 1.0 if C > 0 else 0.0
    if q > 1 or C == 0:
        return 0.0
    if math.isclose(2 * C, 1.0, rel_tol=1e-12, abs_tol=1e-12):
        return math.nan
    return 1.0 if 2 * C > 1 else 0.0


def diverges(C: float, q: float) -> bool:
    """Whether $\\int_0^t r \\to +\\infty$ for a rate ``~ C t^-q`` (q <= 1 and C > 0)."""
    return C > 0 and q <= 1
