# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Tutorial 1: a separability phase transition
#
# The LE-SDE with intra-class elasticity $\alpha_t = c\,(1+t)^{-p}$, no inter-class elasticity ($\beta_t = 0$),
# the identity transform and $K = 2$ balanced classes predicts a phase transition in the exponent $p$: the class
# means separate like $e^{A(t)}$ with $A(t) = \frac1K\int_0^t (\alpha_s - \beta_s)\,ds$ while the within-class
# spread grows like $\sigma\sqrt t$, so
#
# * $p < 1$: $A(t) \sim t^{1-p}$ wins and $P(\text{all pairs separable}) \to 1$;
# * $p > 1$: $A(t)$ stays bounded and $P \to 0$;
# * $p = 1$: $e^{A(t)} = (1+t)^{c/K}$ against $\sqrt t$, so separation wins exactly when $2c/K > 1$.
#
# This tutorial maps $P$ over a $(p, c)$ grid with [`lesde.sweep.run`][lesde.sweep.run], prints the table,
# draws the heatmap with [`lesde.plots.phase_plot`][lesde.plots.phase_plot] and checks the prediction.
# The same sweep runs from the command line with `lesde example copy phase_diagram.toml` and
# `lesde sweep phase_diagram.toml --store phase.zarr`.
#
# Run it as a script (`python phase_sweep.py`, about ten seconds on two CPU cores) or open it as a notebook
# with jupytext. `LESDE_TUTORIAL_TINY=1` shrinks it to a seconds-long smoke run; `LESDE_TUTORIAL_OUT` names
# the folder for its files (default: the current one).

# %%
import os
from pathlib import Path

import numpy as np

import lesde
from lesde.plots import phase_plot, save_figure

TINY = os.environ.get("LESDE_TUTORIAL_TINY") == "1"
OUT = Path(os.environ.get("LESDE_TUTORIAL_OUT", "."))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The sweep specification
#
# A sweep is the keyword arguments of [`LESDE`][lesde.LESDE] (`[model]`) and
# [`simulate`][lesde.simulate.simulate] (`[simulate]`), plus a `[grid]` of dotted names to vary. As a dict here; the
# TOML file of `lesde example copy phase_diagram.toml` has the same tables. The default method, `"auto"`,
# picks the exact Gaussian transitions for this model: no stepping error, and float64 survives
# $e^{A(t)}$ at $p = 0.5$, $c = 4$, $t = 10^4$.

# %%
exponents = [0.5, 2.0] if TINY else [0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0]
scales = [1.0, 4.0] if TINY else [0.25, 0.5, 1.0, 2.0, 4.0]
spec = {
    "model": {
        "num_classes": 2,
        "dim": 2,
        "samples_per_class": 20,
        "alpha": {"kind": "PowerLaw", "scale": 1.0, "exponent": 1.0},  # swept below
        "beta": 0.0,
        "transform": "identity",
        "noise": 1.0,
    },
    "simulate": {
        "t_end": 1e2 if TINY else 1e4,
        "dt": 1.0,
        "n_paths": 16 if TINY else 400,
        "save_times": [1e1, 1e2] if TINY else [1e1, 1e2, 1e3, 1e4],
        "seed": 0,
    },
    "grid": {"model.alpha.exponent": exponents, "model.alpha.scale": scales},
    "sweep": {"time": 1e2 if TINY else 1e4, "separability": "ncm"},
}

# %% [markdown]
# ## Run, resume, tabulate
#
# `run` writes every finished batch of cells to the zarr store, so an interrupted sweep resumes where it
# stopped when rerun with the same store; a finished one is simply read back. The store's dims are the grid's
# names without the stage and the dots: `alpha_exponent` and `alpha_scale`.

# %%
ds = lesde.sweep.run(spec, OUT / "phase_sweep.zarr", progress=not TINY)
print(lesde.sweep.format_table(ds))

# %% [markdown]
# With 400 paths per cell at $t = 10^4$ the full-size run prints (rows $c$, columns $p$):
#
# ```text
# P(all pairs separable) at t = 10000; rows alpha_scale, columns alpha_exponent
#  alpha_scale |   0.5  0.75   0.9     1   1.1  1.25   1.5     2
# --------------------------------------------------------------
#         0.25 |  1.00  0.19  0.00  0.00  0.00  0.00  0.00  0.00
#          0.5 |  1.00  1.00  0.00  0.00  0.00  0.00  0.00  0.00
#            1 |  1.00  1.00  0.96  0.00  0.00  0.00  0.00  0.00
#            2 |  1.00  1.00  1.00  1.00  0.19  0.00  0.00  0.00
#            4 |  1.00  1.00  1.00  1.00  1.00  0.69  0.00  0.00
# ```
#
# Every cell with $p = 0.5$ is separable on every path, every cell with $p \ge 1.5$ on none. On $p = 1$ the
# prediction is exact here: $c = 2$ and $c = 4$ ($2c/K > 1$) separate on every path, $c \le 1$ on none. Near
# $p = 1$ the finite time blurs the step: small scales have not separated yet at $p = 0.75$ or $0.9$
# ($A(t) \sim t^{1-p}$ grows slowly), and large scales still separate at $p = 1.1$ and $1.25$, where $A(t)$
# is bounded but its limit $c/(K(p-1))$ is large.

# %% [markdown]
# ## The figure
#
# [`phase_plot`][lesde.plots.phase_plot] returns a matplotlib Figure (it never changes your backend);
# [`save_figure`][lesde.plots.save_figure] writes it, PNG, PDF or SVG by the extension. The heatmap shows
# $P(\text{all pairs separable})$ at the spec's `time`, with the theory lines: $p = 1$ (dashed), the stretch
# of it where $2c/K > 1$ separates (solid) and the point $2c/K = 1$ between them. The right panel follows one
# scale ($c = 2$) through the save times with 95% Wilson bands: the step sharpens at $p = 1$ as $t$ grows.

# %%
fig = phase_plot(ds)  # a matplotlib Figure: fig.show() in a notebook, or write it
print("wrote", save_figure(fig, OUT / "phase_sweep.png"))

# %% [markdown]
# ![Phase diagram: P(all pairs separable) over (p, c) at t = 10^4 with the theory lines](../figures/phase_sweep.png)

# %% [markdown]
# ## Checking the prediction
#
# Far from the boundary the answer is certain: every path separates at $p = 0.5$ and none at $p = 2$.

# %%
p_all = ds["p_all_separable"].sel(time=spec["sweep"]["time"])
low, high = p_all.sel(alpha_exponent=0.5), p_all.sel(alpha_exponent=2.0)
print(f"P at p = 0.5: {np.round(low.values, 2)}; at p = 2: {np.round(high.values, 2)}")
assert (low.values >= (0.9 if TINY else 0.99)).all() and (high.values <= 0.1).all()
