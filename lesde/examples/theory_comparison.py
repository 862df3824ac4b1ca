"""Measured vs predicted: SGD, its SME and gradient flow on a Tirer-Bruna UFM, and a residual-transform LE-SDE.

Top row: the regularised MSE UFM of Tirer and Bruna (K = 4 classes, n = 3 samples each, d = 6, lambda_W =
lambda_H = 0.3, so c = 0.3 < 1) trained by SGD (batch 3), simulated by the SME and integrated as gradient flow
from one initial point; ``lesde.theory.attach`` adds the minimizer and each process's distance to it. Bottom row:
an LE-SDE with the residual transform (alpha = 1, beta = 0.75); ``attach`` adds the closed-form variance of the
class means (the exact integrator's transitions) beside the simulated one and the simplex-ETF angle.

    lesde example copy theory_comparison.py                    # into the current folder
    python theory_comparison.py                                # theory_comparison.png, ~1 min
    python theory_comparison.py --tiny --out f.png             # seconds (the tests run this)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import lesde
from lesde import theory
from lesde.sgd import UFM, compare
from lesde.theory.plot import _pyplot, draw_panel


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a few seconds: short runs, few paths")
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
    tb = ufm.tirer_bruna_parameters()
    c = math.sqrt(tb["lambda_W"] * tb["lambda_H"])

    model = lesde.LESDE(4, 8, 20, alpha=1.0, beta=0.75, transform="residual", noise=0.5)
    sim = lesde.simulate(
        model, t_end=4.0 if tiny else 10.0, dt=0.01, n_paths=64 if tiny else 1000, n_save=11 if tiny else 26,
        save="means", progress=not tiny, seed=0,
    )  # fmt: skip
    sim = theory.attach(sim)
    print(theory.summary(train))
    print(theory.summary(sim))

    plt = _pyplot()
    plt.rcParams.update({"font.size": 9})
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.6), constrained_layout=True)
    rows = [
        (train, [("loss", "loss_predicted", "training objective", True),
                 ("tb_distance", None, "||WH - W*H*||$_F$ / ||Y||$_F$", True),
                 ("tb_gram_distance", None, "||H'H - H*'H*||$_F$ / ||Y'Y||$_F$", True)]),
        (sim, [("class_mean_var", "class_mean_var_predicted", "variance of class means over paths", True),
               ("class_mean_var_zscore", None, "max |var - closed form| / s.e.", False),
               ("mean_cosine_distance", None, "|mean cosine + 1/(K-1)|", True)]),
    ]  # fmt: skip
    for axrow, (ds, chosen) in zip(axes, rows):
        for ax, panel in zip(axrow, chosen):
            draw_panel(ax, ds, panel)
    titles = ["objective vs Tirer-Bruna minimum", "distance to the minimizer", "feature Gram distance",
              "class-mean variance vs closed form", "simulated vs closed form", "angle to the simplex ETF"]  # fmt: skip
    for ax, title in zip(axes.flat, titles):
        ax.set_title(title, fontsize=10)
    fig.suptitle(
        f"Theory vs measurement. Top: regularised MSE UFM (K=4, n=3, d=6, c={c:g}), SGD / SME "
        f"(lr={train.attrs['lr']:g}, B=3) / gradient flow\nBottom: residual-transform LE-SDE (K=4, m=8, alpha=1, beta=0.75), "
        f"{sim.sizes['path']} paths",
        fontsize=10,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
