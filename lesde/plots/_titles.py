"""What a figure's title says about the problem, read from the Dataset's attrs: the model (K, n, m, the schedules,
the noise, the regularisation as the problem was posed) and the number of classes.

Decisions: the spec is read from the ``spec`` or ``problem`` attr (JSON, its ``model`` table when it has one),
the one place every lesde Dataset records its model; a value it lacks is left out of the title, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import xarray as xr

__all__ = ["describe", "num_classes"]


def _schedule(spec: Any, name: str) -> str | None:
    if not isinstance(spec, Mapping):
        return None if spec is None else f"${name}={spec:g}$" if isinstance(spec, (int, float)) else None
    kind = spec.get("kind")
    if kind == "Constant":
        return f"${name}={spec['value']:g}$"
    if kind == "PowerLaw":
        off = spec.get("offset", 1.0)
        return f"${name}_t={spec['scale']:g}\\,({off:g}+t)^{{-{spec['exponent']:g}}}$"
    if kind == "Exponential":
        return f"${name}_t={spec['scale']:g}\\,e^{{-{spec['rate']:g}t}}$"
    return f"{name}: {kind}" if kind else None


def _weight_decay(spec: Mapping, K: Any, n: Any) -> str | None:
    """The regularisation as the problem was posed: Tirer and Bruna's lambda_W, lambda_H for the bias-free MSE UFM
    with balanced classes (``UFM.from_tirer_bruna`` divides them by K and K n into the per-parameter weight decays
    the spec stores), the weight decays of W and H otherwise."""
    wd_W, wd_H = spec.get("weight_decay_W"), spec.get("weight_decay_H")
    if not isinstance(wd_W, (int, float)) or not isinstance(wd_H, (int, float)):
        return None
    tirer_bruna = spec.get("loss") == "mse" and spec.get("bias") is False and not spec.get("sphere")
    if tirer_bruna and isinstance(K, int) and isinstance(n, int):
        return rf"$\lambda_W={wd_W * K:g}$, $\lambda_H={wd_H * K * n:g}$ (Tirer-Bruna)"
    return f"weight decay {wd_W:g} ($W$), {wd_H:g} ($H$)"


def _spec(ds: xr.Dataset) -> dict:
    """The model's spec from the attrs (``spec`` or ``problem``, its ``model`` table if it has one), or {}."""
    try:
        spec = json.loads(ds.attrs.get("spec", ds.attrs.get("problem", "{}")))
    except (TypeError, ValueError):
        return {}
    if not isinstance(spec, dict):
        return {}
    return spec.get("model", spec) if isinstance(spec.get("model"), Mapping) else spec


def describe(ds: xr.Dataset, skip: Iterable[str] = ()) -> str:
    """'K = 3, n = 5, m = 4, alpha = 1, beta = 0.2, residual' from the attrs (what the title states)."""
    spec = _spec(ds)
    parts = []
    if spec.get("kind") == "ufm":
        parts.append(f"UFM ({spec.get('loss', '?')} loss)")
    elif spec.get("kind") == "module":  # a torch network: its layer count and size
        layers = str(spec.get("module", "")).count("Linear(") or "?"
        parts.append(
            f"network, {layers} linear layers, {spec.get('num_params', '?')} parameters, {spec.get('loss')} loss"
        )
        if spec.get("num_samples") is not None:
            parts.append(f"{spec['num_samples']} samples")
    K = spec.get("num_classes", ds.attrs.get("num_classes"))
    if K is None and "class" in ds.dims:  # e.g. a network problem, whose spec does not name K
        K = ds.sizes["class"]
    if K is not None:
        parts.append(f"$K={K}$")
    n = spec.get("samples_per_class", ds.attrs.get("samples_per_class"))
    if isinstance(n, str):
        try:
            n = json.loads(n)
        except ValueError:
            pass
    if isinstance(n, list):
        n = n[0] if len(set(n)) == 1 else "/".join(map(str, n))
    if n is not None:
        parts.append(f"$n={n}$")
    m = spec.get("dim", ds.attrs.get("dim"))
    if m is not None:
        parts.append(f"$m={m}$")
    for q, sym in (("alpha", r"\alpha"), ("beta", r"\beta")):
        text = None if q in skip else _schedule(spec.get(q), sym)
        if text:
            parts.append(text)
    decay = _weight_decay(spec, K, n)
    if decay:
        parts.append(decay)
    if spec.get("transform"):
        parts.append(f"T = {spec['transform']}")
    if spec.get("noise") is not None and isinstance(spec.get("noise"), (int, float)):
        parts.append(rf"$\sigma={spec['noise']:g}$")
    return ", ".join(parts)


def num_classes(ds: xr.Dataset) -> int | None:
    """K from a one-value ``num_classes`` coordinate (a sweep over K, one K selected), the ``num_classes`` attr
    or the spec in the attrs (None when none says)."""
    if "num_classes" in ds.coords and ds["num_classes"].size == 1:
        return int(ds["num_classes"].values)
    for value in (ds.attrs.get("num_classes"), _spec(ds).get("num_classes")):
        try:
            return int(value)
        except (TypeError, ValueError):
            continue
    return None
