"""Batched vs cell-by-cell phase sweep: what running many (p, c) cells as one simulation buys.

What it compares: a 20 x 20 grid over alpha_t = c (1 + t)^-p (p in [0.5, 2], c in [0.5, 4] log-spaced, beta = 0,
K = 2, n = 20, m = 2, sigma = 1), 1,000 paths per cell and 10,000 Euler steps to t = 1,000, run through
``lesde.sweep.run`` twice, into fresh zarr stores:

- **batched**: every cell in one ``lesde.simulate`` call with per-path schedule parameters (400,000 paths);
- **cell by cell**: ``cells_per_batch = 1``, one ``simulate`` launch per cell, as a plain loop over the grid would.

Both include everything a sweep does (building models, simulating, NC metrics and separability at 11 save times,
reductions, zarr writes). The spec is :data:`lesde.sweep.DEMO_SPEC` with this grid, paths and steps.

Agreement: every cell has its own seed, so the two runs draw the same paths and P(all pairs separable) should
agree exactly; the script reports the largest |dP| over the cells run both ways with its binomial standard error
(sqrt(p_b (1 - p_b) / n + p_c (1 - p_c) / n), the scale of a difference between independent runs), rather than
asserting it. The issue's target is the batched sweep under 60 s on one H100. The cell-by-cell run at
full size would take far longer than that, so by default it runs the first ``--per-cell-limit`` cells and
extrapolates linearly to the whole grid (marked "extrapolated"); ``--per-cell-limit 0`` runs every cell.

``--method exact`` times the exact sampler instead (no stepping: the cost is per save time). ``--scale s``
shrinks the grid side, the paths and the steps by s (e.g. ``--scale 0.1`` for a CPU: 2 x 2, 100 paths, 1,000
steps).

    python benchmarks/phase_sweep.py --device cuda
    python benchmarks/phase_sweep.py --device cpu --scale 0.1
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lesde import sweep
from lesde.sweep import demo_spec

GRID_SIDE = 20
PATHS = 1000
STEPS = 10_000
T_END = 1000.0
N_SAVE = 11


def make_spec(scale: float, method: str) -> dict:
    side = max(2, round(GRID_SIDE * scale))
    paths = max(10, round(PATHS * scale))
    steps = max(10, round(STEPS * scale))
    return demo_spec(
        exponents=np.round(np.linspace(0.5, 2.0, side), 6).tolist(),
        scales=np.round(np.geomspace(0.5, 4.0, side), 6).tolist(),
        simulate={
            "t_end": T_END,
            "dt": T_END / steps,
            "n_paths": paths,
            "save_times": np.geomspace(1.0, T_END, N_SAVE - 1).tolist(),
            "method": method,
        },
    )


def agreement(P_b, P_c, n: int) -> dict:
    """The largest |dP| between the two runs on their common cells, where it is, and its binomial SE there."""
    dP = np.abs(P_b.values - P_c.values)
    at = np.unravel_index(int(np.argmax(dP)), dP.shape)
    pb, pc = float(P_b.values[at]), float(P_c.values[at])
    cell = {d: float(P_c[d].values[i]) for d, i in zip(P_c.dims, at)}
    se = np.sqrt(P_b.values * (1 - P_b.values) / n + P_c.values * (1 - P_c.values) / n)
    return {
        "max_abs_dP": float(dP[at]),
        "at_cell": cell,
        "binomial_se_of_dP_there": round(float(np.sqrt(pb * (1 - pb) / n + pc * (1 - pc) / n)), 4),
        "largest_binomial_se_of_dP": round(float(se.max()), 4),
        "cells_compared": int(dP.size),
        "cells_differing": int((dP > 0).sum()),
    }


def timed_run(spec: dict, device: str, workdir: Path, name: str) -> tuple[float, object]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    ds = sweep.run(spec, workdir / f"{name}.zarr", device=device, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0, ds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink grid side, paths and steps by this factor")
    parser.add_argument("--method", default="euler", choices=["euler", "exact", "auto"])
    parser.add_argument("--per-cell-limit", type=int, default=40, help="cells run one by one (0: all), extrapolated")
    args = parser.parse_args(argv)

    spec = make_spec(args.scale, args.method)
    n_cells = int(np.prod([len(v) for v in spec["grid"].values()]))
    batched = copy.deepcopy(spec)
    batched["sweep"] = {"cells_per_batch": n_cells}
    per_cell = copy.deepcopy(spec)
    per_cell["sweep"] = {"cells_per_batch": 1}
    limit = n_cells if args.per_cell_limit <= 0 else min(args.per_cell_limit, n_cells)
    if limit < n_cells:
        # the first `limit` cells of the grid in C order: whole rows of exponents x every scale
        side_c = len(per_cell["grid"]["model.alpha.scale"])
        rows = max(1, limit // side_c)
        per_cell["grid"]["model.alpha.exponent"] = per_cell["grid"]["model.alpha.exponent"][:rows]
        limit = rows * side_c

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # warm-up: imports, CUDA context and kernels, so that neither timed run pays for them
        warm = make_spec(0.01, args.method)
        warm["sweep"] = {"cells_per_batch": 4}
        sweep.run(warm, work / "warm.zarr", device=args.device, progress=False)
        t_batched, ds_b = timed_run(batched, args.device, work, "batched")
        t_cells, ds_c = timed_run(per_cell, args.device, work, "per_cell")

    t_cells_full = t_cells * n_cells / limit
    P_b = ds_b["p_all_separable"].isel(time=-1)
    P_c = ds_c["p_all_separable"].isel(time=-1)
    common = P_b.sel({"alpha.exponent": P_c["alpha.exponent"]})
    result = {
        "device": args.device if not args.device.startswith("cuda") else torch.cuda.get_device_name(),
        "method": ds_b.attrs["method"],
        "grid": f"{len(spec['grid']['model.alpha.exponent'])} x {len(spec['grid']['model.alpha.scale'])}",
        "paths_per_cell": spec["simulate"]["n_paths"],
        "steps": round(T_END / spec["simulate"]["dt"]),
        "batched_s": round(t_batched, 3),
        "cell_by_cell_s": round(t_cells_full, 3),
        "cell_by_cell_measured": f"{limit} of {n_cells} cells in {t_cells:.3f} s"
        + (" (extrapolated)" if limit < n_cells else ""),
        "speedup": round(t_cells_full / t_batched, 2),
        "agreement": agreement(common, P_c, spec["simulate"]["n_paths"]),
    }
    width = max(map(len, result))
    a = result["agreement"]
    print(
        f"max |dP| = {a['max_abs_dP']:g} at {a['at_cell']} (binomial SE of dP there {a['binomial_se_of_dP_there']:g}, "
        f"largest over the {a['cells_compared']} cells compared {a['largest_binomial_se_of_dP']:g})"
    )
    print(f"{'':{width}}  batched | cell by cell")
    print(
        f"{'seconds':{width}}  {t_batched:7.2f} | {t_cells_full:.2f}" + (" (extrapolated)" if limit < n_cells else "")
    )
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
