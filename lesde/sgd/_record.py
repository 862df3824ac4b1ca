"""Observations of a batch of parameter vectors, collected over time into one (run, time) Dataset."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from .._attrs import finalize
from .._validate import check_choice

SAVE_MODES = ("metrics", "full")


def finalize_ds(ds: xr.Dataset, **attrs: Any) -> xr.Dataset:
    """``lesde._attrs.finalize``, then plain ``str`` for str subclasses (``torch.__version__`` is a
    ``TorchVersion``, which h5netcdf cannot write as an attribute)."""
    ds = finalize(ds, **attrs)
    ds.attrs = {k: (str(v) if isinstance(v, str) else v) for k, v in ds.attrs.items()}
    return ds


def nc_observations(problem, theta: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
    """NC metrics (``names``, default all) of ``problem.features/classifier/bias`` at ``theta`` (R, P): -> (R,)."""
    feats = problem.features(theta)
    if feats is None:  # a module without a linear head has no classifier to collapse
        return {}
    from ..metrics import nc_metrics

    out = nc_metrics(feats, problem.labels, problem.classifier(theta), problem.bias(theta), names=names)
    if isinstance(out, xr.Dataset):
        return {k: torch.as_tensor(v.values) for k, v in out.data_vars.items()}
    return {k: torch.as_tensor(v) for k, v in out.items()}


def observe(problem, theta: torch.Tensor, save: str, metrics) -> dict[str, torch.Tensor]:
    """Loss, accuracy, NC metrics (``metrics``: True = all, False = none, or a list of names), and
    (``save="full"``) features / classifier / bias, all per run."""
    with torch.no_grad():
        obs = {"loss": problem.loss(theta), "accuracy": problem.accuracy(theta)}
        if metrics is True or (metrics is not False and len(metrics) > 0):
            obs.update(nc_observations(problem, theta, None if metrics is True else list(metrics)))
        if save == "full":
            feats = problem.features(theta)
            if feats is not None:
                obs["features"] = feats  # (R, N, m)
                obs["classifier"] = problem.classifier(theta)  # (R, K, m)
                b = problem.bias(theta)
                if b is not None:
                    obs["bias"] = b  # (R, K)
    # always a copy: classifier / features may be views of the state, whose buffer the integrators reuse
    return {k: v.detach().to("cpu", copy=True) for k, v in obs.items()}


_DIMS = {"features": ("sample", "feature"), "classifier": ("class", "feature"), "bias": ("class",)}


class Recorder:
    """Collects ``observe`` dicts at increasing times; ``dataset()`` stacks them to (run, time, ...)."""

    def __init__(self, problem, save: str = "metrics", metrics=True) -> None:
        self.problem = problem
        self.save = check_choice("save", save, SAVE_MODES)
        self.metrics = metrics
        self.times: list[float] = []
        self.rows: list[dict[str, torch.Tensor]] = []

    def __call__(self, t: float, theta: torch.Tensor) -> None:
        if not torch.isfinite(theta).all():
            raise FloatingPointError(
                f"parameters became NaN/inf by time {t:g}: the learning rate or step size is too large "
                "for this problem (lower lr / dt, or use dtype=torch.float64)"
            )
        self.times.append(float(t))
        self.rows.append(observe(self.problem, theta, self.save, self.metrics))

    def dataset(self, **attrs: Any) -> xr.Dataset:
        data = {}
        for name in self.rows[0]:
            arr = torch.stack([row[name] for row in self.rows], dim=1).numpy()  # (R, T, ...)
            data[name] = (("run", "time") + _DIMS.get(name, ()), arr)
        R = arr.shape[0]
        coords = {
            "run": np.arange(R),
            "time": np.asarray(self.times, dtype=np.float64),
            "label": ("sample", self.problem.labels.cpu().numpy()),
        }
        ds = xr.Dataset(data, coords=coords)
        if "sample" not in ds.dims:
            ds = ds.drop_vars("label")
        return finalize_ds(ds, problem=self.problem.to_spec(), **attrs)


def record_steps(steps: int, record_every: int | None, n_save: int = 101) -> list[int]:
    """Steps at which to record: 0, every ``record_every`` steps, and always the last."""
    if record_every is None:
        record_every = max(1, steps // max(1, n_save - 1))
    out = list(range(0, steps + 1, record_every))
    if out[-1] != steps:
        out.append(steps)
    return out
