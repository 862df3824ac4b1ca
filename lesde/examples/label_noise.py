"""The LE-SDE paper's label-corruption experiment: the tail index of the elasticity against the label-noise rate.

For each rate p in {0, 0.2, 0.4, 0.6, 2/3, 0.8} a fraction p of the GeoMNIST training labels (triangles,
rectangles, ellipses, generated locally) is replaced by another class; batch-size-1 SGD trains an MLP, every probe
is tracked, E(t) is estimated, and the tail index r = 1 - mean(log|A(t)| / log s) of the integrated alpha and beta
is reported with the accuracy on the clean test split (lesde.empirical.label_noise). One Dataset, one figure. A
progress bar follows the training of each rate (``--quiet`` turns it off).

    lesde example copy label_noise.py                   # into the current folder
    python label_noise.py                               # the full run: six rates x four runs of 10,000 steps
    python label_noise.py --tiny                        # a smoke run (what the tests run)

The command line does the same (without the tiny mode): ``lesde estimate --dataset geomnist --label-noise 0 0.2
0.4 0.6 0.6667 0.8 --lr 0.005 --steps 10000 --n-runs 4 --form means --out label_noise.nc``.
"""

from __future__ import annotations

import argparse

from lesde.empirical import label_noise_experiment
from lesde.plots import plot_label_noise, save_figure

RATES = (0.0, 0.2, 0.4, 0.6, 2 / 3, 0.8)
TAIL = 0.25  # average log|A| / log s over the last quarter of the windows


def main() -> None:
    """Parse the options, run the experiment, write the NetCDF and the figure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a smoke run: small images, few steps and runs")
    parser.add_argument("--out", default="label_noise.nc", help="NetCDF file to write (and a PNG next to it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args, ignored = parser.parse_known_args()
    if ignored:
        print(f"label_noise.py: ignored arguments {' '.join(ignored)} (it runs the rates {RATES})")

    print(f"training {len(RATES)} label-noise rates{' (tiny run)' if args.tiny else ''} ...")
    ds = label_noise_experiment(
        dataset="geomnist",  # 32x32 shapes; every rate trains n_runs fresh MLPs on its own corrupted labels
        rates=RATES,
        form="means",  # the integrated estimator the paper took its tail index from
        tail=TAIL,
        tiny=args.tiny,
        progress=not args.quiet,
    )
    ds.to_netcdf(args.out, engine="h5netcdf")
    png = save_figure(plot_label_noise(ds), args.out.rsplit(".", 1)[0] + ".png")

    print(
        f"p: label-noise rate; r(alpha), r(beta): tail index of the integrated alpha_t, beta_t over the last "
        f"{100 * TAIL:.0f}% of training, pooled over runs; val acc: final validation accuracy (clean labels)"
    )
    print(f"{'p':>6} {'r(alpha)':>9} {'r(beta)':>9} {'val acc':>8}")
    for p in ds.rate.values:
        d = ds.sel(rate=p)
        print(
            f"{p:6.3f} {float(d.tail_alpha_pooled):9.3f} {float(d.tail_beta_pooled):9.3f} "
            f"{float(d.validation_accuracy.mean()):8.3f}"
        )
    print(f"wrote {args.out}\nwrote {png}")


if __name__ == "__main__":  # importing the example runs nothing
    main()
