"""SGD, its SME and gradient flow from one initial point, side by side in one Dataset (``process`` dim).

The three processes are recorded at the same times ``t = step * lr``: SGD takes ``round(t_end / lr)`` steps, the
SME is integrated with Euler-Maruyama at ``sme_dt = lr / substeps`` (default ``substeps = 1``) and gradient flow
with RK4 at the same step, all from ``problem.init(seed)`` (or ``theta0``). Gradient flow is deterministic: it is
integrated once and repeated along ``run`` so the three processes share one layout.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from ..schema import make_dataset
from ..validation import check_int, check_positive_float
from .flow import gradient_flow
from .minibatch import run_sgd
from .options import RunOptions
from .sme import SGDSDE, run_sme

PROCESSES = ("sgd", "sme", "gradient_flow")


def compare(
    problem,
    lr: float,
    batch_size: int,
    t_end: float,
    n_runs: int = 16,
    seed: int = 0,
    sampling: str = "with-replacement",
    n_save: int = 51,
    substeps: int = 1,
    flow_method: str = "rk4",
    theta0: torch.Tensor | None = None,
    save: str = "metrics",
    metrics: bool | str | list[str] = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> xr.Dataset:
    """Run SGD, the first-order SME and gradient flow from a matched initialisation.

    Parameters
    ----------
    problem : a :class:`~lesde.sgd.problems.Problem`.
    lr, batch_size, sampling : the SGD being approximated (the SME uses the same three).
    t_end : final time; SGD takes ``round(t_end / lr)`` steps.
    n_runs : independent SGD runs and SME paths.
    n_save : about this many recorded times (shared by the three processes).
    substeps : SME / gradient-flow steps per SGD step (``dt = lr / substeps``).
    flow_method : gradient-flow method (:data:`lesde.sgd.FLOW_METHODS`; ``"scipy"`` ignores ``dt``).
    seed, theta0, save, metrics, device, dtype : as in :func:`~lesde.sgd.run_sgd`. The default ``metrics=True``
        records :data:`lesde.sgd.DEFAULT_METRICS` (every NC metric but gnc2, which ``metrics="all"`` adds), in
        batched calls over the recorded times (their share of the run: ``benchmarks/sgd_sde.py --part compare``,
        figures in ``benchmarks/RESULTS.md``).
    progress : one tqdm progress bar over the steps of the three processes.

    Returns
    -------
    xarray.Dataset over ``(process, run, time)``, ``process`` in ``("sgd", "sme", "gradient_flow")``.
    """
    lr = check_positive_float("lr", lr)
    t_end = check_positive_float("t_end", t_end)
    substeps = check_int("substeps", substeps)
    steps = max(1, round(t_end / lr))
    every = max(1, steps // max(1, check_int("n_save", n_save, minimum=2) - 1))
    fine = steps * substeps  # SME and gradient-flow steps
    opts = RunOptions(n_runs, seed, theta0, save, metrics, device, dtype, progress)
    with opts.bar(steps + 2 * fine, "compare") as bar:
        common = opts.keywords(progress=bar)
        bar.set_postfix_str("sgd")
        sgd = run_sgd(problem, lr, batch_size, steps, record_every=every, sampling=sampling, **common)
        bar.set_postfix_str("sme")
        sme = run_sme(
            SGDSDE(problem, lr, batch_size, sampling),
            steps * lr,
            dt=lr / substeps,
            record_every=every * substeps,
            **common,
        )
        bar.set_postfix_str("gradient flow")
        gf = gradient_flow(
            problem,
            steps * lr,
            dt=lr / substeps,
            record_every=every * substeps,
            n_save=len(sgd.time),
            method=flow_method,
            **common | {"n_runs": 1},
        )
    # stacked along process by numpy (xr.concat's alignment machinery cost more than the metrics here); gradient flow
    # is deterministic, integrated once and repeated along run; the times agree up to rounding: SGD's are kept
    parts = (sgd, sme, gf)
    data = {}
    for name in sgd.data_vars:  # Variables, not DataArrays: building one per access costs more than the stacking
        var = sgd.variables[name]
        stacked = np.stack([np.broadcast_to(p.variables[name].values, var.shape) for p in parts])
        data[name] = (("process", *var.dims), stacked)
    coords = {"process": list(PROCESSES), **{name: sgd[name] for name in sgd.coords}}
    common = {k: v for k, v in sgd.attrs.items() if all(k in p.attrs and p.attrs[k] == v for p in parts[1:])}
    for key in ("process", "dt", "method"):
        common.pop(key, None)
    return make_dataset(
        data,
        coords,
        attrs={
            **common,
            "lr": lr,
            "batch_size": int(batch_size),
            "sampling": sampling,
            "substeps": substeps,
            "flow_method": flow_method,
            "sme_dt": lr / substeps,
            "n_runs": opts.n_runs,
            "seed": opts.seed,
        },
    )
