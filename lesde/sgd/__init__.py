"""SGD as an SDE: problems, discrete SGD, the stochastic modified equation, gradient flow, and their comparison.

The stage follows the data: a *problem* (`ModuleProblem`, or the unconstrained-features model `UFM`)
defines the loss over a flat parameter batch ``theta (runs, P)``; `run_sgd`, `run_sme` (with
`SGDSDE`) and
`gradient_flow` move ``theta`` in time ``t = step * lr`` and record loss, accuracy and NC metrics into
``(run, time)`` Datasets (their shared keywords checked once by `RunOptions`); `compare` stacks the three along ``process`` (`lesde.plots.plot_compare`
draws them).
"""

from ._record import DEFAULT_METRICS
from .compare import compare
from .flow import FLOW_METHODS, gradient_flow
from .minibatch import SAMPLERS, run_sgd
from .options import RunOptions
from .problems import LOSSES, ModuleProblem, Problem, digits_mlp
from .sme import SGDSDE, run_sme
from .ufm_problem import UFM

__all__ = [
    "DEFAULT_METRICS",
    "FLOW_METHODS",
    "LOSSES",
    "SAMPLERS",
    "SGDSDE",
    "RunOptions",
    "UFM",
    "ModuleProblem",
    "Problem",
    "compare",
    "digits_mlp",
    "gradient_flow",
    "run_sgd",
    "run_sme",
]
