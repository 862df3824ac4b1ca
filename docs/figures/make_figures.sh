#!/usr/bin/env bash
# Rebuild every figure the docs embed: the demo, the examples and `lesde plot` of each kind (dpi 150 PNGs).
#   bash docs/figures/make_figures.sh            (about 15 minutes on 2 CPU cores; label_noise is most of it)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
lesde demo --out demo
cp demo/phase.png "$HERE/demo_phase.png"
cp demo/residual.png "$HERE/demo_residual.png"
python "$HERE/../../examples/residual_collapse.py" --out . && cp residual_collapse.png "$HERE/example_residual_collapse.png"
LESDE_OUT=. python "$HERE/../../examples/sgd_vs_sde.py" && cp sgd_vs_sde.png "$HERE/example_sgd_vs_sde.png"
python "$HERE/../../examples/label_noise.py" --out label_noise.nc && cp label_noise.png "$HERE/example_label_noise.png"
# lesde plot, every kind, from the files the other commands write
lesde simulate "$HERE/../../examples/simulate.toml" --out sim.nc --quiet
lesde estimate --dataset digits --classes 3 --steps 3000 --n-runs 4 --probes 120 --width 64 --out est.nc --quiet
lesde imitate est.nc --out imit.nc --quiet
lesde compare-sgd "$HERE/../../examples/compare_sgd.toml" --out cmp.nc
lesde plot phase demo/phase.zarr --out "$HERE/plot_phase.png"
lesde plot cosines sim.nc --out "$HERE/plot_cosines.png"
lesde plot nc demo/residual.nc --out "$HERE/plot_nc.png"
lesde plot elasticity est.nc --out "$HERE/plot_elasticity.png"
lesde plot imitation imit.nc --out "$HERE/plot_imitation.png"
lesde plot sgd cmp.nc --out "$HERE/plot_sgd.png"
