"""What ``simulate`` keeps at each save time: the reduction of the integrator's state into host arrays.

Integrators call ``record(i, ...)`` with what they hold: the full ``state`` (B, N, m) (or (B, D) for other
modules), or the class ``means`` (B, K, m) with either the within-class ``deviations`` (B, N, m) or the
within-class variances ``within`` (B, K) (a host numpy array, from the in-law path). The recorder forms only
what the save mode stores, checks every recorded array for inf/NaN (never only the state), and copies it into
preallocated host arrays.
"""

from __future__ import annotations

import numpy as np
import torch

from .integrators.protocol import is_lesde


class SimulationOverflowError(OverflowError):
    """A recorded quantity (the state, the class means, the within-class variance or a metric) became inf/NaN."""


class Recorder:
    """Host arrays of one run, filled chunk by chunk (``for_chunk``) and save time by save time."""

    def __init__(self, model, save: str, n_paths: int, grid, np_dtype, hint: str):
        self.model, self.save, self.grid, self.hint = model, save, grid, hint
        self.lesde = is_lesde(model)
        self.n_paths, self.np_dtype = n_paths, np_dtype
        self.out: dict[str, np.ndarray] = {}
        T = len(grid.times)
        if self.lesde and save in ("full", "means"):
            K, m = model.num_classes, model.dim
            self.out["class_mean"] = np.empty((n_paths, T, K, m), np_dtype)
            self.out["within_var"] = np.empty((n_paths, T, K), np_dtype)
            if save == "full":
                self.out["features"] = np.empty((n_paths, T, model.num_samples, model.dim), np_dtype)
        self.rows = slice(0, 0)

    def for_chunk(self, model, rows: slice):
        """The ``record`` callable of one chunk (``model`` is the chunk's, on the run's device)."""
        self.rows = rows

        def record(i, state=None, means=None, deviations=None, within=None):
            self._record(model, i, state, means, deviations, within)

        return record

    # ------------------------------------------------------------------ one save time
    def _overflow(self, name: str, i: int) -> SimulationOverflowError:
        t = self.grid.times[i]
        return SimulationOverflowError(
            f"{_WHAT.get(name, name)} overflowed (inf or NaN) by t={t:.6g} (save index {i}).{self.hint}"
        )

    def _store(self, name: str, i: int, value) -> None:
        host = value if isinstance(value, np.ndarray) else value.detach().cpu().numpy()
        if not np.isfinite(host).all():
            raise self._overflow(name, i)
        if name not in self.out:
            shape = (self.n_paths, len(self.grid.times), *host.shape[1:])
            self.out[name] = np.empty(shape, host.dtype if name not in _FLOAT_OUT else self.np_dtype)
        self.out[name][self.rows, i] = host

    def _record(self, model, i, state, means, deviations, within) -> None:
        if not self.lesde:
            self._store("state", i, state)
            return
        X = state
        if X is None and self.save in ("full", "metrics"):
            X = model.expand_to_samples(means) + deviations  # (B, N, m)
        if self.save == "metrics":
            if not bool(torch.isfinite(X).all()):
                raise self._overflow("state", i)
            for name, v in _online_metrics(model, X).items():
                self._store(name, i, v)
            return
        M = model.class_means(X) if means is None else means
        if within is None:
            Z = deviations if deviations is not None else X - model.expand_to_samples(M)
            within = model.class_sums((Z * Z).sum(-1)) / model.counts.to(Z)  # (B, K)
        self._store("class_mean", i, M)
        if isinstance(within, np.ndarray):
            with np.errstate(over="ignore"):  # an overflow in the cast is caught by the finite check
                within = within.astype(self.np_dtype)
        self._store("within_var", i, within)
        if self.save == "full":
            self._store("features", i, X)

    def outputs(self) -> dict[str, np.ndarray]:
        return dict(self.out)


_WHAT = {
    "class_mean": "the class means",
    "within_var": "the within-class variance",
    "features": "the state",
    "state": "the state",
}
_FLOAT_OUT = {"class_mean", "within_var", "features", "state"}


def _online_metrics(model, X) -> dict[str, torch.Tensor]:
    """NC metrics and ncm pairwise separability of every path at one time (save='metrics').

    The values of ``nc_metrics(X, labels, names=ONLINE_METRICS)`` and ``pair_stats(X, labels)`` on the state X
    itself (what save='full' stores), computed in one pass over the deviations by
    `lesde.metrics.online_metrics`: X divided by its largest entry per path and split into class means and
    deviations exactly as nc_metrics does (same unit, so the class sums cannot overflow and the noise-floor
    decisions are the same; same summation, so even cancelling deviations agree to rounding).
    """
    from .metrics import _amax_scale, _class_split, online_metrics

    labels = model.labels
    onehot = torch.nn.functional.one_hot(labels, model.num_classes).to(X.dtype)  # (N, K)
    X = X / _amax_scale(X)[:, None, None]  # (B, N, m), a fresh copy
    means, deviations = _class_split(X, labels, onehot, onehot.sum(0), inplace=True)  # (B, K, m), (B, N, m)
    vals = online_metrics(means, deviations, labels, scale=1.0)
    vals["all_separable"] = vals["all_separable"].to(torch.int8)
    return vals


__all__ = ["Recorder", "SimulationOverflowError"]
