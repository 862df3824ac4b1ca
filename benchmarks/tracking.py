"""Tracked SGD steps per second: the stacked tracker against the naive per-run loop and against the machine's GEMM
rate, side by side in one run.

What is compared and why: ``lesde.empirical.track`` trains ``n_runs`` networks at once and, after every step,
evaluates every probe for every run. The probe forward dominates (default problem: 8 runs x 300 probes x an MLP
40-256-256-10, 2 x 8 x 300 x (40 x 256 + 256 x 256 + 256 x 10) = 0.376 GFLOP per tracked step; the batch-size-1
SGD step itself is 4 MFLOP), so the yardstick is the machine's float32 GEMM rate, ``torch.matmul`` of two 2048 x
2048 matrices, measured in the same run with the same thread count. The naive alternative, what the original
research code did, loops: for each run, for each step, one autograd SGD step on one sample, then a forward of the
probes. Targets (issue 11): tracked-step GFLOP rate >= 60% of the GEMM rate, and >= 1.5x the naive loop.

Measurement: the machine is shared and its speed drifts by tens of percent within seconds, so single best-of
timings of different lengths are not comparable (a best 1 s GEMM against the best multi-second track flatters the
GEMM). Each of ``--rounds`` rounds therefore times, back to back, one whole ``track`` of ``--steps`` steps (setup
and the final float64 loss pass included, so the rate is if anything understated), the GEMM sustained for the
same wall time, and the naive loop; the ratios are formed within each round and their median (and quartiles) is
reported. ``--ceiling`` adds a paired breakdown of the tracked step (the probe GEMMs alone, then with the ReLUs,
the engine's forward, with its SGD step, the whole loop), which shows what bounds the ratio; ``--profile`` prints
where the tracker's time goes (torch.profiler, self CPU time).

    python benchmarks/tracking.py --device cpu --threads 1
    python benchmarks/tracking.py --device cuda --steps 2000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from lesde.empirical import init_nets, load_dataset, mlp, track
from lesde.empirical.tracks.track_inputs import sample_order, select_probes


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


def sustained(f, device: torch.device, seconds: float) -> float:
    """Seconds per call of ``f`` run back to back for about ``seconds`` (after one warm-up call); the device is
    synchronised at the ends only, so queued GPU work is counted without a host sync per call."""
    f()
    sync(device)
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        f()
        k += 1
    sync(device)
    return (time.perf_counter() - t0) / k


def gemm_rate(device: torch.device, n: int = 2048, seconds: float = 1.0) -> float:
    """Sustained float32 GFLOP/s of torch.matmul(n x n, n x n): back-to-back products for about ``seconds``
    (a single product's best time overstates what a multi-second run gets on a shared machine)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / sustained(lambda: a @ b, device, seconds) / 1e9


def probe_flops(in_dim: int, width: int, depth: int, classes: int, runs: int, probes: int) -> float:
    dims = [in_dim] + [width] * depth + [classes]
    return 2.0 * runs * probes * sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def ceiling(x, y, net, probe_idx, runs: int, lr: float, flops: float, device, rounds: int, steps: int) -> dict:
    """Paired per round, as fractions of the GEMM rate: how far each layer of the tracked step gets. (a) the three
    probe GEMMs alone (``baddbmm``/``bmm`` of the engine's shapes into preallocated outputs), (b) with the two
    ReLUs, (c) the engine's probe forward, (d) the engine's probe forward plus its batch-size-1 SGD step, and (e)
    the whole ``track`` loop (recording, setup and final pass included). Each is run back to back for at least
    0.4 s, then the GEMM for 0.4 s."""
    from lesde.empirical.tracks import _engine

    nets = [m.to(device) for m in init_nets(net, runs, 0)]
    eng = _engine.make_engine(nets, "logits", tuple(x.shape[1:]))
    W = [eng.params[k] for k in eng.params if k.endswith("weight")]
    b = [eng.params[k].unsqueeze(1) for k in eng.params if k.endswith("bias")]
    px = x[probe_idx].reshape(len(probe_idx), -1)
    xe = px.unsqueeze(0).expand(runs, -1, -1)
    h1, h2 = (torch.empty(runs, len(px), w.shape[1], device=device) for w in W[:2])
    out = torch.empty(runs, len(px), W[2].shape[1], device=device)
    order = sample_order(len(y), runs, 10**6, 0).to(device)
    state = {"s": 0}

    def gemms(relu: bool):
        def f():
            g1 = torch.baddbmm(b[0], xe, W[0].mT, out=h1)
            g2 = torch.baddbmm(b[1], g1.relu_() if relu else g1, W[1].mT, out=h2)
            torch.baddbmm(b[2], g2.relu_() if relu else g2, W[2].mT, out=out)

        return f

    def step():
        i = order[:, state["s"]]
        state["s"] += 1
        eng.sgd_step(x[i], y[i], lr)
        eng.forward(x[probe_idx])

    def whole():
        track(net, x, y, steps=steps, lr=lr, n_runs=runs, probes=len(probe_idx), device=device, progress=False)

    cases = {
        "(a) 3 probe GEMMs": (gemms(False), 1),
        "(b) + 2 ReLU": (gemms(True), 1),
        "(c) engine forward": (lambda: eng.forward(x[probe_idx]), 1),
        "(d) + SGD step": (step, 1),
        "(e) whole track": (whole, steps),
    }
    res = {k: [] for k in cases}
    for _ in range(rounds):
        for k, (f, per) in cases.items():
            t = sustained(f, device, 0.4) / per
            res[k].append(flops / t / 1e9 / gemm_rate(device, seconds=0.4))
    return {k: quartiles(v) for k, v in res.items()}


def quartiles(v: list[float]) -> tuple[float, float, float]:
    q = np.quantile(np.asarray(v), [0.25, 0.5, 0.75])
    return float(q[0]), float(q[1]), float(q[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--rounds", type=int, default=15, help="paired rounds (track, GEMM, naive) whose ratios are pooled")
    ap.add_argument("--profile", action="store_true", help="print the tracker's torch.profiler table")
    ap.add_argument("--ceiling", action="store_true", help="also the paired breakdown: GEMMs alone, + ReLU, ...")
    ap.add_argument("--out", default=None, help="optional JSON file for the numbers")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    x, y = load_dataset("mnist1d")
    x, y = x.to(device), y.to(device)
    K = int(y.max()) + 1
    net = mlp(tuple(x.shape[1:]), K, width=a.width, depth=2)
    lr = 0.01
    probe_idx = select_probes(y.cpu(), a.probes, 0).to(device)
    flops = probe_flops(40, a.width, 2, K, a.runs, a.probes)
    kw = dict(lr=lr, n_runs=a.runs, probes=a.probes, device=device, progress=False)
    track(net, x, y, steps=5, **kw)  # warm-up both paths (allocator, kernels)
    naive(net, x, y, lr, 5, a.runs, probe_idx, 0, device)
    sync(device)
    t0 = time.perf_counter()
    ds = track(net, x, y, steps=1, **kw)
    sync(device)
    fixed, engine = time.perf_counter() - t0, ds.attrs["engine"]
    frac, speedup, rates, gemms, naives = [], [], [], [], []
    for _ in range(a.rounds):
        sync(device)
        t0 = time.perf_counter()
        track(net, x, y, steps=a.steps, **kw)
        sync(device)
        t_track = time.perf_counter() - t0
        gemm = gemm_rate(device, seconds=t_track)
        t_naive = naive(net, x, y, lr, a.steps, a.runs, probe_idx, 0, device)
        rates.append(a.steps / t_track)
        gemms.append(gemm)
        naives.append(a.steps / t_naive)
        frac.append(a.steps / t_track * flops / 1e9 / gemm)
        speedup.append(t_naive / t_track)
    f25, f50, f75 = quartiles(frac)
    s25, s50, s75 = quartiles(speedup)
    res = {
        "device": str(device),
        "runs": a.runs,
        "probes": a.probes,
        "width": a.width,
        "steps": a.steps,
        "rounds": a.rounds,
        "threads": torch.get_num_threads(),
        "engine": engine,
        "gflop_per_tracked_step": flops / 1e9,
        "fixed_cost_s": fixed,
        "tracked_steps_per_s": quartiles(rates),
        "naive_steps_per_s": quartiles(naives),
        "gemm_gflops": quartiles(gemms),
        "fraction_of_gemm": (f25, f50, f75),
        "speedup": (s25, s50, s75),
    }
    print(
        f"device={device} threads={res['threads']} runs={a.runs} probes={a.probes} width={a.width} "
        f"steps={a.steps} rounds={a.rounds} engine={engine}; {flops / 1e9:.3f} GFLOP per tracked step (probe "
        f"forward); fixed cost of a track {1e3 * fixed:.0f} ms (included below)"
    )
    print(f"{'median over rounds':<22}{'steps/s':>10}{'GFLOP/s':>10}")
    r50 = quartiles(rates)[1]
    n50 = quartiles(naives)[1]
    print(f"{'track (whole run)':<22}{r50:>10.1f}{r50 * flops / 1e9:>10.1f}")
    print(f"{'naive loop':<22}{n50:>10.1f}{n50 * flops / 1e9:>10.1f}")
    print(f"{'GEMM 2048^2 float32':<22}{'':>10}{quartiles(gemms)[1]:>10.1f}")
    print(
        f"track / GEMM rate, paired per round: median {100 * f50:.0f}% (quartiles {100 * f25:.0f}-{100 * f75:.0f}%; "
        f"target >= 60%: {'met' if f50 >= 0.6 else 'NOT met'}); speedup over naive: median {s50:.2f}x (quartiles "
        f"{s25:.2f}-{s75:.2f}x; target >= 1.5x: {'met' if s50 >= 1.5 else 'NOT met'})"
    )
    if a.ceiling:
        res["ceiling"] = ceiling(x, y, net, probe_idx, a.runs, lr, flops, device, a.rounds, a.steps)
        print("paired breakdown, fraction of the GEMM rate (median, quartiles):")
        for k, (q25, q50, q75) in res["ceiling"].items():
            print(f"  {k:<22}{100 * q50:>5.0f}%   ({100 * q25:.0f}-{100 * q75:.0f}%)")
    if a.profile:
        from torch.profiler import profile

        with profile() as prof:
            track(net, x, y, steps=min(a.steps, 200), **kw)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
