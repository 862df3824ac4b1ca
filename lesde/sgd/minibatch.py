"""Discrete minibatch SGD on a problem, many independent runs in one batched update.

One step of run r, with a minibatch $\\mathcal B_r$ of size B:

$$ \\theta_r \\leftarrow \\theta_r - \\eta\\Big(\\frac1B\\sum_{i\\in\\mathcal B_r}\\nabla\\ell_i(\\theta_r)
+ \\nabla R(\\theta_r)\\Big) = \\theta_r - \\eta\\Big(\\sum_i w_{ri}\\nabla\\ell_i(\\theta_r) + \\nabla R\\Big),
\\qquad w_{ri} = \\frac{\\#\\{i \\in \\mathcal B_r\\}}{B}, $$

so all runs advance with one ``problem.explicit_step(theta (R, P), -lr * w (R, N), lr)`` call; time is ``t = step * lr``.

Sampling (a registry, `SAMPLERS`):

- ``"with-replacement"``: B indices i.i.d. uniform per step; the minibatch gradient has covariance
  $\\Sigma/B$ with $\\Sigma = \\frac1N\\sum_i (g_i-\\bar g)(g_i-\\bar g)^T$.
- ``"shuffle"``: each run walks through its own random permutation of the N samples in consecutive batches of B;
  a new permutation is drawn when fewer than B unvisited samples are left (the remainder ``N mod B`` of each epoch
  is dropped, as ``DataLoader(drop_last=True)`` does). Marginally each batch is a uniform draw without
  replacement, covariance $\\frac{N-B}{N-1}\\Sigma/B$.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from ..validation import check_choice, check_int, check_positive_float
from ._record import record_steps
from .options import RunOptions


class _WithReplacement:
    def __init__(self, R: int, N: int, B: int, generator: torch.Generator, device: torch.device) -> None:
        self.R, self.N, self.B, self.gen, self.device = R, N, B, generator, device

    def indices(self) -> torch.Tensor:
        return torch.randint(self.N, (self.R, self.B), generator=self.gen, device=self.device)  # (R, B)


class _Shuffle(_WithReplacement):
    def __init__(self, R: int, N: int, B: int, generator: torch.Generator, device: torch.device) -> None:
        super().__init__(R, N, B, generator, device)
        self.pos = N  # forces a fresh permutation at the first step

    def indices(self) -> torch.Tensor:
        if self.pos + self.B > self.N:
            # independent permutations per run: argsort of uniforms, one call for all runs
            self.perm = torch.rand(self.R, self.N, generator=self.gen, device=self.device).argsort(-1)  # (R, N)
            self.pos = 0
        idx = self.perm[:, self.pos : self.pos + self.B]
        self.pos += self.B
        return idx


#: sampling name -> minibatch index sampler
SAMPLERS = {"with-replacement": _WithReplacement, "shuffle": _Shuffle}


def batch_weights(idx: torch.Tensor, N: int, dtype: torch.dtype) -> torch.Tensor:
    """Minibatch indices ``(R, B)`` -> weights ``(R, N)``: multiplicity / B."""
    w = torch.zeros(idx.shape[0], N, dtype=dtype, device=idx.device)
    return w.scatter_add_(1, idx, torch.full(idx.shape, 1.0 / idx.shape[1], dtype=dtype, device=idx.device))


def run_sgd(
    problem,
    lr: float,
    batch_size: int,
    steps: int,
    n_runs: int = 1,
    seed: int = 0,
    record_every: int | Sequence[int] | None = None,
    sampling: str = "with-replacement",
    theta0: torch.Tensor | None = None,
    save: str = "metrics",
    metrics: bool | str | list[str] = True,
    record_batches: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> xr.Dataset:
    """Minibatch SGD, ``n_runs`` independent runs in parallel.

    Parameters
    ----------
    problem
        a `Problem` (`UFM`, `ModuleProblem`).
    lr
        learning rate $\\eta$; recorded time is ``step * lr``.
    batch_size
        B, 1 <= B (<= N for ``"shuffle"``).
    steps
        number of SGD steps.
    n_runs
        independent runs (independent minibatch streams, shared initial point).
    seed
        seeds the initial point (CPU generator) and the minibatch stream (generator on the problem's device).
    record_every : record every this many steps (default: about 100 records; the last step is always recorded),
        or the step indices to record.
    sampling
        ``"with-replacement"`` or ``"shuffle"`` (see the module docstring).
    theta0
        optional initial point, ``(P,)`` or ``(n_runs, P)``.
    save
        ``"metrics"`` (loss, accuracy, NC metrics) or ``"full"`` (also features, classifier, bias).
    metrics : NC metrics (lesde.metrics.nc_metrics) at each record: True (`lesde.sgd.DEFAULT_METRICS`:
        all but gnc2), ``"all"``, False, or a list of names (aliases such as ``"nc2"`` allowed). They are computed
        in batched calls over the records (``lesde.sgd._record``).
    record_batches
        also store ``batch_counts(run, step, sample)``, how often each sample was in each minibatch.
    device
        where and in which precision to run (float64 by default).
    dtype
        Described with `device` above.
    progress
        show a tqdm progress bar over steps.

    Returns
    -------
    xr.Dataset
        xarray.Dataset over ``(run, time)``: ``loss``, ``accuracy``, NC metrics (and what ``save`` adds). A run whose
        parameters become NaN/inf is masked (NaN from then on; the ``n_diverged`` attr counts them, with a
        ``UserWarning``); the other runs are kept.

    Examples
    --------
    >>> from lesde.sgd import run_sgd
    >>> from lesde.sgd import UFM
    >>> ds = run_sgd(UFM(3, 4, 5, loss="mse"), lr=0.1, batch_size=2, steps=20, n_runs=4, metrics=False)
    >>> ds.loss.dims
    ('run', 'time')
    """
    lr = check_positive_float("lr", lr)
    B = check_int("batch_size", batch_size)
    steps = check_int("steps", steps, minimum=0)
    opts = RunOptions(n_runs, seed, theta0, save, metrics, device, dtype, progress)
    sampler_cls = SAMPLERS[check_choice("sampling", sampling, SAMPLERS)]
    problem, theta = opts.start(problem)
    N = problem.num_samples
    if sampling == "shuffle" and B > N:
        raise ValueError(f"batch_size={B} must be <= the number of samples ({N}) with sampling='shuffle'")
    gen = torch.Generator(device=problem.device).manual_seed(seed + 1)
    sampler = sampler_cls(opts.n_runs, N, B, gen, problem.device)
    rec = opts.recorder(problem)
    wanted = set(record_steps(steps, record_every))
    counts = []
    spare = torch.empty_like(theta)
    with opts.bar(steps, "sgd") as bar:
        for s in range(steps + 1):  # time is sequential; all runs advance together
            if s in wanted:
                rec(s * lr, theta)
            if s == steps:
                break
            w = batch_weights(sampler.indices(), N, theta.dtype)  # (R, N)
            if record_batches:
                counts.append((w * B).round().to(torch.int32).cpu())
            with torch.no_grad():
                # theta - lr (sum_i w_i g_i + grad R), into the spare of two swapped state buffers
                theta, spare = problem.explicit_step(theta, -lr * w, lr, out=spare), theta
            bar.update(1)
    extra, coords = {}, {}
    if record_batches and counts:
        # minibatch of step s moves the parameters from time s * lr to (s + 1) * lr
        extra["batch_counts"] = (("run", "step", "sample"), torch.stack(counts, 1).numpy())
        coords["step"] = np.arange(steps)
    return rec.dataset(
        extra=extra,
        coords=coords,
        process="sgd",
        lr=lr,
        batch_size=B,
        steps=steps,
        sampling=sampling,
        **opts.attrs(problem),
    )
