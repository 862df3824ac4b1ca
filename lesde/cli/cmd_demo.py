"""``lesde demo [--out DIR]``: the main job in two minutes on a laptop CPU.

1. A separability phase diagram over (p, c) for alpha_t = c (1+t)^-p, beta_t = 0 (:func:`phase_demo`, on the
   sweep spec :data:`lesde.sweep.DEMO_SPEC`): writes ``phase.zarr`` and ``phase.png`` and prints P(all pairs separable).
2. A residual-transform LE-SDE whose class means align with a simplex ETF: writes ``residual.nc`` (NC
   metrics over path and time) and ``residual.png`` and prints pairwise cosines and NC metrics falling.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr


def phase_demo(outdir: str | Path = "lesde-demo", device: str = "cpu", progress: bool = True) -> xr.Dataset:
    """A small (p, c) phase diagram of alpha_t = c (1+t)^-p, beta = 0, K = 2: store, plot and table.

    Writes ``outdir/phase.zarr`` and ``outdir/phase.png`` and prints P(all pairs separable) at t = 10^4 over
    p x c. Runs in well under 2 minutes on 2 CPU cores (exact sampling, 40 cells x 200 paths).
    """
    from ..plots import phase_plot, save_figure
    from ..sweep import DEMO_SPEC, describe_failures, format_table, run

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    ds = run(DEMO_SPEC, outdir / "phase.zarr", device=device, progress=progress)
    save_figure(phase_plot(ds), outdir / "phase.png")
    print(format_table(ds))
    failures = describe_failures(ds)
    print(f"method: {ds.attrs['method']}; wrote {outdir / 'phase.zarr'} and {outdir / 'phase.png'}")
    if failures:
        print(failures)
    return ds


# residual-transform part: beta > 0 makes the common mode (rate (alpha + (K-1) beta)/K) outgrow the contrast
# modes (rate (alpha - beta)/K), so every class mean ends at the same multiple of its ETF direction
K, DIM, N_PER_CLASS = 4, 8, 20
ALPHA, BETA, NOISE = 1.0, 0.75, 0.5
T_END, DT, N_PATHS, N_SAVE = 10.0, 0.01, 32, 21


def residual_demo(out_dir: Path, progress: bool = True, device: str = "cpu") -> dict:
    import lesde
    from lesde.metrics import to_dataset

    model = lesde.LESDE(K, DIM, N_PER_CLASS, alpha=ALPHA, beta=BETA, transform="residual", noise=NOISE)
    sim = lesde.simulate(
        model,
        t_end=T_END,
        dt=DT,
        n_paths=N_PATHS,
        n_save=N_SAVE,
        save="full",
        dtype=torch.float64,
        progress=progress,
        device=device,
    )
    met = to_dataset(sim)
    M = sim.class_mean.values  # (P, T, K, m)
    C = M - M.mean(2, keepdims=True)
    C = C / np.linalg.norm(C, axis=-1, keepdims=True)
    cos = np.einsum("ptkm,ptlm->ptkl", C, C)[..., ~np.eye(K, dtype=bool)]  # (P, T, K(K-1))
    met["mean_cosine_median"] = (("time",), np.median(cos.mean(-1), 0))
    met.attrs["demo"] = "residual-transform LE-SDE (lesde demo)"
    nc_path = out_dir / "residual.nc"
    met.to_netcdf(nc_path, engine="h5netcdf")
    png = out_dir / "residual.png"
    from ..plots import plot_nc_metrics, save_figure

    fig = plot_nc_metrics(
        met,
        names=["nc1", "etf_error", "maxangle_means", "equinorm_means"],
        title=f"Residual-transform LE-SDE, $K={K}$, $m={DIM}$, $n={N_PER_CLASS}$, $\\alpha={ALPHA:g}$, "
        f"$\\beta={BETA:g}$, $\\sigma={NOISE:g}$: class means $\\to$ simplex ETF",
    )
    save_figure(fig, png)

    print(
        f"\nResidual-transform LE-SDE (K={K}, m={DIM}, n={N_PER_CLASS}, alpha={ALPHA}, beta={BETA}, "
        f"{N_PATHS} paths): class-mean cosines -> -1/(K-1) = {-1 / (K - 1):.4f}"
    )
    print("medians over paths; max|cos+1/(K-1)| is the worst pair's distance from the simplex-ETF angle")
    worst = np.median(np.abs(cos + 1 / (K - 1)).max(-1), 0)  # (T,)
    print(f"{'t':>6} {'max|cos+1/(K-1)|':>17} {'nc1':>10} {'etf_error':>10}")
    for i in np.linspace(0, len(sim.time) - 1, 6).astype(int):
        print(
            f"{float(sim.time[i]):6.1f} {worst[i]:17.4f} "
            f"{float(met.nc1.isel(time=i).median()):10.3g} {float(met.etf_error.isel(time=i).median()):10.3g}"
        )
    return {"nc": nc_path, "png": png, "final_worst_cosine_gap": float(worst[-1])}


def add_parser(sub) -> None:
    s = sub.add_parser("demo", help="small phase diagram + residual-transform collapse (CPU, < 2 min)")
    s.add_argument("--out", default="lesde-demo", help="folder for the demo's files")
    s.add_argument("--device", default="cpu", help="torch device")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(fn=run, output=("out", "folder"))


def run(args) -> None:
    demo(args.out, progress=not args.quiet, device=args.device)


def demo(out_dir: str | Path = "lesde-demo", progress: bool = True, device: str = "cpu") -> dict:
    """Both parts of the demo into ``out_dir``; returns the phase Dataset and the residual part's files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    phase = phase_demo(out, device=device, progress=progress)
    residual = residual_demo(out, progress=progress, device=device)
    print(f"\nlesde demo finished in {time.perf_counter() - t0:.1f} s; files in {out.resolve()}:")
    for p in sorted(out.iterdir()):
        print(f"  {p.name}")
    return {"phase": phase, "residual": residual}


__all__ = ["add_parser", "run", "demo", "phase_demo", "residual_demo"]
