r"""Native Euler-Maruyama: strong order 1 for the LE-SDE's state-independent noise, 1/2 for ``noise="sampling"``.

Which path runs (``Euler.plan``, recorded in ``attrs["integrator_plan"]``):

``means``
    Sample-independent noise and the class's own drift (the default). The drift sees only the K class means, so
    Euler steps the (B, K, m) class means (their noise is $\sigma_k/\sqrt{n_k}$) and the within-class
    deviations take their exact increment once per save interval (`lesde.integrators.start`: every sample,
    or with ``save="means"`` and scalar/per-class noise only the within-class sums of squares, drawn in law).
    The joint law at the save times is that of full-state Euler-Maruyama, at n_k times less work per step (and
    no per-sample state at all in the in-law case). Each step is one GEMM in the layout that makes it one
    (`lesde.integrators._mean_steps`).
``full``
    The whole (B, N, m) state: for ``noise="sampling"`` (the noise depends on individual samples) and for a
    supplied Brownian motion (``bm=``, used to couple paths across methods).
``generic``
    Any torchsde-contract module, and LE-SDE subclasses that override ``f``, ``g`` or ``g_prod``: ``y += f h +
    g_prod(dW)`` through the module's own methods (honoured, never silently replaced by the class-mean drift).
"""

from __future__ import annotations

import math

import torch

from . import _mean_steps as _means
from .protocol import Integrator, Memory, is_lesde, structured
from .start import deviation_bytes, deviations_for, in_law_applies


class Euler(Integrator):
    name = "euler"
    strong_order = 1.0  # additive (state-independent) noise
    strong_order_state_dependent = 0.5
    weak_order = 1.0

    def check(self, model, save="means", bm=None, **_):
        if bm is not None and not (is_lesde(model) or hasattr(model, "g_prod") or hasattr(model, "g")):
            return "a Brownian motion bm= needs a model with g or g_prod"
        return None

    def plan(self, model, save, bm=None, **_):
        if not structured(model):
            return "generic"
        if bm is not None or model.noise_kind == "sampling":
            return "full"
        return "means (within-class statistics in law)" if in_law_applies(model, save) else "means"

    def memory(self, model, save, itemsize, n_state=None, bm=None, grid=None, **_):
        plan = self.plan(model, save, bm)
        if plan == "generic":
            return Memory(0, 6 * (n_state or 1) * itemsize)
        K, m, N = model.num_classes, model.dim, model.num_samples
        ops = _means.operator_bytes(model, None if grid is None else max(grid.steps, default=1))
        if plan == "full":  # the state, one step's noise, the drift broadcast; sampling noise adds its sums
            extra = N * m if model.noise_kind == "sampling" else 0
            return Memory(ops, (3 * N * m + extra + 4 * K * m) * itemsize)
        # the means path: two state buffers, the noise and the recorded copy, plus the deviations
        return Memory(ops, 4 * K * m * itemsize + deviation_bytes(model, save, itemsize))

    def integrate(self, model, start, grid, rng, record, save, bm=None, rows=None, **_):
        plan = self.plan(model, save, bm)
        dev, dtype = rng.device, start.dtype
        if plan == "generic":
            return _generic(model, start.full(rows, rng, dtype, dev), grid, rng, record, bm)
        if plan == "full":
            return _full(model, start.full(rows, rng, dtype, dev), grid, rng, record, bm)
        M, deviations = deviations_for(model, start, rows, rng, dtype, dev, in_law=in_law_applies(model, save))
        stepper = _means.EulerMeans(model, M, rng)
        record(0, means=stepper.means(), **deviations.parts())
        for i, t0, t1, steps, h in grid.intervals():
            stepper.advance(t0, steps, h)
            deviations.advance(t1 - t0)
            record(i + 1, means=stepper.means(), **deviations.parts())


def _full(model, X, grid, rng, record, bm):
    """Euler-Maruyama on the whole (B, N, m) state."""
    B, N, m = X.shape
    sampling = model.noise_kind == "sampling"
    sig = model.sample_sigmas(X)[:, None]  # (N, 1)
    chol_T = None if model.noise_chol is None else model.noise_chol.to(X).T
    dW = bm  # a user Brownian motion of the whole run (simulate runs it as one chunk)
    noise_shape = (N,) if sampling else (N, m)
    record(0, state=X)
    for i, t0, _t1, steps, h in grid.intervals():
        sqrt_h = math.sqrt(h)
        times = (t0 + h * torch.arange(steps, dtype=torch.float64)).to(X.device)
        for s0, nb in _means.step_groups(steps, math.prod(noise_shape)):
            Z = None if dW is not None else rng.normal(noise_shape, X.dtype, steps=nb)  # (B, nb, ...)
            W_all = model.drift_weights(times[s0 : s0 + nb]).to(X.dtype)  # (nb, K, K) or (nb, P, K, K)
            for j in range(nb):
                t = times[s0 + j]  # a 0-d tensor on the state's device
                M = model.class_means(X)  # (B, K, m)
                D = model.transform_apply(W_all[j], M, M)  # (B, K, m)
                if dW is not None:
                    tf = t0 + (s0 + j) * h
                    noise = model.g_prod(t, X.view(B, -1), dW(tf, tf + h).to(X)).view(B, N, m)
                elif sampling:
                    noise = model.sampling_noise(t, X.view(B, -1), Z[:, j] * sqrt_h).view(B, N, m)
                elif chol_T is not None:
                    noise = torch.matmul(Z[:, j], chol_T).mul_(sqrt_h)
                else:
                    noise = Z[:, j] * (sig * sqrt_h)
                X.add_(model.expand_to_samples(D), alpha=h).add_(noise)
        record(i + 1, state=X)


def _generic(model, y, grid, rng, record, bm):
    """Any torchsde-contract module (or an LE-SDE subclass with its own f/g): y += f dt + g dW."""
    B = y.shape[0]
    flat = y.reshape(B, -1).clone()
    size = int(getattr(model, "brownian_size", 0) or 0)
    if size <= 0 and bm is None:
        raise ValueError("a generic model needs an int attribute brownian_size (the number of Brownian channels)")
    dW = bm  # a user Brownian motion of the whole run (simulate runs it as one chunk)
    shape = y.shape

    def emit(i):
        record(i, state=flat.view(shape))

    emit(0)
    for i, t0, _t1, steps, h in grid.intervals():
        sqrt_h = math.sqrt(h)
        times = (t0 + h * torch.arange(steps, dtype=torch.float64)).to(device=flat.device, dtype=flat.dtype)
        for s0, nb in _means.step_groups(steps, size):
            Z = None if dW is not None else rng.normal((size,), flat.dtype, steps=nb)
            for j in range(nb):
                t = t0 + (s0 + j) * h
                inc = dW(t, t + h).to(flat) if dW is not None else Z[:, j] * sqrt_h
                tt = times[s0 + j]  # a 0-d tensor on the state's device: no host copy per step
                drift = model.f(tt, flat)
                if hasattr(model, "g_prod"):
                    diff = model.g_prod(tt, flat, inc)
                else:
                    g = model.g(tt, flat)
                    diff = g * inc if model.noise_type == "diagonal" else torch.einsum("bij,bj->bi", g, inc)
                flat = flat + drift * h + diff
        emit(i + 1)
