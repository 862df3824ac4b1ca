"""``lesde sweep SPEC.toml --store out.zarr [--workers N | --scheduler ADDR] [--device D] [--retry-failed]``: run or
resume a phase-diagram sweep (`lesde.sweep.run`) and print the cells done; failed cells exit 1."""

from __future__ import annotations

from pathlib import Path

from .console import QUIET
from .failures import CellsFailed


def add_parser(sub) -> None:
    s = sub.add_parser("sweep", help="phase-diagram sweep into a resumable zarr store")
    s.add_argument("spec", metavar="SPEC.toml", help="sweep TOML file (lesde example copy phase_diagram.toml)")
    s.add_argument("--store", required=True, metavar="S.zarr", help="zarr store to write (resumed if it exists)")
    g = s.add_mutually_exclusive_group()
    g.add_argument(
        "--workers", type=int, default=None, help="start a Dask LocalCluster of N workers (default: none, run here)"
    )
    g.add_argument("--scheduler", default=None, help="address of a running Dask scheduler to join (default: none)")
    s.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    s.add_argument("--retry-failed", action="store_true", help="run the cells a previous run recorded as failed")
    s.add_argument("--worker-timeout", type=float, default=60.0, help="seconds without Dask workers before failing")
    s.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help=QUIET)
    s.set_defaults(fn=run, output=("store", "store"))


def sweep_cli(spec_path: str | Path, store: str | Path, **options) -> int:
    """Run (or resume) the sweep with ``options`` (those of `lesde.sweep.run`) and print the summary.

    Returns 0; raises `CellsFailed` when cells failed (exit code 1).
    """
    from ..sweep import describe_failures
    from ..sweep import run as run_sweep

    retry_failed = options.get("retry_failed", False)
    ds = run_sweep(spec_path, store, **options)
    n_ok = int((ds["status"] == "ok").sum())
    print(f"{n_ok} of {ds['status'].size} cells done (method: {ds.attrs['method']})\nwrote {store}")
    failures = describe_failures(ds)
    if failures:
        hint = "" if retry_failed else "; rerun with --retry-failed to retry them"
        raise CellsFailed(f"{failures}{hint}")
    return 0


def run(args) -> int:
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


__all__ = ["add_parser", "run", "sweep_cli"]
