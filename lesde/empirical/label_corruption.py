r"""The LE-SDE paper's label-corruption experiment: how the tail of the elasticity changes with label noise.

For each label-noise rate :math:`p` (a fraction :math:`p` of the training labels replaced by a different class;
:math:`p = (K-1)/K` leaves no information in them), train with batch size 1, track, estimate
:math:`\alpha_t, \beta_t` and report the **tail index** of the integrated elasticity
:math:`A(t) = \int_0^t \alpha`, :math:`B(t) = \int_0^t \beta`:

.. math::

    r = 1 - \operatorname{mean}_{s \in \text{tail}} \frac{\log |A(t_s)|}{\log s} ,

over the last ``tail`` fraction of the windows (``s`` the window's step; the original analysis used the last 10%
of 10,000 iterations). With :math:`\alpha_t \propto t^{-q}`, :math:`\log|A| / \log s \to 1 - q`, so :math:`r` is
the decay exponent of the elasticity: the LE-SDE predicts separation for :math:`r < 1` and none for :math:`r > 1`,
and the paper reports :math:`r` rising with the noise rate. Validation accuracy is
measured on the clean test split.

Decisions: the default estimator is ``form="means"`` (the integrated estimator the original analysis took the
tail index from; ``form="feature"``/``"residual"`` integrate the windowed regression estimates instead). The tail
index is computed per run (from each run's own estimate) and pooled (from the estimate over all runs);
``s`` is the step index (as in the original code), so :math:`r` does not depend on the learning rate's scaling of
time only through the :math:`\log|A|` term.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from ..schema import make_dataset
from ..validation import check_positive_float
from .data import load_dataset
from .estimation import estimate
from .tail_statistics import tail_statistics
from .tracks import Validation, track

RATES = (0.0, 0.2, 0.4, 0.6, 2 / 3, 0.8)
TINY = dict(per_class=24, steps=120, n_runs=2, probes=36, width=16, options={"n_train": 24, "n_test": 12, "size": 16})


def tail_index(est: xr.Dataset, quantity: str = "alpha", tail: float = 0.25) -> float:
    r""":math:`1 - \mathrm{mean}(\log|A(t_s)| / \log s)` over the last ``tail`` fraction of an estimate's windows
    (``A`` = ``{quantity}_integrated``)."""
    tail = check_positive_float("tail", tail)
    if tail > 1:
        raise ValueError(f"tail is a fraction of the windows in (0, 1], got {tail}")
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
) -> xr.Dataset:
    """Run the label-corruption experiment; one Dataset over ``rate`` (module docstring).

    ``tiny=True`` shrinks everything (geomnist 16 x 16, 24 images per class, 120 steps, 2 runs, width 16) to run
    in seconds, for tests and smoke checks.

    Returns
    -------
    xarray.Dataset with ``tail_alpha(rate, run)``, ``tail_beta(rate, run)``, ``tail_alpha_pooled(rate)``,
    ``tail_beta_pooled(rate)``, the mean over runs with its error and interval (``tail_alpha_mean``, ``_se``,
    ``_ci_low``, ``_ci_high``, :func:`~lesde.empirical.tail_statistics`), ``validation_accuracy(rate, run)``,
    ``train_accuracy(rate, run)`` (final, on the corrupted training labels of the probes), ``alpha``, ``beta``, ``alpha_integrated``, ``beta_integrated``
    over ``(rate, step)`` and ``time(step)``.
    """
    if tiny:
        per_class, steps, n_runs, probes, width = (TINY[k] for k in ("per_class", "steps", "n_runs", "probes", "width"))
    options = dict(TINY["options"]) if tiny and dataset == "geomnist" else {}
    rates = [float(p) for p in rates]
    for p in rates:
        if not 0 <= p < 1:
            raise ValueError(f"rates must lie in [0, 1), got {p}")
    cell = dict(dataset=dataset, classes=classes, per_class=per_class, seed=seed, options=options)
    train = dict(width=width, depth=depth, lr=lr, steps=steps, n_runs=n_runs, probes=probes, device=device)
    est = dict(form=form, window=window, weighting=weighting, tail=tail)
    rows = [_one_rate(p, cell, train, est, progress) for p in rates]
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
        tiny=int(tiny),
        net_desc=f"MLP {width}x{depth}, lr {lr}, batch size 1, {steps} steps, {n_runs} runs",
        torch_threads=torch.get_num_threads(),
    )
    return tail_statistics(_experiment_dataset(rows, rates, n_runs, attrs))


def _one_rate(p: float, cell: dict, train: dict, est: dict, progress: bool) -> dict:
    """Train and track at label-noise rate p, estimate (pooled and per run) and take the tail indices."""
    from .nets import mlp

    seed, options = cell["seed"], cell["options"]
    x, y = load_dataset(cell["dataset"], classes=cell["classes"], per_class=cell["per_class"], label_noise=p,
                        seed=seed, **options)  # fmt: skip
    xv, yv = load_dataset(cell["dataset"], classes=cell["classes"], split="test", seed=seed, **options)
    net = mlp(tuple(x.shape[1:]), int(y.max()) + 1, width=train["width"], depth=train["depth"])
    n_runs, tail = train["n_runs"], est["tail"]
    kw = dict(form=est["form"], window=est["window"], weighting=est["weighting"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # per-run estimates have one cluster per step: known
        tr = track(
            net,
            x,
            y,
            lr=train["lr"],
            steps=train["steps"],
            n_runs=n_runs,
            probes=min(train["probes"], len(y)),
            seed=seed,
            validation=Validation(xv, yv, every=train["steps"]),  # step 0 and the last step
            device=train["device"],
            progress=progress,
        )
        pooled = estimate(tr, **kw)
        per_run = [estimate(tr.isel(run=[r]), **kw) for r in range(n_runs)]
    return dict(
        est=pooled,
        tail={q: [tail_index(e, q, tail) for e in per_run] for q in ("alpha", "beta")},
        pooled={q: tail_index(pooled, q, tail) for q in ("alpha", "beta")},
        val=tr["validation_accuracy"].isel(validation_step=-1).values,
        train=tr["accuracy"].isel(step=-1).values,
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
