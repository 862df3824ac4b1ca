"""The label-corruption experiment as cells: one process against a 2-worker Dask LocalCluster, and what N workers
would take.

What it compares: ``lesde.empirical.label_noise_experiment`` at full size (geomnist 32 x 32, 3 classes, 1,000
training images per class; 6 label-noise rates x 4 runs = 24 cells, each an MLP 1024-256-256-3 trained by
batch-size-1 SGD for 10,000 steps with 300 probes tracked; ``form="means"``), run twice into fresh stores on the
same machine, one after the other:

- **local**: every cell in this process, one after the other, on one intra-op thread;
- **dask**: a LocalCluster of ``--workers`` single-threaded processes on 127.0.0.1 (``workers=2``), this process
  writing the store.

Both include everything the experiment does (data generation in every cell, training and tracking, zarr writes of
every track, reading the tracks back, the pooled and per-run estimates and tail indices). The ratio of the two
wall times is what the cluster buys on this machine, at its load. Each cell's wall time and CPU time where it ran
are in the store (``seconds``, ``cpu_seconds``); the extrapolation to N workers on N free cores schedules the
per-cell CPU times of the dask run greedily (each cell to the worker that frees first, in submission order:
on a free core a single-threaded cell takes its CPU time) and adds the fixed costs measured here (the cluster's
start and stop, and the estimate from the store). The two runs must agree bit
for bit (every cell is seeded by its key): the script reports the largest difference of the tail indices.

``--scale s`` shrinks steps and probes (``--scale 0.05`` for a smoke run of a few minutes).

    python benchmarks/label_noise_cells.py                   # full size: ~25 min local + ~15 min dask on 2 cores
    python benchmarks/label_noise_cells.py --scale 0.05 --workers 2
"""

from __future__ import annotations

import argparse
import heapq
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lesde.empirical import RATES, label_noise_experiment, open_experiment

STEPS = 10_000
RUNS = 4
PROBES = 300
EXTRAPOLATE_TO = (1, 2, 4, 8, 12, 24)


def makespan(seconds: list[float], workers: int) -> float:
    """Greedy list scheduling in submission order: each cell starts on the worker that frees first."""
    free = [0.0] * workers
    for s in seconds:
        heapq.heappush(free, heapq.heappop(free) + s)
    return max(free)


def timed(store: Path, scale: float, **cells) -> tuple[float, object]:
    t0 = time.perf_counter()
    ds = label_noise_experiment(rates=RATES, steps=max(10, round(STEPS * scale)), n_runs=RUNS,
                                probes=max(30, round(PROBES * scale)), form="means", store=store, progress=False,
                                **cells)  # fmt: skip
    return time.perf_counter() - t0, ds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="shrink steps and probes by this factor")
    parser.add_argument("--workers", type=int, default=2, help="workers of the LocalCluster")
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the local run on one core, as each worker

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t_local, ds_local = timed(work / "local.zarr", args.scale)
        local_cells = open_experiment(work / "local.zarr")
        t_dask, ds_dask = timed(work / "dask.zarr", args.scale, workers=args.workers)
        dask_cells = open_experiment(work / "dask.zarr")
        t0 = time.perf_counter()  # the estimate from a finished store, the fixed tail of every run
        timed(work / "dask.zarr", args.scale)
        t_estimate = time.perf_counter() - t0

    wall, cpu = dask_cells["seconds"].values.ravel(), dask_cells["cpu_seconds"].values.ravel()  # submission order
    overhead_dask = t_dask - makespan(wall.tolist(), args.workers) - t_estimate  # the cluster's start and stop
    diff = max(float(np.nanmax(np.abs(ds_local[v].values - ds_dask[v].values))) for v in ("tail_alpha", "tail_beta"))

    def stats(x) -> dict:
        return {
            "mean": round(float(np.mean(x)), 1),
            "min": round(float(np.min(x)), 1),
            "max": round(float(np.max(x)), 1),
        }

    result = {
        "cells": int(wall.size),
        "steps": int(ds_local.attrs["steps"]),
        "local_s": round(t_local, 1),
        "dask_s": round(t_dask, 1),
        "workers": args.workers,
        "ratio_local_over_dask": round(t_local / t_dask, 2),
        "per_cell_wall_s_local": stats(local_cells["seconds"].values),
        "per_cell_cpu_s_local": stats(local_cells["cpu_seconds"].values),
        "per_cell_wall_s_dask": stats(wall),
        "per_cell_cpu_s_dask": stats(cpu),
        "estimate_from_store_s": round(t_estimate, 1),
        "dask_overhead_s": round(overhead_dask, 1),
        "max_abs_diff_tail_index": diff,
        # N workers on N free cores: each cell takes its CPU time; plus the cluster's start and the estimate
        "extrapolated_s": {
            n: round(makespan(cpu.tolist(), n) + max(overhead_dask, 0.0) + t_estimate, 1) for n in EXTRAPOLATE_TO
        },  # fmt: skip
        "tail_alpha_pooled": dict(zip(map(float, ds_local.rate.values), ds_local.tail_alpha_pooled.values.round(3))),
    }
    print(json.dumps(result, indent=1, default=float))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    return result


if __name__ == "__main__":
    main()
