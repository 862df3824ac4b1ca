"""Native Euler-Maruyama (strong order 1 for the LE-SDE's additive noise, 1/2 for state-dependent noise).

Written for speed: the elasticity weights of every step are evaluated in one vectorised call per save
interval, the Gaussian noise of a block of steps is drawn in one call, and the state is updated in place
through broadcasting views (no per-step allocation of per-sample drift).

With sample-independent noise the class means carry all the dynamics: the Euler update of the class means
uses only the class means and the class-mean noise, and the within-class deviations do a Gaussian random walk
(the per-step noise projected to zero class mean) that the drift never sees. So the default path steps only the
(B, K, m) class means and adds the deviations' summed increments once per save interval, drawn exactly. The
joint law of the states at the save times is exactly that of Euler-Maruyama on the full (B, N, m) state, at
n_k times less work per step. The full-state path remains for ``noise="sampling"`` (the noise depends on
individual samples) and when Brownian increments are supplied (coupling with torchsde in tests).

Small states (the drift operator on the whole state is a small matrix) take a fused path: the one-step maps
``I + h A(t_s)`` of every step in a save interval are built in one batched computation, and each step is a
single ``addmm`` (state <- noise + Op_s @ state) into a ping-pong buffer, which is what makes the native
integrator fast where per-step Python overhead dominates (one path, tens of samples).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

NOISE_BLOCK_BYTES = 32 * 2**20  # draw at most this much noise per randn call


def integrate(model, x0, grid, gen, record, increments: Callable | None = None, **_):
    """Integrate with fixed steps. ``increments(t0, t1) -> (B, brownian_size)`` overrides the Brownian draws
    (used to couple with torchsde's BrownianInterval in tests)."""
    from ..model import LESDE

    if isinstance(model, LESDE):
        return _integrate_lesde(model, x0, grid, gen, record, increments)
    return _integrate_generic(model, x0, grid, gen, record, increments)


FUSED_MAX_DIM = 192  # largest operator size (N for T = identity, N*m otherwise) for the fused path
FUSED_MAX_ELEMENTS = 2**15  # largest total state (paths x samples x features) for the fused path
#: force one path ("fused", "split" or "full") instead of choosing; for tests and benchmarks
FORCE_PATH: str | None = None


def _fused_dim(model) -> int | None:
    """Operator size of the fused path, or None when it does not apply."""
    if model.transform.state_dependent or model.noise_kind == "sampling" or model.param_batch is not None:
        return None
    n = model.num_samples if model.transform.is_identity else model.num_samples * model.dim
    return n if n <= FUSED_MAX_DIM else None


def _step_operators(model, W, h, like):
    """I + h A_s for each step: (S, n, n). A maps the state to its drift through the class means."""
    m = model.dim
    avg = model._averaging(like).double()  # (K, N)
    expand = model._class_sum(like).double().T.contiguous()  # (N, K) one-hot
    if model.transform.is_identity:
        A = expand @ W @ avg  # (S, N, N)
    else:
        dense = _dense_batch(model, W)  # (S, K*m, K*m)
        eye_m = torch.eye(m, dtype=torch.float64)
        A = torch.kron(expand, eye_m) @ dense @ torch.kron(avg, eye_m)  # (S, N*m, N*m)
    eye = torch.eye(A.shape[-1], dtype=torch.float64)
    return (eye + h * A).to(like)


def _dense_batch(model, W):
    """Dense (K m x K m) drift maps for a batch of weights W (S, K, K), in one transform call."""
    K, m = model.num_classes, model.dim
    Km, S = K * m, W.shape[0]
    basis = torch.eye(Km, dtype=torch.float64).view(Km, K, m)
    tr = model.transform.to(dtype=torch.float64, device="cpu")
    out = tr.apply(W.repeat_interleave(Km, 0), basis.repeat(S, 1, 1))  # (S*Km, K, m)
    return out.view(S, Km, Km).transpose(1, 2)


def _integrate_fused(model, X, grid, gen, record):
    """Small states: state kept as (n, B*r) with n = N (r = m) or n = N*m (r = 1); one addmm per step."""
    B, N, m = X.shape
    ident = model.transform.is_identity
    S = X.permute(1, 0, 2).reshape(N, B * m) if ident else X.reshape(B, N * m).T.contiguous()
    other = torch.empty_like(S)
    sig = model._sigma_samples(X)  # (N,)
    chol = None if model.noise_chol is None else model.noise_chol.to(X)

    def as_batch(S):
        return S.reshape(N, B, m).permute(1, 0, 2) if ident else S.T.reshape(B, N, m)

    record(0, as_batch(S))
    for i, t0, _t1, steps, h in grid.intervals():
        times = t0 + h * torch.arange(steps, dtype=torch.float64)
        ops = _step_operators(model, model.drift_weights(times).cpu(), h, S)  # (steps, n, n)
        block = max(1, min(steps, NOISE_BLOCK_BYTES // (S.element_size() * S.numel())))
        for s0 in range(0, steps, block):
            nb = min(block, steps - s0)
            Z = torch.randn((nb, B, N, m), generator=gen, dtype=X.dtype, device=X.device)
            Z = (torch.matmul(Z, chol.T) if chol is not None else Z * sig[:, None]) * math.sqrt(h)
            Z = Z.permute(0, 2, 1, 3).reshape(nb, N, B * m) if ident else Z.reshape(nb, B, N * m).transpose(1, 2)
            for j in range(nb):
                torch.addmm(Z[j], ops[s0 + j], S, out=other)
                S, other = other, S
        record(i + 1, as_batch(S))
    return as_batch(S)


def _integrate_split(model, X, grid, gen, record):
    """Euler on the class means (B, K, m); exact random-walk increments of the deviations per save interval."""
    from .exact import _deviation_step

    B, N, m = X.shape
    labels = model.labels.to(X.device)
    M = model.class_means(X).contiguous()  # (B, K, m)
    Z = X - M[:, labels]
    # class-mean noise: sigma_k / sqrt(n_k) per class (times L_Sigma^T for a covariance)
    mean_sig = (model.sigma_class.to(X) / model.counts.to(X).sqrt())[:, None]  # (K, 1)
    chol_T = None if model.noise_chol is None else model.noise_chol.to(X).T
    sig = model._sigma_samples(X)[:, None]
    per_path = model.param_batch is not None
    record(0, X, means=M, deviations=Z)
    for i, t0, t1, steps, h in grid.intervals():
        sqrt_h = math.sqrt(h)
        times = t0 + h * torch.arange(steps, dtype=torch.float64)
        W_all = None if per_path else model.drift_weights(times).to(device=X.device, dtype=X.dtype)
        block = max(1, min(steps, NOISE_BLOCK_BYTES // (M.element_size() * M.numel())))
        for s0 in range(0, steps, block):
            nb = min(block, steps - s0)
            Zm = torch.randn((nb, *M.shape), generator=gen, dtype=X.dtype, device=X.device)
            Zm = torch.matmul(Zm, chol_T) if chol_T is not None else Zm
            Zm.mul_(mean_sig * sqrt_h)
            for j in range(nb):
                W = W_all[s0 + j] if W_all is not None else model._weights_for(float(times[s0 + j]), X)
                D = model.transform_apply(W, M, M)  # (B, K, m)
                M.add_(D, alpha=h).add_(Zm[j])
        Z = _deviation_step(Z, t1 - t0, sig, chol_T, model, gen)
        record(i + 1, M[:, labels] + Z, means=M, deviations=Z)
    return M[:, labels] + Z


def _choose_path(model, X, increments) -> str:
    if increments is not None or model.noise_kind == "sampling":
        return "full"
    if FORCE_PATH is not None:
        if FORCE_PATH == "fused" and _fused_dim(model) is None:
            raise ValueError("the fused Euler path needs a small, fixed, sample-independent-noise model")
        return FORCE_PATH
    # the fused path costs n^2 per path per step against the split path's ~K m: worth it only where per-step
    # Python overhead dominates, i.e. for a tiny total state on the CPU
    small = X.numel() <= FUSED_MAX_ELEMENTS and X.device.type == "cpu"
    return "fused" if small and _fused_dim(model) is not None else "split"


PATHS = {"fused": _integrate_fused, "split": _integrate_split}


def _integrate_lesde(model, X, grid, gen, record, increments):
    path = _choose_path(model, X, increments)
    if path in PATHS:
        return PATHS[path](model, X, grid, gen, record)
    return _integrate_full(model, X, grid, gen, record, increments)


def _integrate_full(model, X, grid, gen, record, increments):
    """Euler-Maruyama on the whole (B, N, m) state: the reference path, and the one state-dependent noise
    (``noise="sampling"``) and supplied Brownian increments need."""
    B, N, m = X.shape
    K = model.num_classes
    X = X.contiguous()
    per_path = model.param_batch is not None
    sampling = model.noise_kind == "sampling"
    sig = model._sigma_samples(X)[:, None]  # (N, 1)
    chol_T = None if model.noise_chol is None else model.noise_chol.to(X).T
    labels = model.labels.to(X.device)
    n = N // K if model.balanced else None
    record(0, X)
    for i, t0, _t1, steps, h in grid.intervals():
        sqrt_h = math.sqrt(h)
        times = t0 + h * torch.arange(steps, dtype=torch.float64)
        # one vectorised evaluation of the weights of every step in the interval (per-path ones step by step)
        W_all = None if per_path else model.drift_weights(times).to(device=X.device, dtype=X.dtype)
        noise_shape = (B, N) if sampling else (B, N, m)
        block = max(1, min(steps, NOISE_BLOCK_BYTES // (X.element_size() * math.prod(noise_shape))))
        for s0 in range(0, steps, block):
            nb = min(block, steps - s0)
            if increments is None:
                Z = torch.randn((nb, *noise_shape), generator=gen, dtype=X.dtype, device=X.device)
            for j in range(nb):
                s = s0 + j
                t = float(times[s])
                M = model.class_means(X)  # (B, K, m)
                W = W_all[s] if W_all is not None else model._weights_for(t, X)
                D = model.transform_apply(W, M, M)  # (B, K, m)
                if increments is not None:
                    dW = increments(t, t + h).to(X)
                    noise = model.g_prod(t, X.view(B, -1), dW).view(B, N, m)
                elif sampling:
                    noise = model.sampling_noise(t, X.view(B, -1), Z[j] * sqrt_h).view(B, N, m)
                else:
                    noise = None
                if n is not None:
                    X.view(B, K, n, m).add_(D.unsqueeze(2), alpha=h)
                else:
                    X.add_(D[:, labels], alpha=h)
                if noise is not None:
                    X.add_(noise)
                elif chol_T is not None:
                    X.add_(torch.matmul(Z[j], chol_T), alpha=sqrt_h)
                else:
                    X.addcmul_(Z[j], sig, value=sqrt_h)
        record(i + 1, X)
    return X


def _integrate_generic(model, y, grid, gen, record, increments):
    """Any torchsde-contract module: y += f dt + g dW."""
    y = y.clone()
    size = int(getattr(model, "brownian_size", 0) or 0)
    if size <= 0 and increments is None:
        raise ValueError("a generic model needs an int attribute brownian_size (the number of Brownian channels)")
    record(0, y)
    for i, t0, _t1, steps, h in grid.intervals():
        for s in range(steps):
            t = t0 + s * h
            if increments is not None:
                dW = increments(t, t + h).to(y)
            else:
                dW = torch.randn(y.shape[0], size, generator=gen, dtype=y.dtype, device=y.device) * math.sqrt(h)
            tt = torch.tensor(t, dtype=y.dtype, device=y.device)
            drift = model.f(tt, y)
            if hasattr(model, "g_prod"):
                diff = model.g_prod(tt, y, dW)
            else:
                g = model.g(tt, y)
                diff = g * dW if model.noise_type == "diagonal" else torch.einsum("bij,bj->bi", g, dW)
            y = y + drift * h + diff
        record(i + 1, y)
    return y
