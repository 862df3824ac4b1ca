"""The ``lesde`` command. Each subcommand is one Python call; the heavy imports happen inside it.

lesde demo [--out DIR]
lesde simulate CONFIG.toml --out run.nc
lesde sweep SWEEP.toml --store out.zarr [--workers N | --scheduler ADDRESS] [--device cuda]
lesde plot phase out.zarr --out phase.png [--time T]
lesde compare-sgd CONFIG.toml --out cmp.nc
lesde estimate --dataset mnist1d --classes 3 --net mlp --steps 20000 --runs 8 --out est.nc
lesde imitate est.nc --out imit.nc
lesde methods
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _simulate(args):
    from .config import load_toml, simulate_from_config

    ds = simulate_from_config(load_toml(args.config), device=args.device, progress=not args.quiet)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(out, engine="h5netcdf")
    print(f"wrote {out} ({', '.join(f'{k}: {v}' for k, v in ds.sizes.items())}); method={ds.attrs['method']}")
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


def _sweep(args):
    from .sweep import sweep_cli

    return sweep_cli(args.spec, args.store, workers=args.workers, scheduler=args.scheduler, device=args.device)


def _plot(args):
    if args.kind == "phase":
        from .plots import plot_phase_cli

        plot_phase_cli(args.store, args.out, time=args.time)


def _compare_sgd(args):
    from .config import load_toml
    from .sgd import compare_from_config

    compare_from_config(load_toml(args.config), args.out)


def _estimate(args):
    import warnings

    from .empirical import estimate_cli

    n_runs = args.n_runs
    if args.runs is not None:  # deprecated spelling (issue 12): still works, with a warning
        warnings.warn("--runs is deprecated; use --n-runs", DeprecationWarning, stacklevel=2)
        print("lesde estimate: --runs is deprecated; use --n-runs", file=sys.stderr)
        n_runs = args.runs if n_runs is None else n_runs
    rates = args.label_noise or [0.0]
    if len(rates) > 1:  # the label-corruption experiment: one track per rate, the tail index of each
        from .empirical.workflow import label_noise_cli

        kw = dict(lr=args.lr, probes=args.probes, form=args.form, window=args.window, weighting=args.weighting)
        label_noise_cli(
            args.out,
            rates=rates,
            dataset=args.dataset,
            classes=args.classes,
            steps=args.steps,
            n_runs=8 if n_runs is None else n_runs,
            width=args.width,
            depth=args.depth,
            seed=args.seed,
            device=args.device,
            progress=not args.quiet,
            **{k: v for k, v in kw.items() if v is not None},
        )
        return
    extra = {
        k: v
        for k, v in dict(
            lr=args.lr,
            probes=args.probes,
            form=args.form,
            fit_model=args.fit,
            window=args.window,
            weighting=args.weighting,
            transform=args.transform,
        ).items()
        if v is not None
    }
    estimate_cli(
        dataset=args.dataset,
        classes=args.classes,
        net=args.net,
        steps=args.steps,
        n_runs=8 if n_runs is None else n_runs,
        out=args.out,
        feature=args.feature,
        record_every=args.record_every,
        width=args.width,
        depth=args.depth,
        standardize=args.standardize,
        init=args.init,
        device=args.device,
        seed=args.seed,
        label_noise=rates[0],
        progress=not args.quiet,
        **extra,
    )


def _imitate(args):
    from .empirical import imitate_cli

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lesde", description="Locally elastic SDEs: simulate, sweep, estimate, compare.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="small phase diagram + residual-transform collapse (CPU, < 2 min)")
    s.add_argument("--out", default="lesde-demo")
    s.add_argument("--device", default="cpu")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(fn=_demo)

    s = sub.add_parser("simulate", help="simulate an LE-SDE from a TOML config and write a NetCDF file")
    s.add_argument("config")
    s.add_argument("--out", required=True)
    s.add_argument("--device", default=None, help="override [simulate] device")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=_simulate)

    s = sub.add_parser("sweep", help="phase-diagram sweep into a resumable zarr store")
    s.add_argument("spec")
    s.add_argument("--store", required=True)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None, help="start a Dask LocalCluster with N workers")
    g.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    s.add_argument("--device", default="cpu")
    s.set_defaults(fn=_sweep)

    s = sub.add_parser("plot", help="plots of stored results")
    s.add_argument("kind", choices=["phase"])
    s.add_argument("store")
    s.add_argument("--out", required=True)
    s.add_argument("--time", type=float, default=None)
    s.set_defaults(fn=_plot)

    s = sub.add_parser("compare-sgd", help="SGD vs its SDE vs gradient flow from one TOML config")
    s.add_argument("config")
    s.add_argument("--out", required=True)
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

    s = sub.add_parser("methods", help="list the integration methods")
    s.set_defaults(fn=_methods)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.fn(args)
    except (ValueError, TypeError, FileNotFoundError, MemoryError) as e:
        print(f"lesde {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lesde {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
