"""The first-order stochastic modified equation (SME) of minibatch SGD, as a torchsde-contract module.

$$ d\\theta = -\\nabla L(\\theta)\\,dt + \\sqrt{\\eta / B}\\;\\Sigma(\\theta)^{1/2} dW_t, \\qquad
\\Sigma = \\frac1N\\sum_{i=1}^N (g_i - \\bar g)(g_i - \\bar g)^T,\\quad g_i = \\nabla\\ell_i(\\theta), $$

with time $t = \\text{step}\\cdot\\eta$ (Li, Tai and E). The covariance is never formed: with an
N-dimensional Brownian motion W the diffusion factor is the ``P x N`` matrix

$$ G(\\theta) = \\sqrt{\\frac{\\eta}{B N}}\\,\\big[g_1 - \\bar g, \\dots, g_N - \\bar g\\big],
\\qquad G G^T = \\frac{\\eta}{B}\\Sigma, $$

so ``noise_type="general"``, ``brownian_size = N``, and the Euler increment
$G\\,\\Delta W = \\sqrt{\\eta/(BN)}\\sum_i g_i(\\Delta W_i - \\overline{\\Delta W})$ is one weighted-gradient
contraction (``g_prod``), O(N K d) for the UFM instead of O(N P) for forming G.

``sampling="shuffle"`` multiplies the covariance by the finite-population factor $(N-B)/(N-1)$ of one
without-replacement batch (the correlations between batches of one epoch are not modelled).

`run_sme` integrates the module with Euler-Maruyama and records the same observations as
`lesde.sgd.run_sgd`. Its step is a single contraction (`SGDSDE.euler_step`): the data term of the drift
and the noise are both weighted sums of per-sample gradients, so
$\\theta + f\\Delta t + G\\Delta W = \\theta - \\Delta t\\nabla R + \\sum_i (\\sqrt{\\eta/(BN)}(\\Delta W_i -
\\overline{\\Delta W}) - \\Delta t/N)\\, g_i$, written into one of two swapped state buffers (same result as
``f_and_g_prod`` up to rounding, about 2x faster on the CPU for the UFM benchmark).
``lesde.simulate(SGDSDE(...), ...)`` integrates it as a generic SDE (raw state,
``x0=sme.init(1)[0]``).

Accuracy: the SME is a weak order-1 approximation of SGD (mean of a smooth observable off by O(lr)). With
``dt = lr`` Euler-Maruyama is SGD with Gaussian noise of the right covariance, whose weak error against SGD is
O(lr^2) (the first two moments of every step agree), so it hides the SME's own O(lr) error. `run_sme` and
`lesde.sgd.compare` therefore step at ``dt = lr / SME_SUBSTEPS`` (8) by default: Euler-Maruyama's own weak
error is then about an eighth of the SME's, and the comparison shows the SDE, not its coarsest discretisation. The MSE UFM has a cubic drift: at large lr the Euler paths of the SME develop
heavy tails (a few paths in 10^4 escape), which SGD does not; on the 2x2x2 MSE UFM of the tests this sets in at
lr ~ 0.08 (the mean gap then jumps above the linear law).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import xarray as xr
from torch import nn

from ..validation import check_choice, check_int, check_positive_float
from ._record import record_steps
from .minibatch import SAMPLERS
from .options import RunOptions, whole_steps

#: default Euler-Maruyama steps per SGD step (``dt = lr / SME_SUBSTEPS``): fine enough that the SME's O(lr) weak
#: error against SGD, not the scheme's, is what a comparison measures (module docstring)
SME_SUBSTEPS = 8


class SGDSDE(nn.Module):
    """First-order SME of SGD with learning rate ``lr`` and batch size ``batch_size`` on ``problem``.

    Parameters
    ----------
    problem
        a `Problem`.
    lr
        learning rate $\\eta$ (it scales the diffusion, not the time).
    batch_size : B.
    sampling
        ``"with-replacement"`` (covariance $\\eta\\Sigma/B$) or ``"shuffle"``.

    Notes
    -----
    State ``y`` is the flat parameter batch ``(paths, P)``. ``f(t, y)`` is ``(paths, P)``, ``g(t, y)`` is
    ``(paths, P, N)`` (dense; for small problems and checks), ``g_prod(t, y, dW)`` with ``dW (paths, N)`` is
    ``(paths, P)`` and never forms ``g``; ``f_and_g_prod`` shares one forward pass between drift and noise.

    Examples
    --------
    >>> import torch
    >>> from lesde.sgd import SGDSDE
    >>> import torchsde
    >>> from lesde.sgd import UFM
    >>> sme = SGDSDE(UFM(3, 2, 4, loss="mse", weight_decay_W=0.01, weight_decay_H=0.01), lr=0.05, batch_size=2)
    >>> y0 = sme.init(8, torch.Generator().manual_seed(0))
    >>> torchsde.sdeint(sme, y0, torch.tensor([0.0, 0.5], dtype=torch.float64), dt=0.05).shape
    torch.Size([2, 8, 39])
    """

    noise_type = "general"
    sde_type = "ito"

    def __init__(self, problem, lr: float, batch_size: int, sampling: str = "with-replacement") -> None:
        super().__init__()
        self.problem = problem
        self.lr = check_positive_float("lr", lr)
        self.batch_size = check_int("batch_size", batch_size)
        self.sampling = check_choice("sampling", sampling, SAMPLERS)
        N, B = problem.num_samples, self.batch_size
        if sampling == "shuffle" and B > N:
            raise ValueError(f"batch_size={B} must be <= the number of samples ({N}) with sampling='shuffle'")
        factor = (N - B) / (N - 1) if sampling == "shuffle" and N > 1 else 1.0
        self.brownian_size = N
        self.noise_scale = math.sqrt(self.lr * factor / (B * N))  # sqrt(eta / (B N)) [* finite-population factor]

    def init(self, n_paths: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Initial state ``(paths, P)``: the problem's initial point, shared by all paths."""
        return self.problem.init(n_paths, generator)

    def f(self, t, y: torch.Tensor) -> torch.Tensor:
        return -self.problem.grad(y)

    def g(self, t, y: torch.Tensor) -> torch.Tensor:
        G = self.problem.per_sample_grads(y)  # (paths, N, P)
        return self.noise_scale * (G - G.mean(1, keepdim=True)).transpose(1, 2)  # (paths, P, N)

    def g_prod(self, t, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # G v = sqrt(eta/(BN)) sum_i (g_i - gbar) v_i = sqrt(eta/(BN)) sum_i g_i (v_i - vbar)
        return self.problem.weighted_grad(y, self.noise_scale * (v - v.mean(-1, keepdim=True)))

    def f_and_g_prod(self, t, y: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.problem.neg_grad_and_weighted_grad(y, self.noise_scale * (v - v.mean(-1, keepdim=True)))

    def euler_step(self, y: torch.Tensor, dW: torch.Tensor, dt: float, out: torch.Tensor | None = None) -> torch.Tensor:
        """One Euler-Maruyama step $y + f(y)\\,\\Delta t + G(y)\\,\\Delta W$, ``(paths, P)``.

        Drift and noise are both weighted sums of per-sample gradients, so the step is one contraction with
        weights $\\sqrt{\\eta/(BN)}(\\Delta W_i - \\overline{\\Delta W}) - \\Delta t/N$ plus the
        (linear) weight-decay term: `Problem.explicit_step`. Equal to ``y + f * dt + g_prod`` up to rounding.
        ``out``: optional buffer (not aliasing ``y``) for the result.
        """
        w = self.noise_scale * (dW - dW.mean(-1, keepdim=True)) - dt / self.brownian_size  # (paths, N)
        return self.problem.explicit_step(y, w, dt, out)

    def to_spec(self) -> dict:
        return {
            "kind": "sgd-sme",
            "lr": self.lr,
            "batch_size": self.batch_size,
            "sampling": self.sampling,
            "problem": self.problem.to_spec(),
        }


def run_sme(
    sme: SGDSDE,
    t_end: float,
    dt: float | None = None,
    n_runs: int = 1,
    seed: int = 0,
    record_every: int | Sequence[int] | None = None,
    theta0: torch.Tensor | None = None,
    save: str = "metrics",
    metrics: bool | str | list[str] = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> xr.Dataset:
    """Euler-Maruyama for `SGDSDE`, recording what `run_sgd` records.

    $\\theta \\leftarrow \\theta + f\\,\\Delta t + G\\,\\Delta W$, $\\Delta W \\sim N(0, \\Delta t I_N)$
    per path. ``dt`` defaults to ``lr / SME_SUBSTEPS`` (``lr / 8``; ``dt = lr`` is Gaussian-noise SGD, see the
    module docstring); the run takes the whole steps that end by ``t_end`` (``t_end < dt`` is refused). A path whose parameters become NaN/inf is
    masked (NaN from then on, counted in the ``n_diverged`` attr, with a ``UserWarning``). Observations are computed on the fly, so large ``P`` costs no trajectory memory.
    ``n_runs`` SDE paths are recorded along the ``run`` dim, so the Dataset lines up with SGD's; ``record_every``
    counts SME steps (or lists the SME steps to record); the other arguments are those of
    `run_sgd` (``progress``: a tqdm bar over steps).

    Returns
    -------
    xr.Dataset
        xarray.Dataset over ``(run, time)`` (``run`` = SDE path), same variables as `run_sgd`.
    """
    t_end = check_positive_float("t_end", t_end)
    dt = sme.lr / SME_SUBSTEPS if dt is None else check_positive_float("dt", dt)
    opts = RunOptions(n_runs, seed, theta0, save, metrics, device, dtype, progress)
    steps = whole_steps(t_end, dt, "dt")
    problem, theta = opts.start(sme.problem)
    sme = sme.to(device=problem.device, dtype=dtype)
    gen = torch.Generator(device=problem.device).manual_seed(seed + 2)
    rec = opts.recorder(problem)
    wanted = set(record_steps(steps, record_every))
    sqrt_dt = math.sqrt(dt)
    spare = torch.empty_like(theta)
    with opts.bar(steps, "sme") as bar:
        for s in range(steps + 1):
            if s in wanted:
                rec(s * dt, theta)
            if s == steps:
                break
            dW = sqrt_dt * torch.randn(
                opts.n_runs, sme.brownian_size, generator=gen, device=problem.device, dtype=dtype
            )
            with torch.no_grad():  # two state buffers, swapped: no fresh (runs, P) allocation per step
                theta, spare = sme.euler_step(theta, dW, dt, out=spare), theta
            bar.update(1)
    return rec.dataset(
        process="sme",
        lr=sme.lr,
        batch_size=sme.batch_size,
        dt=dt,
        sampling=sme.sampling,
        method="euler",
        **opts.attrs(problem),
    )
