"""``lesde compare-sgd CONFIG.toml --out cmp.nc``: SGD, its SME and gradient flow from one TOML config
(`lesde.sgd.compare`), written as NetCDF with a PNG next to it.

TOML layout (``lesde example copy compare_sgd.toml``):

```toml
[problem]
kind = "ufm"              # or "digits-mlp"
# ufm: the arguments of lesde.sgd.UFM
num_classes = 4
samples_per_class = 8
dim = 8
loss = "mse"              # "ce" | "mse"
weight_decay_W = 1e-2
weight_decay_H = 1e-2
# digits-mlp: the arguments of lesde.sgd.digits_mlp (num_classes, samples_per_class, hidden, loss, ...)

[run]
lr = 0.05
batch_size = 4
t_end = 10.0
n_runs = 32
seed = 0                  # optional, as are the keys below: any keyword of lesde.sgd.compare
sampling = "with-replacement"   # or "shuffle"
n_save = 51
metrics = true            # the default set; "all" adds gnc2; or a list of names
device = "cpu"
dtype = "float64"         # or "float32"
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic_write import write_netcdf
from .console import QUIET

#: legend names of the processes (those of the figure)
PROCESS_LABELS = {"sgd": "SGD", "sme": "SME", "gradient_flow": "gradient flow"}
#: ``[problem] kind`` -> the lesde.sgd builder taking the remaining keys
PROBLEM_KINDS = {"ufm": "UFM", "digits-mlp": "digits_mlp"}
DTYPES = ("float64", "float32")


def add_parser(sub) -> None:
    s = sub.add_parser("compare-sgd", help="SGD vs its SDE vs gradient flow from one TOML config")
    s.add_argument(
        "config",
        metavar="CONFIG.toml",
        help="TOML file with [problem] and [run] tables (lesde example copy compare_sgd.toml)",
    )
    s.add_argument("--out", required=True, metavar="CMP.nc", help="NetCDF file to write (and CMP.png next to it)")
    s.add_argument("--quiet", action="store_true", help=QUIET)
    s.set_defaults(fn=run, output=("out", "file"))


def summary(ds) -> str:
    """The first and last value of the loss and NC1 of each process, mean over runs (the names of the figure)."""
    t0, t1 = float(ds["time"][0]), float(ds["time"][-1])
    names = [n for n in ("loss", "nc1") if n in ds]
    heads = {"loss": "training loss", "nc1": "NC1"}
    width = max(len(PROCESS_LABELS.get(str(p), str(p))) for p in ds["process"].values)
    lines = [
        f"SGD vs SME vs gradient flow, mean over {ds.sizes['run']} runs, from t = {t0:g} to t = {t1:g}:",
        f"  {'process':<{width}}  " + "".join(f"{heads[n]:>22}" for n in names),
    ]
    for proc in ds["process"].values:
        v = ds[names].sel(process=proc).mean("run")
        cells = "".join(f"{f'{float(v[n][0]):.3g} -> {float(v[n][-1]):.3g}':>22}" for n in names)
        lines.append(f"  {PROCESS_LABELS.get(str(proc), str(proc)):<{width}}  {cells}")
    return "\n".join(lines)


def compare_from_config(config: dict[str, Any], out: str | Path, progress: bool = True):
    """Run `lesde.sgd.compare` from a parsed TOML config (layout in the module docstring); write ``out``
    (.nc) and the figure next to it (suffix ``.png``), print a summary and what was written. Returns the Dataset."""
    import torch

    from .. import sgd
    from ..plots import plot_compare, save_figure

    if "problem" not in config or "run" not in config:
        raise ValueError("config needs a [problem] table and a [run] table (see lesde example copy compare_sgd.toml)")
    spec = dict(config["problem"])
    kind = spec.pop("kind", "ufm")
    if kind not in PROBLEM_KINDS:
        raise ValueError(f"[problem] kind={kind!r} is not supported; accepted values: {list(PROBLEM_KINDS)}")
    problem = getattr(sgd, PROBLEM_KINDS[kind])(**spec)
    run_ = dict(config["run"])
    missing = [k for k in ("lr", "batch_size", "t_end") if k not in run_]
    if missing:
        raise ValueError(f"[run] is missing {missing}")
    dtype = run_.pop("dtype", "float64")
    if dtype not in DTYPES:
        raise ValueError(f"[run] dtype={dtype!r} is not supported; accepted values: {list(DTYPES)}")
    ds = sgd.compare(problem, dtype=getattr(torch, dtype), **{"progress": progress, **run_})
    ds.attrs["config"] = json.dumps(config, default=str)
    out = Path(out)
    write_netcdf(ds, out)
    png = save_figure(plot_compare(ds), out.with_suffix(".png"))
    print(summary(ds))
    print(f"wrote {out}\nwrote {png}")
    return ds


def run(args) -> None:
    from ..config import ConfigError, load_toml, table

    config = load_toml(args.config)
    for name in ("problem", "run"):
        table(config, name, args.config)
    try:
        compare_from_config(config, args.out, progress=not args.quiet)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{args.config}: {e}") from None


__all__ = ["add_parser", "run", "compare_from_config", "PROBLEM_KINDS"]
