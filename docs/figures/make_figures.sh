#!/usr/bin/env bash
# Rebuild every figure the docs embed: the demo, the examples, `lesde plot` of each kind and the five tutorials at
# full size (dpi 150 PNGs).
#   bash docs/figures/make_figures.sh            (about 20 minutes on 2 CPU cores; label_noise is most of it)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
lesde demo --out demo
for name in residual_collapse.py sgd_vs_sde.py label_noise.py simulate.toml compare_sgd.toml; do
  lesde example copy "$name" .  # the shipped examples
done
cp demo/phase.png "$HERE/demo_phase.png"
cp demo/residual.png "$HERE/demo_residual.png"
python "./residual_collapse.py" --out . && cp residual_collapse.png "$HERE/example_residual_collapse.png"
LESDE_OUT=. python "./sgd_vs_sde.py" && cp sgd_vs_sde.png "$HERE/example_sgd_vs_sde.png"
python "./label_noise.py" --out label_noise.nc && cp label_noise.png "$HERE/example_label_noise.png"
# lesde plot, every kind, from the files the other commands write
lesde simulate "./simulate.toml" --out sim.nc --quiet
lesde estimate --dataset digits --classes 3 --steps 3000 --n-runs 4 --probes 120 --width 64 --out est.nc --quiet
lesde imitate est.nc --out imit.nc --quiet
lesde compare-sgd "./compare_sgd.toml" --out cmp.nc
lesde plot phase demo/phase.zarr --out "$HERE/plot_phase.png"
lesde plot cosines sim.nc --out "$HERE/plot_cosines.png"
lesde plot nc demo/residual.nc --out "$HERE/plot_nc.png"
lesde plot elasticity est.nc --out "$HERE/plot_elasticity.png"
lesde plot imitation imit.nc --out "$HERE/plot_imitation.png"
lesde plot sgd cmp.nc --out "$HERE/plot_sgd.png"
# the predicted phase (the variable lesde.theory.attach writes, computed here from the theory: p < 1 separable, p = 1 iff 2c/K > 1)
python - "$HERE/plot_phase_predicted.png" <<'PY'
import sys

import xarray as xr

from lesde.plots import phase_plot, save_figure
from lesde.sweep import open_sweep

ds = open_sweep("demo/phase.zarr")
p, c = ds["alpha_exponent"], ds["alpha_scale"]
pred = xr.where(p < 1, 1.0, 0.0) + 0 * c
ds["predicted_phase"] = xr.where(p == 1, (2 * c / 2 > 1) * 1.0, pred).transpose("alpha_exponent", "alpha_scale")
save_figure(phase_plot(ds), sys.argv[1])
PY
# the tutorials at full size (about 4 minutes), headless: each writes the figures its page embeds
for t in phase_sweep elasticity sgd_vs_sde nc_metrics integrators; do
  mkdir "tut_$t"
  (cd "tut_$t" && MPLBACKEND=Agg python "$HERE/../tutorials/$t.py" > log.txt)
  cp "tut_$t"/*.png "$HERE/"
done
