r"""Fit functional forms to estimated elasticities and return schedules an `LESDE` accepts.

Models (a registry; each maps to a `lesde.schedules` class):

| name | $a(t)$ | schedule |
| --- | --- | --- |
| power | $a\,(t_0 + t)^{-p}$ | ``PowerLaw(scale=a, exponent=p, offset=t_0)`` |
| exp | $a\,e^{-r t}$ | ``Exponential(scale=a, rate=r)`` |
| const | $a$ | ``Constant(value=a)`` |

Fits are weighted least squares (``scipy.optimize.curve_fit`` with ``sigma`` = the estimate's standard errors).
Parameter standard errors start from those the estimate's own errors imply (``absolute_sigma=True``); where those
errors do not explain the scatter of the estimates about the curve ($\chi^2/\nu > 1$, $\nu = n - k$),
they are scaled by $\sqrt{\chi^2/\nu}$ (the Birge ratio, what ``absolute_sigma=False`` does), so a model
that misses the data's structure reports honestly wide errors (on MNIST-1D, $\chi^2/\nu = 17.6$ had made
them about 4x too small). ``ParamFit`` reports ``chi2``, ``chi2_dof`` and ``error_scale``; a warning names fits
with $\chi^2/\nu > 3$ (``CHI2_DOF_WARN``).
``AIC = chi^2 + 2 k`` (Gaussian likelihood with the estimate's variances, constants dropped), comparable across
models fitted to the same data; ``model="auto"`` keeps the lowest AIC per quantity. The power law's offset
$t_0$ is held fixed (default 1, the ``PowerLaw`` default, so that $t = 0$ is finite) unless
``offset=None``, which fits it too (often poorly conditioned over short time ranges).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import xarray as xr
from scipy.optimize import OptimizeWarning, curve_fit

from ..schedules import Constant, Exponential, PowerLaw, Schedule
from ..validation import check_choice, check_positive_float, check_real

CHI2_DOF_WARN = 3.0


class FitError(RuntimeError):
    """A model that cannot be fitted to an estimate (too few windows, no convergence); the message says what to
    try."""


@dataclass
class ParamFit:
    """One fitted quantity: parameters, their standard errors, goodness of fit and the schedule."""

    quantity: str
    model: str
    params: dict[str, float]
    stderr: dict[str, float]
    chi2: float
    aic: float
    n: int
    chi2_dof: float = float("nan")
    error_scale: float = 1.0

    @property
    def schedule(self) -> Schedule:
        return _MODELS[self.model][2](self.params)

    def to_dict(self) -> dict:
        return {
            "quantity": self.quantity,
            "model": self.model,
            "params": self.params,
            "stderr": self.stderr,
            "chi2": self.chi2,
            "aic": self.aic,
            "n": self.n,
            "chi2_dof": self.chi2_dof,
            "error_scale": self.error_scale,
        }


@dataclass
class FitResult:
    """Fits of alpha and beta (``fits["alpha"]``, ``fits["beta"]``), the residual noise scale, and in ``extra`` the
    estimate's ``form``, ``weighting`` and ``transform`` (what `imitate` needs to know)."""

    fits: dict[str, ParamFit]
    noise: float = float("nan")
    extra: dict = field(default_factory=dict)

    @property
    def alpha(self) -> Schedule:
        return self.fits["alpha"].schedule

    @property
    def beta(self) -> Schedule:
        return self.fits["beta"].schedule

    def to_json(self) -> str:
        return json.dumps(
            {"fits": {k: f.to_dict() for k, f in self.fits.items()}, "noise": self.noise, "extra": self.extra}
        )

    @classmethod
    def from_json(cls, text: str) -> FitResult:
        d = json.loads(text)
        return cls({k: ParamFit(**f) for k, f in d["fits"].items()}, d.get("noise", float("nan")), d.get("extra", {}))

    def curves(self, est, points: int = 300, draws: int = 400, seed: int = 0):
        """``est`` with the fitted curves beside the estimate, what a figure of the fit draws.

        Adds, for each fitted quantity ``q``, ``q_fit(fit_time)`` and its 16-84% band ``q_fit_lower``,
        ``q_fit_upper`` over ``draws`` draws of the parameters from independent normals with the fit's standard
        errors (the fit stores no covariance; NaN where fewer than half the draws are finite), and the fit as
        JSON in attr ``fit``. ``fit_time`` spans the estimate's times, geometrically when they are all positive.
        """
        t = np.asarray(est["time"].values, dtype=float)
        t = t[np.isfinite(t)]
        if t.size == 0:
            raise ValueError("the estimate has no finite time to draw the fit over")
        tt = (
            np.geomspace(t.min(), t.max(), points)
            if (t > 0).all() and t.max() > t.min()
            else np.linspace(max(t.min(), 0.0), t.max(), points)
        )
        out = est.assign_coords(fit_time=("fit_time", tt))
        out["fit_time"].attrs.update(long_name="time of the fitted curve", units=est["time"].attrs.get("units", "1"))
        for q, f in self.fits.items():
            curve, band = _curve_and_band(f, tt, draws, seed)
            out[f"{q}_fit"] = ("fit_time", curve, {"long_name": f"fitted {q}: {f.model} model", "units": "1"})
            for i, side in enumerate(("lower", "upper")):
                out[f"{q}_fit_{side}"] = (
                    "fit_time",
                    band[i],
                    {"long_name": f"{'16' if i == 0 else '84'}% point of the fitted {q} over parameter draws",
                     "units": "1"},
                )  # fmt: skip
        out.attrs["fit"] = self.to_json()
        return out

    def summary(self) -> str:
        lines = []
        for q, f in self.fits.items():
            ps = ", ".join(
                f"{k}={v:.4g}" + (f"+-{f.stderr[k]:.2g}" if k in f.stderr else " (fixed)") for k, v in f.params.items()
            )
            scaled = f" (errors x{f.error_scale:.2g})" if f.error_scale > 1 else ""
            lines.append(f"{q}: {f.model}({ps}), AIC={f.aic:.4g}, chi2/dof={f.chi2_dof:.3g}{scaled}")
        return "\n".join(lines)


def _curve_and_band(f: ParamFit, tt: np.ndarray, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fitted curve on ``tt`` and its 16-84% band over parameter draws (NaN without standard errors)."""
    curve = np.asarray(f.schedule(torch.as_tensor(tt)).numpy(), dtype=float)
    band = np.full((2, len(tt)), np.nan)
    errs = {k: s for k, s in f.stderr.items() if np.isfinite(s) and s > 0}
    if not errs:
        return curve, band
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(draws):
        params = {k: v + rng.normal(0.0, errs[k]) if k in errs else v for k, v in f.params.items()}
        try:
            rows.append(np.asarray(replace(f, params=params).schedule(torch.as_tensor(tt)).numpy(), dtype=float))
        except ValueError:  # a draw outside the model's domain (e.g. a negative offset)
            continue
    if len(rows) < draws // 2:
        return curve, band
    rows = np.stack(rows)
    rows = np.where(np.isfinite(rows), rows, np.nan)  # a draw may overflow (offset near 0): left out, not inf - inf
    keep = np.isfinite(rows).sum(0) >= draws // 2
    band[:, keep] = np.nanquantile(rows[:, keep], [0.16, 0.84], axis=0)
    return curve, band


def _power(offset: float | None):
    if offset is None:

        def f(t, a, p, t0):
            return a * np.abs(t0 + t) ** (-p)

        names = ("scale", "exponent", "offset")
    else:

        def f(t, a, p):
            return a * (offset + t) ** (-p)

        names = ("scale", "exponent")
    return f, names


def _power_guess(t, y, offset):
    t0 = 1.0 if offset is None else offset
    ok = y != 0
    sign = np.sign(np.mean(y)) or 1.0
    if ok.sum() >= 2:
        slope, icpt = np.polyfit(np.log(t0 + t[ok]), np.log(np.abs(y[ok])), 1)
        guess = [sign * math.exp(icpt), -slope]
    else:
        guess = [sign * np.abs(y).mean(), 0.5]
    return guess + ([t0] if offset is None else [])


def _exp_guess(t, y, offset):
    ok = y != 0
    sign = np.sign(np.mean(y)) or 1.0
    if ok.sum() >= 2:
        slope, icpt = np.polyfit(t[ok], np.log(np.abs(y[ok])), 1)
        return [sign * math.exp(icpt), -slope]
    return [sign * np.abs(y).mean(), 0.0]


def _power_schedule(p):
    return PowerLaw(p["scale"], p["exponent"], p.get("offset", 1.0))


# name -> (function factory (offset) -> (f, param names), initial guess, schedule from params)
_MODELS: dict[str, tuple[Callable, Callable, Callable[[dict], Schedule]]] = {
    "power": (_power, _power_guess, _power_schedule),
    "exp": (
        lambda offset: ((lambda t, a, r: a * np.exp(-r * t)), ("scale", "rate")),
        _exp_guess,
        lambda p: Exponential(p["scale"], p["rate"]),
    ),
    "const": (
        lambda offset: ((lambda t, a: a + 0 * t), ("value",)),
        lambda t, y, o: [float(np.mean(y))],
        lambda p: Constant(p["value"]),
    ),
}


def fit_curve(
    t: np.ndarray,
    y: np.ndarray,
    se: np.ndarray | None,
    model: str = "power",
    offset: float | None = 1.0,
    quantity: str = "value",
    warn: bool = True,
) -> ParamFit:
    """Weighted least-squares fit of one model to points ``(t, y)`` with standard errors ``se``.

    Parameter errors are scaled by ``sqrt(chi2/dof)`` when ``chi2/dof > 1`` (module docstring); ``warn`` names a
    fit with ``chi2/dof > CHI2_DOF_WARN``.
    """
    model = check_choice("model", model, _MODELS)
    t, y = np.asarray(t, np.float64), np.asarray(y, np.float64)
    se = np.ones_like(y) if se is None else np.asarray(se, np.float64)
    ok = np.isfinite(t) & np.isfinite(y) & np.isfinite(se) & (se > 0)
    t, y, se = t[ok], y[ok], se[ok]
    make, guess, _ = _MODELS[model]
    f, names = make(offset)
    if len(t) < len(names) + 1:
        raise ValueError(
            f"fitting {quantity} with model={model!r} needs more than {len(names)} finite points "
            f"with positive standard errors, got {len(t)}"
        )
    p0 = guess(t, y, offset)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptimizeWarning)  # covariance not estimable: the fit is not determined
            popt, pcov = curve_fit(f, t, y, p0=p0, sigma=se, absolute_sigma=True, maxfev=20000)
    except (RuntimeError, OptimizeWarning, ValueError, FloatingPointError) as e:
        raise FitError(
            f"fitting {quantity} with model={model!r} to {len(t)} points did not converge "
            f"({' '.join(str(e).split())}); "
            "try model='auto' or 'const', tmin= to skip a transient, a longer track (more windows), or imitate with "
            "the tabulated estimate"
        ) from None
    if not (np.all(np.isfinite(popt)) and np.all(np.isfinite(np.diag(pcov)))):
        raise FitError(
            f"fitting {quantity} with model={model!r}: the parameters or their errors are not finite (the data do not "
            "determine them); try model='const' or 'auto', or a longer track"
        )
    chi2 = float((((y - f(t, *popt)) / se) ** 2).sum())
    dof = len(t) - len(names)
    chi2_dof = chi2 / dof
    scale = math.sqrt(max(chi2_dof, 1.0))
    params = {k: float(v) for k, v in zip(names, popt)}
    if model == "power" and offset is not None:
        params["offset"] = float(offset)
    stderr = {k: scale * float(math.sqrt(max(pcov[i, i], 0.0))) for i, k in enumerate(names)}
    if warn and chi2_dof > CHI2_DOF_WARN:
        warnings.warn(
            f"fit of {quantity} with model={model!r}: chi2/dof = {chi2_dof:.3g} > {CHI2_DOF_WARN:g}, the estimate's "
            f"errors do not explain its scatter about the curve; the parameter errors were scaled by "
            f"sqrt(chi2/dof) = {scale:.3g} (try model='auto', tmin= to skip a transient, or a tabulated E(t))",
            UserWarning,
            stacklevel=3,
        )
    return ParamFit(quantity, model, params, stderr, chi2, chi2 + 2 * len(names), int(len(t)), chi2_dof, scale)


def fit(
    estimate_ds: xr.Dataset,
    model: str = "power",
    offset: float | None = 1.0,
    quantities: tuple[str, ...] = ("alpha", "beta"),
    tmin: float | None = None,
) -> FitResult:
    r"""Fit ``alpha(t)`` and ``beta(t)`` of an `estimate` Dataset.

    Parameters
    ----------
    estimate_ds : xarray.Dataset
        With ``alpha``, ``beta``, their ``_se`` and the ``time`` coordinate.
    model : "power" | "exp" | "const" | "auto"
        Functional form (module table); ``"auto"`` picks the lowest AIC per quantity.
    offset : float or None
        Fixed power-law offset $t_0$ (default 1.0), or None to fit it.
    quantities
        names of the variables to fit.
    tmin : float, optional
        Ignore windows before this time (e.g. an initial transient).

    Returns
    -------
    FitResult
        ``.fits[q]`` (params, stderr, chi2, chi2_dof, error_scale, AIC), ``.alpha`` / ``.beta`` schedules for ``LESDE``, ``.noise``
        (median residual diffusion scale of the estimate, for imitation).

    Examples
    --------
    >>> from lesde.empirical import fit
    >>> import numpy as np, xarray as xr
    >>> t = np.linspace(0, 10, 30)
    >>> ds = xr.Dataset({"alpha": ("step", 2 * (1 + t) ** -0.5), "alpha_se": ("step", np.full(30, 1e-3)),
    ...                  "beta": ("step", 0.5 * (1 + t) ** -0.5), "beta_se": ("step", np.full(30, 1e-3))},
    ...                 coords={"time": ("step", t)})
    >>> round(fit(ds).fits["alpha"].params["exponent"], 3)
    0.5
    """
    choices = [*_MODELS, "auto"]
    model = check_choice("model", model, choices)
    if not isinstance(estimate_ds, xr.Dataset) or "time" not in estimate_ds.coords:
        raise TypeError(
            f"estimate_ds must be an estimate Dataset (lesde.empirical.estimate), got {type(estimate_ds).__name__}"
        )
    if isinstance(quantities, str) or not all(isinstance(q, str) for q in quantities) or not len(quantities):
        raise ValueError(
            f"quantities must be a non-empty tuple of variable names such as ('alpha', 'beta'), got {quantities!r}"
        )
    if tmin is not None:
        tmin = check_real("tmin", tmin)
    if offset is not None:
        offset = check_positive_float("offset", offset, allow_zero=True)
    t = estimate_ds["time"].values
    sel = np.ones_like(t, dtype=bool) if tmin is None else t >= tmin
    fits = {}
    for q in quantities:
        if q not in estimate_ds:
            raise ValueError(f"quantities: {q!r} is not a variable of the estimate; it has {list(estimate_ds)}")
        y = estimate_ds[q].values[sel]
        se = estimate_ds[f"{q}_se"].values[sel] if f"{q}_se" in estimate_ds else None
        if model == "auto":
            cands, why = [], []
            for name in _MODELS:
                try:
                    cands.append(fit_curve(t[sel], y, se, name, offset, q, warn=False))
                except (RuntimeError, ValueError) as e:  # a form that cannot be fitted simply loses the comparison
                    why.append(str(e).split(";")[0])
            if not cands:
                raise FitError(f"model='auto': no model could be fitted to {q} ({'; '.join(why)})")
            best = min(cands, key=lambda f: f.aic)
            fits[q] = fit_curve(t[sel], y, se, best.model, offset, q)  # refit to warn about the chosen one only
        else:
            fits[q] = fit_curve(t[sel], y, se, model, offset, q)
    noise = (
        float(np.nanmedian(estimate_ds["noise"].values))
        if "noise" in estimate_ds and np.isfinite(estimate_ds["noise"].values).any()
        else float("nan")
    )
    carried = {k: estimate_ds.attrs[k] for k in ("form", "weighting", "transform") if k in estimate_ds.attrs}
    for k, kind in (("lr", float), ("num_classes", int), ("feature", str)):  # what imitate checks its track against
        if k in estimate_ds.attrs:
            carried[k] = kind(estimate_ds.attrs[k])
    return FitResult(fits, noise, carried)


__all__ = ["fit", "fit_curve", "FitResult", "ParamFit", "FitError"]
