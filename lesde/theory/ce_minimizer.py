r"""The global minimizer of the regularised cross-entropy UFM (Zhu et al. 2021, Theorem 3.1), in closed form.

For the objective of `lesde.sgd.UFM` with ``loss="ce"`` (balanced classes, n per class, N = K n,
temperature $\tau$)

$$ \frac1N \sum_i \mathrm{CE}\big((W h_i + b)/\tau, y_i\big) + \frac{\lambda_W}{2}\lVert W\rVert_F^2
+ \frac{\lambda_H}{2}\lVert H\rVert_F^2 + \frac{\lambda_b}{2}\lVert b\rVert^2 , $$

with $\lambda_W, \lambda_H > 0$ and $d \ge K - 1$, every global minimizer has classifier rows
$w_k = \sqrt{x}\, m_k$ ($m_k$ a unit simplex ETF), features
$h_{k,i} = \sqrt{\lambda_W / (n \lambda_H)}\, w_k$ and a bias $b = b_0 1$ (0 when $\lambda_b > 0$;
any constant otherwise, which the loss does not see). With $c = \sqrt{\lambda_W / (n\lambda_H)}$, the logits
are $c x$ for the own class and $-c x / (K-1)$ otherwise, so the objective along that family is

$$ g(x) = \log\!\big(1 + (K-1) e^{-\kappa x}\big) + K \lambda_W x, \qquad \kappa = \frac{c K}{(K-1)\tau}, $$

convex in $x = \lVert w_k\rVert^2 \ge 0$, minimised at

$$ x^* = \max\Big(0,\ \frac1\kappa \log\frac{(K-1)(1-r)}{r}\Big), \qquad r = \frac{K\lambda_W}{\kappa}
= \frac{(K-1)\,\tau\,\lambda_W}{c}, $$

($x^* = 0$, the zero solution with loss $\log K$, when $r \ge (K-1)/K$).
"""

from __future__ import annotations

import math
from typing import Any

from ..validation import check_int, check_positive_float
from .closed_forms import simplex_etf

__all__ = ["ce_ufm_minimizer"]


def ce_ufm_minimizer(
    num_classes: int,
    samples_per_class: int,
    dim: int,
    weight_decay_W: float,
    weight_decay_H: float,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """The minimizer of the regularised CE UFM (module docstring; the names of `lesde.sgd.UFM`).

    Returns
    -------
    dict[str, Any]
        dict with ``x`` ($\\lVert w_k\\rVert^2$ at the minimizer), ``loss`` (the objective there, regulariser
        included), ``W`` (K, d), ``H`` (d, K n, class-major; the minimizer whose ETF is
        `simplex_etf`, unique up to a rotation of R^d), ``collapsed`` (x = 0) and
        ``c`` = sqrt(lambda_W / (n lambda_H)).

    Examples
    --------
    >>> from lesde.theory import ce_ufm_minimizer
    >>> sol = ce_ufm_minimizer(4, 8, 8, 1e-2, 1e-2)
    >>> round(sol["x"], 4), sol["collapsed"]
    (7.3754, False)
    """
    K = check_int("num_classes", num_classes, minimum=2)
    n = check_int("samples_per_class", samples_per_class, minimum=1)
    d = check_int("dim", dim, minimum=1)
    if d < K - 1:
        raise ValueError(f"the CE UFM minimizer needs dim >= num_classes - 1 (a simplex ETF); got dim={d}, K={K}")
    lw = check_positive_float("weight_decay_W", weight_decay_W)
    lh = check_positive_float("weight_decay_H", weight_decay_H)
    tau = check_positive_float("temperature", temperature)
    c = math.sqrt(lw / (n * lh))
    kappa = c * K / ((K - 1) * tau)
    r = K * lw / kappa
    x = max(0.0, math.log((K - 1) * (1 - r) / r) / kappa) if r < (K - 1) / K else 0.0
    loss = math.log1p((K - 1) * math.exp(-kappa * x)) + K * lw * x
    W = math.sqrt(x) * simplex_etf(K, d)  # (K, d)
    H = (c * W).repeat_interleave(n, dim=0).T.contiguous()  # (d, K n): h_{k,i} = c w_k
    return {"x": x, "loss": loss, "W": W, "H": H, "collapsed": x == 0.0, "c": c}
