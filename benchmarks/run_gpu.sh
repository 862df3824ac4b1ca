#!/usr/bin/env bash
# Every GPU check and benchmark the open issues need, in one call on a lent GPU machine (see
# /work/.library/device/README.md). torchsde is not in that machine's image: carry its wheels.
#
# Here, once (repository root):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       --platform any -d .whl torchsde==0.2.6 trampoline==0.1.2 h5netcdf zarr numcodecs donfig google-crc32c mnist1d
#   (checked 2026-11-22: 8 wheels, 2 MB; the image already has torch, xarray, h5py, scipy, matplotlib, tqdm, sklearn)
# Then the device call: run(command="bash benchmarks/run_gpu.sh", carry=[".whl"], timeout_s=600)
# Results land in $OUT (JSON + logs); copy the figures into benchmarks/RESULTS.md with the device name.
set -uo pipefail
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
OUT=${OUT:-/tmp/lesde-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tail -5 | tee "$OUT/pytest_gpu.log"
python3 benchmarks/integrators.py --device cuda --sizes S M L --json "$OUT/integrators.json" 2>&1 | tee "$OUT/integrators.log" | tail -25
python3 benchmarks/phase_sweep.py --device cuda --method exact 2>&1 | tee "$OUT/phase_sweep.log" | tail -8
python3 benchmarks/metrics.py --device cuda --json "$OUT/metrics.json" 2>&1 | tee "$OUT/metrics.log" | tail -8
python3 benchmarks/sgd_sde.py --device cuda 2>&1 | tee "$OUT/sgd_sde.log" | tail -6
python3 benchmarks/tracking.py --device cuda --steps 2000 --rounds 5 --out "$OUT/tracking.json" 2>&1 | tee "$OUT/tracking.log" | tail -6
