r"""Pooled ratio estimators over windows of steps, with cluster-robust standard errors.

Every regression estimate of `lesde.empirical.estimation.regression_forms` is a ratio $\hat\theta =
\sum_c n_c / \sum_c d_c$ of per-observation sums inside a window (``increment`` weighting: $n = \langle\Delta,
v\rangle$, $d = \|v\|^2$; ``step`` weighting: $n$ = the step's own coefficient, $d = 1$). Its
linearisation (influence) per cluster $g$ is $\psi_g = (n_g - \hat\theta d_g) / \sum d$, so

$$ \mathrm{SE}^2 = \frac{G}{G - 1} \sum_g \psi_g^2 , \qquad
\mathrm{Cov}(\hat\theta_A, \hat\theta_B) = \frac{G}{G - 1} \sum_g \psi^A_g \psi^B_g , $$

the cluster-robust (sandwich) variance with the usual small-sample factor, and intervals use Student's t with
$G - 1$ degrees of freedom (few clusters: with 8 runs, the normal quantile would under-cover by ~4 points).
Two estimators computed on the same clusters (alpha and beta of one window; the two weightings) get their
covariance the same way, so their difference and ratio account for their correlation.

Clusters are the runs when a track has several (the steps of one run share the network's state, so they are not
independent; clustering by (run, step) made errors up to 3.5x too small on MNIST-1D). With one run they are blocks
of consecutive steps inside each window (non-overlapping batch means): the influences of neighbouring steps are
correlated (on digits the lag-1 to lag-8 autocorrelations of the residual form's influences are 0.2-0.3 in the
early windows), and a cluster per step ignores it. Each window's block length comes from its own influences by
the rule of Politis and White (2004, with the correction of Patton, Politis and White 2009) for non-overlapping
blocks, $b = (\hat G / \hat g)^{2/3} n^{1/3}$ with $\hat G = \sum_k \lambda(k/M) |k| \hat R(k)$,
$\hat g = \sum_k \lambda(k/M) \hat R(k)$ over a flat-top lag window $\lambda$ whose width $M$
is twice the first lag after which the autocorrelations stay insignificant; it is kept between 1 and a quarter of
the window (at least 4 blocks, 3 degrees of freedom). Probes and steps are pooled into classes through one-hot
matrices (`onehot`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import t as student_t

MIN_BLOCKS = 4  # a single run's window keeps at least this many blocks (3 degrees of freedom)


def onehot(x: np.ndarray, K: int) -> np.ndarray:
    """float64 one-hot of integer labels (...,) -> (..., K); negative labels (step 0, no sample) give zero rows."""
    return (np.asarray(x)[..., None] == np.arange(K)).astype(np.float64)


def window_starts(n: int, window: int) -> np.ndarray:
    """Window starts over n points; a trailing remainder shorter than half a window joins the previous one."""
    starts = np.arange(0, n, window)
    if len(starts) > 1 and n - starts[-1] < window / 2:
        starts = starts[:-1]
    return starts


def window_ids(n: int, starts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(starts)), np.diff(np.append(starts, n)))


class Clusters:
    """How observations (R, S, ...) group into clusters inside windows of steps.

    ``block=None``: one cluster per run and window (several runs); otherwise blocks of consecutive steps inside
    each window, ``block`` steps long (an int, or one per window), the last block of a window taking the remainder.
    """

    def __init__(self, n_steps: int, starts: np.ndarray, block=None):
        self.starts = np.asarray(starts)
        self.wid = window_ids(n_steps, self.starts)
        stops = np.append(self.starts[1:], n_steps)
        if block is None:
            self.block = None
            bs = self.starts
        else:
            self.block = np.broadcast_to(np.asarray(block, dtype=np.int64), self.starts.shape).copy()
            bs = np.concatenate([s + window_starts(e - s, int(b)) for s, e, b in zip(self.starts, stops, self.block)])
        self.block_starts = bs
        self.block_wid = self.wid[bs]
        self.first_block = np.searchsorted(bs, self.starts)  # each window's first block

    def sums(self, x: np.ndarray) -> np.ndarray:
        """(R, S, ...) -> per-cluster sums (R, B, ...) over the blocks (a run's whole window without blocks)."""
        return np.add.reduceat(x, self.block_starts, axis=1)

    def per_window(self, g: np.ndarray) -> np.ndarray:
        """Sum cluster-level values (R, B, ...) into windows (W, ...)."""
        return np.add.reduceat(g, self.first_block, axis=1).sum(0)

    def spread(self, w: np.ndarray) -> np.ndarray:
        """Broadcast a per-window value (W, ...) to the cluster layout (1, B, ...)."""
        return w[self.block_wid][None]


def ratio(n: np.ndarray, d: np.ndarray, cl: Clusters) -> dict[str, np.ndarray]:
    """Pooled ratio sum n / sum d per window and its clustered SE, from per-observation sums (R, S, ...).

    Returns ``est``, ``se``, ``dof`` (G - 1 with G the clusters holding data), each (W, ...), and ``psi`` (the
    influences in the cluster layout, kept for `covariance`). Windows without data give NaN; windows with
    one cluster give NaN errors.
    """
    n_g, d_g = cl.sums(n), cl.sums(d)
    num, den = cl.per_window(n_g), cl.per_window(d_g)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = np.where(den > 0, num / den, np.nan)
        psi = (n_g - cl.spread(np.nan_to_num(est)) * d_g) / cl.spread(den)
        psi = np.nan_to_num(psi)
        G = cl.per_window((d_g > 0).astype(np.float64))
        se = np.sqrt(G / (G - 1) * cl.per_window(psi**2))
    se = np.where((G > 1) & (den > 0), se, np.nan)
    return {"est": est, "se": se, "dof": np.maximum(G - 1, 0), "psi": psi, "clusters": cl}


def covariance(a: dict, b: dict) -> np.ndarray:
    """Clustered covariance of two ratios on the same clusters (W, ...); NaN where either has no error."""
    cl = a["clusters"]
    G = np.maximum(a["dof"], b["dof"]) + 1
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = G / (G - 1) * cl.per_window(a["psi"] * b["psi"])
    return np.where(np.isfinite(a["se"]) & np.isfinite(b["se"]), cov, np.nan)


def difference(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray]:
    """Difference a - b of two ratios on the same clusters, and its SE (their correlation included)."""
    var = a["se"] ** 2 + b["se"] ** 2 - 2 * covariance(a, b)
    return a["est"] - b["est"], np.sqrt(np.maximum(var, 0.0))


def t_quantile(confidence: float, dof: np.ndarray) -> np.ndarray:
    """Two-sided Student-t quantile per window (NaN where there are no degrees of freedom)."""
    dof = np.asarray(dof, np.float64)
    with np.errstate(invalid="ignore"):
        q = student_t.ppf(0.5 + confidence / 2, np.where(dof > 0, dof, np.nan))
    return q


def _flat_top(x: np.ndarray) -> np.ndarray:
    """The trapezoidal flat-top lag window of Politis and Romano: 1 up to 1/2, linear to 0 at 1."""
    x = np.abs(x)
    return np.where(x <= 0.5, 1.0, np.where(x <= 1.0, 2.0 * (1.0 - x), 0.0))


def block_length(x: np.ndarray, max_block: int) -> int:
    """Politis-White block length of non-overlapping batch means for the mean of the series ``x`` (n,) (module
    docstring), between 1 and ``max_block``."""
    n = len(x)
    if n < 8 or max_block <= 1:
        return 1
    x = x - x.mean()
    r0 = float(x @ x)
    if r0 <= 0:
        return 1
    K = max(5, int(np.sqrt(np.log10(n))))
    L = min(n - 1, max_block * 2 + K)
    acov = np.array([x[: n - k] @ x[k:] for k in range(L + 1)]) / n  # R(0..L)
    rho = acov / acov[0]
    c = 2.0 * np.sqrt(np.log10(n) / n)
    m = L - K  # the first lag m after which K consecutive autocorrelations are insignificant
    for k in range(1, L - K + 1):
        if np.all(np.abs(rho[k : k + K]) < c):
            m = k - 1
            break
    M = min(2 * max(m, 1), L)
    k = np.arange(1, M + 1)
    lam = _flat_top(k / M)
    g = acov[0] + 2 * np.sum(lam * acov[1 : M + 1])
    G = 2 * np.sum(lam * k * acov[1 : M + 1])
    if g <= 0 or G <= 0:
        return 1
    b = (G / g) ** (2 / 3) * n ** (1 / 3)
    return int(np.clip(round(b), 1, max_block))


__all__ = [
    "onehot",
    "window_starts",
    "window_ids",
    "Clusters",
    "ratio",
    "covariance",
    "difference",
    "t_quantile",
    "block_length",
    "MIN_BLOCKS",
]
