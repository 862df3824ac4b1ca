"""Theory beside measurement: the UFM closed forms, and the prediction that applies to a lesde Dataset.

The closed forms (`lesde.theory.closed_forms`: `simplex_etf`, `tirer_bruna`,
`ufm_mse_loss`, `optimal_classifier`, `mse_decomposition`, `central_path_snr`,
`one_vs_rest_distance`, `softmax_code`; `ce_ufm_minimizer`) are importable from here.

`attach` reads what kind of Dataset it is given (from its attrs: the ``problem`` of an SGD run, the
``spec`` of a simulation, the ``spec_hash`` of a sweep store) and adds the predictions that apply as variables
beside the measured ones, each with a ``prediction`` attr naming the result it comes from and a distance
variable saying how far the measurement is from it. The table of which prediction applies to which Dataset,
and what each distance measures, is on the documentation site's "Design decisions" page ("Theory comparison").

Examples
--------
>>> import lesde
>>> from lesde.sgd import UFM, compare
>>> ufm = UFM.from_tirer_bruna(3, 4, 6, lambda_W=0.01, lambda_H=0.01)
>>> ds = compare(ufm, lr=0.05, batch_size=4, t_end=1.0, n_runs=2, save="full", progress=False)
>>> out = lesde.theory.attach(ds)
>>> sorted(v for v in out.data_vars if v.startswith("tb_"))
['tb_distance', 'tb_gram_distance', 'tb_rho']
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # xarray is imported when attach runs, not by `lesde --help`
    import xarray as xr

from .ce_minimizer import ce_ufm_minimizer
from .closed_forms import (
    central_path_snr,
    mse_decomposition,
    optimal_classifier,
    simplex_etf,
    tirer_bruna,
    ufm_mse_loss,
)
from .softmax_codes import one_vs_rest_distance, softmax_code

__all__ = [
    "attach",
    "NoPredictionError",
    "dataset_kind",
    "summary",
    "simplex_etf",
    "tirer_bruna",
    "ufm_mse_loss",
    "optimal_classifier",
    "mse_decomposition",
    "central_path_snr",
    "one_vs_rest_distance",
    "softmax_code",
    "ce_ufm_minimizer",
]


class NoPredictionError(ValueError):
    """No prediction of `lesde.theory` applies to the Dataset (the message says why and what would)."""


#: what applies where, for the error message of a Dataset with none
WHAT_APPLIES = (
    "predictions exist for: sgd.compare / run_sgd / run_sme / gradient_flow runs of a lesde UFM (regularised MSE: "
    "Tirer-Bruna minimizer; regularised CE, balanced: Zhu et al. minimizer; unregularised MSE with save='full': "
    "central-path SNR; unregularised CE: max-margin direction (NC metrics, margin ~ log t); sphere=True with "
    "K > d + 1: softmax code), LE-SDE simulations with save='means' or 'full', a fixed transform and "
    "sample-independent noise (class-mean law; the limit angle where one exists), and sweep stores of such "
    "LE-SDEs with x0 drawn i.i.d. (finite-time P(separable)), or with T = identity, balanced classes and "
    "Constant / PowerLaw alpha_t, beta_t (t -> infinity phase)"
)


def dataset_kind(ds: xr.Dataset) -> str:
    """``"sweep"``, ``"simulation"``, ``"training"`` (an SGD / SME / flow run), ``"empirical"`` or ``"unknown"``."""
    attrs = ds.attrs
    if "spec_hash" in attrs and "p_all_separable" in ds:
        return "sweep"
    if "spec" in attrs and "path" in ds.dims:
        return "simulation"
    if "problem" in attrs and "loss" in ds:
        return "training"
    if any(name in ds for name in ("sampled_index", "alpha", "beta", "E")):
        return "empirical"
    return "unknown"


def _describe(ds: xr.Dataset, kind: str) -> str:
    if kind == "training":
        return f"a training run of problem {ds.attrs['problem']}"
    if kind == "simulation":
        spec = json_attr(ds, "spec")
        return f"an LE-SDE simulation (transform {spec.get('transform')!r}, noise {spec.get('noise')!r}, save={ds.attrs.get('save')!r})"
    if kind == "sweep":
        return "a sweep store"
    if kind == "empirical":
        return (
            "an empirical elasticity Dataset (E(t) estimated from a trained network), which no closed form "
            "predicts; simulate an LE-SDE driven by the fitted E(t) (lesde.empirical imitation) and attach to that"
        )
    if "process" in ds.dims and "loss" in ds:
        other = [str(d) for d in ds.dims if d not in ("process", "run", "time")]
        return (
            f"SGD / SME / gradient-flow runs stacked over {other} without the 'problem' attr the predictions read "
            "(attach each problem's own lesde.sgd.compare Dataset before stacking)"
        )
    return f"a Dataset lesde did not produce (variables {sorted(map(str, ds.data_vars))[:8]}, attrs {sorted(ds.attrs)[:8]})"


def attach(ds: xr.Dataset) -> xr.Dataset:
    """Add the predictions that apply to ``ds`` beside its measured variables.

    Parameters
    ----------
    ds : xarray.Dataset
        A Dataset lesde produced: `lesde.sgd.compare` (or ``run_sgd``, ``run_sme``, ``gradient_flow``) on a
        `UFM`; `lesde.simulate` of an `LESDE`; a sweep store opened with
        `lesde.sweep.open_sweep`. Read from a file, it needs the attrs lesde wrote (``problem``, ``spec``).

    Returns
    -------
    xarray.Dataset
        A copy of ``ds`` with the predicted variables (``*_predicted``, ``tb_rho``, ``ce_rho``, ``loss_predicted``,
        ``predicted_phase``, ``p_separable_predicted``, ...) and the distances (``loss_gap``, ``tb_distance``,
        ``tb_gram_distance``, ``ce_distance``, ``snr_distance``, ``nc_margin_gap``, ``max_margin_distance``,
        ``nc_margin_log_slope_gap``, ``gnc2_gap``, ``class_mean_zscore``, ``class_mean_var_zscore``,
        ``mean_cosine_distance``, ``phase_agreement``), each with a ``prediction`` attr naming the paper, theorem
        or equation, and long_name / units from `lesde.schema.VARIABLE_ATTRS`. The global attrs
        ``theory_predictions`` (JSON list of the variables added) and ``theory_skipped`` (JSON list of
        predictions that did not apply, with the reason) say what was done.

    Raises
    ------
    NoPredictionError
        When no prediction applies; the message (one line) names the kind of Dataset and what would apply.

    Notes
    -----
    Predictions by kind of Dataset (the equations are on the documentation site's "Theory to code" page):

    - UFM, MSE, weight decay on W and H (balanced, no bias): the Tirer-Bruna minimizer (``tb_rho``, the objective
      ``loss_predicted``, NC metrics there); ``loss_gap`` always, ``tb_distance`` / ``tb_gram_distance`` with
      ``save="full"``. For c = sqrt(lambda_W lambda_H) >= 1 the zero solution.
    - UFM, CE, weight decay on W and H, balanced: the minimizer of Zhu et al. (``ce_rho``, ``loss_predicted``,
      ``loss_gap``, NC metrics there; ``ce_distance`` with ``save="full"``), `lesde.theory.ce_predictions`.
    - UFM, MSE, no weight decay, ``save="full"``: the central-path SNR singular values (``snr_predicted`` from
      the measured ``snr`` at the first record) and ``central_path_departure`` = L_perp / L, where the run
      leaves the theorem's assumption of the renormalised flow on the central path.
    - UFM, CE, no weight decay: the max-margin direction: the collapse metrics it records -> 0, the NC margin's
      slope against log t -> the temperature (``nc_margin_log_slope``); with ``save="full"`` the normalised margin
      bound 1 / (2 (K-1) sqrt(n)) and ``max_margin_distance`` of the normalised logits.
    - UFM with ``sphere=True`` and K > d + 1: the softmax-code one-vs-rest distance as the ``gnc2`` target.
    - LE-SDE simulation: the Gaussian law of the class means at the Dataset's own times (from t0 = 0; closed
      form or moment ODE) beside the mean and variance over the finite paths (``n_paths_finite``), z-scores only
      where sampling, not rounding, sets them (``zscore_note``); the limit of ``mean_cosine`` where one exists
      (simplex ETF where proven, else the dominant mode, the ``prediction`` attr says which).
    - Sweep store: ``predicted_phase`` at the summary time from ``p_separable_predicted(time, ...)`` (NaN where the
      finite-time probability does not decide it: ``phase_prediction_kind``), the t -> infinity
      ``predicted_phase_limit``, the measured ``phase`` and ``phase_agreement``.
    """
    import xarray as xr

    from ..schema import finalize

    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"attach needs an xarray.Dataset, got {type(ds).__name__}")
    kind = dataset_kind(ds)
    _check_readable(ds, kind)
    if kind == "training":
        out, skipped = _training(ds)
    elif kind == "simulation":
        from .lesde_predictions import lesde_predictions

        if json_attr(ds, "spec").get("model") != "LESDE":
            raise NoPredictionError(f"{_describe(ds, kind)}: a simulation of a model other than the LE-SDE")
        _check_lesde_spec(ds)
        out, skipped = lesde_predictions(ds)
    elif kind == "sweep":
        from .phase_predictions import phase_predictions

        out, skipped = phase_predictions(ds)
    else:
        raise NoPredictionError(f"no prediction applies to {_describe(ds, kind)}; {WHAT_APPLIES}")
    if not out:
        why = "; ".join(skipped) if skipped else "none of its cases matches"
        raise NoPredictionError(f"no prediction applies to {_describe(ds, kind)}: {why}. {WHAT_APPLIES}")
    result = ds.copy()
    for name, (dims, values, attrs) in out.items():
        result[name] = xr.Variable(dims, values, attrs)
    return finalize(result, theory_predictions=list(out), theory_skipped=skipped)


def json_attr(ds: xr.Dataset, name: str) -> dict:
    """The JSON object lesde wrote in ``ds.attrs[name]``; a ValueError naming the attr when it is not one (a
    damaged file, or attrs edited by hand)."""
    raw = ds.attrs[name]
    try:
        value = json.loads(raw) if isinstance(raw, (str, bytes, bytearray)) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(
            f"ds.attrs[{name!r}] is damaged: lesde writes a JSON object there (the parameters the predictions "
            f"read), found {str(raw)[:80]!r}; rerun the command that made the file"
        )
    return value


def _check_readable(ds: xr.Dataset, kind: str) -> None:
    """Refuse up front what the predictions could only fail on deep inside: a damaged attr, no times."""
    if kind in ("simulation", "sweep"):
        json_attr(ds, "spec")
    elif kind == "training":
        json_attr(ds, "problem")
    if kind != "unknown" and ds.sizes.get("time", 1) == 0:
        raise ValueError("ds has an empty time axis: attach predicts at the Dataset's own times and needs at least one")


def _check_lesde_spec(ds: xr.Dataset) -> None:
    """Refuse a ``spec`` attr that names the LE-SDE but does not rebuild one (parameters missing or wrong)."""
    from ..model import LESDE

    try:
        LESDE.from_spec(json_attr(ds, "spec"))
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(
            f"ds.attrs['spec'] does not describe an LE-SDE lesde can rebuild ({type(e).__name__}: {e})"
        ) from None


def _training(ds: xr.Dataset):
    from ..sgd.ufm_problem import UFM
    from .ufm_predictions import ufm_predictions

    problem = json_attr(ds, "problem")
    if problem.get("kind") != "ufm":
        raise NoPredictionError(
            f"no prediction applies to {_describe(ds, 'training')}: the closed forms describe the unconstrained-"
            f"features model, not a {problem.get('kind')!r} problem. {WHAT_APPLIES}"
        )
    try:
        ufm = UFM(**{k: v for k, v in problem.items() if k != "kind"})
    except (TypeError, ValueError) as e:
        raise ValueError(f"ds.attrs['problem'] does not describe a UFM lesde can rebuild ({e})") from None
    return ufm_predictions(ds, ufm)


def summary(ds: xr.Dataset) -> str:
    """One paragraph: for each distance ``attach`` added, its largest value and where (time, process)."""
    import xarray as xr

    from ._summary import summary as _summary

    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"summary needs the xarray.Dataset lesde.theory.attach returns, got {type(ds).__name__}")
    return _summary(ds)
