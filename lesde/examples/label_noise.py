"""The LE-SDE paper's label-corruption experiment: the tail index of the elasticity against the label-noise rate.

For each rate p in {0, 0.2, 0.4, 0.6, 2/3, 0.8} a fraction p of the GeoMNIST training labels (triangles,
rectangles, ellipses, generated locally) is replaced by another class; batch-size-1 SGD trains an MLP, every probe
is tracked, E(t) is estimated, and the tail index r = 1 - mean(log|A(t)| / log s) of the integrated alpha and beta
is reported with the accuracy on the clean test split (lesde.empirical.label_noise). One Dataset, one figure.

    lesde example copy label_noise.py                   # into the current folder
    python label_noise.py                               # the full run (about 10 min on 2 CPU cores)
    python label_noise.py --tiny                        # seconds: a smoke run (what the tests run)

The command line does the same (without the tiny mode): ``lesde estimate --dataset geomnist --label-noise 0 0.2
0.4 0.6 0.6667 0.8 --lr 0.005 --steps 10000 --n-runs 4 --form means --out label_noise.nc``.
"""

from __future__ import annotations

import sys

from lesde.empirical import label_noise_experiment
from lesde.plots import plot_label_noise, save_figure

tiny = "--tiny" in sys.argv
out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "label_noise.nc"

ds = label_noise_experiment(
    dataset="geomnist",  # 32x32 shapes; every rate trains n_runs fresh MLPs on its own corrupted labels
    rates=(0.0, 0.2, 0.4, 0.6, 2 / 3, 0.8),
    form="means",  # the integrated estimator the paper took its tail index from
    tail=0.25,  # average log|A| / log s over the last quarter of the windows
    tiny=tiny,
    progress=not tiny,
)
ds.to_netcdf(out, engine="h5netcdf")
png = save_figure(plot_label_noise(ds), out.rsplit(".", 1)[0] + ".png")

print(f"{'rate':>6} {'r(alpha)':>9} {'r(beta)':>9} {'val acc':>8}")
for p in ds.rate.values:
    d = ds.sel(rate=p)
    print(
        f"{p:6.3f} {float(d.tail_alpha_pooled):9.3f} {float(d.tail_beta_pooled):9.3f} "
        f"{float(d.validation_accuracy.mean()):8.3f}"
    )
print(f"wrote {out} and {png}")
