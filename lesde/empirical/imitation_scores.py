r"""How far a process's classes are from the network's, in raw and in scale-free terms, against the null of the
network frozen at t = 0.

Each comparison is a discrepancy $D_p(r, t) \ge 0$ between process $p$ (the LE-SDE, the frozen network,
a reference LE-ODE) and the network, per run and compared time (`COMPARISONS`). With $M$ the (K, m)
class means, $C = M - \bar M$ the centred ones and $\hat G = C C^\top / \|C C^\top\|_F$ the normalised
Gram matrix:

- ``class_mean_error``: $\|M_p - M_{\text{net}}\|_F / \|M_{\text{net}}\|_F$, the raw relative error;
- ``centred_cosine``: $1 - \cos(C_p(t) - C_p(0), C_{\text{net}}(t) - C_{\text{net}}(0))$, whether the classes
  move apart the way the network's do, whatever the scale (the cosine itself is stored; a process that does not
  move has cosine 0);
- ``gram_distance``: $\|\hat G_p - \hat G_{\text{net}}\|_F$, the geometry of the class means up to scale and
  rotation;
- ``nc1``: $|\log(\mathrm{NC1}_p / \mathrm{NC1}_{\text{net}})|$ with NC1 $= \mathrm{tr}\,\Sigma_W /
  \mathrm{tr}\,\Sigma_B$ (``nc1_quotient``);
- ``ncm_accuracy``: $|a_p - a_{\text{net}}|$, $a$ the nearest-class-mean accuracy of the probes;
- ``separation_time``: $|\log(t^{\text{sep}}_p / t^{\text{sep}}_{\text{net}})|$, $t^{\text{sep}}$ the
  first compared time at which the NCM accuracy reaches ``separation_level`` (inf when it never does).

The verdict (`verdict`), decided here: the skill $S = 1 - \tilde D_p / \tilde D_{\text{frozen}}$, with
$\tilde D$ the median over runs and the compared times after t = 0, says what share of the frozen network's
discrepancy the process removes; it **imitates** with $S \ge 0.5$, does so **partly** with $0.2 \le S
< 0.5$, and is **no better than the frozen network** below (removing less than a fifth of the null's discrepancy is
not counted as imitating at all). The separation time has no usable null
(a frozen network that starts unseparated never separates), so it imitates when the median over runs is within a
factor of 2 of the network's ($D \le \log 2$), and is not judged when the network does not separate within
the track.
"""

from __future__ import annotations

import numpy as np

#: comparison -> what its discrepancy measures (the CLI's verdict lines and the Dataset's ``comparison`` coordinate)
COMPARISONS = {
    "class_mean_error": "relative error of the class means",
    "centred_cosine": "1 - cosine of the centred class-mean displacements",
    "gram_distance": "distance of the normalised Gram matrices of the centred class means",
    "nc1": "|log NC1 ratio| (tr Sigma_W / tr Sigma_B)",
    "ncm_accuracy": "|NCM accuracy difference| of the probes",
    "separation_time": "|log ratio| of the times of separation",
}
IMITATES, PARTLY = 0.5, 0.2  # skill thresholds of the verdict
SEPARATION_FACTOR = 2.0  # a separation time within this factor of the network's imitates it


def class_stats(F: np.ndarray, labels: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means (..., K, m) and within-class variances (..., K) of features (..., P, m)."""
    Y = (labels[:, None] == np.arange(K)).astype(np.float64)
    Y /= Y.sum(0)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging LE-SDE: inf moments, judged as such later
        M = np.einsum("...pm,pk->...km", F, Y)
        dev2 = ((F - M[..., labels, :]) ** 2).sum(-1)  # (..., P)
        return M, np.einsum("...p,pk->...k", dev2, Y)


def ncm_accuracy(F: np.ndarray, labels: np.ndarray, K: int) -> np.ndarray:
    """Share of the samples (..., P, m) nearer their own class mean than any other (...)."""
    M = class_stats(F, labels, K)[0]  # (..., K, m)
    with np.errstate(over="ignore", invalid="ignore"):
        d = ((F[..., :, None, :] - M[..., None, :, :]) ** 2).sum(-1)  # (..., P, K)
    acc = (d.argmin(-1) == labels).mean(-1)
    return np.where(np.isfinite(d).all((-2, -1)), acc, np.nan)  # NaN where the distances overflowed


def separation_time(acc: np.ndarray, times: np.ndarray, level: float) -> np.ndarray:
    """First time (...) at which the NCM accuracy (..., T) reaches ``level``; inf when it never does."""
    hit = acc >= level - 1e-12
    first = np.argmax(hit, axis=-1)
    return np.where(hit.any(-1), times[first], np.inf)


def _centred(M: np.ndarray) -> np.ndarray:
    return M - M.mean(-2, keepdims=True)


def _flat_norm(x: np.ndarray) -> np.ndarray:
    return np.sqrt((x * x).sum((-2, -1)))


def centred_cosine(M: np.ndarray, M_net: np.ndarray) -> np.ndarray:
    """cos of the centred class-mean displacements from t = 0 (time on axis -3 of (..., T, K, m)); 0 where a
    process does not move."""
    d, e = _centred(M) - _centred(M[..., :1, :, :]), _centred(M_net) - _centred(M_net[..., :1, :, :])
    nd, ne = _flat_norm(d), _flat_norm(e)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cos = (d * e).sum((-2, -1)) / (nd * ne)
    return np.where((nd > 0) & (ne > 0) & np.isfinite(cos), cos, 0.0)


def gram_distance(M: np.ndarray, M_net: np.ndarray) -> np.ndarray:
    """||G / ||G|| - G_net / ||G_net|| ||_F with G the Gram matrix of the centred class means (..., K, m)."""

    def unit_gram(x):
        C = _centred(x)
        with np.errstate(over="ignore", invalid="ignore"):
            G = C @ np.swapaxes(C, -1, -2)
            n = _flat_norm(G)[..., None, None]
            return np.where(n > 0, G / np.where(n > 0, n, 1.0), 0.0)

    return _flat_norm(unit_gram(M) - unit_gram(M_net))


def class_mean_error(M: np.ndarray, M_net: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        err = _flat_norm(M - M_net) / _flat_norm(M_net)
    return np.where(np.isnan(err), np.inf, err)


def discrepancies(proc: dict, net: dict, times: np.ndarray) -> dict[str, np.ndarray]:
    """Every comparison of one process with the network: (R, T) arrays (``separation_time``: (R,)). ``proc`` and
    ``net`` hold ``class_mean`` (R, T, K, m), ``nc1_quotient`` (R, T), ``ncm_accuracy`` (R, T), ``t_sep`` (R,); a
    process with ``scaled_class_mean`` (the reference's fitted scale) has its raw error from those."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        nc1 = np.abs(np.log(proc["nc1_quotient"] / net["nc1_quotient"]))
        sep = np.abs(np.log(proc["t_sep"] / net["t_sep"]))
    out = {
        "class_mean_error": class_mean_error(proc.get("scaled_class_mean", proc["class_mean"]), net["class_mean"]),
        "centred_cosine": 1.0 - centred_cosine(proc["class_mean"], net["class_mean"]),
        "gram_distance": gram_distance(proc["class_mean"], net["class_mean"]),
        "nc1": nc1,
        "ncm_accuracy": np.abs(proc["ncm_accuracy"] - net["ncm_accuracy"]),
    }
    out = {k: np.where(np.isnan(v), np.inf, v) for k, v in out.items()}  # NaN: a process whose moments overflowed
    out["separation_time"] = np.where(np.isfinite(net["t_sep"]), np.where(np.isnan(sep), np.inf, sep), np.nan)
    return out


def _median(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64).ravel()
    x = x[~np.isnan(x)]
    return float(np.median(x)) if x.size else float("nan")


def verdict(name: str, D: np.ndarray, D_null: np.ndarray) -> tuple[float, float, float, str]:
    """(median discrepancy, the frozen network's, skill, verdict) of one comparison; the compared times after
    t = 0 are the columns 1: of (R, T) arrays."""
    if name == "separation_time":
        d = _median(D)
        if np.isnan(d):
            return d, float("nan"), float("nan"), "not judged: the network does not separate within the track"
        ok = d <= np.log(SEPARATION_FACTOR)
        return d, float("nan"), float("nan"), "imitates" if ok else "does not imitate"
    d, null = _median(D[:, 1:]), _median(D_null[:, 1:])
    if not null > 0:
        return d, null, float("nan"), "not judged: the network does not move"
    skill = 1.0 - d / null if np.isfinite(d) else -np.inf
    word = "imitates" if skill >= IMITATES else "partly" if skill >= PARTLY else "no better than the frozen network"
    return d, null, float(skill), word


__all__ = [
    "COMPARISONS",
    "class_stats",
    "ncm_accuracy",
    "separation_time",
    "centred_cosine",
    "gram_distance",
    "class_mean_error",
    "discrepancies",
    "verdict",
]
