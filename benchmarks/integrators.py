"""Integrator benchmark: lesde's native euler (and exact) against the loops a user would otherwise run.

What it compares, and why
-------------------------
At three sizes, S (K=10, n=1, m=16, 1 path), M (K=10, n=10, m=32, 1,024 paths) and L (K=10, n=100, m=64,
4,096 paths), float32, ``save="means"`` (class means and within-class variances at the start and the end),
alpha_t = (1+t)^-1/2, beta = -0.05, sigma = 1, side by side in one process:

* ``lesde euler``: :func:`lesde.simulate` with ``method="euler"``, everything included (validation, the initial
  state, the deviations, recording, the Dataset);
* ``hand loop``: what a competent user writes with the same class-mean structure: Euler on the (B, K, m) class
  means with an einsum per step, the (B, N, m) initial state and the within-class deviations' exact increment
  drawn once per save interval (the same law as lesde's output);
* ``diffrax`` (optional, ``pip install -e ".[bench]"``): the same class-mean Euler with ``diffrax.Euler`` and an
  ``UnsafeBrownianPath``, jit-compiled (compile time excluded), deviations drawn with jax.random;
* ``torchsde euler``: ``torchsde.sdeint`` on the whole (B, N m) state (how torchsde users run the LE-SDE);
* ``randn``: one ``torch.randn`` of B K m float32 normals, the floor of one Euler step's noise.

The peers run in ``--repeats`` interleaved rounds (each round times every peer once, so a slow spell of this
shared machine hits all of them alike); times are minima over rounds, ratios medians of the per-round ratios.
The per-step time is (T(2 n) - T(n)) / n (at L: (T(10 n) - T(n)) / 9 n, from issue 16's 5 and 50 steps). Ratios are printed
for the targets of issues 9 and 16. A peer whose package is missing is skipped with a note.

``--accuracy`` adds the strong error of euler against dt on coupled Brownian paths (``simulate(bm=)``) and the
time exact needs for a strong error below 1e-3 (zero stepping error) against euler's.

Usage::

    python benchmarks/integrators.py --device cpu --sizes S M L
    python benchmarks/integrators.py --device cuda --sizes S M L --json out.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import time

import numpy as np
import torch
import torchsde

import lesde

SIZES = {"S": (10, 1, 16, 1), "M": (10, 10, 32, 1024), "L": (10, 100, 64, 4096)}
STEPS = {"cpu": {"S": 2000, "M": 100, "L": 5}, "cuda": {"S": 2000, "M": 400, "L": 40}}
DT = 1e-3
ALPHA = lesde.schedules.PowerLaw(1.0, 0.5)
BETA, SIGMA = -0.05, 1.0


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_of(fn, repeats, device):
    best = math.inf
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def model_for(size):
    K, n, m, _ = SIZES[size]
    return lesde.LESDE(K, m, n, alpha=ALPHA, beta=BETA, noise=SIGMA)


# ---------------------------------------------------------------------------------------------- the peers
def run_lesde(size, steps, device, method="euler"):
    K, n, m, B = SIZES[size]
    return lesde.simulate(model_for(size), t_end=steps * DT, dt=DT, n_paths=B, n_save=2, save="means",
                          method=method, device=device, progress=False)  # fmt: skip


def run_hand(size, steps, device, seed=0):
    """Class-mean Euler the way a user writes it, with the deviations' exact increment per save interval."""
    K, n, m, B = SIZES[size]
    g = torch.Generator(device=device).manual_seed(seed)
    X = torch.randn(B, K, n, m, generator=g, device=device)  # the initial state
    M = X.mean(2)
    Z = X - M[:, :, None]
    t = torch.arange(steps, dtype=torch.float64, device=device) * DT
    a, b = ALPHA(t), torch.full_like(t, BETA)
    eye = torch.eye(K, dtype=torch.float64, device=device)
    W = (((a - b)[:, None, None] * eye + b[:, None, None]) / K).float()  # (steps, K, K): E(t) pi
    s = SIGMA / math.sqrt(n) * math.sqrt(DT)
    for j in range(steps):
        M = M + DT * torch.einsum("kl,blm->bkm", W[j], M) + s * torch.randn(B, K, m, generator=g, device=device)
    xi = torch.randn(B, K, n, m, generator=g, device=device)
    Z += math.sqrt(steps * DT) * SIGMA * (xi - xi.mean(2, keepdim=True))
    return M.cpu().numpy(), (Z * Z).sum(-1).mean(2).cpu().numpy()


def diffrax_runner(size, steps):
    """A jit-compiled diffrax Euler over the class means (compiled by the first call, which is not timed)."""
    import diffrax
    import jax
    import jax.numpy as jnp
    import lineax

    K, n, m, B = SIZES[size]
    T = steps * DT
    s = SIGMA / math.sqrt(n)
    eye = jnp.eye(K)
    D = B * K * m  # the class means as one flat vector, so the diffusion is a diagonal operator

    def drift(t, y, args):
        a = (1.0 + t) ** -0.5
        W = ((a - BETA) * eye + BETA) / K
        return jnp.einsum("kl,blm->bkm", W, y.reshape(B, K, m)).reshape(D)

    diffusion = lineax.DiagonalLinearOperator(jnp.full(D, s))

    @jax.jit
    def solve(key):
        k0, k1, k2 = jax.random.split(key, 3)
        X = jax.random.normal(k0, (B, K, n, m))
        M = X.mean(2)
        bm = diffrax.UnsafeBrownianPath(shape=(D,), key=k1)
        terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(lambda t, y, args: diffusion, bm))
        sol = diffrax.diffeqsolve(terms, diffrax.Euler(), 0.0, T, DT, M.reshape(D), saveat=diffrax.SaveAt(t1=True),
                                  max_steps=steps + 8, adjoint=diffrax.ForwardMode())  # fmt: skip
        xi = jax.random.normal(k2, (B, K, n, m))
        Z = X - M[:, :, None] + math.sqrt(T) * SIGMA * (xi - xi.mean(2, keepdims=True))
        return sol.ys[-1].reshape(B, K, m), (Z * Z).sum(-1).mean(2)

    key = jax.random.PRNGKey(0)
    jax.block_until_ready(solve(key))  # compile

    def run():
        out = jax.block_until_ready(solve(key))
        return np.asarray(out[0]), np.asarray(out[1])

    return run


def run_torchsde(size, steps, device):
    K, n, m, B = SIZES[size]
    model = model_for(size).to(device)
    y0 = torch.randn(B, K * n * m, device=device)
    with torch.no_grad():
        ys = torchsde.sdeint(model, y0, torch.tensor([0.0, steps * DT], device=device), dt=DT, method="euler")
    return ys[-1].cpu().numpy()


def randn_floor(size, device, repeats=50):
    K, _, m, B = SIZES[size]
    g = torch.Generator(device=device).manual_seed(0)
    out = torch.empty(B * K * m, device=device)
    return best_of(lambda: out.normal_(generator=g), repeats, device)


# ---------------------------------------------------------------------------------------------- accuracy
def accuracy(device):
    """Strong error of euler vs dt on 8 coupled Brownian paths (reference dt 2^-15); exact's time and law."""
    model = lesde.LESDE(10, 16, 1, alpha=15.0, beta=-0.75, noise=1.0)
    B = 8
    y0 = torch.randn(B, 160, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bm = torchsde.BrownianInterval(0.0, 1.0, size=(B, 160), dtype=torch.float64, entropy=1, dt=2**-15)

    def final(dt):
        ds = lesde.simulate(model, t_end=1.0, dt=dt, n_paths=B, n_save=2, x0=y0.view(B, 10, 16), bm=bm,
                            save="full", dtype=torch.float64, progress=False)  # fmt: skip
        return ds.features.isel(time=-1).values.reshape(B, -1)

    ref = final(2**-15)
    kw = dict(t_end=1.0, n_paths=1024, n_save=2, device=device, progress=False, dtype=torch.float64)
    rows = []
    for k in range(6, 14):
        dt = 2.0**-k
        err = float(np.linalg.norm(final(dt) - ref, axis=1).mean() / math.sqrt(160))
        secs = best_of(lambda dt=dt: lesde.simulate(model, method="euler", dt=dt, **kw), 2, device)
        rows.append({"method": "euler", "dt": dt, "strong_error": err, "seconds": secs})
    secs = best_of(lambda: lesde.simulate(model, method="exact", dt=1.0, **kw), 5, device)
    rows.append({"method": "exact", "dt": 1.0, "strong_error": 0.0, "seconds": secs})
    return rows


# ---------------------------------------------------------------------------------------------- main
def measure(size, device, repeats, torchsde_at_L, has_diffrax):
    """Every peer at one size in interleaved rounds (each round times every peer once, so a slow spell of a shared
    machine hits all of them): per peer the minimum time, and per ratio the median over rounds."""
    base = STEPS[device.type][size]
    long = 10 * base if size == "L" else 2 * base  # the second step count, for per-step times
    peers = {
        "lesde": lambda: run_lesde(size, base, device),
        "lesde_long": lambda: run_lesde(size, long, device),
        "hand": lambda: run_hand(size, base, device),
        "hand_long": lambda: run_hand(size, long, device),
        "exact": lambda: run_lesde(size, base, device, "exact"),
        "randn": lambda: randn_floor(size, device, repeats=1),
    }
    if has_diffrax and device.type == "cpu":
        peers["diffrax"] = diffrax_runner(size, base)
    if size != "L" or torchsde_at_L:
        peers["torchsde"] = lambda: run_torchsde(size, base, device)
    for fn in peers.values():  # warm-up
        fn()
    times = {k: [] for k in peers}
    for _ in range(repeats):
        for k, fn in peers.items():
            times[k].append(fn() if k == "randn" else best_of(fn, 1, device))
    row = {"size": size, "steps": base, "long_steps": long, "rounds": repeats}
    row.update({f"{k}_s": min(v) for k, v in times.items()})

    def ratio(a, b):
        return float(np.median(np.array(times[a]) / np.array(times[b])))

    def per_step(k):
        return np.maximum(np.array(times[f"{k}_long"]) - np.array(times[k]), 0.0) / (long - base)

    row["lesde_per_step_s"], row["hand_per_step_s"] = (
        float(np.median(per_step("lesde"))),
        float(np.median(per_step("hand"))),
    )
    row["hand_over_lesde"] = ratio("hand", "lesde")
    row["hand_over_lesde_long"] = ratio("hand_long", "lesde_long")
    row["per_step_over_randn"] = float(np.median(per_step("lesde") / np.array(times["randn"])))
    for peer in ("diffrax", "torchsde"):
        if peer in times:
            row[f"{peer}_over_lesde"] = ratio(peer, "lesde")
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", nargs="+", default=["S", "M", "L"], choices=list(SIZES))
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    p.add_argument("--torchsde-at-L", action="store_true", help="also time torchsde at L (minutes)")
    p.add_argument("--accuracy", action="store_true", help="also the strong error / time-to-accuracy table")
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args()
    device = torch.device(args.device)
    has_diffrax = importlib.util.find_spec("diffrax") is not None
    info = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "torchsde": torchsde.__version__, "lesde": lesde.__version__,
        "diffrax": __import__("diffrax").__version__ if has_diffrax else "not installed",
        "jax": __import__("jax").__version__ if has_diffrax else "not installed",
    }  # fmt: skip
    print(json.dumps(info), flush=True)
    if not has_diffrax:
        print("diffrax is not installed: its rows are skipped (pip install -e '.[bench]')")
    rows = []
    for size in args.sizes:
        row = measure(size, device, args.repeats, args.torchsde_at_L, has_diffrax)
        base = row["steps"]
        rows.append(row)
        print(f"\n{size} (K, n, m, paths) = {SIZES[size]}, {base} and {row['long_steps']} steps, save='means', "
              f"float32, {row['rounds']} interleaved rounds (minimum times; ratios are medians over rounds):")  # fmt: skip
        for k, v in row.items():
            if k.endswith("_s"):
                print(f"  {k:22s} {v:.4g} s")
        print(f"  hand loop / lesde euler          = {row['hand_over_lesde']:.2f}x   (target >= 1.0; issue 16: >= 20 "
              "at L, 5 steps; >= 1 at S)")  # fmt: skip
        if size == "L":
            print(f"  at {row['long_steps']} steps: hand loop / lesde = {row['hand_over_lesde_long']:.1f}x "
                  "(issue 16 target >= 5 at 50 steps)")  # fmt: skip
        if "diffrax_over_lesde" in row:
            print(f"  diffrax / lesde euler            = {row['diffrax_over_lesde']:.2f}x   (target >= 3 at M, L)")
        if "torchsde_over_lesde" in row:
            print(f"  torchsde euler / lesde euler     = {row['torchsde_over_lesde']:.1f}x   (target >= 30 at S, M)")
        print(f"  lesde per step / one randn       = {row['per_step_over_randn']:.2f}   (target <= 1.5 at M, L)")
    if args.accuracy:
        acc = accuracy(device)
        print("\naccuracy (K=10, n=1, m=16, alpha=15, beta=-0.75, t=1; errors on 8 coupled paths, times for 1,024):")
        for r in acc:
            print(
                f"  {r['method']:6s} dt={r['dt']:<10.6g} strong error {r['strong_error']:.3g}  time {r['seconds']:.4f} s"
            )
        eu = [r for r in acc if r["method"] == "euler" and r["strong_error"] < 1e-3]
        ex = acc[-1]
        if eu:
            best = max(eu, key=lambda r: r["dt"])
            print(f"time to strong error < 1e-3: euler {best['seconds']:.4f} s (dt={best['dt']:g}) vs exact "
                  f"{ex['seconds']:.4f} s -> {best['seconds'] / ex['seconds']:.0f}x")  # fmt: skip
        rows += acc
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"info": info, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
