# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Tutorial 2: the elasticity E(t) of a real network, and imitation
#
# The LE-SDE's drift is set by the elasticity matrix $E(t)$: how much a step of SGD on a sample of class $l$
# moves the features of a sample of class $k$ ($\alpha_t$ on the diagonal, $\beta_t$ off it). This tutorial
# measures it on a real network trained with batch size 1, then drives an LE-SDE with the estimate from the
# network's own initial class means and compares the trajectories.
#
# 1. [`load_dataset`][lesde.empirical.load_dataset] and [`mlp`][lesde.empirical.mlp]: three classes of
#    scikit-learn's 8x8 digits and a two-layer MLP (needs the `data` extra: `pip install -e ".[data]"`);
# 2. [`track`][lesde.empirical.track]: SGD with batch size 1, recording the logits of a fixed set of probes
#    after every step, and which sample each step trained on;
# 3. [`estimate`][lesde.empirical.estimate]: the regression of every probe's increment on the step's
#    regressor, pooled over windows of steps, probes and runs, with run-clustered standard errors, in both
#    weightings (the least-squares drift and the mean per-step coefficient);
# 4. [`fit`][lesde.empirical.fit]: power laws $a\,(t_0 + t)^{-p}$ for $\alpha_t$ and $\beta_t$;
# 5. [`imitate`][lesde.empirical.imitate]: the LE-SDE driven by that $E(t)$.
#
# The command line does steps 1-4 with `lesde estimate --dataset digits --classes 3 --net mlp ...` and step 5
# with `lesde imitate est.nc --out imit.nc`. `LESDE_TUTORIAL_TINY=1` runs a seconds-long version.

# %%
import os
from pathlib import Path

import numpy as np

import lesde.empirical as emp
from lesde.plots import plot_elasticity, plot_imitation, save_figure

TINY = os.environ.get("LESDE_TUTORIAL_TINY") == "1"
OUT = Path(os.environ.get("LESDE_TUTORIAL_OUT", "."))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Track a network trained with batch size 1
#
# Each of the `n_runs` runs trains a fresh copy of the network (`init="reinit"`) with its own sample order;
# the features are the logits. Time is $t = \text{step} \times \text{lr}$, as in the LE-SDE.

# %%
x, y = emp.load_dataset("digits", classes=3)
net = emp.mlp(x.shape[1:], 3, width=64 if TINY else 256)
track = emp.track(
    net,
    x,
    y,
    lr=0.02,
    steps=60 if TINY else 3000,
    n_runs=2 if TINY else 4,
    probes=30 if TINY else 150,
    seed=0,
    progress=not TINY,
)
acc = track["accuracy"]
print(f"probe accuracy {float(acc.isel(step=0).mean()):.2f} -> {float(acc.isel(step=-1).mean()):.2f}")

# %% [markdown]
# ## Estimate and fit E(t)
#
# `form="feature"` regresses the increment $\Delta_i = f_s(x_i) - f_{s-1}(x_i)$ on
# $v = \text{lr}\, f_{s-1}(x_{I_s})$, the identity-transform drift of the sample the step trained on. Probes
# of the step's class estimate $\alpha_t$, the others $\beta_t$. The two weightings answer different
# questions and on real networks they differ: `increment` (the default) is the least-squares drift, what
# reproduces the summed increments and what imitation needs; `step` is the typical step. Both are in the
# result (`alpha_by_weighting`).

# %%
est = emp.estimate(track, form="feature", window=10 if TINY else None)
est.attrs.update(dataset="digits", net="mlp")  # for the figure titles (lesde estimate records them itself)
fit = emp.fit(est, model="power")
print(fit.summary())
for w in ("increment", "step"):
    a = est.alpha_by_weighting.sel(weighting=w)
    b = est.beta_by_weighting.sel(weighting=w)
    print(f"{w:>9}: median alpha {float(a.median()):+.4f}, median beta {float(b.median()):+.4f}")
save_figure(plot_elasticity(est, fit), OUT / "elasticity.png")

# %% [markdown]
# ![alpha(t) and beta(t) estimated from the digits MLP with 95% run-clustered intervals and the power-law fit](../figures/elasticity.png)
#
# The estimate is largest early, while the logits are still near zero: a cross-entropy step moves the
# logits by $O(\text{lr})$ whatever their size, and a drift of the form $E\,f$ can only express that as a
# large $E$ times a small feature. Intervals are clustered by run: the steps of one run are not independent.
# At full size (4 runs of 3,000 steps) the medians over windows are $\alpha = 0.087$, $\beta = 0.062$ in the
# increment weighting and $\alpha = 0.20$, $\beta = 0.15$ in the step weighting: the typical step moves the
# features more than the least-squares drift says, because the large early steps are few.

# %% [markdown]
# ## Imitate the network with the LE-SDE
#
# The LE-SDE starts from each run's initial class means and is driven by the tabulated estimate (the
# default; `fit` drives it with the fitted power laws) with the residual noise scale $\hat\sigma$.

# %%
imit = emp.imitate(track, est, paths_per_run=2, max_times=41 if TINY else 101, seed=0)
err = imit["relative_error_median"]
print(f"median relative error of the class means: first half {imit.attrs['median_relative_error_first_half']:.3g}")
save_figure(plot_imitation(imit), OUT / "imitation.png")

# %% [markdown]
# ![Class-mean trajectories of the network and of the LE-SDE driven by its estimated E(t)](../figures/imitation.png)
#
# The LE-SDE does not imitate the network here, and the package says so (a warning when the median relative
# error passes `warn_above`). Its drift is linear in the state: where the network's class means saturate as
# the residuals vanish, the LE-SDE's keep growing exponentially. The benchmark page records the same failure
# for every transform and weighting on MNIST-1D and the digits, and
# [`drift_check`][lesde.empirical.drift_check] evaluates every term of the LE-SDE on the network's own states
# to show which one fails.

# %%
values = {"alpha_median": float(est.alpha.median()), "beta_median": float(est.beta.median())}
assert np.isfinite(list(values.values())).all() and np.isfinite(err.values).any()
print(values)

# %% [markdown]
# ## Many runs as cells: here, or on a cluster
#
# `track(n_runs=4)` trains the runs together in this process. For many runs and many settings (label-noise
# rates, widths, datasets), the same work is an *experiment* of cells, one run of one setting each, written into
# a resumable zarr store as they finish: `Experiment` names the data (here `DatasetLoader`, any module-level
# function or `functools.partial` that returns `(x, y)` works), the network factory and the training;
# `run_experiment` runs the missing cells; `experiment_tracks` reads a setting's runs back as one track for
# `estimate`. Each cell is seeded by its key (the experiment's seed, its setting and its run), so it has the same
# numbers whether it ran here or on a worker, alone or beside others; Ctrl-C and a rerun resume where it stopped,
# and failed cells are recorded and retried with `retry_failed=True`.
#
# | | here, one cell after the other | on a Dask cluster |
# | --- | --- | --- |
# | Python | `run_experiment(exp, "runs.zarr")` | `run_experiment(exp, "runs.zarr", workers=2)` (a LocalCluster on 127.0.0.1) or `scheduler="tcp://HOST:8786"` |
# | command line | `lesde estimate --dataset digits --n-runs 4 --store runs.zarr --out est.nc` | the same with `--workers 2` or `--scheduler tcp://HOST:8786` (`--retry-failed` reruns failed cells) |
#
# A script that starts a LocalCluster needs the `if __name__ == "__main__":` guard of Python's multiprocessing
# (a notebook does not); `lesde example copy cnn_on_arrays.py` is a complete one, with a CNN of its own on
# image arrays from an `.npz` file.

# %%
from functools import partial

experiment = emp.Experiment(
    data=emp.DatasetLoader("digits", classes=3),
    net=partial(emp.mlp, width=64 if TINY else 256),
    lr=0.02,
    steps=60 if TINY else 3000,
    n_runs=2 if TINY else 4,
    probes=30 if TINY else 150,
    seed=0,
)
summary = emp.run_experiment(experiment, OUT / "digits_runs.zarr", progress=not TINY)  # or workers=2
runs = emp.experiment_tracks(OUT / "digits_runs.zarr")
est_cells = emp.estimate(runs, form="feature", window=10 if TINY else None)
print(f"{int((summary.status == 'ok').sum())} of {summary.status.size} cells done; "
      f"median alpha {float(est_cells.alpha.median()):+.4f} (stacked track: {values['alpha_median']:+.4f})")
assert (summary.status == "ok").all() and np.isfinite(est_cells.alpha.values).any()
