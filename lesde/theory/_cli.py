"""``lesde compare-theory FILE --out F.nc [--plot F.png]``: attach, write, plot, and print the summary."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    """The ``compare-theory`` subcommand on the CLI's subparsers."""
    s = sub.add_parser("compare-theory", help="attach the UFM / LE-SDE prediction to a lesde Dataset")
    s.add_argument("file", help="a lesde NetCDF file (simulate, compare-sgd) or a sweep store (.zarr folder)")
    s.add_argument("--out", required=True, help="NetCDF file to write with the predictions attached")
    s.add_argument(
        "--plot", default=None, help="figure of measured vs predicted (optional; .png, .pdf, .svg by the extension)"
    )
    s.set_defaults(fn=compare_theory_cli)


def _open(path: str):
    import xarray as xr

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if p.is_dir():  # a sweep store
        from ..sweep import open_sweep

        return open_sweep(p)
    try:
        return xr.load_dataset(p, engine="h5netcdf")
    except Exception as e:  # noqa: BLE001 - whatever h5py says about a file that is not NetCDF-4/HDF5
        raise ValueError(f"{path} is not a NetCDF file readable by h5netcdf ({type(e).__name__}: {e})") from None


def compare_theory_cli(args) -> int:
    from . import attach, summary

    ds = attach(_open(args.file))
    if args.plot is not None:
        # the presentation layer, imported here: lesde.theory imports no plotting at module level
        from ..plots import plot_theory, save_figure

        save_figure(plot_theory(ds), args.plot)
    ds.to_netcdf(args.out, engine="h5netcdf")
    print(summary(ds))
    print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else ""))
    return 0
