"""The LE-SDE paper's label-corruption experiment: the tail index of the elasticity against the label-noise rate.

For each rate p in {0, 0.2, 0.4, 0.6, 2/3, 0.8} a fraction p of the GeoMNIST training labels (triangles,
rectangles, ellipses, generated locally) is replaced by another class; batch-size-1 SGD trains an MLP, every probe
is tracked, E(t) is estimated, and the tail index r = 1 - mean(log|A(t)| / log s) of the integrated alpha and beta
is reported with the accuracy on the clean test split (lesde.empirical.label_noise). One Dataset, one figure.

    python examples/label_noise.py --out label_noise.nc          # the full run (about 10 min on 2 CPU cores)
    python examples/label_noise.py --tiny --out /tmp/ln.nc        # seconds: a smoke run (what the tests run)

The same as ``lesde label-noise --out label_noise.nc [--tiny]``.
"""

from __future__ import annotations

import argparse

from lesde.empirical import label_noise_cli
from lesde.empirical.label_noise import RATES


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="label_noise.nc", help="NetCDF output; the figure goes next to it (.png)")
    ap.add_argument("--dataset", default="geomnist")
    ap.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--n-runs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--form", default="means", choices=["means", "feature", "residual"])
    ap.add_argument("--tiny", action="store_true", help="16x16 images, 24 per class, 120 steps, 2 runs")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    return label_noise_cli(
        a.out,
        rates=a.rates,
        dataset=a.dataset,
        steps=a.steps,
        n_runs=a.n_runs,
        lr=a.lr,
        form=a.form,
        tiny=a.tiny,
        progress=not a.quiet,
    )


if __name__ == "__main__":
    main()
