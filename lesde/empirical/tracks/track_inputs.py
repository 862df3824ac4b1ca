"""What every producer of tracks shares about its inputs: the training set checked, the probes chosen, the
per-run seeds, initialisations and sample order.

Decisions: with ``init="reinit"`` (default) each run's network is a deep copy of ``net`` re-initialised
(``reset_parameters`` of every submodule) under its own seed, drawn with the sample order from
``torch.Generator().manual_seed(seed)``; `init_nets` reproduces them for reference loops. ``init="keep"``
starts every run from ``net``'s weights (the runs then differ only by their sample order). Samples are drawn
uniformly with replacement. Probes given as an int are a class-stratified random subset of that size, drawn from
its own generator (``seed + 7919``) so the probes do not change with the number of runs or steps.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ...validation import check_choice, check_int

INITS = ("reinit", "keep")
#: independent runs a track (and lesde estimate) trains when n_runs is not given
DEFAULT_RUNS = 8


def run_seeds(runs: int, seed: int) -> tuple[list[int], torch.Generator]:
    """Per-run initialisation seeds, and the generator (advanced past them) that then draws the sample order."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, 2**62, (runs,), generator=g).tolist(), g


def init_nets(net: nn.Module, runs: int, seed: int = 0, init: str = "reinit") -> list[nn.Module]:
    """``runs`` deep copies of ``net``; with ``init="reinit"`` copy ``r`` is re-initialised under
    ``run_seeds(runs, seed)[0][r]``, with ``"keep"`` every copy keeps ``net``'s weights.

    The global RNG state is restored afterwards (``torch.random.fork_rng``), so tracking has no side effects.
    """
    init = check_choice("init", init, INITS)
    seeds, _ = run_seeds(runs, seed)
    nets = []
    for s in seeds:
        copy_ = copy.deepcopy(net)
        if init == "reinit":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                for m in copy_.modules():
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()
        nets.append(copy_)
    return nets


def sample_order(num_samples: int, runs: int, steps: int, seed: int = 0) -> torch.Tensor:
    """(runs, steps) indices drawn uniformly with replacement: ``I_s`` of each run."""
    _, g = run_seeds(runs, seed)
    return torch.randint(0, num_samples, (runs, steps), generator=g)


def check_data(inputs, labels, name: str = "inputs") -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs as a finite float tensor (N, ...) and labels as int64 (N,) in 0..K-1 with no empty class."""
    x = torch.as_tensor(inputs)
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise TypeError(f"{name} must be a real-valued tensor or array, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{name} must be (N, ...) with one row per sample, got shape {tuple(x.shape)}")
    if len(x) == 0 or x[0].numel() == 0:
        raise ValueError(f"{name} hold no samples (shape {tuple(x.shape)}); give at least one sample per class")
    if x.is_floating_point():
        bad = ~torch.isfinite(x.reshape(len(x), -1)).all(1)
        if bad.any():
            raise ValueError(
                f"{name} contain NaN or inf in {int(bad.sum())} samples (first: sample {int(bad.nonzero()[0])}); "
                "every input must be finite"
            )
    y = torch.as_tensor(labels)
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise TypeError(
            f"labels must be integers (class indices 0..K-1), got dtype {y.dtype}; cast whole-number labels "
            "with .long()"
        )
    y = y.long()
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"labels must be (N,) with N = len({name}) = {len(x)}, got shape {tuple(y.shape)}")
    if len(y) == 0:
        raise ValueError(f"{name} hold no samples")
    if y.min() < 0:
        raise ValueError(f"labels must be class indices >= 0, got {int(y.min())}")
    counts = torch.bincount(y)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        raise ValueError(
            f"classes {empty} have no samples: labels must cover 0..{len(counts) - 1} (relabel them, e.g. with "
            "np.unique(labels, return_inverse=True))"
        )
    return x, y


def select_probes(
    labels: torch.Tensor, probes: int | Sequence[int] | torch.Tensor | None, seed: int = 0
) -> torch.Tensor:
    """Probe indices sorted by (label, index). ``None``: all; int ``P``: class-stratified random subset;
    otherwise distinct integer indices."""
    labels = labels.cpu()
    N = len(labels)
    if probes is None:
        idx = torch.arange(N)
    elif isinstance(probes, (int, np.integer)) and not isinstance(probes, bool):
        P = check_int("probes", int(probes))
        if P > N:
            raise ValueError(f"probes={P} exceeds the {N} training samples")
        counts = torch.bincount(labels).double()
        share = counts * P / N
        take = share.floor().long().clamp(min=1)
        # hand out what flooring left over to the largest remainders, so the total is exactly P
        for k in torch.argsort(share - share.floor(), descending=True)[: max(0, P - int(take.sum()))]:
            take[k] += 1
        take = torch.minimum(take, counts.long())
        g = torch.Generator().manual_seed(int(seed) + 7919)
        idx = torch.cat(
            [
                torch.nonzero(labels == k).flatten()[torch.randperm(int(counts[k]), generator=g)[: int(take[k])]]
                for k in range(len(counts))
            ]
        )
    else:
        if isinstance(probes, (bool, float, str)):
            raise TypeError(f"probes must be None, an int or integer indices, got {probes!r}")
        arr = np.asarray(probes.cpu() if torch.is_tensor(probes) else probes)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"probes must be None, an int or integer indices, got an array of dtype {arr.dtype}")
        idx = torch.as_tensor(arr, dtype=torch.long).flatten()
        if idx.numel() == 0 or idx.min() < 0 or idx.max() >= N:
            raise ValueError(f"probes must be indices in [0, {N}), got {probes!r}")
        if len(torch.unique(idx)) != len(idx):
            raise ValueError("probes lists a sample twice; give distinct indices")
    order = torch.argsort(labels[idx] * N + idx)  # by label, then by index
    return idx[order]


__all__ = ["DEFAULT_RUNS", "INITS", "run_seeds", "init_nets", "sample_order", "check_data", "select_probes"]
