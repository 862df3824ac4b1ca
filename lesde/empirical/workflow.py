"""The two command-line jobs, each one Python call: ``lesde estimate`` and ``lesde imitate``.

``estimate_cli`` loads a dataset, builds a network, tracks it, estimates and fits E(t), and writes ``out``:

- the root group: the estimate Dataset (alpha, beta, E over windows), with the fit as JSON in attr ``fit`` and
  the job's settings in attrs;
- group ``track``: the track thinned to at most ``keep_steps`` recorded steps (what ``imitate`` needs: the
  probe features over time), so the file stays small;
- ``<out stem>_elasticity.png`` next to it: alpha(t), beta(t) with CIs and the fit.

``imitate_cli`` reads that file, runs :func:`~lesde.empirical.imitate`, writes its Dataset and
``<out stem>_trajectories.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from .._validate import check_choice
from .data import load_dataset
from .estimators import estimate
from .fitting import FitResult, fit
from .imitation import imitate
from .nets import NETS
from .plots import plot_elasticity, plot_imitation
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
    runs: int,
    out: str | Path,
    lr: float = 0.01,
    probes: int | None = 300,
    per_class: int | Sequence[int] | None = None,
    label_noise: float = 0.0,
    record_every: int = 1,
    feature: str = "logits",
    form: str = "feature",
    window: int | None = None,
    fit_model: str = "power",
    width: int = 256,
    depth: int = 2,
    seed: int = 0,
    device: str = "cpu",
    keep_steps: int = 400,
    progress: bool = True,
) -> xr.Dataset:
    """Track a network on ``dataset``, estimate and fit E(t), write ``out`` and a PNG, print a summary.

    Returns the estimate Dataset (as written).
    """
    out = Path(out)
    x, y = load_dataset(dataset, classes=classes, per_class=per_class, label_noise=label_noise, seed=seed)
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
        runs=runs,
        probes=probes,
        record_every=record_every,
        feature=feature,
        seed=seed,
        device=device,
        progress=progress,
    )
    est = estimate(tr, form=form, window=window)
    fr = fit(est, model=fit_model)
    est.attrs.update(
        fit=fr.to_json(),
        dataset=dataset,
        classes=str(classes),
        net=net,
        width=width,
        depth=depth,
        final_accuracy=float(tr["accuracy"].isel(step=-1).mean()),
        final_loss=float(tr["loss"].isel(step=-1).mean()),
    )
    S = tr.sizes["step"]
    keep = np.unique(np.linspace(0, S - 1, min(S, keep_steps)).round().astype(int))
    out.parent.mkdir(parents=True, exist_ok=True)
    est.to_netcdf(out, engine="h5netcdf")
    tr.isel(step=keep).to_netcdf(out, mode="a", group="track", engine="h5netcdf")
    png = plot_elasticity(est, fr, out.with_name(out.stem + "_elasticity.png"))
    print(_estimate_summary(est, fr, tr, png))
    return est


def _estimate_summary(est: xr.Dataset, fr: FitResult, tr: xr.Dataset, png: Path) -> str:
    rows = []
    for i in np.unique(np.linspace(0, est.sizes["step"] - 1, 5).round().astype(int)):
        w = est.isel(step=i)
        rows.append(
            f"  t={float(w.time):8.3f}  alpha={float(w.alpha):+.4f} +- {float(w.alpha_se):.2g}"
            f"  beta={float(w.beta):+.4f} +- {float(w.beta_se):.2g}"
        )
    acc = tr["accuracy"]
    return "\n".join(
        [
            f"tracked {tr.sizes['run']} runs x {tr.attrs['steps']} steps x {tr.sizes['probe']} probes "
            f"(lr={tr.attrs['lr']}, feature={tr.attrs['feature']}); probe accuracy "
            f"{float(acc.isel(step=0).mean()):.3f} -> {float(acc.isel(step=-1).mean()):.3f}",
            f"estimate ({est.attrs['form']}, window={est.attrs['window']} steps):",
            *rows,
            "fit: " + fr.summary().replace("\n", "\n     "),
            f"residual diffusion sigma_hat = {fr.noise:.4g}",
            f"plot: {png}",
        ]
    )


def imitate_cli(
    est_path: str | Path,
    out: str | Path,
    transform: str = "identity",
    paths_per_run: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> xr.Dataset:
    """Read an ``estimate_cli`` file, imitate its network with the fitted LE-SDE, write ``out`` and a PNG."""
    est_path, out = Path(est_path), Path(out)
    with (
        xr.open_dataset(est_path, engine="h5netcdf") as est,
        xr.open_dataset(est_path, group="track", engine="h5netcdf") as tr,
    ):
        if "fit" not in est.attrs:
            raise ValueError(f"{est_path} has no 'fit' attr: it must be written by estimate_cli")
        fr = FitResult.from_json(est.attrs["fit"])
        imit = imitate(tr.load(), fr, transform=transform, paths_per_run=paths_per_run, seed=seed, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    imit.to_netcdf(out, engine="h5netcdf")
    png = plot_imitation(imit, out.with_name(out.stem + "_trajectories.png"))
    err = imit["relative_error"].mean("run")
    T = imit.sizes["time"]
    rows = [
        f"  t={float(imit.time[i]):8.3f}  relative error {float(err[i]):.4f}"
        for i in np.unique(np.linspace(0, T - 1, 5).round().astype(int))
    ]
    lines = [
        f"imitation of {est_path} (transform={transform}, sigma={imit.attrs['noise']:.4g}, "
        f"{paths_per_run} paths per run):",
        *rows,
    ]
    if "nc1_quotient" in imit:
        nc = imit["nc1_quotient"].isel(time=-1).mean("run")
        lines.append(f"  final nc1_quotient: network {float(nc[0]):.4g}, LE-SDE {float(nc[1]):.4g}")
    lines.append(f"plot: {png}")
    print("\n".join(lines))
    return imit


__all__ = ["estimate_cli", "imitate_cli"]
