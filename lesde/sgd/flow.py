"""Gradient flow, the deterministic (B -> infinity, or lr -> 0) limit of SGD:
$\\dot\\theta = -\\nabla L(\\theta)$.

Methods (registry `FLOW_METHODS`): ``"euler"`` (gradient descent with step dt), ``"rk4"`` (classical
Runge-Kutta, batched over runs in torch; the default) and ``"scipy"`` (``scipy.integrate.solve_ivp`` with
``LSODA``, ``rtol=atol=1e-10``, for stiff problems or reference solutions; runs are stacked into one system).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from ..validation import check_choice, check_positive_float
from ._record import RunRecorder, record_steps
from .options import RunOptions, whole_steps


def _euler(problem, theta: torch.Tensor, dt: float) -> torch.Tensor:
    return theta - dt * problem.grad(theta)


def _rk4(problem, theta: torch.Tensor, dt: float) -> torch.Tensor:
    k1 = -problem.grad(theta)
    k2 = -problem.grad(theta + 0.5 * dt * k1)
    k3 = -problem.grad(theta + 0.5 * dt * k2)
    k4 = -problem.grad(theta + dt * k3)
    return theta + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


#: method name -> one fixed step theta (R, P) -> theta (R, P); "scipy" is handled separately (adaptive)
FLOW_METHODS = {"euler": _euler, "rk4": _rk4, "scipy": None}


def gradient_flow(
    problem,
    t_end: float,
    dt: float = 0.05,
    n_runs: int = 1,
    seed: int = 0,
    record_every: int | Sequence[int] | None = None,
    n_save: int = 101,
    method: str = "rk4",
    theta0: torch.Tensor | None = None,
    save: str = "metrics",
    metrics: bool | str | list[str] = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> xr.Dataset:
    """Integrate $\\dot\\theta = -\\nabla L(\\theta)$ from the problem's initial point.

    Parameters
    ----------
    problem
        a `Problem`.
    t_end
        final time: the run takes the whole ``dt`` steps that end by ``t_end`` (``t_end < dt`` is refused).
    dt
        step of the fixed-step methods; for ``"scipy"`` the spacing of the output grid.
    n_runs
        copies of the (deterministic) solution, so the Dataset lines up with SGD runs.
    seed
        the initial point, as in `run_sgd`.
    theta0
        Described with `seed` above.
    record_every : record every record_every steps (default: about n_save records), or at the step
        indices ``record_every`` lists.
    n_save : record every record_every steps (default: about n_save records), or at the step
        Described with `record_every` above.
    method
        ``"rk4"``, ``"euler"`` or ``"scipy"``.
    save
        as in `run_sgd`.
    metrics
        Described with `save` above.
    device
        Described with `save` above.
    dtype
        Described with `save` above.
    progress
        Described with `save` above.

    Returns
    -------
    xr.Dataset
        xarray.Dataset over ``(run, time)`` with the same variables as `run_sgd`.
    """
    t_end = check_positive_float("t_end", t_end)
    dt = check_positive_float("dt", dt)
    check_choice("method", method, FLOW_METHODS)
    opts = RunOptions(n_runs, seed, theta0, save, metrics, device, dtype, progress)
    steps = whole_steps(t_end, dt, "dt")
    problem, theta = opts.start(problem)
    rec = opts.recorder(problem)
    wanted = record_steps(steps, record_every, n_save)
    with opts.bar(steps, f"gradient flow [{method}]") as bar:
        if method == "scipy":
            _scipy_flow(problem, theta, [s * dt for s in wanted], rec)
            bar.update(steps)
        else:
            step = FLOW_METHODS[method]
            wanted_set = set(wanted)
            for s in range(steps + 1):
                if s in wanted_set:
                    rec(s * dt, theta)
                if s == steps:
                    break
                with torch.no_grad():
                    theta = step(problem, theta, dt)
                bar.update(1)
    return rec.dataset(process="gradient_flow", dt=dt, method=method, **opts.attrs(problem))


def _scipy_flow(problem, theta: torch.Tensor, times: list[float], rec: RunRecorder) -> None:
    from scipy.integrate import solve_ivp

    shape = theta.shape

    def rhs(t, y):
        th = torch.as_tensor(y, dtype=theta.dtype, device=theta.device).view(shape)
        with torch.no_grad():
            return (-problem.grad(th)).reshape(-1).cpu().numpy()

    sol = solve_ivp(
        rhs,
        (0.0, times[-1]),
        theta.reshape(-1).cpu().numpy(),
        method="LSODA",
        t_eval=np.asarray(times),
        rtol=1e-10,
        atol=1e-10,
    )
    if not sol.success:
        raise RuntimeError(f"scipy solve_ivp failed: {sol.message}")
    for j, t in enumerate(times):
        rec(t, torch.as_tensor(sol.y[:, j], dtype=theta.dtype, device=theta.device).view(shape))
