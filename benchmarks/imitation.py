"""The elasticity estimands side by side, and how well each LE-SDE imitates the network (issue 11).

What is compared and why. The question users bring: does my network show local elasticity (alpha_t > beta_t),
and does an LE-SDE driven by its E(t) imitate it? Two tables, on the same tracks (3 classes, MLP 256x2, lr 0.02,
batch size 1, 300 probes, 6,000 steps, 8 runs; logits tracked):

1. estimands: the median over windows of alpha, beta and alpha/beta for both regression forms (feature, residual)
   and both weightings (increment = least-squares drift, step = mean per-step coefficient), in float32 and (with
   ``--float64``) float64 tracks of the same runs, with the share of steps dropped at the rounding floor;
2. imitation: every LE-SDE transform x estimand, E(t) tabulated from the estimate or the power-law fit, each
   estimated with the transform-matched regressor lr T f(x_I); the median relative error of the class means over
   the first half of training (and the whole track). The best combination is the CLI's default.

It also writes ``figures/imitation_diagnosis_<dataset>.png`` (which term of the LE-SDE fails: lesde.empirical.
drift_check on the network's own states). Tracks are cached in ``--cache`` between runs.

    python benchmarks/imitation.py --datasets mnist1d digits --float64
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from lesde.empirical import drift_check, estimate, fit, imitate, load_dataset, mlp, track
from lesde.plots import plot_elasticity, plot_imitation, plot_imitation_diagnosis, save_figure
from lesde.simulate import SimulationOverflowError

TRANSFORMS = ("identity", "residual", "residual-projection", "softmax-residual")
WEIGHTINGS = ("increment", "step")
HERE = Path(__file__).resolve().parent


def get_track(name, a, dtype) -> xr.Dataset:
    path = Path(a.cache) / f"{name}_{a.steps}_{a.runs}_{a.probes}_{str(dtype)[6:]}.nc"
    if path.exists():
        return xr.open_dataset(path, engine="h5netcdf").load()
    x, y = load_dataset(name, classes=3)
    net = mlp(tuple(x.shape[1:]), 3, width=256, depth=2)
    t0 = time.perf_counter()
    tr = track(net, x, y, lr=a.lr, steps=a.steps, n_runs=a.runs, probes=a.probes, seed=0, dtype=dtype, progress=False)
    print(f"# tracked {name} ({dtype}) in {time.perf_counter() - t0:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tr.to_netcdf(path, engine="h5netcdf")
    return tr


def quiet(f, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return f(*args, **kw)


def estimands(name, tracks) -> list[dict]:
    rows = []
    for dtype, tr in tracks.items():
        for form in ("feature", "residual"):
            est = quiet(estimate, tr, form=form)
            if form == "residual" and dtype == list(tracks)[-1]:  # both estimands in one figure (float64 if run)
                (HERE / "figures").mkdir(exist_ok=True)
                png = HERE / "figures" / f"estimands_{name}_residual.png"
                print("figure:", save_figure(plot_elasticity(est, quiet(fit, est)), png))
            dropped = est.attrs["excluded_steps"] / (est.attrs["excluded_steps"] + float(est.n_steps.sum()))
            for w in WEIGHTINGS:
                al = est.alpha_by_weighting.sel(weighting=w).values
                be = est.beta_by_weighting.sel(weighting=w).values
                rows.append(
                    dict(
                        dataset=name,
                        dtype=dtype,
                        form=form,
                        weighting=w,
                        alpha=float(np.nanmedian(al)),
                        beta=float(np.nanmedian(be)),
                        ratio=float(np.nanmedian(al / be)),
                        dropped=dropped,
                        disagree=int((np.abs(est.alpha_disagreement) > 4).sum()),
                    )
                )
    return rows


def imitation(name, tr, paths) -> list[dict]:
    rows = []
    for T in TRANSFORMS:
        for w in WEIGHTINGS:
            est = quiet(estimate, tr, transform=T, weighting=w)
            for el in ("estimate", "fit"):
                src = est if el == "estimate" else quiet(fit, est)
                try:
                    im = quiet(imitate, tr, src, paths_per_run=paths, max_times=101)
                    first, whole = im.attrs["median_relative_error_first_half"], im.attrs["median_relative_error"]
                except SimulationOverflowError:
                    first = whole = float("inf")
                rows.append(dict(dataset=name, transform=T, weighting=w, elasticity=el, first_half=first, whole=whole))
                print(f"# {name} {T} {w} {el}: {first:.3g} / {whole:.3g}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["mnist1d", "digits"])
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--paths-per-run", type=int, default=2)
    ap.add_argument("--float64", action="store_true", help="also a float64 track of the same runs (estimands)")
    ap.add_argument("--cache", default="/tmp/lesde-imitation-cache")
    ap.add_argument("--out", default=None, help="optional JSON file for the numbers")
    a = ap.parse_args()
    est_rows, imit_rows = [], []
    for name in a.datasets:
        tracks = {"float32": get_track(name, a, torch.float32)}
        if a.float64:
            tracks["float64"] = get_track(name, a, torch.float64)
        est_rows += estimands(name, tracks)
        imit_rows += imitation(name, tracks["float32"], a.paths_per_run)
    print("\n| data | dtype | form | weighting | alpha | beta | alpha/beta | steps dropped | windows |z|>4 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in est_rows:
        print(
            f"| {r['dataset']} | {r['dtype']} | {r['form']} | {r['weighting']} | {r['alpha']:.4g} | {r['beta']:.4g} "
            f"| {r['ratio']:.3g} | {100 * r['dropped']:.1f}% | {r['disagree']} |"
        )
    print("\n| transform | weighting | E(t) | " + " | ".join(f"{d} first half / whole" for d in a.datasets) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in a.datasets) + " |")
    score = {}
    for T in TRANSFORMS:
        for w in WEIGHTINGS:
            for el in ("estimate", "fit"):
                cells = [r for r in imit_rows if (r["transform"], r["weighting"], r["elasticity"]) == (T, w, el)]
                score[(T, w, el)] = float(np.exp(np.mean([np.log(max(r["first_half"], 1e-300)) for r in cells])))
                print(
                    f"| {T} | {w} | {el} | "
                    + " | ".join(f"{r['first_half']:.3g} / {r['whole']:.3g}" for r in cells)
                    + " |"
                )
    best = min(score, key=score.get)
    print(f"\nbest (geometric mean of the first-half error over the data sets): {best} -> {score[best]:.3g}")
    # which term fails: the diagnosis figure for the best combination on each data set
    for name in a.datasets:
        tr = get_track(name, a, torch.float32)
        T, w, el = best
        est = quiet(estimate, tr, transform=T, weighting=w)
        im = quiet(
            imitate, tr, est if el == "estimate" else quiet(fit, est), paths_per_run=a.paths_per_run, max_times=101
        )
        checks = {
            f"E T X, T={t}": quiet(drift_check, tr, quiet(estimate, tr, transform=t, weighting=w))
            for t in ("identity", "residual")
        }
        checks["kernel E r (no LE-SDE)"] = quiet(drift_check, tr, quiet(estimate, tr, form="residual", weighting=w))
        (HERE / "figures").mkdir(exist_ok=True)
        print(
            "figure:", save_figure(plot_imitation_diagnosis(im, checks, est), HERE / "figures" / f"imitation_diagnosis_{name}.png")
        )
        print("figure:", save_figure(plot_imitation(im), HERE / "figures" / f"imitation_{name}.png"))
        for k, dc in checks.items():
            print(
                f"# {name} drift check {k}: median drift error {np.median(dc.drift_error.values):.3g}, cosine "
                f"{np.median(dc.drift_cosine.values):.3g}; within-class variance at the end: network "
                f"{float(dc.within_var.isel(step=-1).median()):.3g}, LE-SDE noise {float(dc.within_var_model[-1]):.3g}"
            )
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"estimands": est_rows, "imitation": imit_rows, "best": list(best)}, f, indent=2)


if __name__ == "__main__":
    main()
