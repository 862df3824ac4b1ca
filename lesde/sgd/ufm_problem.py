"""The unconstrained-features model (UFM) as a training problem with closed-form per-sample gradients.

One of the problems of `lesde.sgd` (beside `ModuleProblem`), also importable as
`lesde.sgd.UFM`, next to the closed-form predictions it is compared with. Parameters: classifier
$W\\in\\mathbb R^{K\\times d}$, features $H = [h_1,\\dots,h_N]\\in\\mathbb R^{d\\times N}$ (one free
column per sample, samples ordered by class) and bias $b\\in\\mathbb R^K$. The objective (the normalisation of
Zhu et al. 2021, which is also what ``torch.optim.SGD(weight_decay=...)`` on ``W``, ``H``, ``b`` with a mean-reduced
loss optimises) is

$$ L(W, H, b) = \\frac1N\\sum_{i=1}^N \\ell(z_i, y_i) + \\frac{\\lambda_W}{2}\\|W\\|_F^2
             + \\frac{\\lambda_H}{2}\\|H\\|_F^2 + \\frac{\\lambda_b}{2}\\|b\\|^2,
\\qquad z_i = W h_i + b, $$

with $\\ell$ = cross-entropy of $z_i/\\tau$ (``loss="ce"``, temperature $\\tau$) or
$\\tfrac12\\|z_i - e_{y_i}\\|^2$ (``loss="mse"``; the temperature is ignored).

Mapping to Tirer and Bruna
--------------------------
Their regularised MSE UFM (Tirer and Bruna; ``lesde.theory.closed_forms.tirer_bruna``) is, with N = K n and no bias,

$$ \\frac{1}{2Kn}\\|WH - Y\\|_F^2 + \\frac{\\lambda^{TB}_W}{2K}\\|W\\|_F^2 + \\frac{\\lambda^{TB}_H}{2Kn}\\|H\\|_F^2 . $$

The data terms agree exactly ($\\frac{1}{2Kn}\\|WH-Y\\|^2 = \\frac1N\\sum_i\\frac12\\|Wh_i - e_{y_i}\\|^2$), so the
two objectives are *identical* (same value, same gradient flow in the same time) when

$$ \\lambda_W = \\lambda^{TB}_W / K, \\qquad \\lambda_H = \\lambda^{TB}_H / (K n), \\qquad \\text{bias=False}. $$

`UFM.from_tirer_bruna` builds that model; `UFM.tirer_bruna_parameters` inverts the map.

Spherical model (GNC paper)
---------------------------
``sphere=True`` imposes $\\|h_i\\| = \\|w_k\\| = 1$ by *normalisation* (as networks trained with spherical
constraints do): the raw parameters stay unconstrained and the logits are
$z_{ik} = \\langle w_k/\\|w_k\\|, h_i/\\|h_i\\|\\rangle + b_k$; ``features`` and ``classifier`` return the
normalised vectors. SGD, the SME and gradient flow then act on the raw parameters, and the loss is a smooth
function of them (away from 0), so every dynamics in `lesde.sgd` applies unchanged. Use a small
``temperature`` for the generalised-collapse regime. Weight decay on the raw parameters of a sphere model only
shrinks their (irrelevant) norms; it is allowed but usually left at 0.

Per-sample gradients (closed form)
----------------------------------
With the logit residual $r_i = \\partial\\ell/\\partial z_i$ (``softmax(z/tau) - e_y) / tau`` or
$z_i - e_{y_i}$): $\\nabla_W\\ell_i = r_i h_i^T$, $\\nabla_{h_j}\\ell_i = \\delta_{ij} W^T r_i$ (a
feature column receives a loss gradient only from its own sample), $\\nabla_b\\ell_i = r_i$; with
``sphere=True`` each block is multiplied by the Jacobian $(I - \\hat v\\hat v^T)/\\|v\\|$ of the
normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..validation import check_choice, check_int, check_positive_float
from .problems import LOSSES, Problem

__all__ = ["UFM"]


def _normalize(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # rows of v (..., d) -> unit rows and their norms (..., 1)
    norm = v.norm(dim=-1, keepdim=True)
    return v / norm, norm


def _normalize_backward(g: torch.Tensor, unit: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    # chain rule through v -> v/||v||: (I - u u^T) g / ||v||; g may carry extra leading dims over unit/norm
    return (g - (g * unit).sum(-1, keepdim=True) * unit) / norm


class UFM(Problem):
    """Unconstrained-features model (see the references): free features, linear classifier, CE or MSE loss.

    Parameters
    ----------
    num_classes
        int, K >= 2.
    samples_per_class
        int, or one int per class (imbalanced); N = sum.
    dim
        int, feature dimension d.
    loss
        "ce" or "mse".
    weight_decay_W : float
        $\\lambda_W, \\lambda_H, \\lambda_b$ in the objective of the module docstring. All zero with
        ``loss="ce"`` is the unregularised layer-peeled model.
    weight_decay_H : float
        Described with `weight_decay_W` above.
    weight_decay_b : float
        Described with `weight_decay_W` above.
    bias
        bool, whether the logits carry a bias b.
    temperature
        float, $\\tau$ of the cross-entropy.
    sphere
        bool, normalise features and classifier rows to the unit sphere (GNC paper).
    init_scale
        float, initial entries are i.i.d. $N(0, \\text{init\\_scale}^2)$ (bias starts at 0).

    Notes
    -----
    The flat parameter vector is ``theta = [vec(W) (K*d, row-major), vec(H^T) (N*d, h_1 first), b (K)]``,
    batched as ``(R, P)``, ``P = K d + N d + K`` (``K`` fewer without bias).

    Examples
    --------
    >>> import torch
    >>> from lesde.sgd import UFM
    >>> ufm = UFM(3, 2, 4, loss="mse", weight_decay_W=1e-2, weight_decay_H=1e-2)
    >>> theta = ufm.init(5, torch.Generator().manual_seed(0))
    >>> theta.shape, ufm.loss(theta).shape
    (torch.Size([5, 39]), torch.Size([5]))
    """

    def __init__(
        self,
        num_classes: int,
        samples_per_class: int | Sequence[int],
        dim: int,
        loss: str = "ce",
        weight_decay_W: float = 0.0,
        weight_decay_H: float = 0.0,
        weight_decay_b: float = 0.0,
        bias: bool = True,
        temperature: float = 1.0,
        sphere: bool = False,
        init_scale: float = 0.1,
    ) -> None:
        super().__init__()
        K = check_int("num_classes", num_classes, minimum=2)
        if isinstance(samples_per_class, Sequence):
            counts = [check_int("samples_per_class", c) for c in samples_per_class]
            if len(counts) != K:
                raise ValueError(f"samples_per_class has {len(counts)} entries; expected one per class ({K})")
        else:
            counts = [check_int("samples_per_class", samples_per_class)] * K
        self.num_classes = K
        self.counts = counts
        self.feature_dim = self.dim = check_int("dim", dim)
        self.loss_name = check_choice("loss", loss, LOSSES)
        self.weight_decay_W = check_positive_float("weight_decay_W", weight_decay_W, allow_zero=True)
        self.weight_decay_H = check_positive_float("weight_decay_H", weight_decay_H, allow_zero=True)
        self.weight_decay_b = check_positive_float("weight_decay_b", weight_decay_b, allow_zero=True)
        if not isinstance(bias, bool) or not isinstance(sphere, bool):
            raise TypeError("bias and sphere must be True or False")
        self.has_bias = bias
        self.sphere = sphere
        self.temperature = check_positive_float("temperature", temperature)
        self.init_scale = check_positive_float("init_scale", init_scale)
        labels = torch.repeat_interleave(torch.arange(K), torch.tensor(counts))  # (N,), class 0 first
        self.register_buffer("labels", labels)
        self.register_buffer("labels_float", labels.to(torch.float64))  # carries the float dtype through .to()
        N, d = labels.shape[0], self.dim
        self._sizes = [K * d, N * d, K if bias else 0]
        self.num_params = sum(self._sizes)

    # ---- construction helpers -----------------------------------------------------------------------------
    @classmethod
    def from_tirer_bruna(
        cls, num_classes: int, samples_per_class: int, dim: int, lambda_W: float, lambda_H: float, **kwargs
    ) -> UFM:
        """The MSE UFM without bias whose objective equals Tirer-Bruna's with ``(lambda_W, lambda_H)``."""
        K, n = int(num_classes), int(samples_per_class)
        return cls(
            K, n, dim, loss="mse", weight_decay_W=lambda_W / K, weight_decay_H=lambda_H / (K * n), bias=False, **kwargs
        )

    def tirer_bruna_parameters(self) -> dict[str, float]:
        """``{"lambda_W", "lambda_H"}`` of the Tirer-Bruna objective this (balanced, MSE, bias-free) model equals."""
        if self.loss_name != "mse" or self.has_bias or len(set(self.counts)) != 1 or self.sphere:
            raise ValueError("the Tirer-Bruna map needs loss='mse', bias=False, sphere=False and balanced classes")
        K, n = self.num_classes, self.counts[0]
        return {"lambda_W": self.weight_decay_W * K, "lambda_H": self.weight_decay_H * K * n}

    # ---- unpacking ----------------------------------------------------------------------------------------
    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Raw ``W (R, K, d)``, ``H^T (R, N, d)``, ``b (R, K)`` or None (views of ``theta``)."""
        theta = self._check_theta(theta)
        R, K, d = theta.shape[0], self.num_classes, self.dim
        w, h, b = theta.split(self._sizes, dim=-1)
        return w.reshape(R, K, d), h.reshape(R, self.num_samples, d), (b if self.has_bias else None)

    def _effective(self, theta: torch.Tensor):
        # the vectors the logits see (normalised on the sphere), plus what the backward pass needs
        W, H, b = self.split(theta)
        if not self.sphere:
            return W, H, b, None
        Wn, wnorm = _normalize(W)
        Hn, hnorm = _normalize(H)
        return Wn, Hn, b, (Wn, wnorm, Hn, hnorm)

    def init(self, n_runs: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """One Gaussian draw shared by all ``n_runs`` runs, ``(R, P)``; the bias starts at 0."""
        n_runs = check_int("n_runs", n_runs)
        theta = torch.randn(self.num_params, generator=generator, dtype=torch.float64) * self.init_scale
        if self.has_bias:
            theta[-self.num_classes :] = 0.0
        return theta.to(self.labels_float.dtype).to(self.device).unsqueeze(0).repeat(n_runs, 1)

    # ---- interface -----------------------------------------------------------------------------------------
    def logits(self, theta: torch.Tensor) -> torch.Tensor:
        W, H, b, _ = self._effective(theta)
        z = H @ W.transpose(-1, -2)  # (R, N, K)
        return z if b is None else z + b.unsqueeze(-2)

    def features(self, theta: torch.Tensor) -> torch.Tensor:
        """Features the classifier sees, ``(R, N, d)`` (unit rows on the sphere)."""
        return self._effective(theta)[1]

    def classifier(self, theta: torch.Tensor) -> torch.Tensor:
        """``(R, K, d)`` (unit rows on the sphere)."""
        return self._effective(theta)[0]

    def bias(self, theta: torch.Tensor) -> torch.Tensor | None:
        return self.split(theta)[2]

    def regularizer(self, theta: torch.Tensor) -> torch.Tensor:
        w, h, b = theta.split(self._sizes, dim=-1)
        return 0.5 * (
            self.weight_decay_W * (w**2).sum(-1)
            + self.weight_decay_H * (h**2).sum(-1)
            + self.weight_decay_b * (b**2).sum(-1)
        )

    def regularizer_grad(self, theta: torch.Tensor) -> torch.Tensor:
        w, h, b = theta.split(self._sizes, dim=-1)
        return torch.cat([self.weight_decay_W * w, self.weight_decay_H * h, self.weight_decay_b * b], dim=-1)

    def _residual(self, theta: torch.Tensor):
        W, H, b, cache = self._effective(theta)
        z = H @ W.transpose(-1, -2) + (0.0 if b is None else b.unsqueeze(-2))  # (R, N, K)
        return W, H, cache, LOSSES[self.loss_name][1](z, self.labels, self.temperature)  # r (R, N, K)

    def _to_raw(self, gW: torch.Tensor, gH: torch.Tensor, cache, lead: int) -> tuple[torch.Tensor, torch.Tensor]:
        # chain through the sphere normalisation; `lead` extra dims after R (weight sets or samples)
        if cache is None:
            return gW, gH
        Wn, wnorm, Hn, hnorm = cache
        expand = (slice(None),) + (None,) * lead
        return (_normalize_backward(gW, Wn[expand], wnorm[expand]), _normalize_backward(gH, Hn[expand], hnorm[expand]))

    # ---- fused fast path ------------------------------------------------------------------------------------
    # Every gradient the dynamics need is  out = sum_i w_ri grad l_i(theta_r) + c * theta_r  with blockwise scalars
    # c = (c_W, c_H, c_b) (weight decay is linear): the full gradient (w = 1/N, c = lambda), the SME drift
    # (w = -1/N, c = -lambda), the SME noise (c = 0) and one explicit SGD / Euler-Maruyama step (c = 1 - dt lambda).
    # Logits and residuals are class-major, z^T = W H^T (R, K, N): for K << d << N this bmm and the softmax over K
    # are ~2x faster than in the (R, N, K) orientation, and r^T is the left operand of the W-block GEMM as stored.
    # The blocks are written once into one (R, P) buffer, the decay term fused into that write (no torch.cat).
    def _fast(self, theta: torch.Tensor) -> bool:
        # out= kernels are not differentiable: autograd through theta takes the reference path
        return not (theta.requires_grad and torch.is_grad_enabled())

    def _forward_class_major(self, theta: torch.Tensor):
        W, H, b, cache = self._effective(theta)
        HT = H.transpose(-1, -2)  # (R, d, N), a view
        zT = torch.bmm(W, HT) if b is None else torch.baddbmm(b.unsqueeze(-1), W, HT)  # (R, K, N)
        rT = LOSSES[self.loss_name][1](zT, self.labels, self.temperature, dim=-2)  # dl_i/dz_i as columns
        return W, H, cache, rT

    def _affine_grad(
        self, theta: torch.Tensor, fwd, weights, decay: tuple[float, float, float], out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """$\\sum_i w_{ri}\\nabla\\ell_i(\\theta_r) + c\\odot\\theta_r$, ``(R, P)``; ``weights`` a float or
        ``(R, N)``; ``decay`` the blockwise ``c``; ``fwd`` from `_forward_class_major` at ``theta``; ``out`` an
        optional ``(R, P)`` buffer (not aliasing ``theta``) to write into."""
        W, H, cache, rT = fwd
        w = weights.to(rT.dtype).unsqueeze(-2) if torch.is_tensor(weights) else weights
        rw = rT * w  # (R, K, N): column i is w_i r_i
        out = torch.empty_like(theta) if out is None else out
        oW, oH, ob = self.split(out)  # views of out
        xW, xH, xb = self.split(theta)
        # per block: GEMM, sphere chain rule, decay term; each block of out written once
        for o, x, c, (a, m), unit in zip(
            (oW, oH),
            (xW, xH),
            decay[:2],
            ((rw, H), (rw.transpose(-1, -2), W)),  # sum_i w_i r_i h_i^T (R, K, d); row j w_j W^T r_j (R, N, d)
            (None, None) if cache is None else (cache[:2], cache[2:]),
        ):
            if unit is None and c == 0.0:
                # straight into the strided view: bmm then loops over runs (~20% slower than a contiguous bmm)
                # but a copy pass into freshly allocated memory costs more
                torch.bmm(a, m, out=o)
                continue
            g = torch.bmm(a, m)
            if unit is not None:  # chain rule through the sphere normalisation
                g = _normalize_backward(g, *unit)
            if c != 0.0:
                torch.add(g, x, alpha=c, out=o)  # decay fused into the write
            else:
                o.copy_(g)
        if ob is not None:
            torch.sum(rw, -1, out=ob)  # (R, K): sum_i w_i r_i
            if decay[2] != 0.0:
                ob.add_(xb, alpha=decay[2])
        return out

    def _decay(self, scale: float, shift: float = 0.0) -> tuple[float, float, float]:
        # blockwise shift + scale * lambda
        return tuple(shift + scale * lam for lam in (self.weight_decay_W, self.weight_decay_H, self.weight_decay_b))

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        """Full-batch gradient $\\nabla L(\\theta_r)$, ``(R, P)`` (fused: one forward, two GEMMs)."""
        if not self._fast(theta):
            return super().grad(theta)
        return self._affine_grad(theta, self._forward_class_major(theta), 1.0 / self.num_samples, self._decay(1.0))

    def neg_grad_and_weighted_grad(
        self, theta: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """$(-\\nabla L, \\sum_i w_{ri}\\nabla\\ell_i)$ sharing one forward pass (the SME drift and noise)."""
        if not self._fast(theta) or weights.ndim != 2:
            return super().neg_grad_and_weighted_grad(theta, weights)
        fwd = self._forward_class_major(theta)
        drift = self._affine_grad(theta, fwd, -1.0 / self.num_samples, self._decay(-1.0))
        return drift, self._affine_grad(theta, fwd, weights, (0.0, 0.0, 0.0))

    def explicit_step(
        self, theta: torch.Tensor, weights: torch.Tensor, dt: float, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """$\\theta_r - \\Delta t\\nabla R + \\sum_i w_{ri}\\nabla\\ell_i$: weight decay is linear, so the
        whole step is one weighted gradient plus $(1 - \\Delta t\\lambda)\\theta$ per block."""
        if not self._fast(theta) or weights.ndim != 2:
            return super().explicit_step(theta, weights, dt, out)
        return self._affine_grad(theta, self._forward_class_major(theta), weights, self._decay(-dt, 1.0), out)

    def weighted_grad(self, theta: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """$\\sum_i w_{ri}\\nabla\\ell_i$: weights ``(R, N)`` -> ``(R, P)``, ``(R, S, N)`` -> ``(R, S, P)``.

        Cost O(R S N K d): the residuals are weighted, then contracted once with H (for W) and W (for H)."""
        lead = weights.ndim - 2
        if lead not in (0, 1):
            raise ValueError(f"weights must have shape (runs, N) or (runs, S, N), got {tuple(weights.shape)}")
        if lead == 0 and self._fast(theta):
            return self._affine_grad(theta, self._forward_class_major(theta), weights, (0.0, 0.0, 0.0))
        return self._weighted_grad_reference(theta, weights)

    def _weighted_grad_reference(self, theta: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # sample-major, out of place and differentiable: weight sets (R, S, N), autograd, and the tests' reference
        W, H, cache, r = self._residual(theta)
        lead = weights.ndim - 2
        R, N, K = r.shape
        rw = weights.to(r.dtype).unsqueeze(-1) * (r if lead == 0 else r.unsqueeze(1))  # (R, [S,] N, K)
        S = 1 if lead == 0 else rw.shape[1]
        # one batched GEMM each (weight sets stacked into the rows): sum_i w_i r_i h_i^T and w_j W^T r_j
        gW = (rw.transpose(-1, -2).reshape(R, S * K, N) @ H).view(rw.shape[:-2] + (K, self.dim))
        gH = (rw.reshape(R, S * N, K) @ W).view(rw.shape[:-2] + (N, self.dim))
        gW, gH = self._to_raw(gW, gH, cache, lead)
        parts = [gW.flatten(-2), gH.flatten(-2)]
        if self.has_bias:
            parts.append(rw.sum(-2))
        return torch.cat(parts, dim=-1)

    def per_sample_grads(self, theta: torch.Tensor) -> torch.Tensor:
        """Dense $\\nabla\\ell_i(\\theta_r)$, ``(R, N, P)`` (the H block of row i is nonzero only in column i)."""
        W, H, cache, r = self._residual(theta)
        R, N, d = H.shape
        gW = r.unsqueeze(-1) * H.unsqueeze(-2)  # (R, N, K, d): r_i h_i^T
        gh = r @ W  # (R, N, d): W^T r_i
        if cache is not None:
            Wn, wnorm, Hn, hnorm = cache
            gW = _normalize_backward(gW, Wn.unsqueeze(1), wnorm.unsqueeze(1))
            gh = _normalize_backward(gh, Hn, hnorm)
        eye = torch.eye(N, dtype=gh.dtype, device=gh.device)
        gH = eye[None, :, :, None] * gh[:, :, None, :]  # (R, N, N, d): sample i -> column i only
        parts = [gW.reshape(R, N, -1), gH.reshape(R, N, N * d)]
        if self.has_bias:
            parts.append(r)
        return torch.cat(parts, dim=-1)

    def to_spec(self) -> dict:
        return {
            "kind": "ufm",
            "num_classes": self.num_classes,
            "samples_per_class": list(self.counts),
            "dim": self.dim,
            "loss": self.loss_name,
            "weight_decay_W": self.weight_decay_W,
            "weight_decay_H": self.weight_decay_H,
            "weight_decay_b": self.weight_decay_b,
            "bias": self.has_bias,
            "temperature": self.temperature,
            "sphere": self.sphere,
            "init_scale": self.init_scale,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_spec().items() if k != "kind")
        return f"UFM({args})"
