r"""The tail index of the label-corruption experiment with its uncertainty, from the experiment's Dataset.

`label_noise_experiment` takes the tail index $r$ of each run's own estimate
(``tail_alpha(rate, run)``, ``tail_beta(rate, run)``) and of the estimate pooled over runs
(``tail_alpha_pooled(rate)``). The runs are independent (own initialisation and sample order), so the mean of the
per-run indices has the standard error $s / \sqrt{R}$ ($s$ their standard deviation) and a Student-t
interval on $R - 1$ degrees of freedom. Decision: that mean is the number the table and the figure report
(``tail_alpha_mean`` with ``_se``, ``_ci_low``, ``_ci_high``); the pooled index is kept beside it for reference
but carries no interval, and it can differ from the mean by more than the spread of the runs: it is the index of
$|\operatorname{mean}_r A_r(t)|$, which is small (and its log large) where runs' integrated elasticities
disagree in sign, while the mean is over each run's own $\log|A_r|$. With one run the interval is NaN.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.stats import t as student_t

from ..schema import VARIABLE_ATTRS


def tail_statistics(ds: xr.Dataset, confidence: float = 0.95) -> xr.Dataset:
    """``ds`` (the experiment's Dataset, with ``tail_alpha(rate, run)`` and ``tail_beta(rate, run)``) with the mean
    over runs of each tail index, its standard error and its Student-t interval, per rate.

    Adds ``tail_alpha_mean``, ``tail_alpha_se``, ``tail_alpha_ci_low``, ``tail_alpha_ci_high`` and the same for
    beta, ``tail_runs`` (the runs with a finite alpha index), and attr ``tail_confidence``.

    Examples
    --------
    >>> from lesde.empirical import tail_statistics
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"tail_alpha": (("rate", "run"), [[0.6, 0.7, 0.8]]),
    ...                  "tail_beta": (("rate", "run"), [[0.9, 0.9, 0.9]])}, coords={"rate": [0.0]})
    >>> out = tail_statistics(ds)
    >>> round(float(out.tail_alpha_mean[0]), 3), round(float(out.tail_alpha_se[0]), 4)
    (0.7, 0.0577)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    out = ds.copy()
    for q in ("alpha", "beta"):
        r = ds[f"tail_{q}"].values.astype(np.float64)  # (rate, run)
        n = np.isfinite(r).sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, np.nansum(r, -1) / np.maximum(n, 1), np.nan)
            dev = np.where(np.isfinite(r), r - mean[:, None], 0.0)
            se = np.where(n > 1, np.sqrt((dev**2).sum(-1) / np.maximum(n - 1, 1) / np.maximum(n, 1)), np.nan)
            half = student_t.ppf(0.5 + confidence / 2, np.where(n > 1, n - 1, np.nan)) * se
        for name, v in (("mean", mean), ("se", se), ("ci_low", mean - half), ("ci_high", mean + half)):
            out[f"tail_{q}_{name}"] = ("rate", v, dict(VARIABLE_ATTRS[f"tail_{q}_{name}"]))
        if q == "alpha":
            out["tail_runs"] = ("rate", n, dict(VARIABLE_ATTRS["tail_runs"]))
    out.attrs["tail_confidence"] = confidence
    return out


__all__ = ["tail_statistics"]
