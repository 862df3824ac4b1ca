r"""Elasticity schedules: scalar functions of time $t \mapsto a(t)$.

Every schedule evaluates elementwise on tensors (``sched(t)``), knows its integral
$\int_{t_0}^{t_1} a(u)\,du$ (in closed form where one exists, by Gauss-Legendre quadrature
otherwise), and serialises to a plain dict for Dataset attrs and TOML.

Parameters may be tensors with a leading batch dimension (one value per path): evaluation then
broadcasts ``t`` against the parameters, as torch does. Sweeps use this to run many parameter cells
as one batched simulation.

```pycon
>>> from lesde.schedules import PowerLaw
>>> s = PowerLaw(2.0, 0.5)            # 2 (1 + t)^-0.5
>>> float(s(3.0))
1.0
>>> float(s.integral(0.0, 3.0))       # 4 (sqrt(4) - 1)
4.0

```
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .validation import as_tensor

Tensorish = float | torch.Tensor

# Composite Gauss-Legendre nodes on [0, 1] for numerical integrals of callables.
_GL_X, _GL_W = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(16))
_GL_X, _GL_W = (_GL_X + 1) / 2, _GL_W / 2


def _params(kind: str, **values: Tensorish) -> dict[str, torch.Tensor]:
    """A schedule's parameters as float64 tensors: each a scalar or one value per path (1-D), and the 1-D ones of
    one length (they broadcast against each other and against a batch of times)."""
    params = {k: as_tensor(k, v) for k, v in values.items()}
    for k, v in params.items():
        if v.ndim > 1:
            raise ValueError(f"{kind}: {k} must be a number or a 1-D sequence (one value per path), got shape "
                             f"{tuple(v.shape)}")  # fmt: skip
    lengths = {k: v.shape[0] for k, v in params.items() if v.ndim == 1 and v.shape[0] != 1}
    if len(set(lengths.values())) > 1:
        given = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ValueError(f"{kind}: per-path parameters must have one length ({given} values); give scalars or "
                         "sequences of the same length")  # fmt: skip
    return params


def _t(t: Tensorish, like: torch.Tensor) -> torch.Tensor:
    if isinstance(t, np.ndarray) and not t.flags.writeable:  # e.g. an xarray coordinate: torch warns on those
        t = t.copy()
    return torch.as_tensor(t, dtype=like.dtype, device=like.device)


class Schedule:
    """Base class. Subclasses define ``__call__`` and, where they can, ``_closed_integral``."""

    #: parameters as tensors (float64 unless moved); names match the constructor
    params: dict[str, torch.Tensor]

    def __call__(self, t: Tensorish) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def has_closed_integral(self) -> bool:
        return type(self)._closed_integral is not Schedule._closed_integral

    def _closed_integral(self, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def integral(self, t0: Tensorish, t1: Tensorish, pieces: int = 64) -> torch.Tensor:
        """$\\int_{t_0}^{t_1} a(u) du$, broadcast like ``__call__``."""
        like = self._like()
        t0, t1 = _t(t0, like), _t(t1, like)
        if self.has_closed_integral:
            return self._closed_integral(t0, t1)
        zero = torch.zeros(self.batch_shape, dtype=like.dtype, device=like.device)
        return _gauss_legendre(self, t0 + zero, t1 + zero, pieces)

    def _like(self) -> torch.Tensor:
        for p in self.params.values():
            return p
        return torch.zeros((), dtype=torch.float64)

    @property
    def batch_shape(self) -> torch.Size:
        return torch.broadcast_shapes(*(p.shape for p in self.params.values())) if self.params else torch.Size()

    def to(self, device=None, dtype=None) -> Schedule:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.params = {k: v.to(device=device, dtype=dtype) for k, v in self.params.items()}
        return new

    def select(self, index: torch.Tensor | slice) -> Schedule:
        """The same schedule with batched parameters restricted to ``index`` along their first dim."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.params = {k: (v[index] if v.ndim > 0 else v) for k, v in self.params.items()}
        return new

    def to_spec(self) -> dict[str, Any]:
        def plain(v: torch.Tensor):
            return v.item() if v.ndim == 0 else v.tolist()

        return {"kind": type(self).__name__, **{k: plain(v) for k, v in self.params.items()}}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v.item() if v.ndim == 0 else tuple(v.shape)}" for k, v in self.params.items())
        return f"{type(self).__name__}({inner})"


def _gauss_legendre(fn: Callable, t0: torch.Tensor, t1: torch.Tensor, pieces: int) -> torch.Tensor:
    """Composite 16-point Gauss-Legendre rule on ``pieces`` equal panels (vectorised over t0, t1)."""
    t0, t1 = torch.broadcast_tensors(t0, t1)
    x = (torch.arange(pieces, dtype=t0.dtype, device=t0.device)[:, None] + _GL_X.to(t0)) / pieces  # (P, 16)
    w = (_GL_W.to(t0) / pieces).expand(pieces, -1).reshape(-1)  # (P*16,)
    x = x.reshape(-1, *([1] * t0.ndim))
    u = t0 + (t1 - t0) * x  # (Q, *shape)
    vals = fn(u)
    return (t1 - t0) * torch.tensordot(w, vals, dims=([0], [0]))


class Constant(Schedule):
    """$a(t) = \\text{value}$."""

    def __init__(self, value: Tensorish):
        self.params = _params("Constant", value=value)

    def __call__(self, t):
        v = self.params["value"]
        return v + torch.zeros_like(_t(t, v))

    def _closed_integral(self, t0, t1):
        return self.params["value"] * (t1 - t0)


class PowerLaw(Schedule):
    """$a(t) = \\text{scale}\\,(\\text{offset} + t)^{-\\text{exponent}}$."""

    def __init__(self, scale: Tensorish, exponent: Tensorish, offset: Tensorish = 1.0):
        self.params = _params("PowerLaw", scale=scale, exponent=exponent, offset=offset)
        if (self.params["offset"] <= 0).any():
            raise ValueError(f"offset must be > 0 so that (offset + t)^-exponent is finite at t >= 0, got {offset}")

    def __call__(self, t):
        p = self.params
        return p["scale"] * (p["offset"] + _t(t, p["scale"])) ** (-p["exponent"])

    def _closed_integral(self, t0, t1):
        p = self.params
        a, q = p["offset"] + t0, p["offset"] + t1
        one_minus = 1.0 - p["exponent"]
        # (q^(1-p) - a^(1-p)) / (1-p), written with expm1 so that p -> 1 tends smoothly to log(q/a)
        la, lq = torch.log(a), torch.log(q)
        near_one = one_minus.abs() < 1e-8
        safe = torch.where(near_one, torch.ones_like(one_minus), one_minus)
        general = torch.exp(safe * la) * torch.expm1(safe * (lq - la)) / safe
        return p["scale"] * torch.where(near_one, lq - la, general)


class Exponential(Schedule):
    """$a(t) = \\text{scale}\\,e^{-\\text{rate}\\,t}$ (decay for rate > 0)."""

    def __init__(self, scale: Tensorish, rate: Tensorish):
        self.params = _params("Exponential", scale=scale, rate=rate)

    def __call__(self, t):
        p = self.params
        return p["scale"] * torch.exp(-p["rate"] * _t(t, p["scale"]))

    def _closed_integral(self, t0, t1):
        p = self.params
        r = p["rate"]
        zero = r.abs() < 1e-12
        safe = torch.where(zero, torch.ones_like(r), r)
        general = torch.exp(-safe * t0) * -torch.expm1(-safe * (t1 - t0)) / safe
        return p["scale"] * torch.where(zero, t1 - t0, general)


class Tabulated(Schedule):
    """Linear interpolation of ``values`` at strictly increasing ``times``; constant beyond the ends."""

    def __init__(self, times, values):
        times, values = as_tensor("times", times), as_tensor("values", values)
        if times.ndim != 1 or times.numel() < 2:
            raise ValueError(f"times must be 1-D with at least 2 entries, got shape {tuple(times.shape)}")
        if values.shape[-1:] != times.shape:
            raise ValueError(f"values must have shape (..., {times.numel()}) to match times, got {tuple(values.shape)}")
        if not (times[1:] > times[:-1]).all():
            raise ValueError("times must be strictly increasing")
        self.params = {"times": times, "values": values}

    @property
    def batch_shape(self):
        return self.params["values"].shape[:-1]

    def select(self, index):
        new = super().select(slice(None))
        v = self.params["values"]
        new.params = {"times": self.params["times"], "values": v[index] if v.ndim > 1 else v}
        return new

    def _locate(self, t: torch.Tensor):
        """t broadcast against the batch of values, its segment index i (>= 1) and its clamped value."""
        times = self.params["times"]
        t = _t(t, times)
        t = t.expand(torch.broadcast_shapes(t.shape, self.batch_shape))
        tc = t.clamp(times[0], times[-1])
        i = torch.searchsorted(times, tc.contiguous(), right=True).clamp(1, len(times) - 1)
        return t, tc, i

    def _at(self, table: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """table[..., i] with the batch dims of ``table`` (*batch, L) aligned to the trailing dims of ``i``."""
        if table.ndim == 1:
            return table[i]
        return torch.gather(table.expand(*i.shape, table.shape[-1]), -1, i.unsqueeze(-1)).squeeze(-1)

    def __call__(self, t):
        # t (...) and per-path values (*batch, L) broadcast like the other schedules: result (..., *batch)
        times, values = self.params["times"], self.params["values"]
        _, tc, i = self._locate(t)
        w = (tc - times[i - 1]) / (times[i] - times[i - 1])
        lo, hi = self._at(values, i - 1), self._at(values, i)
        return lo + w * (hi - lo)

    def _closed_integral(self, t0, t1):
        times, values = self.params["times"], self.params["values"]
        # exact integral of the piecewise-linear interpolant with constant extension: F(t) cumulative
        seg = 0.5 * (values[..., 1:] + values[..., :-1]) * (times[1:] - times[:-1])
        cum = torch.cat([torch.zeros_like(values[..., :1]), seg.cumsum(-1)], -1)

        def F(t):
            t, tc, i = self._locate(t)
            inside = self._at(cum, i - 1) + 0.5 * (self._at(values, i - 1) + self(tc)) * (tc - times[i - 1])
            below = (t - times[0]).clamp(max=0) * values[..., 0]
            above = (t - times[-1]).clamp(min=0) * values[..., -1]
            return inside + below + above

        return F(t1) - F(t0)

    def to_spec(self):
        return {"kind": "Tabulated", "times": self.params["times"].tolist(), "values": self.params["values"].tolist()}


class Callable_(Schedule):
    """Wrap a user callable ``t -> value`` (tensor in, tensor out, elementwise). Integrated numerically."""

    def __init__(self, fn: Callable[[torch.Tensor], Any], name: str = "schedule"):
        if not callable(fn):
            raise TypeError(f"{name} must be a number, a Schedule or a callable t -> value, got {type(fn).__name__}")
        self.fn, self.name, self.params = fn, name, {}

    def __call__(self, t):
        t = torch.as_tensor(t, dtype=torch.float64) if not torch.is_tensor(t) else t
        out = torch.as_tensor(self.fn(t), dtype=t.dtype if t.is_floating_point() else torch.float64, device=t.device)
        if out.shape != t.shape and out.numel() != 1:
            raise ValueError(
                f"{self.name}: the callable returned shape {tuple(out.shape)} for t of shape {tuple(t.shape)}; "
                "it must return one value per time (elementwise)"
            )
        if not torch.isfinite(out).all():
            raise ValueError(f"{self.name}: the callable returned NaN or inf at t={t.flatten()[:4].tolist()}...")
        return out.expand(t.shape) if out.shape != t.shape else out

    def to_spec(self):
        return {"kind": "Callable", "repr": getattr(self.fn, "__qualname__", repr(self.fn))}


REGISTRY: dict[str, type[Schedule]] = {
    "Constant": Constant,
    "PowerLaw": PowerLaw,
    "Exponential": Exponential,
    "Tabulated": Tabulated,
}


def as_schedule(value: Any, name: str = "schedule") -> Schedule:
    """Accept a number, a Schedule, a callable, or a spec dict ``{"kind": "PowerLaw", ...}``."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, dict):
        spec = dict(value)
        kind = spec.pop("kind", None)
        if kind not in REGISTRY:
            raise ValueError(f"{name}: unknown schedule kind {kind!r}; accepted: {', '.join(REGISTRY)}")
        try:
            return REGISTRY[kind](**spec)
        except TypeError as e:
            raise TypeError(f"{name}: bad arguments for {kind}: {e}") from None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, a Schedule or a callable, got bool")
    if isinstance(value, numbers.Number) or isinstance(value, np.ndarray) or torch.is_tensor(value):
        # numbers (numpy scalars too) and arrays of per-path values: a constant schedule
        return Constant(as_tensor(name, value))
    if callable(value):
        return Callable_(value, name)
    raise TypeError(f"{name} must be a number, a Schedule, a spec dict or a callable t -> value, got {value!r}")


__all__ = ["Schedule", "Constant", "PowerLaw", "Exponential", "Tabulated", "as_schedule"]
