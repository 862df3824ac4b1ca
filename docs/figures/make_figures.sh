#!/usr/bin/env bash
# Rebuild every figure the docs embed: the demo, the examples, `lesde plot` of each kind and the five tutorials at
# full size (PNGs at dpi 150, headless).
#   bash docs/figures/make_figures.sh
# Needs the [data] extra (the digits, GeoMNIST is generated). The run time is in README.md beside the machine.
set -euo pipefail
export MPLBACKEND=Agg
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
lesde demo --out demo --quiet
for name in residual_collapse.py sgd_vs_sde.py label_noise.py theory_comparison.py simulate.toml compare_sgd.toml; do
  lesde example copy "$name" . --quiet  # the shipped examples
done
cp demo/phase.png "$HERE/demo_phase.png"
cp demo/residual.png "$HERE/demo_residual.png"
python "./residual_collapse.py" --out . --quiet && cp residual_collapse.png "$HERE/example_residual_collapse.png"
LESDE_OUT=. python "./sgd_vs_sde.py" && cp sgd_vs_sde.png "$HERE/example_sgd_vs_sde.png"
python "./label_noise.py" --out label_noise.nc --quiet && cp label_noise.png "$HERE/example_label_noise.png"
python "./theory_comparison.py" --out "$HERE/theory_comparison.png"
# lesde plot, every kind, from the files the other commands write
lesde simulate "./simulate.toml" --out sim.nc --quiet
lesde estimate --dataset digits --classes 3 --steps 3000 --n-runs 4 --probes 120 --width 64 --out est.nc --quiet
lesde imitate est.nc --out imit.nc --quiet
lesde compare-sgd "./compare_sgd.toml" --out cmp.nc --quiet
lesde compare-theory demo/phase.zarr --out phase_theory.nc --quiet  # the predicted phase of every cell
lesde plot phase demo/phase.zarr --out "$HERE/plot_phase.png"
lesde plot theory phase_theory.nc --out "$HERE/plot_phase_predicted.png"
lesde plot cosines sim.nc --out "$HERE/plot_cosines.png"
lesde plot nc demo/residual.nc --out "$HERE/plot_nc.png"
lesde plot nc cmp.nc --out "$HERE/plot_nc_compare.png"
lesde plot elasticity est.nc --out "$HERE/plot_elasticity.png"
lesde plot imitation imit.nc --out "$HERE/plot_imitation.png"
lesde plot sgd cmp.nc --out "$HERE/plot_sgd.png"
# the tutorials at full size, headless: each writes the figures its page embeds
for t in phase_sweep elasticity sgd_vs_sde nc_metrics integrators; do
  mkdir "tut_$t"
  (cd "tut_$t" && python "$HERE/../tutorials/$t.py" > log.txt)
  cp "tut_$t"/*.png "$HERE/"
done
# a figure over 300 KB (many translucent bands) is stored with a 256-colour palette: the same picture, a third the size
python - "$HERE" <<'PY'
import sys
from pathlib import Path

from PIL import Image

for png in Path(sys.argv[1]).glob("*.png"):
    if png.stat().st_size > 300_000:
        Image.open(png).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(png, optimize=True)
PY
