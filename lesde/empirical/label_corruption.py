r"""The LE-SDE paper's label-corruption experiment: how the tail of the elasticity changes with label noise.

For each label-noise rate $p$ (a fraction $p$ of the training labels replaced by a different class;
$p = (K-1)/K$ leaves no information in them), train with batch size 1, track, estimate
$\alpha_t, \beta_t$ and report the **tail index** of the integrated elasticity
$A(t) = \int_0^t \alpha$, $B(t) = \int_0^t \beta$:

$$ r = 1 - \operatorname{mean}_{s \in \text{tail}} \frac{\log |A(t_s)|}{\log s} , $$

over the last ``tail`` fraction of the windows (``s`` the window's step; the original analysis used the last 10%
of 10,000 iterations). With $\alpha_t \propto t^{-q}$, $\log|A| / \log s \to 1 - q$, so $r$ is
the decay exponent of the elasticity: the LE-SDE predicts separation for $r < 1$ and none for $r > 1$,
and the paper reports $r$ rising with the noise rate. Validation accuracy is
measured on the clean test split.

Every (rate, run) is a cell of an experiment (`lesde.empirical.experiments`): it runs here or on a Dask
cluster, into a resumable store, and its numbers depend on the seed, the rate and the run only (each run seeded
by its key, the probes and the corrupted labels by the experiment's seed).

Decisions: the default estimator is ``form="means"`` (the integrated estimator the original analysis took the
tail index from; ``form="feature"``/``"residual"`` integrate the windowed regression estimates instead). The tail
index is computed per run (from each run's own estimate) and pooled (from the estimate over all runs);
``s`` is the step index (as in the original code), so $r$ does not depend on the learning rate's scaling of
time only through the $\log|A|$ term.
"""

from __future__ import annotations

import functools
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ..schema import make_dataset
from ..validation import check_choice, check_positive_float, check_real
from .estimation import estimate
from .experiments import DatasetLoader, Experiment, experiment_tracks, require_complete, run_experiment
from .nets import mlp
from .tail_statistics import tail_statistics

RATES = (0.0, 0.2, 0.4, 0.6, 2 / 3, 0.8)
TINY = dict(per_class=24, steps=120, n_runs=2, probes=36, width=16, options={"n_train": 24, "n_test": 12, "size": 16})


def tail_index(est: xr.Dataset, quantity: str = "alpha", tail: float = 0.25) -> float:
    r"""$1 - \mathrm{mean}(\log|A(t_s)| / \log s)$ over the last ``tail`` fraction of an estimate's windows
    (``A`` = ``{quantity}_integrated``)."""
    tail = check_positive_float("tail", tail)
    if tail > 1:
        raise ValueError(f"tail is a fraction of the windows in (0, 1], got {tail}")
    quantity = check_choice("quantity", quantity, ("alpha", "beta"))
    if f"{quantity}_integrated" not in est:
        raise ValueError(f"est has no {quantity}_integrated: pass an estimate (lesde.empirical.estimate)")
    A = est[f"{quantity}_integrated"].values
    s = est["step"].values.astype(np.float64)
    n = max(1, int(round(tail * len(s))))
    A, s = A[-n:], s[-n:]
    ok = np.isfinite(A) & (np.abs(A) > 0) & (s > 1)
    if not ok.any():
        return float("nan")
    return float(1 - np.mean(np.log(np.abs(A[ok])) / np.log(s[ok])))


def label_noise_experiment(
    dataset: str = "geomnist",
    rates: Sequence[float] = RATES,
    classes: int = 3,
    per_class: int | None = None,
    width: int = 256,
    depth: int = 2,
    lr: float = 0.005,
    steps: int = 10_000,
    n_runs: int = 4,
    probes: int = 300,
    form: str = "means",
    weighting: str | None = None,
    tail: float = 0.25,
    window: int | None = None,
    seed: int = 0,
    tiny: bool = False,
    progress: bool = True,
    device: str = "cpu",
    dtype: str = "float32",
    store: str | Path | None = None,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    retry_failed: bool = False,
    worker_timeout: float = 60.0,
) -> xr.Dataset:
    """Run the label-corruption experiment; one Dataset over ``rate`` (module docstring).

    Every (rate, run) is a cell of `run_experiment` (seeded by its key: a run's numbers do
    not depend on where it ran), written into ``store`` (a zarr folder holding every cell's track, ~70 MB per cell
    at full size; default: a temporary one, removed at the end) and resumed from it; ``executor``, ``workers``, ``scheduler``, ``retry_failed`` and ``worker_timeout`` are those of
    `run_experiment`. The estimates and tail indices are computed from the store once
    every cell is done. ``tiny=True`` shrinks everything (geomnist 16 x 16, 24 images per class, 120 steps,
    2 runs, width 16) to run in seconds, for tests and smoke checks; ``dtype`` is the training precision
    (``"float32"`` or ``"float64"``).

    Returns
    -------
    xr.Dataset
        xarray.Dataset with ``tail_alpha(rate, run)``, ``tail_beta(rate, run)``, ``tail_alpha_pooled(rate)``,
        ``tail_beta_pooled(rate)``, the mean over runs with its error and interval (``tail_alpha_mean``, ``_se``,
        ``_ci_low``, ``_ci_high``, `tail_statistics`), ``validation_accuracy(rate, run)``,
        ``train_accuracy(rate, run)`` (final, on the corrupted training labels of the probes), ``alpha``, ``beta``, ``alpha_integrated``, ``beta_integrated``
        over ``(rate, step)`` and ``time(step)``.

    Raises
    ------
    ExperimentIncomplete
        When cells failed (the store keeps the others; ``retry_failed=True`` runs them again).
    ExperimentInterrupted
        On Ctrl-C (rerun with the same store to resume).
    """
    if tiny:
        per_class, steps, n_runs, probes, width = (TINY[k] for k in ("per_class", "steps", "n_runs", "probes", "width"))
    options = dict(TINY["options"]) if tiny and dataset == "geomnist" else {}
    if isinstance(rates, (str, bytes)) or not hasattr(rates, "__iter__"):
        raise TypeError(f"rates must be a sequence of label-noise rates in [0, 1), got {rates!r}")
    rates = [check_real("rates", p) for p in rates]
    if not rates:
        raise ValueError("rates is empty; give at least one label-noise rate in [0, 1)")
    for i, p in enumerate(rates):
        if not 0 <= p < 1:
            raise ValueError(f"rates must lie in [0, 1), got {p}")
        if p in rates[:i]:
            raise ValueError(f"rates lists {p:g} twice; give each rate once (a rate's runs are repeated by n_runs)")
    exp = Experiment(
        data=DatasetLoader(dataset, classes=classes, per_class=per_class, seed=seed, validation=True, options=options),
        net=functools.partial(mlp, width=width, depth=depth),
        lr=lr,
        steps=steps,
        settings=[{"label_noise": p} for p in rates],
        n_runs=n_runs,
        probes=probes,
        validation_every=steps,  # step 0 and the last step
        dtype=dtype,
        seed=seed,
    )
    cells = dict(executor=executor, workers=workers, scheduler=scheduler, device=device, retry_failed=retry_failed,
                 worker_timeout=worker_timeout, progress=progress)  # fmt: skip
    est = dict(form=form, window=window, weighting=weighting, tail=tail)
    with _store_path(store) as path:
        require_complete(run_experiment(exp, path, **cells))
        rows = [_one_rate(experiment_tracks(path, i), est) for i in range(len(rates))]
    attrs = dict(
        source="label_noise_experiment",
        dataset=dataset,
        num_classes=classes,
        lr=lr,
        steps=steps,
        n_runs=n_runs,
        probes=probes,
        form=form,
        weighting=str(rows[0]["est"].attrs.get("weighting")),
        tail=tail,
        seed=seed,
        seeding=rows[0]["seeding"],
        dtype=dtype,
        tiny=int(tiny),
        net_desc=f"MLP {width}x{depth}, lr {lr}, batch size 1, {steps} steps, {n_runs} runs",
        torch_threads=torch.get_num_threads(),
    )
    return tail_statistics(_experiment_dataset(rows, rates, n_runs, attrs))


@contextmanager
def _store_path(store: str | Path | None) -> Iterator[Path]:
    """``store``, or a temporary store removed when the block ends."""
    if store is not None:
        yield Path(store)
        return
    with tempfile.TemporaryDirectory(prefix="lesde-label-noise-") as tmp:
        yield Path(tmp) / "experiment.zarr"


def _one_rate(tr: xr.Dataset, est: dict) -> dict:
    """The estimates (pooled and per run), tail indices and accuracies of one rate's runs."""
    kw = dict(form=est["form"], window=est["window"], weighting=est["weighting"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # per-run estimates have one cluster per step: known
        pooled = estimate(tr, **kw)
        per_run = [estimate(tr.isel(run=[r]), **kw) for r in range(tr.sizes["run"])]
    tail = est["tail"]
    return dict(
        est=pooled,
        tail={q: [tail_index(e, q, tail) for e in per_run] for q in ("alpha", "beta")},
        pooled={q: tail_index(pooled, q, tail) for q in ("alpha", "beta")},
        val=tr["validation_accuracy"].isel(validation_step=-1).values,
        train=tr["accuracy"].isel(step=-1).values,
        seeding=tr.attrs["seeding"],
    )


def _experiment_dataset(rows: list[dict], rates: list[float], n_runs: int, attrs: dict) -> xr.Dataset:
    """One Dataset over ``rate`` from the per-rate results."""
    est0 = rows[0]["est"]
    data = {
        "tail_alpha": (("rate", "run"), np.array([r["tail"]["alpha"] for r in rows])),
        "tail_beta": (("rate", "run"), np.array([r["tail"]["beta"] for r in rows])),
        "tail_alpha_pooled": ("rate", np.array([r["pooled"]["alpha"] for r in rows])),
        "tail_beta_pooled": ("rate", np.array([r["pooled"]["beta"] for r in rows])),
        "validation_accuracy": (("rate", "run"), np.array([r["val"] for r in rows])),
        "train_accuracy": (("rate", "run"), np.array([r["train"] for r in rows])),
    }
    for q in ("alpha", "beta", "alpha_integrated", "beta_integrated"):
        data[q] = (("rate", "step"), np.stack([r["est"][q].values for r in rows]))
    coords = {
        "rate": rates,
        "run": np.arange(n_runs),
        "step": est0["step"].values,
        "time": ("step", est0["time"].values),
    }
    return make_dataset(data, coords, time="training", attrs=attrs)


__all__ = ["label_noise_experiment", "tail_index", "RATES"]
