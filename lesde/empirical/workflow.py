"""The command-line jobs, each one Python call: ``lesde estimate`` (and its ``--label-noise`` experiment),
``lesde imitate``.

``estimate_cli`` loads a dataset, builds a network, tracks it, estimates and fits E(t), and writes ``out``:

- the root group: the estimate Dataset (alpha, beta, E over windows, both estimands), with the fit as JSON in
  attr ``fit`` and the job's settings (and the data's standardisation) in attrs;
- group ``track``: the track thinned to at most ``keep_steps`` recorded steps (what ``imitate`` needs: the
  probe features over time), so the file stays small;
- ``<out stem>_elasticity.png`` next to it: alpha(t), beta(t) with CIs and the fit.

``imitate_cli`` reads that file, runs :func:`~lesde.empirical.imitate` (default: the tabulated estimate and the
transform it was made for, the best combination measured in benchmarks/RESULTS.md), writes its Dataset and
``<out stem>_trajectories.png``, and prints the median relative error of the class means.

``label_noise_cli`` (``lesde estimate --label-noise P1 P2 ...``) runs
:func:`~lesde.empirical.label_noise_experiment` and writes its Dataset and figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from .._validate import check_choice
from ..plots import plot_elasticity, plot_imitation, plot_label_noise, save_figure
from ._common import n_runs_arg
from .data import load_dataset
from .estimators import estimate
from .fitting import FitResult, fit
from .imitation import imitate
from .nets import NETS
from .tracking import track


def _build_net(net: str, inputs, num_classes: int, width: int, depth: int):
    check_choice("net", net, NETS)
    if net == "mlp":
        return NETS["mlp"](tuple(inputs.shape[1:]), num_classes, width=width, depth=depth)
    shape = tuple(inputs.shape[1:])
    if len(shape) == 1:  # flat vectors become one-channel sequences for Conv1d
        shape = (1, shape[0])
    return NETS["cnn"](shape, num_classes, width=width)


def estimate_cli(
    dataset: str,
    classes: int | Sequence[int] | None,
    net: str,
    steps: int,
    n_runs: int | None = None,
    out: str | Path = "est.nc",
    lr: float = 0.01,
    probes: int | None = 300,
    per_class: int | Sequence[int] | None = None,
    label_noise: float = 0.0,
    record_every: int = 1,
    feature: str = "logits",
    form: str = "feature",
    weighting: str | None = None,
    transform: str | None = None,
    window: int | None = None,
    fit_model: str = "power",
    width: int = 256,
    depth: int = 2,
    standardize: bool | None = None,
    init: str = "reinit",
    seed: int = 0,
    device: str = "cpu",
    keep_steps: int = 400,
    progress: bool = True,
    runs: int | None = None,
) -> xr.Dataset:
    """Track a network on ``dataset``, estimate and fit E(t), write ``out`` and a PNG, print a summary with both
    estimands side by side.

    ``n_runs`` (default 8; ``runs`` is its deprecated spelling), ``weighting``, ``transform``, ``window`` go to
    :func:`~lesde.empirical.track` / :func:`~lesde.empirical.estimate`; ``standardize`` to
    :func:`~lesde.empirical.load_dataset` (default: on for mnist1d); ``init="keep"`` trains every run from the same
    initial weights. Returns the estimate Dataset (as written).
    """
    n_runs = n_runs_arg(n_runs, runs, 8)
    out = Path(out)
    data = load_dataset(
        dataset, classes=classes, per_class=per_class, label_noise=label_noise, seed=seed, standardize=standardize
    )
    x, y = data
    K = int(y.max()) + 1
    if x.ndim == 2 and net == "cnn":
        x = x[:, None]
    model = _build_net(net, x, K, width, depth)
    tr = track(
        model,
        x,
        y,
        lr=lr,
        steps=steps,
        n_runs=n_runs,
        probes=probes,
        record_every=record_every,
        feature=feature,
        seed=seed,
        init=init,
        device=device,
        progress=progress,
    )
    est = estimate(tr, form=form, window=window, weighting=weighting, transform=transform)
    fr = fit(est, model=fit_model)
    est.attrs.update(
        fit=fr.to_json(),
        dataset=dataset,
        classes=str(classes),
        net=net,
        width=width,
        depth=depth,
        init=init,
        final_accuracy=float(tr["accuracy"].isel(step=-1).mean()),
        final_loss=float(tr["loss"].isel(step=-1).mean()),
        **{f"data_{k}": v for k, v in data.info.items() if k not in ("dataset",)},
    )
    S = tr.sizes["step"]
    keep = np.unique(np.linspace(0, S - 1, min(S, keep_steps)).round().astype(int))
    out.parent.mkdir(parents=True, exist_ok=True)
    est.to_netcdf(out, engine="h5netcdf")
    tr.isel(step=keep).to_netcdf(out, mode="a", group="track", engine="h5netcdf")
    png = save_figure(plot_elasticity(est, fr), out.with_name(out.stem + "_elasticity.png"))
    print(_estimate_summary(est, fr, tr, png))
    return est


def _estimate_summary(est: xr.Dataset, fr: FitResult, tr: xr.Dataset, png: Path) -> str:
    both = "alpha_by_weighting" in est
    head = "  window time     " + (
        "alpha (increment)     alpha (step)          beta (increment)      beta (step)"
        if both
        else "alpha                 beta"
    )
    rows = [head]
    for i in np.unique(np.linspace(0, est.sizes["step"] - 1, 6).round().astype(int)):
        w = est.isel(step=i)
        if both:
            cells = [
                f"{float(w[f'{q}_by_weighting'].sel(weighting=k)):+10.4g} +- {float(w[f'{q}_by_weighting_se'].sel(weighting=k)):<7.2g}"
                for q in ("alpha", "beta")
                for k in ("increment", "step")
            ]
        else:
            cells = [f"{float(w[q]):+10.4g} +- {float(w[f'{q}_se']):<7.2g}" for q in ("alpha", "beta")]
        rows.append(f"  t={float(w.time):10.4g}  " + "  ".join(cells))
    if both:
        ratio = {
            k: float(np.nanmedian(est.alpha_by_weighting.sel(weighting=k) / est.beta_by_weighting.sel(weighting=k)))
            for k in ("increment", "step")
        }
        rows.append(
            f"  median alpha/beta over windows: increment {ratio['increment']:.3g}, step {ratio['step']:.3g} "
            f"(reported as alpha, beta: {est.attrs['weighting']}; errors clustered by {est.attrs['se_cluster']}, "
            f"{est.attrs.get('excluded_steps', 0)} steps at rounding level dropped)"
        )
    acc = tr["accuracy"]
    return "\n".join(
        [
            f"tracked {tr.sizes['run']} runs x {tr.attrs['steps']} steps x {tr.sizes['probe']} probes "
            f"(lr={tr.attrs['lr']}, feature={tr.attrs['feature']}, engine={tr.attrs.get('engine')}); probe accuracy "
            f"{float(acc.isel(step=0).mean()):.3f} -> {float(acc.isel(step=-1).mean()):.3f}",
            f"estimate (form={est.attrs['form']}, transform={est.attrs.get('transform')}, window={est.attrs['window']} "
            "steps):",
            *rows,
            "fit: " + fr.summary().replace("\n", "\n     "),
            f"residual diffusion sigma_hat = {fr.noise:.4g}",
            f"plot: {png}",
        ]
    )


ELASTICITY = ("estimate", "fit")


def imitate_cli(
    est_path: str | Path,
    out: str | Path,
    transform: str | None = None,
    elasticity: str = "estimate",
    paths_per_run: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> xr.Dataset:
    """Read an ``estimate_cli`` file, imitate its network with the LE-SDE, write ``out`` and a PNG.

    ``elasticity="estimate"`` (default) drives the LE-SDE with the tabulated estimate, ``"fit"`` with the fitted
    schedules; ``transform`` defaults to the one the estimate was made for.
    """
    check_choice("elasticity", elasticity, ELASTICITY)
    est_path, out = Path(est_path), Path(out)
    with (
        xr.open_dataset(est_path, engine="h5netcdf") as est,
        xr.open_dataset(est_path, group="track", engine="h5netcdf") as tr,
    ):
        if "fit" not in est.attrs:
            raise ValueError(f"{est_path} has no 'fit' attr: it must be written by estimate_cli")
        src = FitResult.from_json(est.attrs["fit"]) if elasticity == "fit" else est.load()
        imit = imitate(tr.load(), src, transform=transform, paths_per_run=paths_per_run, seed=seed, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    imit.to_netcdf(out, engine="h5netcdf")
    png = save_figure(plot_imitation(imit), out.with_name(out.stem + "_trajectories.png"))
    err = imit["relative_error_median"]
    T = imit.sizes["time"]
    rows = [
        f"  t={float(imit.time[i]):8.3f}  relative error (median over runs) {float(err[i]):.4g}"
        for i in np.unique(np.linspace(0, T - 1, 5).round().astype(int))
    ]
    lines = [
        f"imitation of {est_path} (transform={imit.attrs['transform']}, E(t) {imit.attrs['elasticity']}, "
        f"sigma={imit.attrs['noise']:.4g}, {paths_per_run} paths per run):",
        *rows,
        f"median relative error of the class means: first half of training "
        f"{imit.attrs['median_relative_error_first_half']:.4g}, whole track {imit.attrs['median_relative_error']:.4g}"
        + (
            "  (> 0.5: the LE-SDE does not imitate this network)"
            if imit.attrs["median_relative_error_first_half"] > 0.5
            else ""
        ),
    ]
    if "nc1_quotient" in imit:
        nc = imit["nc1_quotient"].isel(time=-1).mean("run")
        lines.append(f"  final nc1_quotient: network {float(nc[0]):.4g}, LE-SDE {float(nc[1]):.4g}")
    lines.append(f"plot: {png}")
    print("\n".join(lines))
    return imit


def label_noise_cli(out: str | Path, rates=None, **kwargs) -> xr.Dataset:
    """Run the label-corruption experiment, write ``out`` (NetCDF) and ``<out stem>.png``, print the table."""
    from .label_noise import RATES, label_noise_experiment

    out = Path(out)
    ds = label_noise_experiment(rates=RATES if rates is None else rates, **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(out, engine="h5netcdf")
    png = save_figure(plot_label_noise(ds), out.with_suffix(".png"))
    lines = [
        f"label corruption on {ds.attrs['dataset']} ({ds.attrs['net_desc']}, form={ds.attrs['form']}):",
        "  rate   r(alpha)  r(beta)   validation acc   train acc (corrupted labels)",
    ]
    for p in ds.rate.values:
        d = ds.sel(rate=p)
        lines.append(
            f"  {p:5.3f}  {float(d.tail_alpha_pooled):8.3f}  {float(d.tail_beta_pooled):8.3f}   "
            f"{float(d.validation_accuracy.mean()):14.3f}   {float(d.train_accuracy.mean()):.3f}"
        )
    lines += [f"wrote {out}", f"plot: {png}"]
    print("\n".join(lines))
    return ds


__all__ = ["estimate_cli", "imitate_cli", "label_noise_cli"]
