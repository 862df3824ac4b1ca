"""The elasticity estimands with their errors and the answer to "alpha > beta?", and in which comparisons an LE-SDE
driven by the estimated E(t) imitates the network.

What is compared and why. The question users bring: does my network show local elasticity (alpha_t > beta_t), and
does an LE-SDE driven by its E(t) imitate it? On the same tracks (3 classes, MLP 256x2, lr 0.02, batch size 1,
300 probes, 6,000 steps, 8 runs; logits tracked):

1. estimands (``--estimands``, default mnist1d and digits): for both regression forms (feature, residual) and both
   weightings (increment = least-squares drift, step = mean per-step coefficient), in float32 and float64 tracks of
   the same runs: the median over windows of alpha, beta and alpha/beta, the windows whose 95% interval of
   alpha - beta lies above zero, the whole-track alpha - beta with its interval (run-clustered errors), the share of
   steps dropped at the rounding floor; and each estimate's one-line answer;
2. imitation (``--datasets``, default mnist1d, digits, geomnist; float32 tracks): the LE-SDE with the elasticity
   of the CLI's default (identity transform, increment weighting, tabulated estimate) and with the residual
   transform, every comparison of ``imitate`` (raw relative error, centred class-mean cosine, normalised Gram
   distance, NC1, NCM accuracy, time of separation): the LE-SDE's median discrepancy, the frozen network's (the
   null), the skill 1 - D / D_frozen and the verdict, with the paper's own method (means-form E, LE-ODE, one scale
   over the tail) as a reference row; ``--all-combinations`` adds the raw error of every transform x weighting x
   (estimate, fit).

Figures: ``figures/estimands_<data>_residual.png`` (the elasticity figure, with its alpha - beta panel),
``figures/imitation_<data>.png`` and ``figures/imitation_diagnosis_<data>.png`` (which term of the LE-SDE fails:
lesde.empirical.drift_check on the network's own states). Tracks are cached in ``--cache`` between runs.

    OMP_NUM_THREADS=1 python benchmarks/imitation.py --estimands mnist1d digits --datasets mnist1d digits geomnist
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
            for w in WEIGHTINGS:
                est = quiet(estimate, tr, form=form, weighting=w)
                if form == "residual" and w == "increment" and dtype == list(tracks)[-1]:
                    (HERE / "figures").mkdir(exist_ok=True)
                    png = HERE / "figures" / f"estimands_{name}_residual.png"
                    print("figure:", save_figure(plot_elasticity(est, quiet(fit, est)), png))
                dropped = est.attrs["excluded_steps"] / (est.attrs["excluded_steps"] + float(est.n_steps.sum()))
                lo, hi = np.ravel(est.attrs["pooled_alpha_minus_beta_ci"])
                rows.append(
                    dict(
                        dataset=name,
                        dtype=dtype,
                        form=form,
                        weighting=w,
                        alpha=float(np.nanmedian(est.alpha)),
                        beta=float(np.nanmedian(est.beta)),
                        ratio=float(np.nanmedian(est.alpha / est.beta)),
                        above=est.attrs["windows_alpha_above_beta"],
                        below=est.attrs["windows_alpha_below_beta"],
                        windows=est.sizes["step"],
                        diff=est.attrs["pooled_alpha_minus_beta"],
                        diff_ci=(lo, hi),
                        dropped=dropped,
                        disagree=int((np.abs(est.alpha_disagreement) > 4).sum()),
                        answer=est.attrs["answer"],
                    )
                )
    return rows


def comparisons(name, tr, paths, T) -> list[dict]:
    """Every comparison of imitate for the LE-SDE with transform T (increment weighting, tabulated estimate)."""
    est = quiet(estimate, tr, transform=T)
    t0 = time.perf_counter()
    try:
        im = quiet(imitate, tr, est, paths_per_run=paths, max_times=101)
    except SimulationOverflowError:
        print(f"# {name} T={T}: the LE-SDE overflowed", flush=True)
        return []
    print(f"# {name} T={T}: imitate in {time.perf_counter() - t0:.0f} s", flush=True)
    if T == "identity":
        (HERE / "figures").mkdir(exist_ok=True)
        print("figure:", save_figure(plot_imitation(im), HERE / "figures" / f"imitation_{name}.png"))
    rows = []
    for c in im.comparison.values:
        words = json.loads(im.attrs[f"verdict_{c}"])
        d = im.discrepancy.sel(comparison=c)
        sk = im.skill.sel(comparison=c)
        rows.append(
            dict(
                dataset=name,
                transform=T,
                comparison=str(c),
                le_sde=float(d.sel(process="le-sde")),
                frozen=float(d.sel(process="frozen")),
                paper=float(d.sel(process="paper")),
                skill=float(sk.sel(process="le-sde")),
                skill_paper=float(sk.sel(process="paper")),
                verdict=words["le-sde"],
                verdict_paper=words["paper"],
            )
        )
    sep = im.separation_time.median("run")
    print(f"# {name} T={T}: separation time (median over runs) "
          + ", ".join(f"{p} {float(sep.sel(process=p)):.3g}" for p in im.process.values)
          + f"; paper scale {im.attrs['reference_scale']:.3g}; class probs {im.attrs['class_probs']}", flush=True)  # fmt: skip
    return rows


def all_combinations(name, tr, paths) -> list[dict]:
    rows = []
    for T in TRANSFORMS:
        for w in WEIGHTINGS:
            est = quiet(estimate, tr, transform=T, weighting=w)
            for el in ("estimate", "fit"):
                src = est if el == "estimate" else quiet(fit, est)
                try:
                    im = quiet(imitate, tr, src, paths_per_run=paths, max_times=101, reference=False)
                    first, whole = im.attrs["median_relative_error_first_half"], im.attrs["median_relative_error"]
                except SimulationOverflowError:
                    first = whole = float("inf")
                rows.append(dict(dataset=name, transform=T, weighting=w, elasticity=el, first_half=first, whole=whole))
                print(f"# {name} {T} {w} {el}: {first:.3g} / {whole:.3g}", flush=True)
    return rows


def diagnosis(name, tr, paths) -> None:
    est = quiet(estimate, tr)
    im = quiet(imitate, tr, est, paths_per_run=paths, max_times=101, reference=False)
    checks = {
        f"E T X, T={t}": quiet(drift_check, tr, quiet(estimate, tr, transform=t)) for t in ("identity", "residual")
    }
    checks["kernel E r (no LE-SDE)"] = quiet(drift_check, tr, quiet(estimate, tr, form="residual"))
    png = HERE / "figures" / f"imitation_diagnosis_{name}.png"
    print("figure:", save_figure(plot_imitation_diagnosis(im, checks, est), png))


def print_tables(est_rows, cmp_rows, combo_rows, datasets) -> None:
    if est_rows:
        print("\n| data | track | form | weighting | alpha | beta | alpha/beta | alpha > beta (95%) | alpha - beta, whole"
              " track [95% CI] | dropped | windows \\|z\\|>4 |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in est_rows:
            print(
                f"| {r['dataset']} | {r['dtype']} | {r['form']} | {r['weighting']} | {r['alpha']:.4g} | {r['beta']:.4g} "
                f"| {r['ratio']:.3g} | {r['above']} of {r['windows']} (below: {r['below']}) | {r['diff']:.4g} "
                f"[{r['diff_ci'][0]:.4g}, {r['diff_ci'][1]:.4g}] | {100 * r['dropped']:.1f}% | {r['disagree']} |"
            )
        print("\nanswers (float64 tracks, increment weighting):")
        for r in est_rows:
            if r["dtype"] == "float64" and r["weighting"] == "increment":
                print(f"- {r['dataset']}, {r['form']}: {r['answer']}")
    if cmp_rows:
        print("\n| data | LE-SDE transform | comparison | LE-SDE | frozen network | skill | verdict | paper LE-ODE (skill):"
              " verdict |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in cmp_rows:
            print(
                f"| {r['dataset']} | {r['transform']} | {r['comparison']} | {r['le_sde']:.3g} | {r['frozen']:.3g} | "
                f"{r['skill']:.2g} | {r['verdict']} | {r['paper']:.3g} ({r['skill_paper']:.2g}): {r['verdict_paper']} |"
            )
    if combo_rows:
        print("\n| transform | weighting | E(t) | " + " | ".join(f"{d} first half / whole" for d in datasets) + " |")
        print("| --- | --- | --- | " + " | ".join("---" for _ in datasets) + " |")
        for T in TRANSFORMS:
            for w in WEIGHTINGS:
                for el in ("estimate", "fit"):
                    cells = [r for r in combo_rows if (r["transform"], r["weighting"], r["elasticity"]) == (T, w, el)]
                    print(f"| {T} | {w} | {el} | " + " | ".join(f"{r['first_half']:.3g} / {r['whole']:.3g}" for r in cells)
                          + " |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--estimands", nargs="*", default=["mnist1d", "digits"])
    ap.add_argument("--datasets", nargs="*", default=["mnist1d", "digits", "geomnist"])
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--paths-per-run", type=int, default=2)
    ap.add_argument("--all-combinations", action="store_true", help="the raw error of every transform x estimand")
    ap.add_argument("--cache", default="/tmp/lesde-imitation-cache")
    ap.add_argument("--out", default=None, help="optional JSON file for the numbers")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    est_rows, cmp_rows, combo_rows = [], [], []
    for name in a.estimands:
        tracks = {d: get_track(name, a, getattr(torch, d)) for d in ("float32", "float64")}
        est_rows += estimands(name, tracks)
    for name in a.datasets:
        tr = get_track(name, a, torch.float32)
        for T in ("identity", "residual"):
            cmp_rows += comparisons(name, tr, a.paths_per_run, T)
        diagnosis(name, tr, a.paths_per_run)
        if a.all_combinations:
            combo_rows += all_combinations(name, tr, a.paths_per_run)
    print_tables(est_rows, cmp_rows, combo_rows, a.datasets)
    print(f"\n# total {time.perf_counter() - t0:.0f} s; torch {torch.__version__}, numpy {np.__version__}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"estimands": est_rows, "comparisons": cmp_rows, "combinations": combo_rows}, f, indent=2)


if __name__ == "__main__":
    main()
