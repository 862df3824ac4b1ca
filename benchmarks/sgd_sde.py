"""SME throughput: batched Euler-Maruyama for the SGD stochastic modified equation vs a per-run Python loop.

What it compares: one Euler-Maruyama step of :class:`lesde.sgd.SGDSDE` for the cross-entropy UFM with K = 10
classes, n = 100 samples per class, d = 64 features (P = 64,650 parameters, N = 1,000 Brownian components) and 64
independent runs, done two ways on the same device, side by side in one process:

- ``batched``: all 64 runs advance in one call (theta of shape (64, P));
- ``loop``: a plain Python loop over the 64 runs, each advanced with the same call on theta[r : r + 1].

Two step kernels are timed (one row each):

- ``f_and_g_prod``: the torchsde contract (drift and noise as two (runs, P) tensors, then ``y + f dt + g dW``),
  what ``torchsde`` / ``lesde.simulate`` do;
- ``euler_step``: what :func:`lesde.sgd.run_sme` does: drift and noise are both weighted sums of per-sample
  gradients, so the whole step is one contraction (``Problem.explicit_step``) writing the new state once.

Both columns do identical arithmetic; the ratio is what batching over runs buys. A "step" advances all 64 runs by
dt. Usage: ``python benchmarks/sgd_sde.py [--device cpu|cuda|all] [--dtype float32|float64] [--steps S]
[--threads T]`` (``--threads 1`` for fair timings on a shared 2-core machine: a second intra-op thread competing
with other jobs can make these memory-bound kernels several times slower).

``--part compare``: what the NC metrics cost inside :func:`lesde.sgd.compare` (SGD, SME and gradient flow of the
cross-entropy UFM with K = 4, n = 10 per class (N = 40), d = 8, lr = 0.2, B = 4, t_end = 100 (500 steps per
process; the problem and run of ``lesde/examples/sgd_vs_sde.py`` with N = 40), compare's defaults n_runs = 16 and
n_save = 51 (``--runs`` to change), float64). The same run four ways, interleaved, best of ``--repeats``:
``metrics=False`` (loss and accuracy only), all NC metrics but ``gnc2`` (the default ``metrics=True``), all 17,
and the default with the metrics computed record by record (``lesde.sgd._record.FLUSH_BYTES = 0``, the layout
before the recorder batched them). The share of a metric set is (t_set - t_none) / t_set of the process's CPU time (with ``--threads 1`` the work
done, less disturbed by other jobs on a shared machine than the wall time), each run paired with the
``metrics=False`` run of the same repeat, median over the repeats; "in-run share" is the CPU time of the
recorder's batched metric calls over the CPU time of the same run (the per-record snapshot is one copy of the
parameters), median over the repeats. Run it against another
checkout (``PYTHONPATH=path/to/other``) to time that code with the same script (the per-record row is then
the same as the one above it).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from lesde.sgd import SGDSDE, UFM

K, N_PER_CLASS, D, RUNS = 10, 100, 64, 64
LR, BATCH, DT = 0.05, 32, 0.05


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _contract_step(sme: SGDSDE, theta: torch.Tensor, dW: torch.Tensor, spare: torch.Tensor | None) -> torch.Tensor:
    f, gdw = sme.f_and_g_prod(0.0, theta, dW)
    return theta + f * DT + gdw


def _fused_step(sme: SGDSDE, theta: torch.Tensor, dW: torch.Tensor, spare: torch.Tensor | None) -> torch.Tensor:
    return sme.euler_step(theta, dW, DT, out=spare)  # run_sme swaps two state buffers


KERNELS = {"f_and_g_prod": _contract_step, "euler_step": _fused_step}


def bench(device: torch.device, dtype: torch.dtype, steps: int, kernel: str) -> dict[str, float]:
    ufm = UFM(K, N_PER_CLASS, D, loss="ce", weight_decay_W=5e-4, weight_decay_H=5e-4).to(device=device, dtype=dtype)
    sme = SGDSDE(ufm, LR, BATCH)
    theta = ufm.init(RUNS, torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    gen = torch.Generator(device=device).manual_seed(1)
    step = KERNELS[kernel]

    def advance(th: torch.Tensor, spare: torch.Tensor, batched: bool) -> tuple[torch.Tensor, torch.Tensor]:
        dW = math.sqrt(DT) * torch.randn(th.shape[0], sme.brownian_size, generator=gen, device=device, dtype=dtype)
        if batched:
            return step(sme, th, dW, spare), th
        # same work, run by run
        return torch.cat([step(sme, th[r : r + 1], dW[r : r + 1], None) for r in range(RUNS)]), spare

    out = {}
    with torch.no_grad():
        for name in ("batched", "loop"):
            th, spare = theta.clone(), torch.empty_like(theta)
            n = steps if name == "batched" else max(2, steps // 8)  # the loop is slow; fewer steps suffice
            for _ in range(2):  # warm-up (allocator, kernels)
                th, spare = advance(th, spare, name == "batched")
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(n):
                th, spare = advance(th, spare, name == "batched")
            _sync(device)
            out[name] = n / (time.perf_counter() - t0)
            assert torch.isfinite(th).all()
    return out


def bench_compare(repeats: int, t_end: float, n_runs: int) -> dict[str, dict[str, float]]:
    """Per metric set: best wall and CPU time of ``repeats`` runs of ``compare``, and the medians over the repeats
    of the paired CPU share (against the ``metrics=False`` run of the same repeat) and of the in-run share."""
    from lesde import metrics
    from lesde.sgd import _record, compare

    every = list(metrics.METRIC_NAMES)
    no_gnc2 = [m for m in every if m != "gnc2"]
    # explicit lists, so a checkout whose metrics=True means another set times the same work
    sets = {"none": False, "all but gnc2": no_gnc2, "all 17": every, "all but gnc2, per record": no_gnc2}
    problem = UFM(4, 10, 8, loss="ce", weight_decay_W=1e-2, weight_decay_H=1e-2)
    runs = {name: {"wall": [], "cpu": [], "in_run": []} for name in sets}
    flush = getattr(_record, "FLUSH_BYTES", None)
    spent = [0.0]
    inner = getattr(_record.Recorder, "_flush", None)
    if inner is not None:  # the metric work of this code, timed where it happens

        def timed_flush(self):
            c0 = time.process_time()
            inner(self)
            spent[0] += time.process_time() - c0

        _record.Recorder._flush = timed_flush
    kwargs = {"progress": False} if "progress" in compare.__code__.co_varnames else {}
    try:
        for _ in range(repeats):
            for name, chosen in sets.items():
                if flush is not None:
                    _record.FLUSH_BYTES = 0 if name.endswith("per record") else flush
                spent[0] = 0.0
                t0, c0 = time.perf_counter(), time.process_time()
                compare(problem, 0.2, 4, t_end, n_runs=n_runs, n_save=51, metrics=chosen, **kwargs)
                cpu = time.process_time() - c0
                runs[name]["wall"].append(time.perf_counter() - t0)
                runs[name]["cpu"].append(cpu)
                runs[name]["in_run"].append(spent[0] / cpu)
    finally:
        if flush is not None:
            _record.FLUSH_BYTES = flush
        if inner is not None:
            _record.Recorder._flush = inner
    none_cpu = runs["none"]["cpu"]
    return {
        name: {
            "wall": min(r["wall"]),
            "cpu": min(r["cpu"]),
            "paired_share": statistics.median((c - n) / c for c, n in zip(r["cpu"], none_cpu)),
            "in_run_share": statistics.median(r["in_run"]) if inner is not None else math.nan,
        }
        for name, r in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="all", help="cpu, cuda, or all (cuda only when available)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--part", default="step", choices=["step", "compare"])
    parser.add_argument("--repeats", type=int, default=9, help="--part compare: repeats of each metric set")
    parser.add_argument("--t-end", type=float, default=100.0, help="--part compare: t_end (500 steps at 100)")
    parser.add_argument("--runs", type=int, default=16, help="--part compare: n_runs (compare's default: 16)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.part == "compare":
        res = bench_compare(args.repeats, args.t_end, args.runs)
        print(
            f"compare, UFM K=4 N=40 d=8, {args.runs} runs, t_end={args.t_end}, torch threads={torch.get_num_threads()}"
        )
        print(f"{'metric set':<26}{'best wall s':>12}{'best cpu s':>12}{'paired cpu share':>18}{'in-run share':>14}")
        for name, r in res.items():
            print(f"{name:<26}{r['wall']:>12.2f}{r['cpu']:>12.2f}{r['paired_share']:>18.1%}{r['in_run_share']:>14.1%}")
        return
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    dtype = getattr(torch, args.dtype)
    print(f"UFM K={K} n={N_PER_CLASS} d={D}, {RUNS} runs, {args.dtype}, torch threads={torch.get_num_threads()}")
    print(f"{'device':<8}{'kernel':<14}{'batched steps/s':>18}{'loop steps/s':>15}{'ratio':>9}")
    for dev in devices:
        for kernel in KERNELS:
            r = bench(torch.device(dev), dtype, args.steps, kernel)
            print(f"{dev:<8}{kernel:<14}{r['batched']:>18.2f}{r['loop']:>15.2f}{r['batched'] / r['loop']:>9.1f}")


if __name__ == "__main__":
    main()
