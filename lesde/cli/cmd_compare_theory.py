"""``lesde compare-theory FILE --out F.nc [--plot F.png]``: attach the predictions that apply
(`lesde.theory.attach`), write, plot, and print the summary."""

from __future__ import annotations


def add_parser(sub) -> None:
    s = sub.add_parser("compare-theory", help="attach the UFM / LE-SDE prediction to a lesde Dataset")
    s.add_argument("file", help="a lesde NetCDF file (simulate, compare-sgd) or a sweep store (.zarr folder)")
    s.add_argument("--out", required=True, help="NetCDF file to write with the predictions attached")
    s.add_argument(
        "--plot", default=None, help="figure of measured vs predicted (optional; .png, .pdf, .svg by the extension)"
    )
    s.set_defaults(fn=run, output=("out", "file"))


def run(args) -> int:
    from ..atomic_write import write_netcdf
    from ..theory import attach, summary
    from .files import open_result

    ds = attach(open_result(args.file, folder="sweep"))
    if args.plot is not None:
        from ..plots import plot_theory, save_figure

        save_figure(plot_theory(ds), args.plot)
    write_netcdf(ds, args.out)
    print(summary(ds))
    print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else ""))
    return 0


__all__ = ["add_parser", "run"]
