r"""The separability phase of a sweep: its t -> infinity limit, and P(separable) at the sweep's own times.

**Limit** (``predicted_phase_limit``). For T = identity, balanced classes and E(t) in the alpha/beta family, the
drift moves the class-mean differences along the contrast mode only (the common mode translates every class
together, which no separability test sees), at rate $(\alpha_t - \beta_t)/K$; with $\beta_t \ge 0$ that
is $\gamma_t / K$, $\gamma_t = \min\{\alpha_t - \beta_t, \alpha_t + (K-1)\beta_t\}$ the smallest
eigenvalue of E (Kothapalli et al., Section 3.2). The differences grow like $e^{a(t)}$,
$a = \int (\alpha - \beta)/K$, the within-class spread like $\sqrt t$, and the phase is 1 where
$e^{a}/\sqrt t \to \infty$: for any Constant / PowerLaw alpha_t and beta_t with
$(\alpha_t - \beta_t)/K \sim C t^{-q}$, separable iff q < 1 and C > 0, or q = 1 and 2C > 1 (the 2c/K rule
generalised; `lesde.theory.rate_asymptotics`), NaN on 2C = 1.

**Finite time** (``p_separable_predicted(time, ...)``). With sample-independent noise, a fixed transform and
x0 i.i.d. N(0, s^2 I), the class means are Gaussian (`lesde.theory.class_mean_law.class_mean_law`) and
independent of the within-class deviations, which are driftless: per class, ``n_k`` rows i.i.d.
N(0, s^2 I + sigma_k^2 t Sigma) less their mean. P(all pairs separable at t) under the sweep's test (``ncm`` or
``margin``) is the probability of that Gaussian law, evaluated by Monte Carlo over ``PHASE_DRAWS`` (2000) draws
of the law itself (fixed seed; no path is integrated), standard error at most 0.011; sampling stops after
``PHASE_FIRST`` (500) draws when all or none were separable (P then within 0.006 of 0 or 1 at 95%). For T = identity, balanced
and uniform class probabilities the law is built in log space (the means divided by $e^{a(t)}$, the
translation-free centred means only), so cells whose growth overflows float64 still get a probability.

**At the summary time** (``predicted_phase``, the value the phase figure hatches where it is 1): the finite-time
phase ``P > 1/2`` where the finite-time probability decides it for the sweep's number of paths, i.e. where
$|P - 1/2| > 3 \sqrt{P(1-P)(1/n_{paths} + 1/\text{draws})}$; NaN otherwise. ``phase_prediction_kind`` says
which: ``finite_time`` (decided), ``boundary_finite_time`` (within that band: a correct simulation may show either
phase), ``limit_only`` (no finite-time law: only the t -> infinity phase, which need not hold at the summary
time), ``none``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..integrators.exact import _nodes, plan_for, unsupported_reason
from .class_mean_law import class_mean_law, noise_factor
from .rate_asymptotics import beats_diffusion, leading_term

#: Monte Carlo draws of the Gaussian law per cell and time (standard error <= 0.5 / sqrt(2000) = 0.011)
PHASE_DRAWS = 2000
#: the draws after which sampling stops when all or none were separable (P within 3 / 500 of 0 or 1, at 95%)
PHASE_FIRST = 500
#: the finite-time phase is decided where P is this many standard errors from 1/2
PHASE_Z = 3.0
KINDS = ("none", "finite_time", "boundary_finite_time", "limit_only")

LIMIT = (
    "t -> infinity phase of the separability transition (Kothapalli et al., Section 3.2): mean differences grow "
    "like exp(int (alpha - beta)/K), the spread like sqrt(t); separable iff (alpha_t - beta_t)/K ~ C t^-q with "
    "q < 1, C > 0 or q = 1, 2C > 1 (T = identity, balanced classes)"
)
FINITE = (
    "P(all pairs separable at t) of the LE-SDE's Gaussian law (class means from the closed form / moment ODE, "
    "driftless within-class deviations), Monte Carlo over {draws} draws of the law (seed 0), test {test!r}"
)
PHASE = (
    "phase at the summary time t = {t:g}: P(separable at t) > 1/2 where it is more than {z:g} standard errors "
    "(n_paths = {n}, {draws} draws) from 1/2, NaN otherwise (see phase_prediction_kind); " + FINITE
)

Out = dict[str, tuple[tuple[str, ...], Any, dict[str, Any]]]


def limit_phase(model) -> tuple[float, str | None]:
    """The t -> infinity phase (1, 0, NaN on the boundary) and None, or (NaN, why the rule does not apply)."""
    K = model.num_classes
    if not model.transform.is_identity or model.elasticity is not None:
        return math.nan, "the limit rule needs T = identity and E(t) in the alpha/beta family"
    if not bool((model.counts == model.counts[0]).all()):
        return math.nan, "the limit rule needs balanced classes"
    lead = leading_term(model.alpha, model.beta, 1.0 / K, -1.0 / K)
    if lead is None:
        return math.nan, "the limit rule needs Constant or PowerLaw alpha_t and beta_t"
    return beats_diffusion(*lead), None


def _centred_law(model, t: float, s2: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """T = identity, uniform pi: the covariance (K m, K m) of the centred class means and the deviations' variances
    (K,) from the start (times I) and from the noise (times Sigma), all divided by one common scale (e^{2 a(t)}
    and the larger spread) so that none overflows."""
    K, m = model.num_classes, model.dim
    n = model.counts.cpu().double()
    sig2 = model.sigma_class.cpu().double() ** 2
    P0 = torch.eye(K, dtype=torch.float64) - 1.0 / K

    def a(u):  # contrast log-growth from 0 to u
        return ((model.alpha.integral(0.0, u) - model.beta.integral(0.0, u)) / K).double().reshape(-1)

    if t > 0:
        u, w = _nodes(0.0, t)
        log_J = float(torch.logsumexp(-2 * a(u) + torch.log(w), 0))  # log int_0^t e^{-2 a(u)} du
    else:
        log_J = -math.inf
    a_t = float(a(torch.tensor([t], dtype=torch.float64))[0]) if t > 0 else 0.0
    C0, D = P0 @ torch.diag(s2 / n) @ P0, P0 @ torch.diag(sig2 / n) @ P0
    log_dev = torch.log(s2 + sig2 * t) - 2 * a_t  # (K,), deviations divided by e^{a(t)}
    log_means = math.log(max(float(C0.diagonal().max()), 1e-300))
    if log_J > -math.inf:
        log_means = float(np.logaddexp(log_means, log_J + math.log(float(D.diagonal().max()))))
    top = max(log_means, float(log_dev.max()))
    eye = torch.eye(m, dtype=torch.float64)
    cov = torch.kron(math.exp(-top) * C0, eye)
    if log_J > -math.inf:
        cov = cov + torch.kron(math.exp(log_J - top) * D, noise_factor(model))
    scale = math.exp(-2 * a_t - top)
    return cov, s2 * scale * torch.ones(K, dtype=torch.float64), sig2 * t * scale


def _dense_law(model, times: np.ndarray, s2: float) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """The general case, in float64 without rescaling: None when the law overflows."""
    K, m = model.num_classes, model.dim
    n = model.counts.cpu().double()
    cov0 = torch.kron(torch.diag(s2 / n), torch.eye(m, dtype=torch.float64))
    _, cov, _ = class_mean_law(model, times, torch.zeros(K * m, dtype=torch.float64), cov0, 0.0)
    sig2 = model.sigma_class.cpu().double() ** 2
    if not np.isfinite(cov).all():
        return None
    return [(torch.from_numpy(c), s2 * torch.ones(K, dtype=torch.float64), sig2 * float(t)) for c, t in zip(cov, times)]


def _probability(model, cov, start_var, noise_var, test: str, margin: float, gen) -> float:
    """P(all pairs separable) of features = means N(0, cov) + the centred rows of N(0, start_var_k I +
    noise_var_k Sigma) per class k."""
    from ..metrics.kernels import ncm_from_parts
    from ..separability import pair_stats

    K, m = model.num_classes, model.dim
    labels = model.labels.cpu()
    counts = model.counts.cpu()
    ev, V = torch.linalg.eigh(0.5 * (cov + cov.T))
    root = V * ev.clamp_min(0).sqrt()  # (K m, K m): root root^T = cov
    sig_root = torch.linalg.cholesky(noise_factor(model))
    hits, done, chunk = 0, 0, max(1, min(PHASE_FIRST, 2_000_000 // (labels.numel() * m)))
    while done < PHASE_DRAWS:
        R = min(chunk, PHASE_DRAWS - done)
        means = (torch.randn(R, K * m, generator=gen, dtype=torch.float64) @ root.T).reshape(R, K, m)
        G = torch.randn(R, labels.numel(), m, generator=gen, dtype=torch.float64) @ sig_root.T
        G = G * noise_var.sqrt()[labels][None, :, None]
        G += torch.randn(R, labels.numel(), m, generator=gen, dtype=torch.float64) * start_var.sqrt()[labels][:, None]
        own = torch.zeros(R, K, m, dtype=torch.float64).index_add_(1, labels, G) / counts[None, :, None]
        Z = G - own[:, labels]  # (R, N, m) within-class deviations
        if test == "ncm":  # the decision simulate(save="metrics") makes, from the parts: no (R, N, m) features
            centred = means - means.mean(1, keepdim=True)
            hits += int(ncm_from_parts(Z @ centred.mT, centred, labels)[1].sum())
        else:
            hits += int(pair_stats(means[:, labels] + Z, labels, method=test, margin=margin)[1].sum())
        done += R
        if done >= PHASE_FIRST and hits in (0, done):  # P within 3 / PHASE_FIRST (95%) of 0 or 1: decided
            break
    return hits / done


def finite_time(model, times: np.ndarray, simulate: dict, test: str, margin: float) -> tuple[np.ndarray | None, str]:
    """P(all pairs separable) at each time, or (None, why not)."""
    reason = unsupported_reason(model)
    if reason is not None:
        return None, reason.replace("method='exact' needs", "the finite-time law needs")
    if model.param_batch is not None:
        return None, "per-path parameters"
    if simulate.get("x0") is not None:
        return None, "a given x0 (the finite-time law starts from x0 i.i.d. N(0, x0_scale^2 I))"
    if test not in ("ncm", "margin"):
        return None, f"separability {test!r} (the finite-time law is evaluated for the ncm and margin tests)"
    s2 = float(simulate.get("x0_scale", 1.0)) ** 2
    gen = torch.Generator().manual_seed(0)
    if plan_for(model) == "spectral":
        laws = [_centred_law(model, float(t), s2) for t in times]
    else:
        laws = _dense_law(model, times, s2)
        if laws is None:
            return None, "the class-mean law overflows float64 at these times"
    return np.array([_probability(model, *law, test, margin, gen) for law in laws]), ""


def _cell(spec, cell: int, times: np.ndarray) -> tuple[float, np.ndarray | None, str]:
    from ..config import build_model, check_model
    from ..sweep.spec import cell_config

    config = cell_config(spec, cell)
    model = build_model(check_model(config["model"]))
    limit, why_limit = limit_phase(model)
    test, margin = spec.sweep.get("separability", "ncm"), float(spec.sweep.get("margin", 0.0))
    probs, why_finite = finite_time(model, times, config["simulate"], test, margin)
    why = "; ".join(w for w in (why_limit, why_finite) if w)
    return limit, probs, why


def phase_predictions(ds: xr.Dataset) -> tuple[Out, list[str]]:
    """``predicted_phase``, ``predicted_phase_limit``, ``phase_prediction_kind``, ``p_separable_predicted``,
    the measured ``phase`` and ``phase_agreement`` over the sweep grid (module docstring)."""
    from ..sweep.spec import load_spec

    spec = load_spec(json.loads(ds.attrs["spec"]))
    dims, shape = tuple(spec.dims), spec.shape
    times = ds["time"].values.astype(np.float64)
    t_sum = float(ds.attrs.get("summary_time", times[-1]))
    k_sum = int(np.argmin(np.abs(times - t_sum)))
    n_paths = spec.n_paths
    limit = np.full(spec.n_cells, np.nan)
    probs = np.full((len(times), spec.n_cells), np.nan)
    reasons = []
    for cell in range(spec.n_cells):
        limit[cell], p, why = _cell(spec, cell, times)
        if p is not None:
            probs[:, cell] = p
        elif why and why not in reasons:
            reasons.append(why)
    P = probs[k_sum]
    band = PHASE_Z * np.sqrt(P * (1 - P) * (1.0 / n_paths + 1.0 / PHASE_DRAWS))
    decided = np.isfinite(P) & (np.abs(P - 0.5) > band)
    pred = np.where(decided, (P > 0.5).astype(float), np.nan)
    kind = np.where(decided, 1, np.where(np.isfinite(P), 2, np.where(np.isfinite(limit), 3, 0))).astype(np.int8)
    if not (np.isfinite(P).any() or np.isfinite(limit).any()):
        return {}, [f"predicted phase: no cell has a finite-time law or a limit rule ({'; '.join(reasons)})"]
    measured_P = ds["p_all_separable"].sel(time=t_sum, method="nearest").where(ds["done"] > 0)
    measured = np.where(np.isnan(measured_P.values), np.nan, (measured_P.values > 0.5).astype(float))
    pred, limit, kind = pred.reshape(shape), limit.reshape(shape), kind.reshape(shape)
    agree = np.where(np.isnan(pred) | np.isnan(measured), np.nan, (pred == measured).astype(float))
    test = spec.sweep.get("separability", "ncm")
    note = PHASE.format(t=float(times[k_sum]), z=PHASE_Z, n=n_paths, draws=PHASE_DRAWS, test=test)
    flags = {"flag_values": np.arange(len(KINDS), dtype=np.int8), "flag_meanings": " ".join(KINDS)}
    skipped = [f"predicted phase, some cells: {r}" for r in reasons]
    return {
        "predicted_phase": (dims, pred, {"prediction": note}),
        "predicted_phase_limit": (dims, limit, {"prediction": LIMIT}),
        "phase_prediction_kind": (dims, kind, {"prediction": note, **flags}),
        "p_separable_predicted": (
            ("time", *dims),
            probs.reshape(len(times), *shape),
            {"prediction": FINITE.format(draws=PHASE_DRAWS, test=test)},
        ),
        "phase": (dims, measured, {"summary_time": float(times[k_sum])}),
        "phase_agreement": (dims, agree, {"prediction": note}),
    }, skipped
