"""``lesde simulate CONFIG.toml --out run.nc``: ``LESDE(**[model])`` + ``simulate(**[simulate])`` from a TOML file
(`lesde.config` checks the tables), written as NetCDF, with a one-line summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic_write import write_netcdf
from .console import QUIET


def add_parser(sub) -> None:
    s = sub.add_parser("simulate", help="simulate an LE-SDE from a TOML config and write a NetCDF file")
    s.add_argument(
        "config",
        metavar="CONFIG.toml",
        help="TOML file with [model] and [simulate] tables (lesde example copy simulate.toml)",
    )
    s.add_argument("--out", required=True, metavar="RUN.nc", help="NetCDF file to write")
    s.add_argument("--device", default=None, help="torch device; overrides [simulate] device (default: cpu)")
    s.add_argument("--quiet", action="store_true", help=QUIET)
    s.set_defaults(fn=run, output=("out", "file"))


def simulate_from_config(config: dict[str, Any], source: str = "config", **overrides: Any):
    """Build the model and run `lesde.simulate` from a parsed config dict; ``overrides`` win over the file.

    ``source`` (the file's name) starts every error message.
    """
    from .. import config as cfg
    from ..simulate import simulate

    cfg.check_tables(config, ["model", "simulate"], source)
    model = cfg.model_from_config(cfg.table(config, "model", source), source)
    kw = cfg.simulate_kwargs(cfg.table(config, "simulate", source), source)
    return simulate(model, **(kw | {k: v for k, v in overrides.items() if v is not None}))


def run(args) -> None:
    from ..config import load_toml

    ds = simulate_from_config(load_toml(args.config), source=args.config, device=args.device, progress=not args.quiet)
    out = Path(args.out)
    write_netcdf(ds, out)
    print(f"wrote {out} ({', '.join(f'{k}: {v}' for k, v in ds.sizes.items())}); method={ds.attrs['method']}")
    if ds.attrs.get("interrupted"):
        raise KeyboardInterrupt(f"{ds.attrs['interrupted']}; the completed part is in {out}")
    if "class_mean" in ds:
        M = ds.class_mean.isel(time=-1)
        sep = float(((M - M.mean("class")) ** 2).sum("feature").mean().pipe(lambda x: x**0.5))
        print(
            f"t={float(ds.time[-1]):g}: rms centred class-mean norm {sep:.4g}, "
            f"mean within-class variance {float(ds.within_var.isel(time=-1).mean()):.4g}"
        )


__all__ = ["add_parser", "run", "simulate_from_config"]
