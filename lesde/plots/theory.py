r"""Measured vs predicted: the figures of a Dataset `lesde.theory.attach` returned.

* `plot_theory`: one panel per prediction with a time axis (a two-column grid), titled with the problem;
  a sweep Dataset (it carries ``predicted_phase``) is drawn by `lesde.plots.phase_plot`, which hatches the
  predicted-separable cells over the measured heatmap.
* `plot_theory_panel`: one of those panels on a given ``ax`` (to compose figures of several Datasets).
* `theory_panels`: the panels `plot_theory` would draw for a Dataset.

Decisions: a measured quantity is the mean over runs (or paths), solid, one Okabe-Ito colour per process, class or
SNR mode, with a band of +-1 standard deviation over the runs (paths), clipped at 0 for a nonnegative quantity;
features are averaged. Its prediction is dashed in the same colour when it varies in time, a vermillion dashed
line under the data when it is one number. A panel of a distance or a variance uses a log y axis when the means
and predictions are positive and span 1.5 decades (the house rule of ``_style.fit_y``), with limits from them: a
band reaching 0 is clipped at the bottom of the axis instead of setting it. The NC margin of an unregularised CE run is drawn against $\log\log t$, the axis on which Ji et
al. read its rate. This module does not import `lesde.theory`
(which uses it from ``lesde compare-theory --plot``): it reads the ``theory_predictions`` attr ``attach`` writes.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import xarray as xr

from ._style import (
    LABELS,
    PALETTE,
    PROCESS_NAMES,
    PROCESS_STYLE,
    THEORY,
    band,
    finish,
    fit_y,
    legend,
    reference,
    require,
    subplots,
    time_label,
)
from ._titles import describe
from .phase import phase_plot

__all__ = ["plot_theory", "plot_theory_panel", "theory_panels"]


#: the house style of each process, by its legend name (what _series returns)
_PROCESS_STYLE = {PROCESS_NAMES[k]: v for k, v in PROCESS_STYLE.items()}


class Panel(NamedTuple):
    measured: str
    predicted: str | None
    ylabel: str
    title: str
    log: bool


#: the panels in the order drawn: (measured, prediction or None, mathtext y label, title, log y)
PANELS = {
    p.measured: p
    for p in (
        Panel("loss", "loss_predicted", r"objective $\mathcal{L}(W, H)$", "objective vs predicted minimum", True),
        Panel("tb_distance", None, r"$\|WH - W^*H^*\|_F\, /\, \|Y\|_F$", "distance to the Tirer-Bruna minimizer", True),
        Panel(
            "tb_gram_distance",
            None,
            r"$\|H^\top H - H^{*\top} H^*\|_F\, /\, \|Y^\top Y\|_F$",
            "feature-Gram distance to the minimizer",
            True,
        ),
        Panel("snr", "snr_predicted", r"SNR singular values $s_j$", "SNR vs central path", True),
        Panel("central_path_departure", None, r"$L_\perp / L$", "departure from the central path", True),
        Panel(
            "nc_margin_normalized",
            "nc_margin_normalized_predicted",
            r"$q_{\min} / (\|W\|_F^2 + \|H\|_F^2)$",
            "normalised NC margin vs max-margin bound",
            False,
        ),
        Panel("gnc2", "gnc2_predicted", LABELS["gnc2"], "GNC2 vs softmax code", False),
        Panel(
            "class_mean_var",
            "class_mean_var_predicted",
            r"$\mathrm{Var}_{\mathrm{paths}}\,\bar X_k(t)$ (mean over features)",
            "class-mean variance vs closed form",
            True,
        ),
        Panel(
            "class_mean_zscore",
            None,
            r"$\max_{k,j} |\hat\mu_{kj} - \mu_{kj}| / \mathrm{s.e.}$",
            "class-mean mean: simulated vs closed form",
            False,
        ),
        Panel(
            "class_mean_var_zscore",
            None,
            r"$\max_{k,j} |\hat v_{kj} - v_{kj}| / \mathrm{s.e.}$",
            "class-mean variance: simulated vs closed form",
            False,
        ),
        Panel(
            "mean_cosine_distance",
            None,
            r"$|\mathrm{mean}_{k<l}\cos(\mu_k,\mu_l) + 1/(K-1)|$",
            "angle to the simplex ETF",
            True,
        ),
        Panel("nc1", "nc1_predicted", LABELS["nc1"], "NC1 vs predicted", True),
        Panel(
            "etf_error_classifier",
            "etf_error_classifier_predicted",
            LABELS["etf_error_classifier"],
            "ETF error of $W$ vs predicted",
            True,
        ),
    )
}


def _added(ds: xr.Dataset) -> set[str]:
    try:
        added = set(json.loads(ds.attrs.get("theory_predictions", "[]")))
    except (TypeError, ValueError):
        added = set()
    if not added:
        raise ValueError(
            "the Dataset carries no predictions (no theory_predictions attr): call lesde.theory.attach(ds) first"
        )
    return added


def theory_panels(ds: xr.Dataset) -> list[str]:
    """Names of the measured variables `plot_theory` draws a panel for (those with a time axis whose
    measurement or prediction ``attach`` added), in the order drawn."""
    require(ds, (), "theory")
    added = _added(ds)
    return [
        name
        for name, p in PANELS.items()
        if name in ds and (name in added or p.predicted in added) and "time" in ds[name].dims
    ]


def _spread_dim(da: xr.DataArray) -> str | None:
    return next((d for d in ("run", "path") if d in da.dims), None)


def _series(da: xr.DataArray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, mean, s.d.) over time: mean and s.d. over runs / paths, features averaged, one series per
    process, class or SNR mode."""
    spread = _spread_dim(da)
    mean = da.mean(spread) if spread else da
    std = da.std(spread) if spread else xr.zeros_like(da)
    if "feature" in mean.dims:
        mean, std = mean.mean("feature"), std.mean("feature")
    split = next((d for d in ("process", "class", "snr_mode") if d in mean.dims), None)
    if split is None:
        return [("", mean.transpose("time").values, std.transpose("time").values)]
    out = []
    for i in range(mean.sizes[split]):
        m, s = mean.isel({split: i}), std.isel({split: i})
        others = [d for d in m.dims if d != "time"]
        if others:  # e.g. snr over process and mode: average what is left
            m, s = m.mean(others), s.mean(others)
        key = mean[split].values[i] if split in mean.coords else i
        name = {"class": f"class {key}", "snr_mode": f"$s_{i + 1}$"}.get(split, PROCESS_NAMES.get(str(key), str(key)))
        out.append((name, m.transpose("time").values, s.transpose("time").values))
    return out


def _series_labels(da: xr.DataArray) -> list[str]:
    return [name for name, _, _ in _series(da.isel(time=slice(0, 1)))]


def _draw(ax, ds: xr.Dataset, p: Panel, series_legend: bool = True) -> None:
    """One panel on ``ax``; ``series_legend``: name the processes / classes too (once per figure)."""
    t = np.asarray(ds["time"].values, dtype=float)
    loglog = p.measured == "nc_margin_normalized"
    keep = t > np.e if loglog else np.ones(len(t), bool)
    x = np.log(np.log(t[keep])) if loglog else t[keep]
    da = ds[p.measured]
    spread = _spread_dim(da)
    series = _series(da)
    pred = ds[p.predicted] if p.predicted is not None and p.predicted in ds else None
    curves = _series(pred) if pred is not None and "time" in pred.dims else []
    value = float(pred.mean()) if pred is not None and not curves else None
    bands = []
    for _, mean, std in series:
        if spread and np.nanmax(std) > 0:
            low = np.maximum(mean - std, 0.0) if np.nanmin(mean) >= 0 else mean - std  # nonnegative: stop at 0
            bands.append((low[keep], (mean + std)[keep]))
    lines = [m[keep] for _, m, _ in series] + [m[keep] for _, m, _ in curves] + ([[value]] if value is not None else [])
    fit_y(ax, lines, [np.stack(b) for b in bands], log=None if p.log else False)
    handles, colours = [], {}
    for i, (name, mean, _) in enumerate(series):
        style = _PROCESS_STYLE.get(name, {"color": PALETTE[i % len(PALETTE)], "lw": 1.4})
        colours[name] = style["color"]
        if len(bands) > i:
            band(ax, x, *bands[i], color=style["color"], zorder=1)
        handles.append(ax.plot(x, mean[keep], label=name or "measured", **style)[0])
    theory = []
    if curves:
        for name, mean, _ in curves:
            ax.plot(x, mean[keep], ls="--", lw=1.2, color=colours.get(name, THEORY), zorder=2.5)
        theory.append(ax.plot([], [], ls="--", lw=1.2, color="0.3", label="theory (dashed)")[0])
    elif value is not None:
        theory.append(reference(ax, value, label=f"theory: {value:.4g}"))
    elif p.measured.endswith("zscore"):
        theory.append(reference(ax, 3.0, ls=":", color="0.3", label="3 standard errors"))
    if bands:
        theory.insert(0, ax.fill_between([], [], [], color="0.5", alpha=0.35, lw=0,
                                         label=rf"$\pm$1 s.d. over {ds.sizes[spread]} {spread}s"))  # fmt: skip
    if p.measured.endswith("zscore"):
        ax.set_ylim(bottom=0, top=max(3.5, ax.get_ylim()[1]))
    ax.set_xlabel(r"$\log\log t$ (training time $t$)" if loglog else time_label(ds))
    ax.set_ylabel(p.ylabel)
    ax.set_title(p.title)
    shown = (handles if series_legend and len(handles) > 1 else []) + theory
    if shown:
        legend(ax, handles=shown, loc="best")


def plot_theory_panel(ds: xr.Dataset, name: str, *, ax=None, series_legend: bool = True):
    r"""One measured-vs-predicted panel of an attached Dataset on ``ax`` (default: a new one-column figure).

    Parameters
    ----------
    ds
        Dataset returned by `lesde.theory.attach`.
    name : str
        The measured variable (one of `theory_panels`), e.g. ``"tb_distance"``.
    ax : matplotlib Axes, optional
    series_legend : bool
        Name the processes / classes and the band in the legend (the theory entries are always shown).

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = theory_panels(ds)
    if name not in names:
        raise ValueError(f"name={name!r} is not a theory panel of this Dataset; accepted: {', '.join(names)}")
    fig, (ax,) = subplots(1, ax=ax)
    _draw(ax, ds, PANELS[name], series_legend)
    finish(fig)
    return fig


def _subtitle(ds: xr.Dataset) -> str:
    if "process" in ds.dims:
        procs = " / ".join(PROCESS_NAMES.get(str(v), str(v)) for v in ds["process"].values)
        lr, batch = ds.attrs.get("lr"), ds.attrs.get("batch_size")
        return (
            f"{procs}"
            + (f", lr = {lr:g}" if isinstance(lr, (int, float)) else "")
            + (f", batch size {batch}" if batch is not None else "")
        )
    if "path" in ds.dims:
        return f"LE-SDE, {ds.sizes['path']} paths, {ds.attrs.get('method', '?')} integrator"
    if "run" in ds.dims:
        return f"{ds.sizes['run']} runs"
    return ""


def _sources(ds: xr.Dataset, names: list[str]) -> str:
    """'theory: Tirer and Bruna 2022, Theorem 3.1 (c = 0.3)': the results the drawn panels compare with, from the
    ``prediction`` attrs (the text before the first colon, and a parameter stated after a semicolon)."""
    out: list[str] = []
    for name in names:
        for var in (name, PANELS[name].predicted):
            note = str(ds[var].attrs.get("prediction", "")) if var in ds else ""
            if not note:
                continue
            head = note.split(":")[0].strip()
            param = note.rpartition(";")[2].replace("sqrt(lambda_W lambda_H) = ", "").strip() if ";" in note else ""
            text = f"{head} (${param}$)" if param.startswith("c = ") else head
            if text not in out:
                out.append(text)
    return "theory: " + "; ".join(out) if out else ""


def plot_theory(ds: xr.Dataset, names=None, title: str | None = None, *, fig=None):
    r"""Measured vs predicted for a Dataset `lesde.theory.attach` returned.

    Parameters
    ----------
    ds
        Dataset returned by `lesde.theory.attach` (this function opens no file).
    names : iterable of str, optional
        The panels to draw (measured variables, see `theory_panels`); default all of them.
    title : str, optional
        The figure title; default "Measured vs predicted:" and the problem (K, n, m, the schedules or weight decay),
        then the processes or the number of paths.
    fig : matplotlib Figure or SubFigure, optional
        Draw on it (cleared first); default a new figure, two columns wide for more than one panel.

    Returns
    -------
    matplotlib.figure.Figure
        For a sweep (``predicted_phase`` in ``ds``), `lesde.plots.phase_plot`'s figure.
    """
    require(ds, (), "theory")
    if "predicted_phase" in ds:
        return phase_plot(ds, fig=fig)
    available = theory_panels(ds)
    chosen = available if names is None else [names] if isinstance(names, str) else list(names)
    bad = [n for n in chosen if n not in available]
    if bad or not chosen:
        raise ValueError(
            f"names={bad or chosen!r}: not theory panels of this Dataset; accepted: {', '.join(available) or 'none'}"
            + ("" if available else " (none of the attached predictions has a time axis)")
        )
    fig, axes = subplots(len(chosen), fig=fig)
    named: set[tuple[str, ...]] = set()  # the series each legend names once per figure (the processes, classes)
    for ax, name in zip(axes, chosen):
        labels = tuple(_series_labels(ds[name]))
        _draw(ax, ds, PANELS[name], series_legend=labels not in named)
        named.add(labels)
    if title is None:
        what = describe(ds)
        lines = [f"Measured vs predicted{': ' + what if what else ''}", _subtitle(ds), _sources(ds, chosen)]
        title = "\n".join(line for line in lines if line)
    finish(fig, title)
    return fig
