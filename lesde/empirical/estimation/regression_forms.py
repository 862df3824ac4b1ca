r"""The regression forms of the estimators: each probe's one-step increment regressed on what the sampled example
moves it along, pooled over windows of steps with two estimands and clustered standard errors.

A track (from `track`, a `Tracker` or
`simulate_discrete`) records, at step $s$, the one-step increment $\Delta_i =
f_s(x_i) - f_{s-1}(x_i)$ of every probe, the sampled example $I_s$ (label $L_s$) and its feature
$f_{s-1}(x_{I_s})$ before the step.

Regression forms (``feature``, ``residual``)
--------------------------------------------
With $v_s = \eta f_{s-1}(x_{I_s})$ (feature; with a ``transform``, $v_{s,k} = \eta\,
T(k, L_s) f_{s-1}(x_{I_s})$, one regressor per moved class) or $v_s = \eta (e_{L_s} -
\mathrm{softmax}(f_{s-1}(x_{I_s})))$ (residual, the kernel form: one cross-entropy step moves logits by $\eta\,\Theta(x, x_I)\, r_I$; needs
logits), the discrete LE process gives $\Delta_i = E(y_i, L_s) v_s + \sqrt{\eta}\phi_i$. For the pair
$(k, l)$, let $n_s = \sum_{i: y_i = k} \langle \Delta_i, v_s\rangle$ and $d_s = n^{(k)}_s
\|v_s\|^2$ over the steps with $L_s = l$ ($n^{(k)}_s$ the probes of class $k$ in the step). Two
estimands pool a window of such steps (``weighting``):

$$ \hat E^{\text{increment}}_{kl} = \frac{\sum_s n_s}{\sum_s d_s}, \qquad
\hat E^{\text{step}}_{kl} = \frac{1}{|S|} \sum_s \frac{n_s}{d_s} . $$

``increment`` is the least-squares drift coefficient (a ratio of sums, each step weighted by
$\|v_s\|^2$): the coefficient that best reproduces the summed increments, which is what an LE-SDE driven by
it (`imitate`) needs. ``step`` is the mean of each step's own regression coefficient, the
typical step, what the original LE-SDE analysis and He and Su's local-elasticity measure report. On the discrete
LE process both estimate the same $E$; on real networks they differ (MNIST-1D residual form: alpha/beta
about 1 vs 3.5), because well-fitted samples (small residual $\|v\|$) have a large per-step elasticity and
little $\|v\|^2$ weight. The default is ``increment`` (the estimand imitation needs); both are always
computed (``alpha_by_weighting``), and a `UserWarning` names the windows where they differ beyond their
joint uncertainty (``alpha_disagreement``, the z-score of the difference with its clustered error; Bonferroni over
the windows at a family-wise false-alarm probability of 1e-3, so an LE process, where both estimate the same E,
almost never warns).
$\hat\alpha$ pools the pairs $k = l$ and $\hat\beta$ the pairs $k \ne l$ (for ``step``,
each step's coefficient over all probes of the other classes).

Decisions:

- The sampled example is left out of its own step (its self-elasticity is a different, much larger quantity).
- Steps whose regressor is at rounding level are dropped from both estimands: $\|v_s\| < 256\,
  \varepsilon\, \|f\|_{\text{rms}} / c_w$ ($\varepsilon$ the machine epsilon of the stored increments,
  $\|f\|_{\text{rms}}$ the probes' rms feature norm before the step, $c_w = \max(|\hat\alpha|,
  |\hat\beta|)$ of the window's least-squares fit over all steps, which such steps barely weigh). Measured on
  digits (float32 against float64 tracks of the same runs, residual form), a step's coefficient carries a relative
  rounding error of about $0.1 / q$ (median; $0.25 / q$ at the 90th percentile) with $q$ its
  signal-to-floor ratio $\|v\| c_w / (\varepsilon \|f\|_{\text{rms}})$: the kept steps ($q \ge
  256$) are good to about 1e-3. In float32 logit tracks the dropped steps are samples fitted to within about
  1e-5 of probability one; ``n_excluded`` counts them. Residuals are computed in float64 from the logits
  (`lesde.empirical.tracks.track_layout`), so they are never rounded to zero themselves (in float32,
  $1 - p$ is 0 or 6e-8 for such samples, and their per-step coefficients would be rounding noise divided by
  rounding noise).
- Standard errors are cluster-robust (`lesde.empirical.estimation._pooling`): one cluster per run when the
  track has several (``se_cluster = "run"``); with one run, blocks of consecutive steps whose length each window's
  influences choose (``se_cluster = "block"``, the lengths in ``block_length``), which accounts for the
  autocorrelation of neighbouring steps but not for how much another initialisation or sample order would change
  the run (a warning says so). Intervals use Student's t with ``dof`` = clusters - 1. Alpha and beta share the
  clusters, so ``alpha_beta_cov`` is their clustered covariance and the difference and ratio of
  `comparison` account for their correlation; ``pooled`` holds both estimands
  over the whole track (one window) for the answer.
- Each window's ``time`` is the estimand's weighted mean of $t_{s-1} = (s-1)\eta$ (the time at which step
  $s$ evaluates $E$), which removes the first-order bias of pooling a changing $E(t)$.
- ``noise`` is the residual scale of the least-squares (increment) fit,
  $\hat\sigma = (\sum \|\Delta_i - \hat E v\|^2 / (n\, m\, \eta))^{1/2}$, the diffusion an imitating
  LE-SDE needs.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from . import _pooling as pool
from ._pooling import onehot

WEIGHTINGS = ("increment", "step")
ROUNDING_FACTOR = 256.0


def _class_sums(ds: xr.Dataset, v: np.ndarray, K: int) -> dict[str, np.ndarray]:
    """Per (run, step, probe class): sums of <Delta_i, v>, ||Delta_i||^2 and kept-probe counts, plus the probes'
    rms feature norm before the step. ``v`` is (R, S, m), or (R, S, K, m) with one regressor per moved class.
    Streams over runs and step chunks (float64 copies of the increments of a long penultimate track would not fit
    in memory)."""
    inc, feat = ds["increment"].values, ds["features"].values  # loaded once (a file-backed track reads here)
    R, S, P, m = inc.shape
    Y = onehot(ds["label"].values, K)  # (P, K)
    I = ds["sampled_index"].values[:, 1:]
    sample_index = ds["sample_index"].values
    out = {k: np.zeros((R, S - 1, K)) for k in ("num", "sq", "cnt")}
    out["fscale"] = np.zeros((R, S - 1))
    chunk = max(1, int(2**22 // max(P * m, 1)))
    for r in range(R):
        for a in range(1, S, chunk):
            b = min(S, a + chunk)
            c = slice(a - 1, b - 1)
            D = np.asarray(inc[r, a:b], np.float64)  # (c, P, m)
            prev = np.asarray(feat[r, a:b], np.float64) - D  # f_{s-1}
            keep = (sample_index[None, :] != I[r, c, None]).astype(np.float64)  # (c, P)
            if v.ndim == 3:
                num = np.einsum("spm,sm->sp", D, v[r, c])
            else:  # each probe against its own class's regressor
                num = np.einsum("spm,skm,pk->sp", D, v[r, c], Y)
            out["num"][r, c] = (num * keep) @ Y
            out["sq"][r, c] = ((D * D).sum(-1) * keep) @ Y
            out["cnt"][r, c] = keep @ Y
            out["fscale"][r, c] = np.sqrt((prev * prev).sum(-1).mean(-1))
    return out


def _regression(ds: xr.Dataset, v: np.ndarray, window: int) -> dict:
    """Both estimands of the pooled regression of each probe's increment on v (R, S, [K,] m); step 0 is dropped."""
    K = int(ds.attrs["num_classes"])
    lr = float(ds.attrs["lr"])
    m = ds.sizes["feature"]
    if v.shape[-1] != m:
        raise ValueError(f"increments have {m} coordinates but the regressor has {v.shape[-1]}")
    v = np.asarray(v[:, 1:], np.float64)
    R, S = v.shape[:2]
    cs = _class_sums(ds, v, K)
    L = ds["sampled_label"].values[:, 1:]
    Lh = onehot(L, K)  # (R, S, K)
    vvk = (v * v).sum(-1)
    vvk = np.broadcast_to(vvk[..., None], (R, S, K)) if v.ndim == 3 else vvk  # ||v||^2 per moved class
    eps = np.finfo(ds["increment"].dtype).eps if ds["increment"].dtype.kind == "f" else np.finfo(np.float64).eps
    ok = np.isfinite(vvk).all(-1) & (L >= 0) & (vvk.max(-1) > 0)
    starts = pool.window_starts(S, window)
    valid = _above_rounding_floor(cs, Lh, vvk, ok, starts, eps)
    w = valid.astype(np.float64)
    num, cnt, sq = (np.nan_to_num(cs[k]) * w[..., None] for k in ("num", "cnt", "sq"))
    den = cnt * np.where(valid[..., None], vvk, 0)  # (R, S, K): d for the pair (k, L_s)
    cl = _clusters(num, den, Lh, starts)
    per_step, res = _estimands(num, den, Lh, cl)
    t_prev = (ds["step"].values[1:] - 1) * lr  # the time at which step s evaluates E
    out: dict = {"by_weighting": {}, "pooled": {}}
    whole = _clusters(num, den, Lh, np.array([0]))  # every step in one window: the answer over the whole track
    pooled = _estimands(num, den, Lh, whole, ("alpha", "beta"))[1]
    for wt in WEIGHTINGS:
        r_ = res[wt]
        out["by_weighting"][wt] = {q: (r_[q]["est"], r_[q]["se"], r_[q]["dof"]) for q in r_}
        out["by_weighting"][wt]["cov"] = pool.covariance(r_["alpha"], r_["beta"])
        p_ = pooled[wt]
        out["pooled"][wt] = {q: (p_[q]["est"], p_[q]["se"], p_[q]["dof"]) for q in p_}
        out["pooled"][wt]["cov"] = pool.covariance(p_["alpha"], p_["beta"])
        tw = per_step["alpha"][1] + per_step["beta"][1] if wt == "increment" else w  # each step's weight in time
        tws = np.add.reduceat(tw.sum(0), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["by_weighting"][wt]["time"] = np.add.reduceat((tw.sum(0) * t_prev), starts) / tws
    for q in ("alpha", "beta"):
        diff, se = pool.difference(res["increment"][q], res["step"][q])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{q}_disagreement"] = diff / se
    # residual scale of the least-squares fit: sum ||Delta - E v||^2 = Q - 2 E N + E^2 D per pair, per window
    E = np.nan_to_num(res["increment"]["E"]["est"])  # (W, K, K)
    red = [np.add.reduceat(np.einsum("rsk,rsl->skl", x, Lh), starts) for x in (sq, num, den, cnt)]
    ss = (red[0] - 2 * E * red[1] + E**2 * red[2]).sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        out["noise"] = np.sqrt(np.maximum(ss, 0) / (red[3].sum((1, 2)) * m * lr))
    steps = ds["step"].values[1:]
    stops = np.append(starts[1:], S) - 1
    out.update(
        step_start=steps[starts],
        step_stop=steps[stops],
        n_obs=red[3].sum((1, 2)),
        n_steps=np.add.reduceat(w.sum(0), starts),
        n_excluded=np.add.reduceat((ok & ~valid).sum(0).astype(np.float64), starts),
        se_cluster="run" if R > 1 else "block",
        block_length=cl.block,
        pooled_block_length=None if whole.block is None else int(whole.block[0]),
        rounding_tolerance=f"||v|| >= {ROUNDING_FACTOR:g} * {eps:.3g} * rms ||f|| / max(|alpha|, |beta|)",
    )
    return out


def _above_rounding_floor(cs: dict, Lh: np.ndarray, vvk: np.ndarray, ok: np.ndarray, starts, eps: float):
    """The steps (R, S) whose regressor is above the rounding floor of the stored increments.

    A step whose regressor is so small that the increments' rounding (eps ||f||) would move its coefficient by more
    than 1/1024 of the window's elasticity scale is dropped. Two passes: the scale comes from the least-squares fit
    of all steps, which such steps barely weigh.
    """
    K = Lh.shape[-1]
    wid = pool.window_ids(Lh.shape[1], starts)
    okw = ok[..., None].astype(np.float64)
    n0, d0 = np.nan_to_num(cs["num"]) * okw, np.nan_to_num(cs["cnt"]) * okw * np.where(ok[..., None], vvk, 0)
    scale = np.zeros(len(starts))
    for sel in (np.eye(K, dtype=bool), ~np.eye(K, dtype=bool)):
        nq = np.add.reduceat(np.einsum("rsk,rsl,kl->s", n0, Lh, sel), starts)
        dq = np.add.reduceat(np.einsum("rsk,rsl,kl->s", d0, Lh, sel), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.fmax(scale, np.abs(nq / dq))
    floor = ROUNDING_FACTOR * eps * cs["fscale"] / np.where(scale > 0, scale, np.inf)[wid][None]
    vnorm = np.sqrt(np.where(ok[..., None], vvk, 0).max(-1))
    return ok & (vnorm >= floor)


def _clusters(num: np.ndarray, den: np.ndarray, Lh: np.ndarray, starts: np.ndarray) -> pool.Clusters:
    """The runs as clusters when there are several; with one run, blocks of steps whose length each window's
    influences choose (the longest over alpha, beta and both estimands, so all share one set of clusters)."""
    R, S = num.shape[:2]
    if R > 1:
        return pool.Clusters(S, starts)
    pilot = _estimands(num, den, Lh, pool.Clusters(S, starts, block=1), ("alpha", "beta"))[1]
    stops = np.append(starts[1:], S)
    block = np.ones(len(starts), dtype=np.int64)
    for w, (a, b) in enumerate(zip(starts, stops)):
        cap = max(1, (b - a) // pool.MIN_BLOCKS)
        for r_ in pilot.values():
            for q in ("alpha", "beta"):
                block[w] = max(block[w], pool.block_length(r_[q]["psi"][0, a:b], cap))
    return pool.Clusters(S, starts, block=block)


def _estimands(
    num: np.ndarray, den: np.ndarray, Lh: np.ndarray, cl: pool.Clusters, quantities=("E", "alpha", "beta")
) -> tuple[dict, dict]:
    """The per-step sums (n, d) of E, alpha and beta, and both estimands of ``quantities`` pooled over the
    windows of ``cl``."""
    n_a, d_a = (num * Lh).sum(-1), (den * Lh).sum(-1)
    per_step = {"alpha": (n_a, d_a), "beta": (num.sum(-1) - n_a, den.sum(-1) - d_a)}
    if "E" in quantities:
        per_step["E"] = (np.einsum("rsk,rsl->rskl", num, Lh), np.einsum("rsk,rsl->rskl", den, Lh))

    def own(n, d):  # each step's own coefficient, weight 1 where the step has data
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(d > 0, n / d, 0.0), (d > 0).astype(np.float64)

    res = {
        wt: {q: pool.ratio(*(per_step[q] if wt == "increment" else own(*per_step[q])), cl) for q in quantities}
        for wt in WEIGHTINGS
    }
    return per_step, res


def _transformed(ds: xr.Dataset, transform) -> np.ndarray:
    """The regressors v_k = lr T(k, L_s) f_{s-1}(x_{I_s}) of the LE-SDE with ``transform``: (R, S, m) for the
    identity, (R, S, K, m) otherwise (state-dependent transforms see the probes' class means before the step)."""
    from ...transforms import make_transform

    lr = float(ds.attrs["lr"])
    XI = ds["sampled_feature"].values.astype(np.float64)  # (R, S, m)
    R, S, m = XI.shape
    K = int(ds.attrs["num_classes"])
    T = make_transform(transform, K, m)
    if T.is_identity:
        return lr * XI
    L = ds["sampled_label"].values.clip(min=0).reshape(-1)
    B = R * S
    V = torch.zeros(B, K, m, dtype=torch.float64)
    V[torch.arange(B), torch.from_numpy(L)] = torch.from_numpy(np.nan_to_num(XI).reshape(B, m))
    W = torch.zeros(B, K, K, dtype=torch.float64)
    W[torch.arange(B), :, torch.from_numpy(L)] = 1.0  # column L: row k of the result is T_{kL} X_I
    means = None
    if T.state_dependent:
        Y = onehot(ds["label"].values, K)
        prev = ds["features"].values.astype(np.float64) - np.nan_to_num(ds["increment"].values.astype(np.float64))
        means = torch.from_numpy(np.einsum("rspm,pk->rskm", prev, Y / Y.sum(0)).reshape(B, K, m))
    return lr * T.apply(W, V, means).reshape(R, S, K, m).numpy()


def feature_form(ds: xr.Dataset, window: int, transform=None) -> dict:
    """``form="feature"``: regress on $v = \\eta T(k, L_s) f_{s-1}(x_{I_s})$ (T the identity by default)."""
    return _regression(ds, _transformed(ds, "identity" if transform is None else transform), window)


def residual_form(ds: xr.Dataset, window: int) -> dict:
    """``form="residual"``, the kernel form: regress logit increments on $v = \\eta (e_{L_s} -
    \\mathrm{softmax}(f_{s-1}(x_{I_s})))$."""
    if "sampled_residual" not in ds or ds.sizes["feature"] != ds.sizes["class"]:
        raise ValueError(
            "form='residual' needs logit features (feature dim == number of classes) and "
            "sampled_residual in the track; track with feature='logits' or use form='feature'"
        )
    if ds.attrs.get("feature") not in (None, "logits", "le-process"):
        raise ValueError(
            "form='residual' regresses logit increments on logit residuals; the track holds "
            f"feature={ds.attrs.get('feature')!r}: use form='feature'"
        )
    v = float(ds.attrs["lr"]) * ds["sampled_residual"].values.astype(np.float64)
    return _regression(ds, v, window)


__all__ = ["feature_form", "residual_form", "WEIGHTINGS", "ROUNDING_FACTOR"]
