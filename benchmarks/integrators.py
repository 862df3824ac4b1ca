"""Integrator benchmark: speed and accuracy of native euler, exact, torchsde euler and torchsde srk.

What it compares, and why
-------------------------
*Speed*, in element-steps per second (element = path x sample x feature), at three sizes from issue 2:
S (K=10, n=1, m=16, 1 path), M (K=10, n=10, m=32, 1,024 paths), L (K=10, n=100, m=64, 4,096 paths). Every
method runs through the same ``lesde.simulate`` harness (two save times, save="means") on the same model, one
after the other in one process, so the ratios are side by side. On CUDA it also reports the achieved
bandwidth of native euler at 12 bytes per element-step (read state, write state, one noise value) against the
device's measured copy bandwidth.

*Accuracy*, on a stiff constant-coefficient model of size S (alpha = 15, beta = -0.75): the strong error
E|X_h(1) - X(1)| (RMS per element) of native euler on 8 Brownian paths coupled with a fine reference
(dt = 2^-17; coarse increments are sums of the fine ones), against dt and against the wall time of a
1,024-path run. The exact
method samples the exact Gaussian transition, so its strong error is zero by construction (a coupling with
the true solution exists); what the benchmark checks for it is its distribution (class-mean mean and
covariance at t = 1 against the closed form, relative errors printed) and its time. "Time to strong error
1e-3" is then: exact = its wall time; euler = the wall time of the largest dt whose strong error is < 1e-3.

Usage::

    python benchmarks/integrators.py --device cpu --sizes S M
    python benchmarks/integrators.py --device cuda --sizes S M L
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np
import torch
import torchsde
from scipy.integrate import quad_vec
from scipy.linalg import expm

import lesde
from lesde.integrators import Grid
from lesde.integrators import euler as native_euler

SIZES = {"S": (10, 1, 16, 1), "M": (10, 10, 32, 1024), "L": (10, 100, 64, 4096)}
# steps per run, chosen so one run takes about a second or more on each device
STEPS = {"cpu": {"S": 2000, "M": 100, "L": 5}, "cuda": {"S": 2000, "M": 400, "L": 40}}
METHODS = ["euler", "exact", "torchsde:euler", "torchsde:srk"]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_for(size):
    K, n, m, _ = SIZES[size]
    return lesde.LESDE(K, m, n, alpha=lesde.schedules.PowerLaw(1.0, 0.5), beta=-0.05, noise=1.0)


def time_method(method, size, device, steps, repeats=2):
    K, n, m, paths = SIZES[size]
    model = model_for(size)
    dt = 1e-3
    kw = dict(
        t_end=steps * dt, dt=dt, n_paths=paths, n_save=2, save="means", device=device, progress=False, method=method
    )
    lesde.simulate(model, **(kw | {"t_end": 2 * dt, "n_paths": min(paths, 8)}))  # warm-up
    best = math.inf
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        lesde.simulate(model, **kw)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    elements = paths * K * n * m
    return {
        "size": size,
        "method": method,
        "seconds": best,
        "steps": steps,
        "element_steps_per_s": elements * steps / best,
    }


def copy_bandwidth(device):
    x = torch.empty(2**28, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    sync(device)
    return 10 * 2 * x.numel() * 4 / (time.perf_counter() - t0)


ACC_MODEL = dict(num_classes=10, dim=16, samples_per_class=1, alpha=15.0, beta=-0.75, noise=1.0)
ACC_COUPLED, ACC_TIMED, ACC_FINE = 8, 1024, 2**-17


def accuracy(device):
    """Strong error of euler vs dt and wall time; exact's distribution and time (constant coefficients).

    The model is stiff enough (contrast-mode rate 1.575, common-mode rate 0.825) that euler needs thousands of steps
    for a strong error of 1e-3 at t = 1. Errors come from 32 coupled paths; times from runs of 1,024 paths.
    """
    model = lesde.LESDE(**ACC_MODEL)
    K, n, m, B = model.num_classes, 1, model.dim, ACC_COUPLED
    y0 = torch.randn(B, K * n * m, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # one Brownian path per coupled item on the finest dyadic grid; coarser increments are sums of finer ones
    gen = torch.Generator().manual_seed(1)
    W = torch.cat(
        [
            torch.zeros(1, B, model.brownian_size, dtype=torch.float64),
            (
                torch.randn(round(1 / ACC_FINE), B, model.brownian_size, generator=gen, dtype=torch.float64)
                * math.sqrt(ACC_FINE)
            ).cumsum(0),
        ]
    )

    def coupled(dt):
        grid = Grid.make(torch.tensor([0.0, 1.0], dtype=torch.float64), dt)
        out = {}
        native_euler.integrate(
            model,
            y0.view(B, -1, m).clone(),
            grid,
            None,
            lambda i, X: out.__setitem__(i, X.clone()),
            increments=lambda a, b: W[round(b / ACC_FINE)] - W[round(a / ACC_FINE)],
        )
        return out[1].reshape(B, -1)

    ref = coupled(ACC_FINE)
    kw = dict(t_end=1.0, n_paths=ACC_TIMED, n_save=2, device=device, progress=False, dtype=torch.float64)
    rows = []
    for k in range(6, 15):
        dt = 2.0**-k
        err = float((coupled(dt) - ref).norm(dim=1).mean() / math.sqrt(K * n * m))
        lesde.simulate(model, method="euler", **(kw | {"t_end": 4 * dt, "dt": dt}))  # warm-up
        sync(device)
        t0 = time.perf_counter()
        lesde.simulate(model, method="euler", dt=dt, **kw)
        sync(device)
        rows.append({"method": "euler", "dt": dt, "strong_error": err, "seconds": time.perf_counter() - t0})
    # exact: one jump to t = 1 (timed on the same 1,024 paths); its distribution against the closed form
    kw_x = kw | {"dt": 1.0, "x0": torch.zeros(K * n, m)}
    lesde.simulate(model, method="exact", **(kw_x | {"n_paths": 8}))
    sync(device)
    t0 = time.perf_counter()
    lesde.simulate(model, method="exact", **kw_x)
    sync(device)
    t_exact = time.perf_counter() - t0
    ds_big = lesde.simulate(model, method="exact", **(kw_x | {"n_paths": 20000}))
    Bop = (model.elasticity_matrix(0.0) * model.class_probs).numpy()
    D = np.diag(model.sigma_class.numpy() ** 2 / model.counts.numpy())
    cov = quad_vec(lambda s: expm(Bop * s) @ D @ expm(Bop * s).T, 0, 1, epsabs=1e-12)[0]
    M = ds_big.class_mean.isel(time=-1).values  # (P, K, m)
    Mc = M.transpose(2, 0, 1).reshape(-1, K)
    cov_hat = Mc.T @ Mc / Mc.shape[0]
    rel_cov = float(np.linalg.norm(cov_hat - cov) / np.linalg.norm(cov))
    rows.append(
        {
            "method": "exact",
            "dt": 1.0,
            "strong_error": 0.0,
            "seconds": t_exact,
            "covariance_rel_error": rel_cov,
            "covariance_samples": int(Mc.shape[0]),
        }
    )
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", nargs="+", default=["S", "M"], choices=list(SIZES))
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--no-accuracy", action="store_true")
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args()
    device = torch.device(args.device)
    info = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "torchsde": torchsde.__version__,
        "lesde": lesde.__version__,
    }
    print(json.dumps(info))
    rows = []
    for size in args.sizes:
        base = {}
        for method in args.methods:
            r = time_method(method, size, device, STEPS[device.type][size])
            rows.append(r)
            base[method] = r["element_steps_per_s"]
            print(
                f"{size} {method:15s} {r['element_steps_per_s']:12.4g} element-steps/s ({r['seconds']:.3f} s, "
                f"{r['steps']} steps)",
                flush=True,
            )
        if "euler" in base and "torchsde:euler" in base:
            ratio = base["euler"] / base["torchsde:euler"]
            print(f"{size}: native euler / torchsde euler = {ratio:.1f}x")
            rows.append({"size": size, "ratio_native_over_torchsde_euler": ratio})
        if device.type == "cuda" and size == "L" and "euler" in base:
            bw = copy_bandwidth(device)
            frac = 12 * base["euler"] / bw
            print(
                f"L: native euler moves {12 * base['euler'] / 1e9:.1f} GB/s = {100 * frac:.0f}% of copy bandwidth "
                f"{bw / 1e9:.0f} GB/s"
            )
            rows.append({"size": "L", "bandwidth_fraction": frac, "copy_bandwidth": bw})
    if not args.no_accuracy:
        acc = accuracy(device)
        print(
            f"\naccuracy (constant coefficients {ACC_MODEL}, t = 1; errors on {ACC_COUPLED} coupled paths vs dt = "
            f"{ACC_FINE:g}, times for {ACC_TIMED} paths):"
        )
        for r in acc:
            extra = (
                f", covariance rel. error {r['covariance_rel_error']:.3g} ({r['covariance_samples']} samples)"
                if "covariance_rel_error" in r
                else ""
            )
            print(
                f"  {r['method']:6s} dt={r['dt']:<10.6g} strong error {r['strong_error']:.3g}  "
                f"time {r['seconds']:.4f} s{extra}"
            )
        eu = [r for r in acc if r["method"] == "euler" and r["strong_error"] < 1e-3]
        ex = [r for r in acc if r["method"] == "exact"][0]
        if eu:
            best = max(eu, key=lambda r: r["dt"])
            print(
                f"time to strong error < 1e-3: euler {best['seconds']:.4f} s (dt={best['dt']:g}) vs exact "
                f"{ex['seconds']:.4f} s -> {best['seconds'] / ex['seconds']:.0f}x"
            )
        rows += acc
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"info": info, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
