"""The options every runner of `lesde.sgd` shares, in one small dataclass.

`run_sgd`, `run_sme`, `gradient_flow` and
`compare` take the same tail of keywords (``n_runs``, ``seed``, ``theta0``, ``save``,
``metrics``, ``device``, ``dtype``, ``progress``); each builds one `RunOptions` from them, which checks
them once, draws the shared initial point, makes the recorder and the progress bar, and gives the attrs every
Dataset records. `compare` hands its one ``RunOptions`` to the three processes, so they start
from the same point by construction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from ..validation import as_tensor, check_choice, check_device, check_int, check_seed
from ._record import SAVE_MODES, RunRecorder, progress_bar

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The runners' shared keywords (defaults as `run_sgd` has them)."""

    n_runs: int = 1
    seed: int = 0
    theta0: torch.Tensor | None = None
    save: str = "metrics"
    metrics: bool | str | list[str] = True
    device: str | torch.device | None = None
    dtype: torch.dtype = torch.float64
    progress: Any = True  # a bool, or a tqdm bar the caller shares

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_runs", check_int("n_runs", self.n_runs))
        check_choice("save", self.save, SAVE_MODES)
        if self.dtype not in DTYPES.values():
            raise ValueError(f"dtype={self.dtype} is not supported; accepted: torch.float32, torch.float64")
        object.__setattr__(self, "seed", check_seed("seed", self.seed))
        if self.device is not None:
            object.__setattr__(self, "device", check_device(self.device, self.dtype))
        if self.theta0 is not None:  # complex, NaN, inf and non-numbers refused here, not found as a diverged run
            object.__setattr__(self, "theta0", as_tensor("theta0", self.theta0, self.dtype))

    def check_problem(self, problem) -> None:
        """Refuse what is not a `Problem` (an LE-SDE above all: a model to simulate, not a loss
        to train on)."""
        from ..model import LESDE
        from .problems import Problem

        if isinstance(problem, LESDE):
            raise TypeError(
                "problem is an LESDE, a model of feature dynamics to integrate with lesde.simulate; the SGD runners "
                "train a loss: pass a lesde.sgd.Problem (lesde.sgd.UFM, lesde.sgd.ModuleProblem, lesde.sgd.digits_mlp)"
            )
        if not isinstance(problem, Problem):
            raise TypeError(
                f"problem must be a lesde.sgd.Problem (lesde.sgd.UFM, lesde.sgd.ModuleProblem, "
                f"lesde.sgd.digits_mlp), got {type(problem).__name__}"
            )

    def keywords(self, **changes: Any) -> dict[str, Any]:
        """The options as the runners' keywords (``changes`` replace some), e.g. to hand them to another runner."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | changes

    def start(self, problem) -> tuple[Any, torch.Tensor]:
        """The problem on the options' device and dtype, and the initial point ``(n_runs, P)``: ``theta0`` (shared
        ``(P,)`` or per run) or ``problem.init`` drawn from a CPU generator seeded with ``seed``."""
        self.check_problem(problem)
        problem = (
            problem.to(device=self.device, dtype=self.dtype)
            if self.device is not None
            else problem.to(dtype=self.dtype)
        )
        if self.theta0 is None:
            theta = problem.init(self.n_runs, torch.Generator().manual_seed(self.seed))
        else:
            theta = torch.as_tensor(self.theta0)
            if theta.ndim == 1:
                theta = theta.unsqueeze(0).repeat(self.n_runs, 1)
            if theta.shape != (self.n_runs, problem.num_params):
                raise ValueError(
                    f"theta0 must have shape ({problem.num_params},) or ({self.n_runs}, {problem.num_params}), "
                    f"got {tuple(theta.shape)}"
                )
        return problem, theta.to(device=problem.device, dtype=self.dtype).clone()

    def recorder(self, problem) -> RunRecorder:
        """The recorder of loss, accuracy, NC metrics (and what ``save`` adds)."""
        return RunRecorder(problem, self.save, self.metrics)

    def bar(self, total: int, desc: str):
        """A tqdm bar over ``total`` steps, none, or the caller's shared bar."""
        return progress_bar(self.progress, total, desc)

    def attrs(self, problem) -> dict[str, Any]:
        """The global attrs every runner's Dataset records."""
        return {"seed": self.seed, "device": str(problem.device), "dtype": str(self.dtype)}


def whole_steps(t_end: float, step: float, step_name: str) -> int:
    """The number of whole steps of size ``step`` in [0, t_end]: a run never passes ``t_end`` (one that is not a
    multiple of ``step`` ends at the last whole step before it, up to rounding); a ``t_end`` shorter than one step
    is refused rather than run one step past it."""
    n = math.floor(t_end / step * (1 + 1e-9))  # 1e-9: 0.6 / 0.2 = 2.9999999999999996 is 3 steps
    if n < 1:
        raise ValueError(
            f"t_end={t_end:g} is shorter than one step ({step_name}={step:g}): no step would end by t_end; "
            f"give t_end >= {step_name}"
        )
    return n


__all__ = ["RunOptions", "whole_steps"]
