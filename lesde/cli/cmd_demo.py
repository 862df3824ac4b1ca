"""``lesde demo [--out DIR]``: the main job, small enough for a laptop CPU.

1. A separability phase diagram over (p, c) for alpha_t = c (1+t)^-p, beta_t = 0 (`phase_demo`, on the
   sweep spec `lesde.sweep.DEMO_SPEC`): writes ``phase.zarr`` and ``phase.png`` and prints P(all pairs
   separable) over the exponent p and the scale c, the names of the figure.
2. A residual-transform LE-SDE whose class means align with a simplex ETF: writes ``residual.nc`` (NC
   metrics over path and time) and ``residual.png`` and prints, at six times, the metrics of the figure's panels
   (medians over paths) and the largest angle gap of any pair, each column explained above the table.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ..atomic_write import write_netcdf
from .console import QUIET


def phase_demo(outdir: str | Path = "lesde-demo", device: str = "cpu", progress: bool = True) -> xr.Dataset:
    """A small (p, c) phase diagram of alpha_t = c (1+t)^-p, beta = 0, K = 2: store, plot and table.

    Writes ``outdir/phase.zarr`` and ``outdir/phase.png`` and prints P(all pairs separable) at t = 10^4 over
    p x c (exact sampling, 40 cells x 200 paths).
    """
    from ..plots import phase_plot, save_figure
    from ..sweep import DEMO_SPEC, describe_failures, format_table, run

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    ds = run(DEMO_SPEC, outdir / "phase.zarr", device=device, progress=progress)
    png = save_figure(phase_plot(ds), outdir / "phase.png")
    print(phase_table(format_table(ds)))
    failures = describe_failures(ds)
    print(f"method: {ds.attrs['method']}\nwrote {outdir / 'phase.zarr'}\nwrote {png}")
    if failures:
        print(failures)
    return ds


def phase_table(table: str) -> str:
    """`lesde.sweep.format_table`'s text (rows alpha_scale, columns alpha_exponent) with the swept dims named
    as the figure names them: the scale c and the exponent p of alpha_t = c (1+t)^-p."""
    head, names, *rest = table.splitlines()
    head = head.replace(
        "; rows alpha_scale, columns alpha_exponent", ", alpha_t = c (1+t)^-p; rows: scale c, columns: exponent p"
    )
    label, bar, values = names.partition("|")
    corner = "c \\ p"
    return "\n".join([head, f"{corner:>{len(label) - 1}} {bar}{values}", *rest])


# residual-transform part: beta > 0 makes the common mode (rate (alpha + (K-1) beta)/K) outgrow the contrast
# modes (rate (alpha - beta)/K), so every class mean ends at the same multiple of its ETF direction
K, DIM, N_PER_CLASS = 4, 8, 20
ALPHA, BETA, NOISE = 1.0, 0.75, 0.5
T_END, DT, N_PATHS, N_SAVE = 10.0, 0.01, 32, 21


#: the residual figure's panels, in the order of the printed table
RESIDUAL_PANELS = ("nc1", "etf_error", "maxangle_means", "equinorm_means")


def residual_demo(out_dir: Path, progress: bool = True, device: str = "cpu") -> dict:
    import lesde
    from lesde.metrics import to_dataset

    from ..plots import plot_nc_metrics, save_figure

    model = lesde.LESDE(K, DIM, N_PER_CLASS, alpha=ALPHA, beta=BETA, transform="residual", noise=NOISE)
    sim = lesde.simulate(model, t_end=T_END, dt=DT, n_paths=N_PATHS, n_save=N_SAVE, save="full",
                         dtype=torch.float64, progress=progress, device=device)  # fmt: skip
    if sim.attrs.get("interrupted"):  # simulate returns the completed part of an interrupted run: not a demo's result
        raise KeyboardInterrupt(sim.attrs["interrupted"])
    met = to_dataset(sim)
    met.attrs["demo"] = "residual-transform LE-SDE (lesde demo)"
    nc_path = out_dir / "residual.nc"
    write_netcdf(met, nc_path)
    fig = plot_nc_metrics(
        met,
        metrics=RESIDUAL_PANELS,
        title=f"Residual-transform LE-SDE, $K={K}$, $m={DIM}$, $n={N_PER_CLASS}$, $\\alpha={ALPHA:g}$, "
        f"$\\beta={BETA:g}$, $\\sigma={NOISE:g}$: class means $\\to$ simplex ETF",
    )
    png = save_figure(fig, out_dir / "residual.png")
    worst = _worst_pair_gap(sim.class_mean.values)  # (T,)
    print(
        f"\nResidual-transform LE-SDE (K={K}, m={DIM}, n={N_PER_CLASS}, alpha={ALPHA}, beta={BETA}, "
        f"{N_PATHS} paths): the class means approach a simplex ETF, pairwise cosines -1/(K-1) = {-1 / (K - 1):.4f}"
    )
    print(residual_table(met, worst))
    print(f"wrote {nc_path}\nwrote {png}")
    return {"nc": nc_path, "png": png, "final_worst_cosine_gap": float(worst[-1])}


def _worst_pair_gap(M: np.ndarray) -> np.ndarray:
    """Median over paths of the largest |cos + 1/(K-1)| over pairs of centred class means; M (P, T, K, m)."""
    C = M - M.mean(2, keepdims=True)
    C = C / np.linalg.norm(C, axis=-1, keepdims=True)
    cos = np.einsum("ptkm,ptlm->ptkl", C, C)[..., ~np.eye(M.shape[2], dtype=bool)]  # (P, T, K(K-1))
    return np.median(np.abs(cos + 1 / (M.shape[2] - 1)).max(-1), 0)


def residual_table(met: xr.Dataset, worst: np.ndarray, rows: int = 6) -> str:
    """The residual figure's panels (medians over paths) and the worst pair's angle gap at ``rows`` times, each
    column named as the figure names it and explained above the table."""
    from ..plots import TITLES

    cols = {name: TITLES[name] for name in RESIDUAL_PANELS}
    lines = [
        f"medians over {met.sizes['path']} paths; the columns are the figure's panels, and the angle gap of the worst "
        "pair:"
    ]
    lines += [f"  {i + 1}. {title}" for i, title in enumerate(cols.values())]
    lines.append(f"  {len(cols) + 1}. angle gap to the ETF, worst pair: max over pairs of |cos + 1/(K-1)|")
    lines.append(f"{'t':>6}" + "".join(f"{f'({i + 1})':>11}" for i in range(len(cols) + 1)))
    for i in np.unique(np.linspace(0, met.sizes["time"] - 1, rows).round().astype(int)):
        values = [float(met[name].isel(time=i).median()) for name in cols] + [float(worst[i])]
        lines.append(f"{float(met.time[i]):6.1f}" + "".join(f"{v:11.3g}" for v in values))
    return "\n".join(lines)


def add_parser(sub) -> None:
    s = sub.add_parser("demo", help="a small phase diagram and a residual-transform collapse, on the CPU")
    s.add_argument("--out", default="lesde-demo", metavar="DIR", help="folder for the demo's files")
    s.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    s.add_argument("--quiet", action="store_true", help=QUIET)
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
    print(f"\nlesde demo finished in {time.perf_counter() - t0:.1f} s; its files are in {out.resolve()}")
    return {"phase": phase, "residual": residual}


__all__ = ["add_parser", "run", "demo", "phase_demo", "residual_demo", "residual_table", "phase_table"]
