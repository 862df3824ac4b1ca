"""SGD, its SME and gradient flow from one initial point, side by side in one Dataset (``process`` dim).

The three processes are recorded at the same times ``t = step * lr``: SGD takes the whole steps that end by
``t_end`` (``floor(t_end / lr)``: never past ``t_end``), the SME is integrated with Euler-Maruyama at
``sme_dt = lr / substeps``, all from ``problem.init(seed)`` (or ``theta0``). The default ``substeps = 8`` (`lesde.sgd.sme.SME_SUBSTEPS`): at ``substeps = 1`` Euler-Maruyama
is SGD with Gaussian noise, whose weak error against SGD is O(lr^2), so the comparison would not show the SME's own
O(lr) error (`lesde.sgd.sme`). Gradient flow takes one step per SGD step by default (RK4: its O(lr^4) error is
far below the SME's O(lr), and eight times as many steps would dominate the run), and ``substeps`` steps when
``substeps`` is given. It is deterministic: integrated once and repeated along ``run`` so the three processes share
one layout.

``n_save`` recorded times are exactly ``n_save``: the recorded steps are ``round(linspace(0, steps, n_save))``
(spacings differ by at most one step); with more than ``steps + 1`` asked for, every step is recorded.

A run that diverges (NaN/inf parameters) is masked in its own process and counted in ``n_diverged(process)``,
with a ``UserWarning``; the other runs and the other processes are kept (`lesde.sgd._record`).
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from ..schema import make_dataset
from ..validation import check_int, check_positive_float
from ._record import even_steps
from .flow import gradient_flow
from .minibatch import run_sgd
from .options import RunOptions, whole_steps
from .sme import SGDSDE, SME_SUBSTEPS, run_sme

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
    substeps: int | None = None,
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
    problem
        a `Problem`.
    lr
        the SGD being approximated (the SME uses the same three).
    batch_size
        Described with `lr` above.
    sampling
        Described with `lr` above.
    t_end : final time; SGD takes the whole steps floor(t_end / lr) that end by t_end (t_end < lr
        is refused).
    n_runs
        independent SGD runs and SME paths.
    n_save : the number of recorded times (shared by the three processes): exactly n_save, at the steps
        ``round(linspace(0, steps, n_save))``, or every step when ``n_save > steps + 1``.
    substeps : SME steps per SGD step, sme_dt = lr / substeps; default `SME_SUBSTEPS`
        (8). ``substeps=1`` is Gaussian-noise SGD (module docstring). Given, it sets the gradient-flow step too
        (default: one step per SGD step).
    flow_method
        gradient-flow method (`lesde.sgd.FLOW_METHODS`; ``"scipy"`` ignores ``dt``).
    seed : as in `run_sgd`. The default metrics=True
        records `lesde.sgd.DEFAULT_METRICS` (every NC metric but gnc2, which ``metrics="all"`` adds), in
        batched calls over the recorded times (their share of the run: ``benchmarks/sgd_sde.py --part compare``,
        figures in ``benchmarks/RESULTS.md``).
    theta0 : as in `run_sgd`. The default metrics=True
        Described with `seed` above.
    save : as in `run_sgd`. The default metrics=True
        Described with `seed` above.
    metrics : as in `run_sgd`. The default metrics=True
        Described with `seed` above.
    device : as in `run_sgd`. The default metrics=True
        Described with `seed` above.
    dtype : as in `run_sgd`. The default metrics=True
        Described with `seed` above.
    progress
        one tqdm progress bar over the steps of the three processes.

    Returns
    -------
    xr.Dataset
        xarray.Dataset over ``(process, run, time)``, ``process`` in ``("sgd", "sme", "gradient_flow")``, with
        ``n_diverged(process)`` (runs masked as NaN after their parameters became NaN/inf) and the attrs ``sme_dt``,
        ``substeps`` and ``n_save`` (the number of recorded times).
    """
    lr = check_positive_float("lr", lr)
    t_end = check_positive_float("t_end", t_end)
    flow_substeps = 1 if substeps is None else check_int("substeps", substeps)
    substeps = SME_SUBSTEPS if substeps is None else flow_substeps
    steps = whole_steps(t_end, lr, "lr")
    wanted = even_steps(steps, check_int("n_save", n_save, minimum=2))
    opts = RunOptions(n_runs, seed, theta0, save, metrics, device, dtype, progress)
    opts.check_problem(problem)
    with opts.bar(steps * (1 + substeps + flow_substeps), "compare") as bar:
        common = opts.keywords(progress=bar)
        bar.set_postfix_str("sgd")
        sgd = run_sgd(problem, lr, batch_size, steps, record_every=wanted, sampling=sampling, **common)
        bar.set_postfix_str("sme")
        sme_steps = [s * substeps for s in wanted]  # the same times in SME steps
        sme = run_sme(
            SGDSDE(problem, lr, batch_size, sampling), steps * lr, dt=lr / substeps, record_every=sme_steps, **common
        )
        bar.set_postfix_str("gradient flow")
        # deterministic: one run repeated along run, unless each run starts from its own theta0
        per_run = opts.theta0 is not None and torch.as_tensor(opts.theta0).ndim == 2
        flow_kw = common if per_run else common | {"n_runs": 1}
        flow_steps = [s * flow_substeps for s in wanted]
        gf = gradient_flow(
            problem, steps * lr, dt=lr / flow_substeps, record_every=flow_steps, method=flow_method, **flow_kw
        )
    return _stack((sgd, sme, gf), lr, batch_size, sampling, substeps, flow_method, opts)


def _stack(parts, lr, batch_size, sampling, substeps, flow_method, opts) -> xr.Dataset:
    """The three processes along ``process``, stacked by numpy (xr.concat's alignment machinery cost more than
    the metrics here); gradient flow, integrated once, repeated along run; the times agree up to rounding: SGD's
    are kept."""
    sgd = parts[0]
    data = {}
    for name in sgd.data_vars:  # Variables, not DataArrays: building one per access costs more than the stacking
        var = sgd.variables[name]
        stacked = np.stack([np.broadcast_to(p.variables[name].values, var.shape) for p in parts])
        data[name] = (("process", *var.dims), stacked)
    data["n_diverged"] = (("process",), np.array([int(p.attrs.get("n_diverged", 0)) for p in parts]))
    coords = {"process": list(PROCESSES), **{name: sgd[name] for name in sgd.coords}}
    common = {k: v for k, v in sgd.attrs.items() if all(k in p.attrs and p.attrs[k] == v for p in parts[1:])}
    for key in ("process", "dt", "method", "n_diverged"):
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
            "flow_dt": parts[2].attrs["dt"],
            "sme_dt": lr / substeps,
            "n_save": sgd.sizes["time"],
            "n_runs": opts.n_runs,
            "seed": opts.seed,
        },
    )
