"""``lesde imitate EST.nc --out imit.nc``: drive an LE-SDE with the E(t) of a ``lesde estimate`` file from the
network's class means (`lesde.empirical.imitate`), write its Dataset and ``<out stem>_trajectories.png``,
and print how far the LE-SDE's class means are from the network's."""

from __future__ import annotations

from pathlib import Path

from .console import QUIET

ELASTICITY = ("estimate", "fit")
TRANSFORMS = ["identity", "residual", "residual-projection", "softmax-residual"]


def add_parser(sub) -> None:
    s = sub.add_parser("imitate", help="drive an LE-SDE with the estimated E(t) from the network's class means")
    s.add_argument(
        "estimate",
        metavar="EST.nc",
        help="the file lesde estimate wrote (its estimate of E(t), its fit and the thinned track of the network)",
    )
    s.add_argument(
        "--out",
        required=True,
        metavar="IMIT.nc",
        help="NetCDF file to write: the network's and the LE-SDE's class means over time, and their relative error "
        "(and IMIT_trajectories.png next to it)",
    )
    s.add_argument(
        "--transform",
        default=None,
        choices=TRANSFORMS,
        help="LE-SDE transform (default: the one the estimate was made for)",
    )
    s.add_argument(
        "--elasticity",
        default="estimate",
        choices=list(ELASTICITY),
        help="drive with the tabulated estimate (default) or the fitted schedules",
    )
    s.add_argument("--paths-per-run", type=int, default=4, help="LE-SDE paths started from each run's features")
    s.add_argument("--seed", type=int, default=0, help="seeds the LE-SDE's noise")
    s.add_argument("--quiet", action="store_true", help=QUIET)
    s.set_defaults(fn=run, output=("out", "file"))


def imitate_cli(est_path: str | Path, out: str | Path, transform: str | None = None, elasticity: str = "estimate",
                paths_per_run: int = 4, seed: int = 0, progress: bool = True):  # fmt: skip
    """Read an ``estimate_cli`` file, imitate its network with the LE-SDE, write ``out`` and a PNG.

    ``elasticity="estimate"`` (default) drives the LE-SDE with the tabulated estimate, ``"fit"`` with the fitted
    schedules; ``transform`` defaults to the one the estimate was made for.
    """
    from ..atomic_write import atomic_path, write_netcdf
    from ..empirical import FitResult, imitate
    from ..plots import plot_imitation, save_figure
    from ..validation import check_choice

    check_choice("elasticity", elasticity, ELASTICITY)
    est_path, out = Path(est_path), Path(out)
    est, tr = _read_estimate(est_path)
    src = FitResult.from_json(est.attrs["fit"]) if elasticity == "fit" else est
    imit = imitate(tr, src, transform=transform, paths_per_run=paths_per_run, seed=seed, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_name(out.stem + "_trajectories.png")
    with atomic_path(png) as tmp:  # the figure, then the NetCDF: each whole or the previous one intact
        save_figure(plot_imitation(imit), tmp)
    write_netcdf(imit, out)
    print(_summary(imit, est_path, paths_per_run))
    print(f"wrote {out}\nwrote {png}")
    return imit


def _read_estimate(path: Path):
    """The estimate (root group) and the thinned track (group ``track``) of a ``lesde estimate`` file, loaded; a
    file that is not one is refused in one line (UsageError, exit code 2)."""
    import xarray as xr

    from .failures import UsageError

    what = f"{path} is not a file written by lesde estimate"
    try:
        with xr.open_dataset(path, engine="h5netcdf") as est:
            est = est.load()
    except Exception as e:  # noqa: BLE001 - whatever h5py says about a file that is not NetCDF-4
        raise UsageError(f"{what} (not a NetCDF-4 file: {type(e).__name__})") from None
    if "fit" not in est.attrs or "alpha" not in est:
        raise UsageError(f"{what}: it has no estimate (no 'alpha' variable or 'fit' attr); run lesde estimate first")
    try:
        with xr.open_dataset(path, group="track", engine="h5netcdf") as tr:
            tr = tr.load()
    except (OSError, KeyError, ValueError):
        raise UsageError(f"{what}: it has no 'track' group (the network's features that imitate starts from)") from None
    if "features" not in tr:
        raise UsageError(f"{what}: its 'track' group holds no 'features'")
    return est, tr


def _summary(imit, est_path: Path, paths_per_run: int) -> str:
    import numpy as np

    err = imit["relative_error_median"]
    T = imit.sizes["time"]
    rows = [
        f"  t={float(imit.time[i]):8.3f}  relative error (median over runs) {float(err[i]):.4g}"
        for i in np.unique(np.linspace(0, T - 1, 5).round().astype(int))
    ]
    first = imit.attrs["median_relative_error_first_half"]
    lines = [
        f"imitation of {est_path} (transform={imit.attrs['transform']}, E(t) {imit.attrs['elasticity']}, "
        f"sigma={imit.attrs['noise']:.4g}, {paths_per_run} paths per run):",
        *rows,
        f"median relative error of the class means: first half of training {first:.4g}, whole track "
        f"{imit.attrs['median_relative_error']:.4g}"
        + ("  (> 0.5: the LE-SDE does not imitate this network)" if first > 0.5 else ""),
    ]
    if "nc1_quotient" in imit:
        nc = imit["nc1_quotient"].isel(time=-1).mean("run")
        lines.append(f"  final nc1_quotient: network {float(nc[0]):.4g}, LE-SDE {float(nc[1]):.4g}")
    lines += _verdict_lines(imit)
    return "\n".join(lines)


def _verdict_lines(imit) -> list[str]:
    """One line per comparison: the LE-SDE's median discrepancy beside the frozen network's, its skill and verdict,
    and the paper's reference LE-ODE."""
    import json

    import numpy as np

    if "skill" not in imit:
        return []
    rows = [
        "verdicts (discrepancy, for centred_cosine 1 - cos: median over runs and the times after 0; skill = 1 - "
        "discrepancy / the frozen network's; imitates at skill >= 0.5, partly at >= 0.2):"
    ]

    def cell(c, p, who):
        d = float(imit["discrepancy"].sel(comparison=c, process=p))
        sk = float(imit["skill"].sel(comparison=c, process=p))
        word = json.loads(imit.attrs.get(f"verdict_{c}", "{}")).get(p, "?")
        return f"{who} {d:.3g}" + (f" (skill {sk:.2g})" if np.isfinite(sk) else "") + f": {word}"

    for c in imit["comparison"].values:
        null = float(imit["discrepancy"].sel(comparison=c, process="frozen"))
        frozen = "" if np.isnan(null) else f" [frozen network {null:.3g}]"
        rows.append(f"  {c}: {cell(c, 'le-sde', 'LE-SDE')}{frozen}; {cell(c, 'paper', 'paper LE-ODE')}")
    return rows


def run(args) -> None:
    from .files import check_netcdf

    check_netcdf(args.estimate)
    imitate_cli(args.estimate, args.out, transform=args.transform, elasticity=args.elasticity,
                paths_per_run=args.paths_per_run, seed=args.seed, progress=not args.quiet)  # fmt: skip


__all__ = ["add_parser", "run", "imitate_cli"]
