r"""The answer to the field's question, "is intra-class elasticity larger than inter-class, and how do both
decay?", from the joint (alpha, beta) uncertainty of an estimate.

Per window (and over the whole track), with $V_\alpha, V_\beta, C$ the clustered variances and covariance of
the two pooled regressions (they share their clusters, so they are correlated) and $q$ the two-sided Student-t
quantile on the clusters' degrees of freedom:

- the difference $\hat\alpha - \hat\beta$ with $\mathrm{SE}^2 = V_\alpha + V_\beta - 2C$ and the
  interval $\pm q\,\mathrm{SE}$;
- the ratio $\hat\alpha / \hat\beta$ with **Fieller's** interval, the set of $\rho$ with
  $(\hat\alpha - \rho\hat\beta)^2 \le q^2 (V_\alpha - 2\rho C + \rho^2 V_\beta)$. Decision: Fieller rather
  than the delta method because $\hat\beta$ is often within a few standard errors of zero on networks (the
  feature form on MNIST-1D has beta < 0), where the delta method's symmetric interval under-covers and Fieller's
  widens honestly; when $\hat\beta$ is not significantly different from zero the set is unbounded and the
  interval is stored as $(-\infty, \infty)$.

The summary line (attr ``answer``, printed by ``lesde estimate``) counts the windows whose difference interval lies
above zero and below it, gives the whole-track difference and ratio with their intervals and the decay exponents
$p$ of power laws $a (1 + t)^{-p}$ fitted to alpha and beta (weighted least squares with the windows'
errors, errors scaled by $\sqrt{\chi^2/\nu}$ when the curve misses the scatter), and names the form, the
weighting and the clusters.
"""

from __future__ import annotations

import numpy as np

from . import _pooling as pool


def fieller(a, b, var_a, var_b, cov, q) -> tuple[np.ndarray, np.ndarray]:
    """Fieller's interval for a / b (arrays broadcast); (-inf, inf) where b is not significantly nonzero, NaN
    where an input is NaN."""
    a, b, var_a, var_b, cov, q = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (a, b, var_a, var_b, cov, q)))
    A = b * b - q * q * var_b
    B = a * b - q * q * cov
    C = a * a - q * q * var_a
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.sqrt(np.maximum(B * B - A * C, 0.0))
        lo, hi = (B - root) / A, (B + root) / A
    bounded = A > 0
    lo, hi = np.where(bounded, lo, -np.inf), np.where(bounded, hi, np.inf)
    bad = ~np.isfinite(A) | ~np.isfinite(B) | ~np.isfinite(C)
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def compare(a, se_a, b, se_b, cov, dof, confidence: float) -> dict[str, np.ndarray]:
    """Difference a - b with its SE and interval, ratio a / b with Fieller's interval."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    va, vb = np.asarray(se_a, np.float64) ** 2, np.asarray(se_b, np.float64) ** 2
    q = pool.t_quantile(confidence, dof)
    se = np.sqrt(np.maximum(va + vb - 2 * np.asarray(cov, np.float64), 0.0))
    se = np.where(np.isfinite(va) & np.isfinite(vb), se, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(b != 0, a / b, np.nan)
    lo, hi = fieller(a, b, va, vb, cov, q)
    return {
        "difference": a - b,
        "difference_se": se,
        "difference_lower": a - b - q * se,
        "difference_upper": a - b + q * se,
        "ratio": ratio,
        "ratio_lower": lo,
        "ratio_upper": hi,
    }


def decay_exponent(t: np.ndarray, y: np.ndarray, se: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Exponent p of a power law a (1 + t)^-p fitted to (t, y) with errors se, and its interval (NaN when the
    fit fails)."""
    from ..fitting import fit_curve

    try:
        f = fit_curve(t, y, se, "power", offset=1.0, quantity="value", warn=False)
    except (RuntimeError, ValueError):
        return float("nan"), float("nan"), float("nan")
    p, s = f.params["exponent"], f.stderr["exponent"]
    q = float(pool.t_quantile(confidence, np.array(max(f.n - 2, 0))))
    return p, p - q * s, p + q * s


def _num(x: float) -> str:
    return f"{x:.4g}" if np.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "nan")


def summary(ds, pooled: dict, confidence: float) -> dict:
    """The answer of an estimate Dataset ``ds`` (with ``alpha_minus_beta_lower``/``_upper``) and the whole-track
    comparison ``pooled`` (`compare` of scalars, plus ``dof``): numeric attrs and the one-line ``answer``."""
    lo, hi = ds["alpha_minus_beta_lower"].values, ds["alpha_minus_beta_upper"].values
    W = ds.sizes["step"]
    above, below = int(np.sum(lo > 0)), int(np.sum(hi < 0))
    t = ds["time"].values
    decay = {q: decay_exponent(t, ds[q].values, ds[f"{q}_se"].values, confidence) for q in ("alpha", "beta")}
    level = f"{100 * confidence:.0f}%"
    d = {k: float(np.ravel(v)[0]) for k, v in pooled.items()}
    clusters = ds.attrs.get("se_cluster", "?")
    if clusters == "block":
        how = ("errors from blocks of steps of one run (they leave out how another initialisation or sample order "
               "would change it: track n_runs >= 2 for errors that include it)")  # fmt: skip
    elif int(ds.attrs.get("n_runs", 2)) < 2:
        how = "no errors (they are the spread over runs, and the track has one run)"
    else:
        how = f"errors clustered by run ({ds.attrs.get('n_runs', '?')} runs)"
    line = (
        f"alpha > beta in {above} of {W} windows at {level} (alpha < beta in {below}); over the whole track "
        f"alpha - beta = {_num(d['difference'])} [{_num(d['difference_lower'])}, {_num(d['difference_upper'])}], "
        f"alpha/beta = {_num(d['ratio'])} [{_num(d['ratio_lower'])}, {_num(d['ratio_upper'])}] (Fieller); decay "
        f"exponents of a (1+t)^-p: p_alpha = {_num(decay['alpha'][0])} [{_num(decay['alpha'][1])}, "
        f"{_num(decay['alpha'][2])}], p_beta = {_num(decay['beta'][0])} [{_num(decay['beta'][1])}, "
        f"{_num(decay['beta'][2])}]; form={ds.attrs.get('form')}, weighting={ds.attrs.get('weighting')}, {how}"
    )
    return dict(
        answer=line,
        windows_alpha_above_beta=above,
        windows_alpha_below_beta=below,
        pooled_alpha_minus_beta=d["difference"],
        pooled_alpha_minus_beta_ci=[d["difference_lower"], d["difference_upper"]],
        pooled_alpha_over_beta=d["ratio"],
        pooled_alpha_over_beta_ci=[d["ratio_lower"], d["ratio_upper"]],
        decay_exponent_alpha=decay["alpha"][0],
        decay_exponent_alpha_ci=[decay["alpha"][1], decay["alpha"][2]],
        decay_exponent_beta=decay["beta"][0],
        decay_exponent_beta_ci=[decay["beta"][1], decay["beta"][2]],
    )


__all__ = ["fieller", "compare", "decay_exponent", "summary"]
