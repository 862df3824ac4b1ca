# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Tutorial 5: benchmarking integrators
#
# [`simulate`][lesde.simulate.simulate] integrates an LE-SDE with its native Euler-Maruyama (`"euler"`), with the
# exact Gaussian transitions (`"exact"`, no stepping error), or with any torchsde method (`"torchsde:srk"`,
# `"torchsde:midpoint"`, ...; `lesde methods` lists them). This tutorial measures the two things that decide
# between them: the **strong error** against a fine reference on the *same* Brownian paths, and the **wall
# time** of a run. The careful speed comparison with torchsde and diffrax (interleaved rounds on a loaded
# machine) is `benchmarks/integrators.py` in the repository; its results are on the Benchmarks page.
# `LESDE_TUTORIAL_TINY=1` runs a seconds-long version.

# %%
import functools
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchsde
from matplotlib.ticker import NullFormatter

import lesde
from lesde.plots import PALETTE, save_figure
from lesde.schedules import PowerLaw

TINY = os.environ.get("LESDE_TUTORIAL_TINY") == "1"
OUT = Path(os.environ.get("LESDE_TUTORIAL_OUT", "."))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Strong error on shared Brownian paths
#
# `simulate(..., bm=...)` takes a torchsde Brownian motion of shape `(n_paths, model.brownian_size)`: every
# method then follows the same paths, and the difference at $t = 1$ is the method's pathwise (strong) error.
# A `BrownianInterval` with `levy_area_approximation="space-time"` also serves the order-1.5 `srk`. The
# reference is `srk` at $\Delta t = 2^{-10}$.

# %%
model = lesde.LESDE(2, 2, 5, alpha=PowerLaw(2.0, 0.5), beta=0.5, transform="identity", noise=1.0)
n_paths, T = (8 if TINY else 128), 1.0
bm = torchsde.BrownianInterval(
    t0=0.0, t1=T, size=(n_paths, model.brownian_size), dtype=torch.float64,
    levy_area_approximation="space-time", entropy=0,
)  # fmt: skip


def final_means(method, dt):
    ds = lesde.simulate(model, t_end=T, dt=dt, n_paths=n_paths, n_save=2, method=method, dtype=torch.float64,
                        bm=bm, progress=False)  # fmt: skip
    return ds.class_mean.isel(time=-1).values  # (path, class, feature)


reference = final_means("torchsde:srk", 2.0**-10)
methods = ["euler", "torchsde:midpoint", "torchsde:srk"]
dts = 2.0 ** -np.arange(1, 4 if TINY else 8)
errors = {m: [float(np.abs(final_means(m, dt) - reference).max(axis=(1, 2)).mean()) for dt in dts] for m in methods}
for m, e in errors.items():
    slope = np.polyfit(np.log(dts), np.log(e), 1)[0]
    print(f"{m:>18}: errors {np.array2string(np.array(e), precision=2)}; fitted order {slope:.2f}")

# %% [markdown]
# The noise of the LE-SDE is additive (it does not depend on the state), so Euler-Maruyama already has strong
# order 1 here (fitted: 0.93), the midpoint method order 1 with a smaller constant (fitted: 1.00), and `srk`,
# of strong order 1.5 in general, converges at order 2 on this model (fitted: 1.97).

# %% [markdown]
# ## Wall time of one run
#
# Two larger models, timed with `time.perf_counter` after one warm-up run (the first call pays for imports
# and allocations), best of three. What `exact` costs depends on its plan: with the identity transform the
# class means have closed-form transitions between save times (plan `spectral`), so its cost does not grow
# with the number of steps; with the residual transform and a time-varying $\alpha_t$ it applies a
# $(Km)$-dimensional matrix exponential per step (plan `stepwise`).

# %%
n_big, t_end, dt = (8 if TINY else 64), 2.0, (0.1 if TINY else 0.01)
timings = {}
for transform in ["identity", "residual"]:
    big = lesde.LESDE(4, 16, 50, alpha=PowerLaw(2.0, 0.5), beta=0.5, transform=transform, noise=1.0)
    for m in ["euler", "exact", "torchsde:euler", "torchsde:srk"]:
        run = functools.partial(lesde.simulate, big, t_end=t_end, dt=dt, n_paths=n_big, n_save=11, method=m,
                                progress=False)  # fmt: skip
        ds = run()
        best = np.inf
        for _ in range(1 if TINY else 3):
            t0 = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t0)
        timings[transform, m] = best
        plan = ds.attrs.get("integrator_plan", "")
        print(
            f"{transform:>8} {m:>15}: {best * 1e3:8.1f} ms ({best / timings[transform, 'euler']:6.2f}x euler)  {plan}"
        )

# %% [markdown]
# ## The figure
#
# No `lesde.plots` function draws a benchmark, so this one is drawn by hand with pyplot in the house style:
# the colour-blind-safe [`PALETTE`][lesde.plots.PALETTE], 8-point text inside `plt.rc_context` (your
# `rcParams` stay as they are), two 3.5-inch columns, and [`save_figure`][lesde.plots.save_figure] to write it.

# %%
methods_t = ["euler", "exact", "torchsde:euler", "torchsde:srk"]
with plt.rc_context({"font.size": 8, "legend.fontsize": 7}):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.0, 3.0), constrained_layout=True)
    for colour, (m, e) in zip(PALETTE, errors.items()):
        ax1.loglog(dts, e, "o-", color=colour, ms=3, lw=1.3, label=m)
    ax1.loglog(
        dts, errors["euler"][0] * (dts / dts[0]), color="0.35", ls="--", lw=1, label=r"slope 1: $\propto \Delta t$"
    )
    ax1.loglog(dts, errors["torchsde:srk"][0] * (dts / dts[0]) ** 2, color="0.35", ls=":", lw=1,
               label=r"slope 2: $\propto \Delta t^2$")  # fmt: skip
    ax1.set(xlabel=r"step size $\Delta t$ (SDE time)",
            ylabel=r"strong error: mean over paths of $\|\bar X(1) - \bar X^{\mathrm{ref}}(1)\|_\infty$",
            title=f"strong error at $t = 1$ on {n_paths} shared Brownian paths")  # fmt: skip
    ax1.set_xscale("log", base=2)
    ax1.legend(loc="lower right")
    ax1.grid(True, which="major", alpha=0.3)
    y = np.arange(len(methods_t))
    for j, transform in enumerate(["identity", "residual"]):
        ax2.barh(y + 0.4 * j - 0.2, [timings[transform, m] * 1e3 for m in methods_t], height=0.4,
                 color=PALETTE[j], label=transform)  # fmt: skip
    ax2.set_yticks(y, methods_t)
    ax2.set_xscale("log")
    ax2.xaxis.set_minor_formatter(NullFormatter())  # decades only, however close the timings
    ax2.set(xlabel=f"wall time of one run [ms], best of {1 if TINY else 3}",
            title=f"$K = 4$, $m = 16$, $n = 50$, {n_big} paths, {round(t_end / dt)} steps")  # fmt: skip
    ax2.legend(title="transform")
    ax2.invert_yaxis()
    ax2.grid(True, axis="x", which="major", alpha=0.3)
save_figure(fig, OUT / "integrators.png")

# %% [markdown]
# ![Strong error against dt for three methods on shared Brownian paths, and the wall time of one run per method](../figures/integrators.png)
#
# At this size (64 paths, 200 steps, load about 2.4 on two shared cores) the native `euler` is the fastest by
# far: the drift depends on the state only through the class means, so it steps the $K \times m$ class means
# and draws the within-class statistics in law (its plan, `means`), while the torchsde methods step the full
# $N \times m$ state through a generic solver loop (144x and 398x slower than `euler` with the identity
# transform in this run; the torchsde timings are the noisiest on a shared machine). `exact` costs the same
# as `euler` with the identity transform (13 ms each), and that cost does not grow with the number of steps:
# for the phase sweeps' $10^4$ unit steps it is the cheap choice, with no stepping error at all. With the
# residual transform and a time-varying elasticity its per-step matrix exponential costs 13x `euler`.
# `simulate(..., method="auto")` takes `exact` where the model allows it, and the `integrator_plan`
# attribute of the result says which path ran. Use the torchsde methods for their higher strong order when
# a pathwise error budget calls for fewer, larger steps. The ranking on your machine depends on its cores
# and its load: measure, as here, on the model you will run.

# %%
assert errors["torchsde:srk"][-1] < errors["euler"][-1] and np.isfinite(list(timings.values())).all()
