"""Are the standard errors of ``estimate`` the size of the spread over independent runs? Held-out check on real
networks, window by window.

What is compared and why: an error bar is honest when it matches how much the estimate would change with another
run (another initialisation and sample order). Here ``--runs`` independent runs of one network (3 classes, MLP
64x2, lr 0.01, batch size 1, the same 300 probes in every run, float64 tracks so the ``step`` estimand is exact)
are tracked in batches of ``--batch`` runs with different seeds, and per window:

1. single-run errors: each run estimated alone (errors from blocks of its steps, ``se_cluster="block"``); the
   ratio is the root-mean-square of the runs' standard errors over the standard deviation of their estimates;
2. run-clustered errors: the runs split into groups of ``--group`` runs, each group estimated with errors
   clustered by run; the ratio is the RMS of the groups' errors over the spread of the group estimates;

for alpha, beta and alpha - beta, both weightings (``increment``, ``step``), and the forms ``feature`` (identity),
``residual`` and ``feature`` with ``transform="residual"`` (the transform-matched regression). Calibrated is a
ratio in [0.5, 2]. ``--baseline`` adds the single-run ratios with one cluster per step (the errors before blocks
of steps). ``--same-init`` adds the decomposition that explains what a single run cannot see: the same single-run
ratios against the spread of runs that share one initialisation (only the sample order differs).

    OMP_NUM_THREADS=1 python benchmarks/calibration.py --datasets digits mnist1d --runs 48 --same-init --baseline \
        --out cal.json
    python benchmarks/calibration.py --from-json cal.json --per-window   # the tables again, every window's ratio
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from lesde.empirical import estimate, init_nets, load_dataset, mlp, track
from lesde.empirical.estimation import _pooling as pool
from lesde.empirical.estimation import regression_forms
from lesde.empirical.tracks.track_inputs import select_probes

FORMS = {"feature": {"form": "feature"}, "residual": {"form": "residual"},
         "feature-T=residual": {"form": "feature", "transform": "residual"}}  # fmt: skip
QUANTITIES = ("alpha", "beta", "alpha_minus_beta")
WEIGHTINGS = ("increment", "step")


def values(est) -> dict:
    """(form-independent) estimate and SE per weighting, quantity and window."""
    out = {}
    for w in WEIGHTINGS:
        for q in QUANTITIES:
            out[(w, q)] = (
                est[f"{q}_by_weighting"].sel(weighting=w).values,
                est[f"{q}_by_weighting_se"].sel(weighting=w).values,
            )
    return out


def tracks(name: str, a, init: str):
    """Batches of independent runs (different seeds), the same probes in all."""
    x, y = load_dataset(name, classes=3)
    net = mlp(tuple(x.shape[1:]), 3, width=64, depth=2)
    if init == "keep":
        net = init_nets(net, 1, 12345)[0]
    probes = select_probes(y, a.probes, 0)
    for b in range(a.runs // a.batch):
        t0 = time.perf_counter()
        tr = track(net, x, y, lr=a.lr, steps=a.steps, n_runs=a.batch, probes=probes, seed=1000 + b, init=init,
                   dtype=torch.float64, progress=False)  # fmt: skip
        print(f"# {name} batch {b} ({init}): tracked in {time.perf_counter() - t0:.0f} s", flush=True)
        yield tr


def per_step_clusters(num, den, Lh, starts):
    """The single-run clusters before blocks: one per step (the baseline ``--baseline`` measures)."""
    if num.shape[0] > 1:
        return pool.Clusters(num.shape[1], starts)
    return pool.Clusters(num.shape[1], starts, block=1)


def study(name: str, a, init: str = "reinit") -> dict:
    single = {f: [] for f in FORMS}
    grouped = {f: [] for f in FORMS}
    baseline = {f: [] for f in FORMS}
    for tr in tracks(name, a, init):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for f, kw in FORMS.items():
                for r in range(tr.sizes["run"]):
                    single[f].append(values(estimate(tr.isel(run=[r]), **kw)))
                    if a.baseline:
                        blocks = regression_forms._clusters
                        regression_forms._clusters = per_step_clusters
                        try:
                            baseline[f].append(values(estimate(tr.isel(run=[r]), **kw)))
                        finally:
                            regression_forms._clusters = blocks
                if init == "reinit":
                    for g in range(0, tr.sizes["run"], a.group):
                        grouped[f].append(values(estimate(tr.isel(run=slice(g, g + a.group)), **kw)))
    out = {}
    for kind, res in (("single", single), ("grouped", grouped), ("per-step", baseline)):
        for f, rows in res.items():
            if not rows:
                continue
            for key in rows[0]:
                est = np.stack([r[key][0] for r in rows])
                se = np.stack([r[key][1] for r in rows])
                ratio = np.sqrt(np.nanmean(se**2, 0)) / np.nanstd(est, 0, ddof=1)
                out[f"{kind}|{f}|{key[0]}|{key[1]}"] = ratio.tolist()
    return out


def per_window(name: str, res: dict, label: str) -> None:
    print(f"\n{label} ({name}), the ratio in every window (window 0 first):")
    for key, r in res.items():
        print(f"- {key.replace('|', ', ')}: " + " ".join(f"{v:.2f}" for v in r))


def report(name: str, res: dict, label: str) -> None:
    print(f"\n{label} ({name}): RMS standard error / spread over independent estimates, per window")
    print("| errors | form | weighting | quantity | min | median | max | windows outside [0.5, 2] | first 5 windows |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, r in res.items():
        kind, f, w, q = key.split("|")
        r = np.asarray(r)
        bad = int(np.sum((r < 0.5) | (r > 2)))
        first = " ".join(f"{v:.2f}" for v in r[:5])
        print(f"| {kind} | {f} | {w} | {q} | {np.nanmin(r):.2f} | {np.nanmedian(r):.2f} | {np.nanmax(r):.2f} | "
              f"{bad} of {len(r)} | {first} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    ap.add_argument("--runs", type=int, default=48)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--same-init", action="store_true", help="also runs sharing one initialisation (digits only)")
    ap.add_argument("--baseline", action="store_true", help="also single-run errors with one cluster per step")
    ap.add_argument("--out", default=None, help="JSON file for the per-window ratios")
    ap.add_argument("--per-window", action="store_true", help="also print every window's ratio")
    ap.add_argument("--from-json", default=None, help="print the tables of a JSON file --out wrote, run nothing")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if a.from_json:
        with open(a.from_json) as f:
            allres = json.load(f)
    else:
        allres = {name: study(name, a) for name in a.datasets}
        if a.same_init:
            allres["digits-same-init"] = study("digits", a, init="keep")
    for key, res in allres.items():
        label = "independent runs" if key in a.datasets else "runs sharing one initialisation (sample order differs)"
        name = key.replace("-same-init", "")
        report(name, res, label)
        if a.per_window:
            per_window(name, res, label)
    print(f"\n# total {time.perf_counter() - t0:.0f} s; torch {torch.__version__}, numpy {np.__version__}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(allres, f)


if __name__ == "__main__":
    main()
