"""``lesde estimate``: train with batch size 1, track every probe, estimate and fit E(t); with several
``--label-noise`` rates, the label-corruption experiment.

`estimate_cli` runs one `EstimateJob` (every setting of the job, with its default, in one dataclass)
and writes ``out``:

- the root group: the estimate Dataset (alpha, beta, E over windows, both estimands), with the fit as JSON in
  attr ``fit`` and its curves (``alpha_fit`` ... over ``fit_time``), the job's settings and the data's
  standardisation in attrs;
- group ``track``: the track thinned to at most ``keep_steps`` recorded steps (what ``lesde imitate`` needs: the
  probe features over time), so the file stays small;
- ``<out stem>_elasticity.png`` next to it: alpha(t), beta(t) with CIs and the fit.

With ``--store exp.zarr`` every run (every (rate, run) with several ``--label-noise`` rates) is a cell of an
experiment (`lesde.empirical.experiments`) written into that resumable store, here or on a Dask cluster
(``--workers N`` / ``--scheduler ADDR``); the estimate and the figure are computed from the store when every cell is
done. Failed cells exit 1 (``--retry-failed`` runs them again), Ctrl-C exits 130 and the same command resumes.

`label_noise_cli` (``lesde estimate --label-noise P1 P2 ...``) runs
`lesde.empirical.label_noise_experiment` and writes its Dataset and figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from .console import QUIET
from .estimate_summary import count, estimate_summary, interrupted_note, label_noise_table
from .failures import EXIT_INTERRUPTED

TRANSFORMS = ["identity", "residual", "residual-projection", "softmax-residual"]


@dataclasses.dataclass
class EstimateJob:
    """What ``lesde estimate`` does, in the order the data flows: data -> network -> track -> estimate -> fit."""

    # the data (lesde.empirical.load_dataset)
    dataset: str = "mnist1d"
    classes: int | Sequence[int] | None = 3
    per_class: int | Sequence[int] | None = None
    label_noise: float = 0.0
    standardize: bool | None = None
    # the network (lesde.empirical.mlp / cnn)
    net: str = "mlp"
    width: int = 256
    depth: int = 2
    # the track (lesde.empirical.track); n_runs None: lesde.empirical.DEFAULT_RUNS
    steps: int = 20000
    n_runs: int | None = None
    lr: float = 0.01
    probes: int | None = 300
    record_every: int = 1
    feature: str = "logits"
    init: str = "reinit"
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"  # the step estimand needs float64 (benchmarks/RESULTS.md, Estimands)
    # the estimate (lesde.empirical.estimate) and the fit (lesde.empirical.fit)
    form: str = "feature"
    weighting: str | None = None
    transform: str | None = None
    window: int | None = None
    fit_model: str = "power"


def add_parser(sub) -> None:
    d = EstimateJob()
    s = sub.add_parser("estimate", help="train with batch size 1, estimate and fit E(t)")
    s.add_argument("--dataset", default=d.dataset, help="mnist1d, geomnist, digits, gaussian-mixture or npz:PATH")
    s.add_argument("--classes", type=int, default=d.classes, help="number of classes kept (the first ones)")
    s.add_argument("--net", default=d.net, choices=["mlp", "cnn"], help="network to train: an MLP or a CNN")
    s.add_argument("--width", type=int, default=d.width, help="hidden width (mlp) or the last layer's (cnn)")
    s.add_argument("--depth", type=int, default=d.depth, help="hidden layers of the mlp")
    s.add_argument("--steps", type=int, default=d.steps, help="SGD steps per run")
    s.add_argument("--n-runs", type=int, default=None, help="independent runs (default 8)")
    s.add_argument("--lr", type=float, default=None, help="learning rate (default 0.01; 0.005 with --label-noise)")
    s.add_argument("--probes", type=int, default=None, help="number of tracked probe samples (default 300)")
    s.add_argument("--record-every", type=int, default=1, help="record every r-th step (increments stay one-step)")
    s.add_argument("--init", default=d.init, choices=["reinit", "keep"], help="re-initialise each run, or not")
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
        help="estimand reported as alpha, beta: increment (the least-squares drift coefficient, what lesde imitate "
        "needs) or step (the mean of each step's own coefficient); default increment, both are printed",
    )
    s.add_argument(
        "--transform",
        default=None,
        choices=TRANSFORMS,
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
    s.add_argument("--feature", default=d.feature, help="what is tracked: logits, penultimate or a module's name")
    s.add_argument("--device", default=d.device, help="torch device, e.g. cpu or cuda")
    s.add_argument(
        "--dtype",
        default=d.dtype,
        choices=["float32", "float64"],
        help="precision of the training and the track (the step weighting needs float64 to resolve well-fitted "
        "samples)",
    )
    s.add_argument("--seed", type=int, default=d.seed, help="seeds the data subset, the runs and the probes")
    s.add_argument("--quiet", action="store_true", help=QUIET)
    s.add_argument(
        "--out", required=True, metavar="EST.nc", help="NetCDF file to write (and EST_elasticity.png next to it)"
    )
    s.add_argument(
        "--store",
        default=None,
        help="run every (setting, run) as a cell into this resumable zarr store (resumed if it exists); the "
        "estimate is computed from it when every cell is done (default: no store, the runs stacked in one track)",
    )
    g = s.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None, help="with --store: start a Dask LocalCluster of N workers")
    g.add_argument("--scheduler", default=None, help="with --store: address of a running Dask scheduler to join")
    s.add_argument("--retry-failed", action="store_true", help="with --store: run the cells recorded as failed")
    s.add_argument("--worker-timeout", type=float, default=60.0, help="seconds without Dask workers before failing")
    s.set_defaults(fn=run, output=("out", "file"))


def run(args) -> None:
    from ..empirical import DEFAULT_RUNS

    rates = args.label_noise or [0.0]
    _check_rates(args, rates)
    common = dict(
        dataset=args.dataset,
        classes=args.classes,
        steps=args.steps,
        width=args.width,
        depth=args.depth,
        seed=args.seed,
        device=args.device,
        n_runs=DEFAULT_RUNS if args.n_runs is None else args.n_runs,
    )
    given = dict(lr=args.lr, probes=args.probes, form=args.form, window=args.window,
                 weighting=args.weighting)  # fmt: skip
    given = {k: v for k, v in given.items() if v is not None}
    cells = _cell_options(args)
    if len(rates) > 1:  # the label-corruption experiment: one track per rate, the tail index of each
        label_noise_cli(args.out, rates=rates, progress=not args.quiet, dtype=args.dtype, **common, **given,
                        **(cells or {}))  # fmt: skip
        return 0
    job = EstimateJob(**common, **given, net=args.net, feature=args.feature, record_every=args.record_every,
                      standardize=args.standardize, init=args.init, label_noise=rates[0], dtype=args.dtype)  # fmt: skip
    if args.fit is not None:
        job.fit_model = args.fit
    if args.transform is not None:
        job.transform = args.transform
    _check_windows(job)
    est = estimate_cli(job, out=args.out, progress=not args.quiet, cells=cells)
    return EXIT_INTERRUPTED if est is not None and est.attrs.get("interrupted") else 0


#: options that several --label-noise rates (the label-corruption experiment: an MLP tracked on its logits,
#: estimated and summarised by its tail index) do not use, with the value that means "not given"
_UNUSED_BY_EXPERIMENT = {"net": "mlp", "feature": "logits", "record_every": 1, "standardize": None, "init": "reinit",
                         "fit": None, "transform": None}  # fmt: skip


def _check_rates(args, rates) -> None:
    """Refuse, before any training, duplicate rates and the options the label-corruption experiment ignores."""
    from .failures import UsageError

    seen = set()
    for p in rates:
        if p in seen:
            raise UsageError(f"--label-noise lists the rate {p:g} twice; give each rate once")
        seen.add(p)
    if len(rates) > 1:
        for name, unused in _UNUSED_BY_EXPERIMENT.items():
            if getattr(args, name) != unused:
                option = "--" + name.replace("_", "-")
                raise UsageError(
                    f"{option} does not apply to the label-corruption experiment (several --label-noise rates train "
                    f"an MLP on its logits and report tail indices); drop {option}, or give one rate"
                )


def _check_windows(job: EstimateJob) -> None:
    """Refuse, before any training, a track too short for the fit: E(t) needs >= 3 windows (2 for const, auto)."""
    from .failures import UsageError

    least = 2 if job.form == "means" else 1  # the means form fits a slope over each window
    if job.window is not None and job.window < least:  # the estimate would say so only after the training
        raise UsageError(f"--window must be an integer >= {least} (recorded steps per estimate window"
                         f"{' of --form means' if least == 2 else ''}), got {job.window}")  # fmt: skip
    if not all(isinstance(v, int) and v >= 1 for v in (job.steps, job.record_every)):
        return  # the track names the bad value before training
    S = job.steps // job.record_every + (job.form == "means")
    window = max(least, S // 40) if job.window is None else job.window
    q, r = divmod(S, max(window, 1))  # estimate's windows: a remainder shorter than half a window joins the last
    W = q + (r > 0 and (q == 0 or r >= window / 2))
    need = 2 if job.fit_model in ("const", "auto") else 3
    if W < need:
        raise UsageError(
            f"--steps {job.steps} gives {count(W, 'estimate window')} of {count(window, 'recorded step')}; "
            f"fitting E(t) with --fit {job.fit_model} needs at least {need}: give more --steps or a smaller --window"
        )


def _cell_options(args) -> dict | None:
    """The options of lesde.empirical.run_experiment given on the command line; None without --store."""
    from .failures import UsageError

    if args.store is None:
        given = [f"--{n}" for n in ("workers", "scheduler") if getattr(args, n) is not None]
        if given or args.retry_failed:
            option = (given or ["--retry-failed"])[0]
            raise UsageError(f"{option} runs the runs as cells into a store: give --store PATH")
        return None
    return dict(store=args.store, workers=args.workers, scheduler=args.scheduler, retry_failed=args.retry_failed,
                worker_timeout=args.worker_timeout)  # fmt: skip


def _cells_failed(e, retry_failed: bool):
    """An experiment's failed cells as the command's failure (exit code 1), with the retry hint."""
    from .failures import CellsFailed

    return CellsFailed(e.failures + ("" if retry_failed else "; rerun with --retry-failed to retry them"))


def _net_factory(job: EstimateJob):
    import functools

    from ..empirical import cnn, mlp
    from ..validation import check_choice

    check_choice("net", job.net, ("mlp", "cnn"))
    if job.net == "mlp":
        return functools.partial(mlp, width=job.width, depth=job.depth)
    return functools.partial(cnn, width=job.width)


def _stored_track(job: EstimateJob, progress: bool, store, **options):
    """Every run of ``job`` as a cell of an experiment in ``store`` (here or on a Dask cluster), then the runs
    read back as one track."""
    from ..empirical import (
        DatasetLoader,
        Experiment,
        ExperimentIncomplete,
        experiment_tracks,
        run_experiment,
    )
    from ..empirical.experiments import require_complete

    data = DatasetLoader(job.dataset, classes=job.classes, per_class=job.per_class, seed=job.seed,
                         standardize=job.standardize, channel=job.net == "cnn")  # fmt: skip
    exp = Experiment(data=data, net=_net_factory(job), lr=job.lr, steps=job.steps,
                     settings=[{"label_noise": job.label_noise}], n_runs=_runs(job),
                     probes=job.probes, record_every=job.record_every, feature=job.feature, init=job.init,
                     seed=job.seed, dtype=job.dtype)  # fmt: skip
    summary = run_experiment(exp, store, device=job.device, progress=progress, **options)
    try:
        require_complete(summary)
    except ExperimentIncomplete as e:
        raise _cells_failed(e, options.get("retry_failed", False)) from None
    return experiment_tracks(store, 0)


def _runs(job: EstimateJob) -> int:
    """The job's runs: DEFAULT_RUNS when none are given (0 stays 0, for track to refuse)."""
    from ..empirical import DEFAULT_RUNS

    return DEFAULT_RUNS if job.n_runs is None else job.n_runs


def _build_net(job: EstimateJob, inputs, num_classes: int):
    from ..empirical import cnn, mlp
    from ..validation import check_choice

    check_choice("net", job.net, ("mlp", "cnn"))
    shape = tuple(inputs.shape[1:])
    if job.net == "mlp":
        return mlp(shape, num_classes, width=job.width, depth=job.depth)
    if len(shape) == 1:  # flat vectors become one-channel sequences for Conv1d
        shape = (1, shape[0])
    return cnn(shape, num_classes, width=job.width)


def estimate_cli(job: EstimateJob | None = None, out: str | Path = "est.nc", keep_steps: int = 400,
                 progress: bool = True, cells: dict | None = None, **settings):  # fmt: skip
    """Run ``job`` (an `EstimateJob`; ``settings`` override its fields by name), write ``out`` and a PNG,
    print a summary with both estimands side by side. Returns the estimate Dataset (as written).

    ``cells`` (``store`` and the other options of `lesde.empirical.run_experiment`) trains every run as a
    cell of an experiment in that store, here or on a Dask cluster, each seeded by its key (so the numbers differ
    from the stacked track's, where every run draws from one generator); failed cells raise
    `CellsFailed` (exit code 1)."""
    import numpy as np
    import torch

    from ..empirical import estimate, fit, load_dataset, track
    from ..plots import plot_elasticity, save_figure
    from ..validation import check_choice

    job = dataclasses.replace(job or EstimateJob(), **settings)
    check_choice("dtype", job.dtype, ("float32", "float64"))
    out = Path(out)
    data = load_dataset(job.dataset, classes=job.classes, per_class=job.per_class, label_noise=job.label_noise,
                        seed=job.seed, standardize=job.standardize)  # fmt: skip
    x, y = data
    if x.ndim == 2 and job.net == "cnn":
        x = x[:, None]
    model = _build_net(job, x, int(y.max()) + 1)
    if cells:
        tr = _stored_track(job, progress, **cells)
    else:
        tr = track(model, x, y, lr=job.lr, steps=job.steps, n_runs=_runs(job), probes=job.probes,
                   record_every=job.record_every, feature=job.feature, seed=job.seed, init=job.init,
                   device=job.device, dtype=getattr(torch, job.dtype), progress=progress)  # fmt: skip
    interrupted = bool(tr.attrs.get("interrupted"))
    try:
        est = estimate(tr, form=job.form, window=job.window, weighting=job.weighting, transform=job.transform)
        fr = fit(est, model=job.fit_model)
    except (ValueError, RuntimeError) as e:
        if not interrupted:
            raise
        raise KeyboardInterrupt(f"{interrupted_note(tr)}; too short to estimate ({e}), nothing written") from None
    est = fr.curves(est)
    est.attrs.update(
        dataset=job.dataset, classes=str(job.classes), net=job.net, width=job.width, depth=job.depth, init=job.init,
        final_accuracy=float(tr["accuracy"].isel(step=-1).mean()), final_loss=float(tr["loss"].isel(step=-1).mean()),
        **{f"data_{k}": v for k, v in data.info.items() if k != "dataset"},
    )  # fmt: skip
    if interrupted:  # what the estimate was built from, in the root attrs (decisions.md, Interrupted estimates)
        done = int(tr.attrs["steps_completed"])
        est.attrs.update(interrupted=1, steps_completed=done, steps_requested=int(job.steps), steps=done)
    S = tr.sizes["step"]
    keep = np.unique(np.linspace(0, S - 1, min(S, keep_steps)).round().astype(int))
    png = _write_estimate(est, tr.isel(step=keep), out, plot_elasticity, save_figure)
    print(estimate_summary(est, fr, tr))
    print(f"wrote {out}\nwrote {png}")
    if interrupted:
        print(f"lesde estimate: {interrupted_note(tr)}; {out} holds the estimate of those steps, marked interrupted",
              file=sys.stderr)  # fmt: skip
    return est


def _write_estimate(est, thinned, out: Path, plot, save_figure) -> Path:
    """The figure, then the NetCDF (root group and ``track`` group in one temporary file renamed into place, last:
    a kill at any moment leaves the previous result or the whole new one)."""
    from ..atomic_write import atomic_path

    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_name(out.stem + "_elasticity.png")
    with atomic_path(png) as tmp:
        save_figure(plot(est), tmp)
    with atomic_path(out) as tmp:
        est.to_netcdf(tmp, engine="h5netcdf")
        thinned.to_netcdf(tmp, mode="a", group="track", engine="h5netcdf")
    return png


def label_noise_cli(out: str | Path, rates=None, **kwargs):
    """Run the label-corruption experiment (keywords of `lesde.empirical.label_noise_experiment`), write
    ``out`` (NetCDF) and ``<out stem>.png``, print the table."""
    from ..atomic_write import atomic_path, write_netcdf
    from ..empirical import RATES, ExperimentIncomplete, label_noise_experiment
    from ..plots import plot_label_noise, save_figure

    out = Path(out)
    try:
        ds = label_noise_experiment(rates=RATES if rates is None else rates, **kwargs)
    except ExperimentIncomplete as e:
        raise _cells_failed(e, kwargs.get("retry_failed", False)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    with atomic_path(png) as tmp:
        save_figure(plot_label_noise(ds), tmp)
    write_netcdf(ds, out)
    print(label_noise_table(ds) + f"\nwrote {out}\nwrote {png}")
    return ds


__all__ = ["add_parser", "run", "EstimateJob", "estimate_cli", "label_noise_cli"]
