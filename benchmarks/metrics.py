"""NC metrics batched on a device vs a per-item numpy loop, and the cost of ``simulate(save="metrics")``.

**(a) Batched metrics vs a per-item loop.** Every metric of :func:`lesde.metrics.nc_metrics` (17, the classifier
ones with the least-squares classifier W_LS of each item's features, or a random classifier with
``--classifier random``) for 1,000 paths x 100 save times of a K = 10, N = 1,000 (n = 100 per class), m = 64
feature cloud, i.e. 10^5 items. The batched run processes chunks of ``--chunk`` items at once on ``--device``;
the baseline is what one writes without batching: a numpy function computing the same metrics for one (N, m)
item (eigh of Sigma_B for the top K-1 eigenpairs, ``np.linalg.pinv`` of Sigma_T for W_LS, scipy SLSQP for gnc2's
K small simplex QPs), called in a Python loop over items. The loop is far too slow to run on 10^5 items, so it
runs on the first ``--loop-items`` items and its time is **extrapolated linearly per item** to the full count
(stated in the output). gnc2 is reported separately as well (batched: 300 FISTA iterations plus a KKT polish;
loop: an iterative QP solver), so the ratio does not hinge on the QP solver alone. The two agree on the
looped items (the largest relative difference per metric is printed). Why: the metrics must be cheap enough to
evaluate at every save time of 10^4-path simulations and sweeps; this measures what batching buys.
Features are synthetic: class means 3 N(0, I_m), samples mean + N(0, I_m), freshly drawn per chunk on the
device (drawing is not timed).

**(b) Overhead of save="metrics".** The same LE-SDE simulation (K = 10, n = 100, m = 64, alpha_t = 2 (1+t)^-0.5,
beta = 0.2, identity transform, sigma = 1, float32, 1,000 Euler steps between 11 save times, as real runs save
rarely) with ``save="means"`` (class means and within-class variances) and with ``save="metrics"`` (the
``ONLINE_METRICS`` and ncm separability computed on the fly at each save time). Overhead =
t(metrics) / t(means) - 1; the target is under 25 %. Runs alternate and the minimum of ``--repeats`` runs of each
is used (least disturbed by other load on the machine). Because a few percent of a run is within the noise of a
shared machine, the overhead is also attributed directly: the cost of simulate's recorder per save time in each
mode (the only code that differs; minimum of 20 calls), times the saves, over t(means). Both scale with saves / steps: the recorder
costs a fixed number of Euler steps' worth per save, so saving 10x more often costs 10x more.

On a CPU shared with other work, use ``--threads 1`` (or ``OMP_NUM_THREADS=1``): with more threads than idle cores
the batched ``torch.linalg.eigh`` of small matrices was measured 200x slower (threads spinning), which times the
machine's load rather than the code.

``--scale s`` multiplies the number of paths of both parts (the per-item problem sizes stay the same, so the
per-item numbers stay comparable). Examples::

    python benchmarks/metrics.py --device cuda                     # full size, one GPU
    python benchmarks/metrics.py --device cpu --scale 0.01 --chunk 250 --threads 1   # 10 paths x 100 times
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time

import numpy as np
import scipy
import torch
from scipy.optimize import minimize

import lesde
from lesde import metrics
from lesde.schedules import PowerLaw

K, N_PER_CLASS, M = 10, 100, 64
PATHS, TIMES = 1000, 100
SIM_PATHS, SIM_STEPS, SIM_SAVES, SIM_DT = 1000, 1000, 11, 0.01


# ------------------------------------------------------------------------------------- per-item numpy loop


def _cos_pairs(V: np.ndarray) -> np.ndarray:
    """Cosines of the rows of V over pairs k < l (zero rows give 0)."""
    norms = np.linalg.norm(V, axis=1, keepdims=True)
    U = np.divide(V, norms, out=np.zeros_like(V), where=norms > 0)
    i, j = np.triu_indices(V.shape[0], 1)
    return (U @ U.T)[i, j]


def _etf_error(V: np.ndarray) -> float:
    G = V @ V.T
    k = V.shape[0]
    return float(np.linalg.norm(G / np.linalg.norm(G) - (np.eye(k) - 1 / k) / math.sqrt(k - 1)))


def _one_vs_rest(W: np.ndarray) -> float:
    """min_k dist(w_k, conv{w_j, j != k}) of the unit rows, one SLSQP problem per k."""
    U = W / np.linalg.norm(W, axis=1, keepdims=True)
    best = np.inf
    for k in range(U.shape[0]):
        A = np.delete(U, k, axis=0)  # (K-1, m)
        G, g = A @ A.T, A @ U[k]

        def f(lam, G=G, g=g):
            return lam @ G @ lam - 2 * lam @ g, 2 * (G @ lam - g)

        lam0 = np.full(len(A), 1 / len(A))
        res = minimize(
            f,
            lam0,
            jac=True,
            method="SLSQP",
            bounds=[(0, None)] * len(A),
            constraints=[{"type": "eq", "fun": lambda lam: lam.sum() - 1, "jac": lambda lam: np.ones_like(lam)}],
            options={"ftol": 1e-14, "maxiter": 500},
        )
        best = min(best, float(np.sqrt(max(res.fun + U[k] @ U[k], 0.0))))
    return best


def numpy_item(H: np.ndarray, y: np.ndarray, W: np.ndarray | None, b: np.ndarray | None) -> tuple[dict, np.ndarray]:
    """Every NC metric but gnc2 of one item H (N, m), labels y (N,), classifier W (K, m) and bias b (K,)
    (None: W_LS); returns them and the classifier used (gnc2 is timed on its own: ``_one_vs_rest(W)``)."""
    k = int(y.max()) + 1
    n_tot = H.shape[0]
    onehot = np.eye(k)[y]  # (N, K)
    counts = onehot.sum(0)
    mu = onehot.T @ H / counts[:, None]  # (K, m)
    Mc = mu - mu.mean(0)
    dev = H - mu[y]
    Sw = dev.T @ dev / n_tot
    Sb = Mc.T @ Mc / k
    e, V = np.linalg.eigh(Sb)
    e, V = e[-(k - 1) :], V[:, -(k - 1) :]  # top K-1 eigenpairs
    var = (onehot * (dev * dev).sum(1, keepdims=True)).sum(0) / counts  # (K,)
    if W is None:  # least-squares classifier with bias (seed 002, Eq. 7)
        hbar = H.mean(0)
        Hc = H - hbar
        W = (onehot.T @ Hc / n_tot) @ np.linalg.pinv(Hc.T @ Hc / n_tot, hermitian=True)
        b = counts / n_tot - W @ hbar
    out = {"nc1": float(np.trace(Sw @ V @ np.diag(1 / e) @ V.T)) / k}
    out["nc1_quotient"] = float(np.trace(Sw) / np.trace(Sb))
    norms = np.linalg.norm(Mc, axis=1)
    out["equinorm_means"] = float(norms.std(ddof=1) / norms.mean())
    cos = _cos_pairs(Mc)
    out["equiangular_means"] = float(cos.std(ddof=1))
    out["maxangle_means"] = float(np.abs(cos + 1 / (k - 1)).mean())
    out["mean_cosine"] = float(cos.mean())
    out["etf_error"] = _etf_error(Mc)
    i, j = np.triu_indices(k, 1)
    out["cdnv"] = float(((var[i] + var[j]) / (2 * ((mu[i] - mu[j]) ** 2).sum(1))).mean())
    wn = np.linalg.norm(W, axis=1)
    out["equinorm_classifier"] = float(wn.std(ddof=1) / wn.mean())
    wcos = _cos_pairs(W)
    out["equiangular_classifier"] = float(wcos.std(ddof=1))
    out["maxangle_classifier"] = float(np.abs(wcos + 1 / (k - 1)).mean())
    out["etf_error_classifier"] = _etf_error(W)
    out["self_duality"] = float(((W / np.linalg.norm(W) - Mc / np.linalg.norm(Mc)) ** 2).sum())
    z = H @ W.T + b  # (N, K)
    dist = ((H[:, None, :] - mu[None]) ** 2).sum(-1)
    out["ncc_mismatch"] = float((z.argmax(1) != dist.argmin(1)).mean())
    rest = np.where(onehot > 0, -np.inf, z).max(1)
    out["nc_margin"] = float((z[np.arange(n_tot), y] - rest).min())
    out["gnc3"] = float((1 - (W * mu).sum(1) / (wn * np.linalg.norm(mu, axis=1))).mean())
    return out, W


# ----------------------------------------------------------------------------------------------- part (a)


def make_items(n_items: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Synthetic features (n_items, N, m): class means 3 N(0, I), samples mean + N(0, I)."""
    mu = 3 * torch.randn(n_items, K, M, generator=gen, device=device, dtype=dtype)
    noise = torch.randn(n_items, K, N_PER_CLASS, M, generator=gen, device=device, dtype=dtype)
    return (mu[:, :, None] + noise).reshape(n_items, K * N_PER_CLASS, M)  # samples ordered by class


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_batched_vs_loop(args) -> dict:
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    paths = max(1, round(PATHS * args.scale))
    n_items = paths * TIMES
    labels = torch.arange(K, device=device).repeat_interleave(N_PER_CLASS)
    gen = torch.Generator(device=device).manual_seed(0)
    random_cls = args.classifier == "random"
    all_names = list(metrics.METRIC_NAMES)
    no_gnc2 = [n for n in all_names if n != "gnc2"]

    def classifier(B):
        if not random_cls:
            return {"use_least_squares": True}
        W = torch.randn(B, K, M, generator=gen, device=device, dtype=dtype)
        return {"classifier": W, "bias": torch.randn(B, K, generator=gen, device=device, dtype=dtype)}

    def batched(names) -> tuple[float, dict]:
        """Time nc_metrics over every chunk (drawing excluded); keep the first chunk's values."""
        elapsed, first = 0.0, None
        warm = make_items(min(args.chunk, n_items), gen, device, dtype)
        metrics.nc_metrics(warm, labels, names=names, **classifier(warm.shape[0]))  # warm-up (kernels, caches)
        inner = torch.Generator(device=device).manual_seed(1)  # same items for both name sets
        for start in range(0, n_items, args.chunk):
            B = min(args.chunk, n_items - start)
            H = make_items(B, inner, device, dtype)
            cls = classifier(B)
            _sync(device)
            t0 = time.perf_counter()
            out = metrics.nc_metrics(H, labels, names=names, **cls)
            _sync(device)
            elapsed += time.perf_counter() - t0
            if first is None:
                first = {k: v.cpu().double().numpy() for k, v in out.items()}
                first_items = (H[: args.loop_items].cpu().numpy(), cls)
        return elapsed, first, first_items

    t_all, vals, (H_loop, cls) = batched(all_names)
    t_no_gnc2, _, _ = batched(no_gnc2)

    y = labels.cpu().numpy()
    W_np = cls["classifier"].cpu().numpy() if random_cls else None
    b_np = cls["bias"].cpu().numpy() if random_cls else None
    loop_items = H_loop.shape[0]
    loop_vals = {n: [] for n in all_names}
    t_loop_no_gnc2, t_loop_gnc2 = 0.0, 0.0
    for i in range(loop_items):  # the baseline: one item at a time
        Wi = None if W_np is None else W_np[i]
        bi = None if b_np is None else b_np[i]
        t0 = time.perf_counter()
        out, W_used = numpy_item(H_loop[i], y, Wi, bi)
        t1 = time.perf_counter()
        out["gnc2"] = _one_vs_rest(W_used)
        t2 = time.perf_counter()
        t_loop_no_gnc2 += t1 - t0
        t_loop_gnc2 += t2 - t1
        for n in all_names:
            loop_vals[n].append(out[n])
    per_item_loop = (t_loop_no_gnc2 + t_loop_gnc2) / loop_items
    per_item_loop_no_gnc2 = t_loop_no_gnc2 / loop_items
    rel = {}
    for n in all_names:
        a, b = vals[n][:loop_items], np.asarray(loop_vals[n])
        rel[n] = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6)))
    return {
        "items": n_items,
        "paths": paths,
        "times": TIMES,
        "K": K,
        "N": K * N_PER_CLASS,
        "m": M,
        "dtype": args.dtype,
        "classifier": args.classifier,
        "chunk": args.chunk,
        "batched_s": t_all,
        "batched_no_gnc2_s": t_no_gnc2,
        "loop_items_run": loop_items,
        "loop_per_item_s": per_item_loop,
        "loop_per_item_no_gnc2_s": per_item_loop_no_gnc2,
        "loop_extrapolated_s": per_item_loop * n_items,
        "loop_no_gnc2_extrapolated_s": per_item_loop_no_gnc2 * n_items,
        "ratio": per_item_loop * n_items / t_all,
        "ratio_no_gnc2": per_item_loop_no_gnc2 * n_items / t_no_gnc2,
        "max_rel_diff": rel,
    }


# ----------------------------------------------------------------------------------------------- part (b)


def bench_save_overhead(args) -> dict:
    paths = max(1, round(SIM_PATHS * args.scale))
    model = lesde.LESDE(K, M, N_PER_CLASS, alpha=PowerLaw(2.0, 0.5), beta=0.2, noise=1.0)
    common = dict(
        t_end=SIM_STEPS * SIM_DT,
        dt=SIM_DT,
        n_paths=paths,
        n_save=SIM_SAVES,
        device=args.device,
        dtype=torch.float32,
        seed=0,
        progress=False,
    )
    lesde.simulate(model, **{**common, "n_paths": min(paths, 4), "t_end": 10 * SIM_DT}, save="metrics")  # warm-up
    times = {"means": [], "metrics": []}
    for _ in range(args.repeats):
        for save in ("means", "metrics"):  # alternate so slow phases of a shared machine hit both
            _sync(torch.device(args.device))
            t0 = time.perf_counter()
            lesde.simulate(model, save=save, **common)
            _sync(torch.device(args.device))
            times[save].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    per_save = _record_cost(model, paths, torch.device(args.device))
    return {
        "record_means_ms": per_save["means"] * 1e3,
        "record_metrics_ms": per_save["metrics"] * 1e3,
        "attributed_overhead": SIM_SAVES * (per_save["metrics"] - per_save["means"]) / best["means"],
        "paths": paths,
        "steps": SIM_STEPS,
        "saves": SIM_SAVES,
        "runs_s": times,
        "means_s": best["means"],
        "metrics_s": best["metrics"],
        "overhead": best["metrics"] / best["means"] - 1,
    }


def _record_cost(model, paths: int, device: torch.device, repeats: int = 20) -> dict:
    """Seconds per save time of simulate's own recorder for each save mode, on one random state.

    The whole-run difference of part (b) is a few percent of a run and so at the mercy of other load on the
    machine; the recorder is the only code that differs between the modes, so its cost per save times the
    number of saves, over the ``save="means"`` run time, attributes the overhead directly. The recorder is called
    as the split Euler path of part (b) calls it (state, class means and deviations); each mode's cost is the
    minimum over ``repeats`` calls, the one least disturbed by other load.
    """
    from lesde._recorder import Recorder
    from lesde.integrators import Grid

    model_dev = model.on(device)
    grid = Grid.make(torch.tensor([0.0, 1.0], dtype=torch.float64), 1.0)
    gen = torch.Generator(device=device).manual_seed(0)
    X = torch.randn(paths, model.num_samples, model.dim, generator=gen, device=device)  # (B, N, m)
    means = model_dev.class_means(X)  # (B, K, m)
    deviations = X - model_dev.expand_to_samples(means)  # (B, N, m)
    cost = {}
    for save in ("means", "metrics"):
        rec = Recorder(model_dev, save, paths, grid, np.dtype("float32"), hint="")
        record = rec.for_chunk(model_dev, slice(0, paths))
        record(1, X, means=means, deviations=deviations)  # warm-up, allocates the outputs
        calls = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            record(1, X, means=means, deviations=deviations)
            _sync(device)
            calls.append(time.perf_counter() - t0)
        cost[save] = min(calls)
    return cost


# -------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of paths (both parts)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="part (a)")
    parser.add_argument("--classifier", choices=("least-squares", "random"), default="least-squares")
    parser.add_argument("--chunk", type=int, default=1000, help="items per batched call (part a)")
    parser.add_argument("--loop-items", type=int, default=20, help="items the numpy loop runs (part a)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each save mode (part b)")
    parser.add_argument("--part", choices=("a", "b", "both"), default="both")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--threads", type=int, help="CPU threads for torch and numpy's BLAS (1 on a shared, loaded machine)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    args.loop_items = max(1, min(args.loop_items, args.chunk))

    dev = torch.device(args.device)
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()})",
        "threads": torch.get_num_threads(),
        "versions": {
            "lesde": lesde.__version__,
            "torch": str(torch.__version__),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "python": platform.python_version(),
        },
        "args": vars(args),
    }
    print(json.dumps({k: info[k] for k in ("date", "device", "threads", "versions")}))
    results = dict(info)
    if args.part in ("a", "both"):
        a = bench_batched_vs_loop(args)
        results["batched_vs_loop"] = a
        print(
            f"(a) {a['items']} items ({a['paths']} paths x {a['times']} times), K={a['K']} N={a['N']} m={a['m']}, "
            f"{a['dtype']}, classifier={a['classifier']}, chunk={a['chunk']}\n"
            f"    batched, all 17 metrics : {a['batched_s']:.3f} s   ({a['batched_s'] / a['items'] * 1e6:.1f} us/item)\n"
            f"    batched, without gnc2   : {a['batched_no_gnc2_s']:.3f} s\n"
            f"    numpy loop, per item    : {a['loop_per_item_s'] * 1e3:.2f} ms all, "
            f"{a['loop_per_item_no_gnc2_s'] * 1e3:.2f} ms without gnc2 (measured on {a['loop_items_run']} items)\n"
            f"    numpy loop, extrapolated linearly to {a['items']} items: {a['loop_extrapolated_s']:.1f} s all, "
            f"{a['loop_no_gnc2_extrapolated_s']:.1f} s without gnc2\n"
            f"    ratio loop / batched: {a['ratio']:.1f}x all, {a['ratio_no_gnc2']:.1f}x without gnc2\n"
            f"    max relative difference on the looped items: "
            + ", ".join(f"{k} {v:.1e}" for k, v in a["max_rel_diff"].items())
        )
    if args.part in ("b", "both"):
        b = bench_save_overhead(args)
        results["save_overhead"] = b
        print(
            f"(b) simulate K={K} n={N_PER_CLASS} m={M}, {b['paths']} paths, {b['steps']} Euler steps, "
            f"{b['saves']} saves, float32: save='means' {b['means_s']:.2f} s, save='metrics' {b['metrics_s']:.2f} s "
            f"(min of {args.repeats}); overhead {100 * b['overhead']:.1f}% (target < 25%)\n"
            f"    recorder per save: {b['record_means_ms']:.1f} ms (means), {b['record_metrics_ms']:.1f} ms (metrics); "
            f"x {b['saves']} saves / t(means) = {100 * b['attributed_overhead']:.1f}% attributed overhead"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return results


if __name__ == "__main__":
    main()
