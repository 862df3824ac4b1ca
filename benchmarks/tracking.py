"""Tracked SGD steps per second: the vmapped tracker against the naive per-run loop, side by side in one run.

What is compared and why: ``lesde.empirical.track`` trains ``runs`` networks at once (stacked parameters,
``vmap(grad)`` for the batch-size-1 step, one vmapped forward of every probe for every run after each step). The
naive alternative, what the original research code did, loops: for each run, for each step, one autograd SGD step
on one sample, then a forward of the probes. Both do the same arithmetic; the tracker removes the per-run Python
and kernel-launch overhead, which dominates on a GPU (tiny per-sample kernels) and matters less on a CPU, where
the probe forward (runs x probes x width^2 flops per layer) is compute-bound either way.

Default problem (issue 5): mnist1d, 8 runs, 300 probes, MLP of width 256 and depth 2, logits tracked.
A "tracked step" is one SGD step of *all* runs plus the probe forward of all runs.

    python benchmarks/tracking.py --device cpu
    python benchmarks/tracking.py --device cuda --steps 2000
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from lesde.empirical import init_nets, load_dataset, mlp, track
from lesde.empirical.tracking import sample_order, select_probes


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def naive(net, x, y, lr, steps, runs, probe_idx, seed, device) -> float:
    """Seconds for: for each run, for each step, one SGD step then a forward of the probes (recorded)."""
    nets = [m.to(device) for m in init_nets(net, runs, seed)]
    order = sample_order(len(y), runs, steps, seed).to(device)
    px = x[probe_idx]
    out = torch.empty((runs, steps, len(probe_idx), int(y.max()) + 1), device=device)
    sync(device)
    t0 = time.perf_counter()
    for r, m in enumerate(nets):
        params = list(m.parameters())
        for s in range(steps):
            i = order[r, s : s + 1]
            loss = F.cross_entropy(m(x[i]), y[i])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                torch._foreach_add_(params, grads, alpha=-lr)
                out[r, s] = m(px)
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timings per method")
    ap.add_argument("--out", default=None, help="optional JSON file for the numbers")
    a = ap.parse_args()
    device = torch.device(a.device)
    x, y = load_dataset("mnist1d")
    x, y = x.to(device), y.to(device)
    K = int(y.max()) + 1
    net = mlp(tuple(x.shape[1:]), K, width=a.width, depth=2)
    lr = 0.01
    probe_idx = select_probes(y.cpu(), a.probes, 0).to(device)
    # warm-up both paths (allocator, kernels, vmap tracing)
    track(net, x, y, lr=lr, steps=5, runs=a.runs, probes=a.probes, device=device, progress=False)
    naive(net, x, y, lr, 5, a.runs, probe_idx, 0, device)
    t_track, t_naive = float("inf"), float("inf")
    for _ in range(a.repeats):  # interleaved, so both see the same machine load
        sync(device)
        t0 = time.perf_counter()
        track(net, x, y, lr=lr, steps=a.steps, runs=a.runs, probes=a.probes, device=device, progress=False)
        sync(device)
        t_track = min(t_track, time.perf_counter() - t0)
        t_naive = min(t_naive, naive(net, x, y, lr, a.steps, a.runs, probe_idx, 0, device))
    res = {
        "device": str(device),
        "runs": a.runs,
        "probes": a.probes,
        "width": a.width,
        "steps": a.steps,
        "threads": torch.get_num_threads(),
        "tracked_steps_per_s": a.steps / t_track,
        "naive_steps_per_s": a.steps / t_naive,
        "speedup": t_naive / t_track,
    }
    print(f"device={device} runs={a.runs} probes={a.probes} width={a.width} steps={a.steps}")
    print(f"{'method':<10}{'steps/s':>12}")
    print(f"{'track':<10}{res['tracked_steps_per_s']:>12.1f}")
    print(f"{'naive':<10}{res['naive_steps_per_s']:>12.1f}")
    print(f"speedup (naive time / track time): {res['speedup']:.2f}x")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
