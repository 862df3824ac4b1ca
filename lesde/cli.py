"""The ``lesde`` command. Each subcommand is one Python call; the heavy imports happen inside it.

lesde demo [--out DIR]
lesde simulate CONFIG.toml --out run.nc
lesde sweep SWEEP.toml --store out.zarr [--workers N | --scheduler ADDRESS] [--device cuda] [--retry-failed]
lesde plot {phase,nc,cosines,elasticity,imitation,sgd,theory} FILE --out fig.png [--time T]
lesde compare-sgd CONFIG.toml --out cmp.nc
lesde estimate --dataset mnist1d --classes 3 --net mlp --steps 20000 --n-runs 8 --out est.nc
lesde imitate est.nc --out imit.nc
lesde methods
lesde example list | copy NAME [DIR] [--force]

Failures never end in a traceback (unless ``--debug``): each is one line on stderr, ``lesde CMD: error: ...``,
naming the problem, and the exit code says what kind it was: 2 for bad input (arguments, config files, input
files, output paths, stores), 1 for a run that failed (a numerical failure, failed sweep cells, a lost cluster,
anything unexpected), 130 for an interrupt (Ctrl-C). Input files are read and output folders created (or
refused) before any run starts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__

__all__ = ["main", "build_parser", "sweep_cli", "main_cli", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

#: the output path option of each command, and whether it names a file, a folder or a sweep store
_OUTPUTS = {
    "demo": ("out", "folder"),
    "simulate": ("out", "file"),
    "sweep": ("store", "store"),
    "plot": ("out", "file"),
    "compare-sgd": ("out", "file"),
    "estimate": ("out", "file"),
    "imitate": ("out", "file"),
    "compare-theory": ("out", "file"),
}


#: ``lesde plot`` kinds (lesde.plots.KINDS, spelled here so that the parser imports no xarray; a test checks)
PLOT_KINDS = ("phase", "nc", "cosines", "elasticity", "imitation", "sgd", "theory")


class UsageError(ValueError):
    """A bad argument found after parsing (exit code 2)."""


def _simulate(args):
    from .config import load_toml, simulate_from_config

    ds = simulate_from_config(load_toml(args.config), source=args.config, device=args.device, progress=not args.quiet)
    out = Path(args.out)
    ds.to_netcdf(out, engine="h5netcdf")
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


def _demo(args):
    from .demo import run

    run(args.out, progress=not args.quiet, device=args.device)


def sweep_cli(spec_path: str | Path, store: str | Path, **options) -> int:
    """``lesde sweep``: run (or resume) the sweep with ``options`` (those of :func:`lesde.sweep.run`) and print
    the summary. Returns 0; raises when cells failed (exit code 1) and on any other failure (``main`` turns
    each into one line and an exit code)."""
    from .sweep import describe_failures, run

    retry_failed = options.get("retry_failed", False)
    ds = run(spec_path, store, **options)
    n_ok = int((ds["status"] == "ok").sum())
    print(f"{n_ok} of {ds['status'].size} cells done in {store} (method: {ds.attrs['method']})")
    failures = describe_failures(ds)
    if failures:
        hint = "" if retry_failed else "; rerun with --retry-failed to retry them"
        raise _CellsFailed(f"{failures}{hint}")
    return 0


class _CellsFailed(RuntimeError):
    """Some sweep cells failed (the store holds the others); exit code 1."""


def _sweep(args):
    return sweep_cli(
        args.spec,
        args.store,
        workers=args.workers,
        scheduler=args.scheduler,
        device=args.device,
        progress=not args.quiet,
        retry_failed=args.retry_failed,
        worker_timeout=args.worker_timeout,
    )


def _plot(args):
    from .plots import plot_file

    print(plot_file(args.kind, args.file, args.out, time=args.time))


def _compare_sgd(args):
    from .config import ConfigError, load_toml, table
    from .sgd import compare_from_config

    config = load_toml(args.config)
    for name in ("problem", "run"):
        table(config, name, args.config)
    try:
        compare_from_config(config, args.out)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{args.config}: {e}") from None


def _estimate(args):
    import warnings

    from .empirical import estimate_cli

    n_runs = args.n_runs
    if args.runs is not None:  # deprecated spelling: still works, with a warning
        warnings.warn("--runs is deprecated; use --n-runs", DeprecationWarning, stacklevel=2)
        print("lesde estimate: --runs is deprecated; use --n-runs", file=sys.stderr)
        n_runs = args.runs if n_runs is None else n_runs
    rates = args.label_noise or [0.0]
    common = dict(
        dataset=args.dataset,
        classes=args.classes,
        steps=args.steps,
        n_runs=8 if n_runs is None else n_runs,
        width=args.width,
        depth=args.depth,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
    given = dict(lr=args.lr, probes=args.probes, form=args.form, window=args.window, weighting=args.weighting)
    given = {k: v for k, v in given.items() if v is not None}
    if len(rates) > 1:  # the label-corruption experiment: one track per rate, the tail index of each
        from .empirical.workflow import label_noise_cli

        label_noise_cli(args.out, rates=rates, **common, **given)
        return
    if args.fit is not None:
        given["fit_model"] = args.fit
    if args.transform is not None:
        given["transform"] = args.transform
    estimate_cli(
        net=args.net,
        out=args.out,
        feature=args.feature,
        record_every=args.record_every,
        standardize=args.standardize,
        init=args.init,
        label_noise=rates[0],
        **common,
        **given,
    )


def _imitate(args):
    from .empirical import imitate_cli

    _check_netcdf(args.estimate)
    imitate_cli(
        args.estimate,
        args.out,
        transform=args.transform,
        elasticity=args.elasticity,
        paths_per_run=args.paths_per_run,
        seed=args.seed,
        progress=not args.quiet,
    )


def _methods(args):
    from .integrators import known_methods

    print("\n".join(known_methods()))


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (unless the help already states it, or the option is required)."""

    def _get_help_string(self, action):
        help = action.help or ""
        if action.required or "default" in help.lower():
            return help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="lesde",
        description="Locally elastic SDEs: simulate, sweep, estimate, compare.",
        epilog="Exit codes: 0 success, 1 a failed run, 2 bad input, 130 interrupted.",
        formatter_class=_Formatter,
    )
    p.add_argument("--version", action="version", version=f"lesde {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("demo", help="small phase diagram + residual-transform collapse (CPU, < 2 min)")
    s.add_argument("--out", default="lesde-demo", help="folder for the demo's files")
    s.add_argument("--device", default="cpu", help="torch device")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(fn=_demo)

    s = sub.add_parser("simulate", help="simulate an LE-SDE from a TOML config and write a NetCDF file")
    s.add_argument("config", help="TOML file with [model] and [simulate] tables (lesde example copy simulate.toml)")
    s.add_argument("--out", required=True, help="NetCDF file to write")
    s.add_argument("--device", default=None, help="torch device; overrides [simulate] device (default: cpu)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=_simulate)

    s = sub.add_parser("sweep", help="phase-diagram sweep into a resumable zarr store")
    s.add_argument("spec", help="sweep TOML file (lesde example copy phase_diagram.toml)")
    s.add_argument("--store", required=True, help="zarr store to write (resumed if it exists)")
    g = s.add_mutually_exclusive_group()
    g.add_argument(
        "--workers", type=int, default=None, help="start a Dask LocalCluster of N workers (default: none, run here)"
    )
    g.add_argument("--scheduler", default=None, help="address of a running Dask scheduler to join (default: none)")
    s.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    s.add_argument("--retry-failed", action="store_true", help="run the cells a previous run recorded as failed")
    s.add_argument("--worker-timeout", type=float, default=60.0, help="seconds without Dask workers before failing")
    s.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=_sweep)

    s = sub.add_parser("plot", help="figures of stored results")
    s.add_argument("kind", choices=PLOT_KINDS, help="what to plot: " + ", ".join(PLOT_KINDS))
    s.add_argument("file", help="what the kind reads: a sweep store (phase) or a NetCDF file written by lesde")
    s.add_argument("--out", required=True, help="figure file to write (.png, .pdf, .svg)")
    s.add_argument("--time", type=float, default=None, help="phase only: time of the heatmap (nearest save time)")
    s.set_defaults(fn=_plot)

    s = sub.add_parser("compare-sgd", help="SGD vs its SDE vs gradient flow from one TOML config")
    s.add_argument("config", help="TOML file with [problem] and [run] tables (lesde example copy compare_sgd.toml)")
    s.add_argument("--out", required=True, help="NetCDF file to write (and a PNG next to it)")
    s.set_defaults(fn=_compare_sgd)

    s = sub.add_parser("estimate", help="train with batch size 1, estimate and fit E(t)")
    s.add_argument("--dataset", default="mnist1d", help="mnist1d, geomnist, digits, gaussian-mixture or npz:PATH")
    s.add_argument("--classes", type=int, default=3)
    s.add_argument("--net", default="mlp", choices=["mlp", "cnn"])
    s.add_argument("--width", type=int, default=256, help="hidden width (mlp) or the last layer's (cnn)")
    s.add_argument("--depth", type=int, default=2, help="hidden layers of the mlp")
    s.add_argument("--steps", type=int, default=20000)
    s.add_argument("--n-runs", type=int, default=None, help="independent runs (default 8)")
    s.add_argument("--runs", type=int, default=None, help=argparse.SUPPRESS)  # deprecated spelling of --n-runs
    s.add_argument("--lr", type=float, default=None, help="learning rate (default 0.01)")
    s.add_argument("--probes", type=int, default=None, help="number of tracked probe samples (default 300)")
    s.add_argument("--record-every", type=int, default=1, help="record every r-th step (increments stay one-step)")
    s.add_argument("--init", default="reinit", choices=["reinit", "keep"], help="re-initialise each run, or not")
    s.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="standardise inputs by the training mean/std (default: on for mnist1d)",
    )
    s.add_argument("--form", default=None, choices=["feature", "residual", "means"], help="estimator (default feature)")
    s.add_argument(
        "--weighting",
        default=None,
        choices=["increment", "step"],
        help="estimand reported as alpha/beta (default increment; both are printed)",
    )
    s.add_argument(
        "--transform",
        default=None,
        choices=["identity", "residual", "residual-projection", "softmax-residual"],
        help="form=feature: regress on lr T f(x_I) for this LE-SDE transform (default identity)",
    )
    s.add_argument("--window", type=int, default=None, help="recorded steps per estimate window (default: 40 windows)")
    s.add_argument(
        "--label-noise",
        type=float,
        nargs="+",
        default=None,
        metavar="P",
        help="corrupt a fraction P of the training labels; several rates run the label-corruption experiment "
        "(one track per rate: tail index of the integrated alpha/beta and validation accuracy, NetCDF + PNG)",
    )
    s.add_argument("--fit", default=None, choices=["power", "exp", "const", "auto"], help="E(t) model (default power)")
    s.add_argument("--feature", default="logits", help="logits, penultimate or a module name")
    s.add_argument("--device", default="cpu")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=_estimate)

    s = sub.add_parser("imitate", help="drive an LE-SDE with the estimated E(t) from the network's class means")
    s.add_argument("estimate")
    s.add_argument("--out", required=True)
    s.add_argument(
        "--transform",
        default=None,
        choices=["identity", "residual", "residual-projection", "softmax-residual"],
        help="LE-SDE transform (default: the one the estimate was made for)",
    )
    s.add_argument(
        "--elasticity",
        default="estimate",
        choices=["estimate", "fit"],
        help="drive with the tabulated estimate (default) or the fitted schedules",
    )
    s.add_argument("--paths-per-run", type=int, default=4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=_imitate)

    from .theory._cli import add_parser as add_compare_theory

    add_compare_theory(sub)

    s = sub.add_parser("methods", help="list the integration methods")
    s.set_defaults(fn=_methods)

    from .examples._cli import add_parser as add_example_parser

    add_example_parser(sub)
    _finish(sub)
    return p


def _finish(sub) -> None:
    """What every subcommand gets: a description, defaults in --help, help for every option, and --debug."""
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, parser in sub.choices.items():
        parser.formatter_class = _Formatter
        if parser.description is None:
            parser.description = helps.get(name)
        for action in parser._actions:
            if action.help is None:
                action.help = action.dest.replace("_", " ")
        parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of a failure"
        )


# ----------------------------------------------------------------------------------------------------------------
# checks before any run, and failures as exit codes


def _probe_writable(folder: Path, what: str) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".lesde-probe-"):
            pass
    except OSError as e:
        raise UsageError(f"{what}: cannot write in {folder} ({e.strerror or e})") from None


def _prepare_output(option: str, path: str, kind: str) -> None:
    """Create the folders an output needs, or refuse the path, before the run."""
    out = Path(path)
    what = f"--{option} {path}"
    if kind == "file" and out.is_dir():
        raise UsageError(f"{what} is a folder; give a file name, e.g. {out / 'out.nc'}")
    if kind in ("folder", "store") and out.exists() and not out.is_dir():
        raise UsageError(f"{what} exists and is not a folder")
    folder = out if kind == "folder" else out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{what}: cannot create the folder {folder} ({e.strerror or e})") from None
    _probe_writable(folder, what)


def _check_netcdf(path: str) -> None:
    import xarray as xr

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path} does not exist" if not p.exists() else f"{path} is not a file")
    try:
        xr.open_dataset(p, engine="h5netcdf").close()
    except Exception as e:  # noqa: BLE001 - whatever h5py says about a file that is not NetCDF-4/HDF5
        raise UsageError(f"{path} is not a NetCDF file readable by h5netcdf ({type(e).__name__}: {e})") from None


def _prepare(args) -> None:
    from ._validate import check_device

    if getattr(args, "device", None) is not None:
        args.device = str(check_device(args.device, name="--device"))
    option, kind = _OUTPUTS.get(args.command, (None, None))
    if option is not None:
        _prepare_output(option, getattr(args, option), kind)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if isinstance(e, KeyError) and e.args:  # KeyError's str is the repr of the key
        text = f"missing {e.args[0]!r}"
    return text or type(e).__name__


def exit_code(e: BaseException) -> int:
    """2 for bad input, 1 for a failed run (numerical failures and anything unexpected), 130 for an interrupt."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    from ._extras import MissingExtra

    bad_input = (ValueError, TypeError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                 MissingExtra)  # fmt: skip
    return EXIT_USAGE if isinstance(e, (*bad_input, MemoryError)) else EXIT_FAILED


def _known(e: BaseException) -> bool:
    """Failures whose message says it all: lesde's own, and the standard families (no hint at --debug)."""
    builtin = (ValueError, TypeError, OSError, MemoryError, ArithmeticError)
    return isinstance(e, builtin) or type(e).__module__.split(".")[0] == "lesde"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"lesde {args.command}"
    try:
        with warnings.catch_warnings():
            # simulate's multi-line warning about an interrupted run: reported below in one line instead
            warnings.filterwarnings("ignore", message="simulate interrupted", category=UserWarning)
            _prepare(args)
            code = args.fn(args)
    except KeyboardInterrupt as e:
        if args.debug:
            raise
        detail = _one_line(e) if str(e) else ""
        print(f"{prefix}: interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - every failure becomes one line and an exit code
        if args.debug:
            raise
        msg = _one_line(e)
        if not _known(e):
            msg = f"{type(e).__name__}: {msg} (rerun with --debug for the traceback)"
        print(f"{prefix}: error: {msg}", file=sys.stderr)
        return exit_code(e)
    return int(code or 0)


def main_cli(argv: Sequence[str] | None = None) -> int:
    """``python -m lesde.sweep ...``: the same as ``lesde sweep ...``."""
    return main(["sweep", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
