"""Measured vs predicted: SGD, its SME and gradient flow on a Tirer-Bruna UFM, and a residual-transform LE-SDE.

Top half: the regularised MSE UFM of Tirer and Bruna (K = 4 classes, n = 3 samples each, d = 6, lambda_W =
lambda_H = 0.3, so c = 0.3 < 1) trained by SGD (batch 3), simulated by the SME and integrated as gradient flow
from one initial point; ``lesde.theory.attach`` adds the minimizer and each process's distance to it. Bottom half:
an LE-SDE with the residual transform (alpha = 1, beta = 0.75); ``attach`` adds the closed-form variance of the
class means (the exact integrator's transitions) beside the simulated one and the simplex-ETF angle.

    lesde example copy theory_comparison.py                    # into the current folder
    python theory_comparison.py                                # theory_comparison.png, with progress bars
    python theory_comparison.py --tiny --out f.png             # a small run (the tests run this)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lesde
from lesde import theory
from lesde.plots import plot_theory, save_figure
from lesde.sgd import UFM, compare


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a small run: short runs, few paths")
    ap.add_argument("--out", default="theory_comparison.png", help="PNG to write")
    args = ap.parse_args(argv)
    tiny = args.tiny

    ufm = UFM.from_tirer_bruna(4, 3, 6, lambda_W=0.3, lambda_H=0.3)
    train = compare(
        ufm,
        lr=0.02 if tiny else 0.01,
        batch_size=3,
        t_end=10.0 if tiny else 80.0,
        n_runs=4 if tiny else 16,
        save="full",
        n_save=11 if tiny else 41,
        progress=not tiny,
    )
    train = theory.attach(train)

    model = lesde.LESDE(4, 8, 20, alpha=1.0, beta=0.75, transform="residual", noise=0.5)
    sim = lesde.simulate(
        model, t_end=4.0 if tiny else 10.0, dt=0.01, n_paths=64 if tiny else 1000, n_save=11 if tiny else 26,
        save="means", progress=not tiny, seed=0,
    )  # fmt: skip
    sim = theory.attach(sim)
    print(theory.summary(train))
    print(theory.summary(sim))

    import matplotlib.pyplot as plt

    # one figure, one row of panels per Dataset: plot_theory draws each on its own subfigure, titled by its problem
    fig = plt.figure(figsize=(7.0, 9.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, hspace=0.03)
    plot_theory(train, ["loss", "tb_distance", "tb_gram_distance", "nc1"], fig=top)
    plot_theory(
        sim, ["class_mean_var", "class_mean_var_zscore", "class_mean_zscore", "mean_cosine_distance"], fig=bottom
    )
    out = save_figure(fig, args.out)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
