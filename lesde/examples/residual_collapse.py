r"""Neural collapse in a residual-transform LE-SDE: NC1, the CDNV and the distance to a simplex ETF fall.

The model: K classes of n samples in R^m,

$$ dX_i = \sum_l \pi_l E_{y_i l}\, T_{y_i l} \bar X_l\, dt + \sigma\, dW_i, \qquad
E_{kk} = \alpha,\ E_{kl} = \beta,\ T_{kl} = u_k u_l^\top / \|d_l\|^2 , $$

with $d_j = e_j - \tfrac1K 1_K$ and $u_j$ its embedding in the first K coordinates. The drift moves
class mean k only along $u_k$, and the coefficients $s_k = u_k^\top \bar X_k / \|d_k\|^2$ follow
$\dot s = \tfrac1K E s$. E has the common mode $1_K$ with rate $(\alpha + (K-1)\beta)/K$ and
the contrast modes with rate $(\alpha - \beta)/K$. With $\beta > 0$ the common mode grows fastest,
so all $s_k$ become equal, the centred class means become $s\, u_k$, a simplex ETF (pairwise cosines
-1/(K-1)), while the within-class spread only grows like $\sigma\sqrt t$: NC1, CDNV and the ETF error fall.
(With $\beta = 0$ every mode has the same rate and the means keep their random initial geometry.)

What the output shows (the printed medians and the figure): NC1, the CDNV, the distance of the class means to a
simplex ETF, their equinorm and angle gaps fall by one to three orders of magnitude over t = 10, the largest and
the smallest pairwise cosine of the class means close in on -1/(K-1), and every pair of classes becomes separable.
The classifier metrics use the least-squares classifier, not a trained one; they are in the file, not the figure.

The script simulates the model twice with the same seed, hence the same paths:

* ``save="full"`` (every sample); `lesde.metrics.to_dataset` computes every NC metric, the classifier ones
  with the least-squares classifier W_LS standing in for a trained last layer;
* ``save="metrics"``, the on-the-fly path a 10^4-path run would use (nothing but metrics is kept); its NC
  metrics must equal the offline ones, and it adds pairwise separability.

It writes ``residual_collapse.nc`` (metrics over (path, time)) and ``residual_collapse.png`` (five metric panels
and the class-mean cosines against -1/(K-1)) into ``--out`` (default: the current folder), and prints the medians
over paths at a few times, with progress bars while it simulates. ``--tiny`` runs a smaller version (fewer paths,
coarser steps) for tests.

``run(out_dir, tiny=False) -> (metrics Dataset, png path)`` does the same from Python. Copy it with
``lesde example copy residual_collapse.py`` and run ``python residual_collapse.py [--tiny] [--out DIR]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import lesde
from lesde import metrics
from lesde.atomic_write import write_netcdf
from lesde.plots import TITLES, plot_collapse, save_figure

# --- model ---
K = 4  # classes
M = 8  # feature dimension (>= K for the residual transform)
N_PER_CLASS = 20  # samples per class
ALPHA = 1.0  # intra-class elasticity
BETA = 0.5  # inter-class elasticity (> 0: common-mode rate 0.625 outgrows contrast rate 0.125)
SIGMA = 1.0  # noise scale
# --- run ---
T_END = 10.0
DT = 0.01
N_PATHS = 64
N_SAVE = 21
SEED = 0
DTYPE = torch.float64
# --- tiny run (tests) ---
TINY_DT = 0.05
TINY_PATHS = 8
TINY_SAVE = 11
# --- output ---
PLOT_METRICS = ("nc1", "cdnv", "etf_error", "equinorm_means", "maxangle_means")  # and the cosine panel
TABLE_METRICS = ("nc1", "cdnv", "etf_error", "maxangle_means", "separable_fraction")
TABLE_TIMES = 5
STEM = "residual_collapse"


def build_model() -> lesde.LESDE:
    """The residual-transform LE-SDE of the module docstring."""
    return lesde.LESDE(K, M, N_PER_CLASS, alpha=ALPHA, beta=BETA, transform="residual", noise=SIGMA)


def simulate_both(tiny: bool = False, progress: bool = False) -> tuple[xr.Dataset, xr.Dataset]:
    """The same paths saved in full and as on-the-fly metrics: (full Dataset, metrics Dataset)."""
    model = build_model()
    kwargs = dict(
        t_end=T_END,
        dt=TINY_DT if tiny else DT,
        n_paths=TINY_PATHS if tiny else N_PATHS,
        n_save=TINY_SAVE if tiny else N_SAVE,
        dtype=DTYPE,
        seed=SEED,
        progress=progress,
    )
    full = lesde.simulate(model, save="full", **kwargs)
    online = lesde.simulate(model, save="metrics", chunk_size=full.attrs["chunk_size"], **kwargs)
    return full, online


def collapse_metrics(full: xr.Dataset, online: xr.Dataset) -> xr.Dataset:
    """Every NC metric of the full run (classifier ones with W_LS) plus the online run's separability.

    Raises
    ------
    AssertionError
        If the on-the-fly metrics differ from the offline ones (they see the same paths).
    """
    ds = metrics.to_dataset(full, use_least_squares=True)
    for name in metrics.ONLINE_METRICS:
        # same seed and chunking -> same paths: the two routes must agree to round-off
        np.testing.assert_allclose(online[name].values, ds[name].values, rtol=1e-8, atol=1e-12, err_msg=name)
    for name in ("separable_fraction", "all_separable"):
        ds[name] = online[name].assign_coords(path=ds["path"])
    ds.attrs["example"] = STEM
    ds.attrs["online_metrics_checked"] = ", ".join(metrics.ONLINE_METRICS)
    return ds


def summary_table(ds: xr.Dataset, names=TABLE_METRICS, n_times: int = TABLE_TIMES) -> str:
    """Medians over paths of ``names`` at ``n_times`` evenly spaced save times, as fixed-width text."""
    names = [n for n in names if n in ds]
    idx = np.unique(np.linspace(0, ds.sizes["time"] - 1, n_times).round().astype(int))
    med = ds[names].isel(time=idx).median("path")
    width = max(12, *(len(n) + 1 for n in names))
    lines = [f"  {n}: {TITLES.get(n, ds[n].attrs.get('long_name', n))}" for n in names]
    lines.append(f"{'time':>6} " + "".join(f"{n:>{width}}" for n in names))
    for i in range(len(idx)):
        row = med.isel(time=i)
        lines.append(f"{float(row['time']):6.2f} " + "".join(f"{float(row[n]):>{width}.4g}" for n in names))
    return "\n".join(lines)


def run(out_dir: str | Path, tiny: bool = False, progress: bool = False) -> tuple[xr.Dataset, Path]:
    """Simulate, compute the metrics, write ``residual_collapse.nc`` and ``.png`` into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created if missing).
    tiny : bool
        A small version (8 paths, dt = 0.05, 11 save times).
    progress : bool
        Show the simulation progress bars.

    Returns
    -------
    tuple[xr.Dataset, Path]
        (metrics Dataset over (path, time), path of the PNG)
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full, online = simulate_both(tiny, progress)
    ds = collapse_metrics(full, online)
    write_netcdf(ds, out / f"{STEM}.nc")
    title = (
        f"Residual-transform LE-SDE: $K={K}$, $m={M}$, $n={N_PER_CLASS}$, $\\alpha={ALPHA:g}$, $\\beta={BETA:g}$, "
        f"$\\sigma={SIGMA:g}$, {ds.sizes['path']} paths"
    )
    png = save_figure(plot_collapse(ds, full, metrics=PLOT_METRICS, title=title), out / f"{STEM}.png")
    return ds, png


def main(argv: list[str] | None = None) -> tuple[xr.Dataset, Path]:
    """The command line: ``[--tiny] [--out DIR]``; prints the table and returns what `run` returns."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a small run (fewer paths, coarser steps: the tests)")
    parser.add_argument("--out", default=".", help="output folder (default: the current one)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    ds, png = run(args.out, tiny=args.tiny, progress=not args.quiet)
    print(f"medians over {ds.sizes['path']} paths of (the figure's panel titles; separable_fraction: of class pairs):")
    print(summary_table(ds))
    print(f"wrote {Path(args.out) / (STEM + '.nc')}\nwrote {png}")
    return ds, png


if __name__ == "__main__":
    main()
