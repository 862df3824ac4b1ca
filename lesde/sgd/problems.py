"""Training problems that SGD, its stochastic modified equation and gradient flow act on.

A *problem* is a loss over a flat parameter vector, batched over independent runs:

$$ L(\\theta) = \\frac1N \\sum_{i=1}^N \\ell_i(\\theta) + R(\\theta), $$

with per-sample losses $\\ell_i$ (cross-entropy or squared error on the logits of sample ``i``) and a
deterministic regulariser $R$ (weight decay). Every dynamics routine in `lesde.sgd` talks to a problem
through one small interface (`Problem`):

- ``theta`` is always ``(R, P)``: ``R`` runs (or SDE paths), ``P`` parameters;
- ``weighted_grad(theta, w)`` returns $\\sum_i w_{ri} \\nabla \\ell_i(\\theta_r)$ for weights ``w`` of shape
  ``(R, N)`` or ``(R, S, N)`` (``S`` weight sets sharing one forward pass). The full-batch gradient (``w = 1/N``),
  an SGD minibatch gradient (``w = counts / B``) and the SME noise
  $\\sum_i (g_i - \\bar g) z_i = \\sum_i g_i (z_i - \\bar z)$ are all this one contraction, so the
  per-sample gradient matrix (``(R, N, P)``) is never needed on the hot path;
- ``per_sample_grads(theta)`` gives that matrix explicitly (tests, small problems, the ``g`` of the SME);
- ``explicit_step(theta, w, dt)`` = $\\theta - \\Delta t\\nabla R(\\theta) + \\sum_i w_i\\nabla\\ell_i(\\theta)$ is one
  step of SGD or of Euler-Maruyama for the SME (drift and noise are the same contraction), and
  ``neg_grad_and_weighted_grad`` the SME drift and noise from one forward pass; the defaults here are built on
  ``weighted_grad``, `UFM` overrides them with fused closed-form kernels;
- ``features``, ``classifier``, ``bias`` give what neural-collapse metrics are computed on.

`ModuleProblem` wraps any small ``torch.nn.Module`` via ``torch.func`` (``functional_call`` + ``vmap``).
The unconstrained-features model `UFM` implements the same interface in closed form.

Decisions
---------
- Problems are ``nn.Module`` s holding their data as buffers, so ``problem.to(device, dtype)`` (and ``.to`` on an
  `SGDSDE` holding one) moves everything.
- Weight decay is a deterministic part of the objective: its gradient is applied at every step of every process
  (as ``torch.optim.SGD(weight_decay=...)`` does) and it contributes nothing to the gradient noise.
- All runs share one initialisation (drawn from the seed) unless ``theta0`` is given: the comparisons between SGD,
  the SME and gradient flow are comparisons of distributions conditional on the initial point.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vjp, vmap

from ..extras import require
from ..validation import check_choice, check_positive_float

__all__ = ["LOSSES", "Problem", "ModuleProblem"]


# ----------------------------------------------------------------------------------------------------------------
# per-sample losses on logits: value and gradient with respect to the logits (closed form)
# ----------------------------------------------------------------------------------------------------------------
def _ce_value(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    # z (..., N, K), y (N,) -> (..., N)
    zt = z / temperature
    return torch.logsumexp(zt, dim=-1) - zt.gather(-1, y.expand(zt.shape[:-1]).unsqueeze(-1)).squeeze(-1)


def _onehot(y: torch.Tensor, z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    # e_y as a comparison, not F.one_hot: one_hot reads y.max() (an .item()) and so fails under vmap.
    # dim=-1: logits (..., N, K) -> (N, K); dim=-2: class-major logits (..., K, N) -> (K, N)
    classes = torch.arange(z.shape[dim], device=z.device)
    eq = y.unsqueeze(-1) == classes if dim == -1 else classes.unsqueeze(-1) == y
    return eq.to(z.dtype)


def _ce_residual(z: torch.Tensor, y: torch.Tensor, temperature: float, dim: int = -1) -> torch.Tensor:
    # d l / d z = (softmax(z / tau) - e_y) / tau over the class axis `dim`, shape of z
    r = torch.softmax(z / temperature if temperature != 1.0 else z, dim=dim) - _onehot(y, z, dim)
    return r / temperature if temperature != 1.0 else r


def _mse_value(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    return 0.5 * ((z - _onehot(y, z)) ** 2).sum(-1)


def _mse_residual(z: torch.Tensor, y: torch.Tensor, temperature: float, dim: int = -1) -> torch.Tensor:
    return z - _onehot(y, z, dim)


#: name -> (per-sample loss value, gradient of the loss with respect to the logits). The residual takes an
#: optional class axis ``dim`` (-1: logits ``(..., N, K)``; -2: class-major ``(..., K, N)``, the layout of the
#: UFM's fast path, where the softmax over K = 10 runs along contiguous samples and is ~2x faster)
LOSSES: dict[str, tuple[Callable, Callable]] = {
    "ce": (_ce_value, _ce_residual),
    "mse": (_mse_value, _mse_residual),
}


class Problem(nn.Module):
    """Common interface of the problems `lesde.sgd.run_sgd`, `lesde.sgd.SGDSDE` and
    `lesde.sgd.gradient_flow` act on.

    Subclasses define ``num_params`` (P), ``num_classes`` (K), ``feature_dim`` (m), the ``labels`` buffer (N,),
    and the methods ``init``, ``logits``, ``weighted_grad``, ``regularizer``, ``regularizer_grad``,
    ``per_sample_grads``, ``features``, ``classifier``, ``bias``, ``to_spec``; ``grad``, ``explicit_step`` and
    ``neg_grad_and_weighted_grad`` have generic defaults in terms of ``weighted_grad`` and may be overridden by
    faster equivalents.
    """

    loss_name: str
    num_params: int
    num_classes: int
    feature_dim: int
    labels: torch.Tensor

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.labels_float.dtype

    @property
    def device(self) -> torch.device:
        return self.labels.device

    # ---- derived quantities, shared by every problem -------------------------------------------------------
    def sample_losses(self, theta: torch.Tensor) -> torch.Tensor:
        """Per-sample losses $\\ell_i(\\theta_r)$, ``(R, N)``."""
        return LOSSES[self.loss_name][0](self.logits(theta), self.labels, self.temperature)

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """Full objective $L(\\theta_r) = \\frac1N\\sum_i \\ell_i + R(\\theta_r)$, ``(R,)``."""
        return self.sample_losses(theta).mean(-1) + self.regularizer(theta)

    def accuracy(self, theta: torch.Tensor) -> torch.Tensor:
        """Fraction of samples whose largest logit is their label, ``(R,)``."""
        return (self.logits(theta).argmax(-1) == self.labels).to(theta.dtype).mean(-1)

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        """Full-batch gradient $\\nabla L(\\theta_r)$, ``(R, P)``."""
        w = torch.full(
            theta.shape[:1] + (self.num_samples,), 1.0 / self.num_samples, dtype=theta.dtype, device=theta.device
        )  # (R, N)
        return self.weighted_grad(theta, w) + self.regularizer_grad(theta)

    def neg_grad_and_weighted_grad(
        self, theta: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The SME drift and noise from one forward pass: $(-\\nabla L(\\theta_r),
        \\sum_i w_{ri}\\nabla\\ell_i(\\theta_r))$, both ``(R, P)``, for weights ``(R, N)``."""
        w = torch.stack([torch.full_like(weights, 1.0 / self.num_samples), weights], 1)  # (R, 2, N)
        both = self.weighted_grad(theta, w)  # (R, 2, P)
        return -(both[:, 0] + self.regularizer_grad(theta)), both[:, 1]

    def explicit_step(
        self, theta: torch.Tensor, weights: torch.Tensor, dt: float, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One explicit step $\\theta_r - \\Delta t\\,\\nabla R(\\theta_r) + \\sum_i w_{ri}\\nabla\\ell_i(\\theta_r)$,
        ``(R, P)``, for weights ``(R, N)``.

        Every process in `lesde.sgd` advances by one such step: SGD with ``w = -lr * counts / B`` and
        ``dt = lr``; Euler-Maruyama for the SME with ``w = -dt / N + sqrt(eta / (B N)) (dW - mean(dW))``
        (the drift's data term and the noise are the same contraction, so one weighted gradient suffices).
        ``out``: optional ``(R, P)`` buffer, not aliasing ``theta``, that receives the result (reusing two buffers
        saves the page faults of a fresh multi-megabyte allocation per step)."""
        new = theta - dt * self.regularizer_grad(theta) + self.weighted_grad(theta, weights)
        return new if out is None else out.copy_(new)

    def _check_theta(self, theta: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(theta) or theta.dtype not in (torch.float32, torch.float64):
            got = f"a tensor of dtype {theta.dtype}" if torch.is_tensor(theta) else type(theta).__name__
            raise TypeError(f"theta must be a float32 or float64 tensor (runs, {self.num_params}), got {got}")
        if theta.ndim != 2 or theta.shape[1] != self.num_params:
            raise ValueError(f"theta must have shape (runs, {self.num_params}), got {tuple(theta.shape)}")
        return theta


class ModuleProblem(Problem):
    """Any small ``nn.Module`` classifier with a fixed data set, as a problem over its flat parameters.

    $$ L(\\theta) = \\frac1N \\sum_i \\ell(f_\\theta(x_i), y_i) + \\frac{\\lambda}{2}\\|\\theta\\|^2, $$

    ``ell`` = cross-entropy (``loss="ce"``, logits divided by ``temperature``) or
    $\\tfrac12\\|f_\\theta(x_i) - e_{y_i}\\|^2$ (``loss="mse"``). Per-sample gradients come from
    ``torch.func`` (``vmap`` over ``grad`` of a ``functional_call``); weighted sums of them from one ``vjp``.

    Parameters
    ----------
    module : nn.Module
        Maps inputs ``(N, ...)`` to logits ``(N, K)``. Its current parameters are the initial point of every run.
    inputs : tensor (N, ...)
    labels
        tensor (N,) of class indices in ``0..K-1``.
    loss
        "ce" or "mse".
    weight_decay
        float, the $\\lambda$ above (applied to every parameter).
    temperature
        float, cross-entropy temperature.
    head : str or None
        Name of the final ``nn.Linear`` submodule whose input are the *features* and whose weight/bias are the
        *classifier* for NC metrics. Default: the last ``nn.Linear`` in ``module.named_modules()``.

    Examples
    --------
    >>> from torch import nn
    >>> import torch
    >>> from lesde.sgd import ModuleProblem
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    >>> prob = ModuleProblem(net, torch.randn(12, 4, dtype=torch.float64), torch.arange(12) % 3)
    >>> prob.per_sample_grads(prob.init(2)).shape
    torch.Size([2, 12, 67])
    """

    def __init__(
        self,
        module: nn.Module,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        loss: str = "ce",
        weight_decay: float = 0.0,
        temperature: float = 1.0,
        head: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.loss_name = check_choice("loss", loss, LOSSES)
        self.weight_decay = check_positive_float("weight_decay", weight_decay, allow_zero=True)
        self.temperature = check_positive_float("temperature", temperature)
        inputs = torch.as_tensor(inputs)
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"labels must be a 1-D integer tensor with one entry per input row ({inputs.shape[0]}), "
                f"got shape {tuple(labels.shape)} dtype {labels.dtype}"
            )
        self.module = module
        self._names = [n for n, _ in module.named_parameters()]
        self._shapes = [p.shape for _, p in module.named_parameters()]
        self._sizes = [p.numel() for _, p in module.named_parameters()]
        self.num_params = sum(self._sizes)
        self.register_buffer("inputs", inputs.to(next(module.parameters()).dtype))
        self.register_buffer("labels", labels.long())
        self.register_buffer("labels_float", labels.to(self.inputs.dtype))  # carries dtype for .to(dtype)
        with torch.no_grad():
            out = module(self.inputs[:1])
        self.num_classes = int(out.shape[-1])
        if int(labels.max()) >= self.num_classes or int(labels.min()) < 0:
            raise ValueError(f"labels must lie in 0..{self.num_classes - 1} (the module's output size)")
        linears = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
        named = dict(module.named_modules())
        if head is None:
            head = linears[-1][0] if linears else None
        elif head not in named or not isinstance(named[head], nn.Linear):
            raise ValueError(f"head={head!r} must name an nn.Linear submodule; available: {[n for n, _ in linears]}")
        self.head = head
        self._captured: list[torch.Tensor] = []
        if head is not None:
            self.feature_dim = named[head].in_features
            # the head's input is captured inside the functional call and returned from it (no escaping tensors)
            named[head].register_forward_hook(lambda mod, args, out: self._captured.append(args[0]))
            offsets = torch.cumsum(torch.tensor([0] + self._sizes), 0).tolist()
            index = {n: (offsets[j], offsets[j + 1]) for j, n in enumerate(self._names)}
            self._head_weight = index[f"{head}.weight"]
            self._head_bias = index.get(f"{head}.bias")
        else:
            self.feature_dim = 0

    # ---- flat <-> dict ---------------------------------------------------------------------------------------
    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        # flat (P,) -> {name: tensor}
        return {n: p.view(s) for n, p, s in zip(self._names, flat.split(self._sizes), self._shapes)}

    def _forward(self, flat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        self._captured.clear()
        out = functional_call(self.module, self._unflatten(flat), (x,))
        feats = self._captured[-1] if self._captured else None
        self._captured.clear()
        return out, feats

    def _sample_loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # one sample: x (...), y () -> scalar loss
        z = self._forward(flat, x.unsqueeze(0))[0]  # (1, K)
        return LOSSES[self.loss_name][0](z, y.unsqueeze(0), self.temperature)[0]

    def _all_losses(self, flat: torch.Tensor) -> torch.Tensor:
        z = self._forward(flat, self.inputs)[0]  # (N, K)
        return LOSSES[self.loss_name][0](z, self.labels, self.temperature)

    # ---- interface -----------------------------------------------------------------------------------------
    def init(self, n_runs: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The module's current parameters, repeated for every run, ``(R, P)`` (``generator`` is unused)."""
        flat = torch.cat([p.detach().reshape(-1) for p in self.module.parameters()])
        return flat.to(self.inputs.dtype).unsqueeze(0).repeat(n_runs, 1)

    def logits(self, theta: torch.Tensor) -> torch.Tensor:
        """``(R, N, K)``."""
        theta = self._check_theta(theta)
        return vmap(lambda f: self._forward(f, self.inputs)[0])(theta)

    def features(self, theta: torch.Tensor) -> torch.Tensor | None:
        """Input of the head layer, ``(R, N, m)``; ``None`` without a head."""
        if self.head is None:
            return None
        return vmap(lambda f: self._forward(f, self.inputs)[1])(self._check_theta(theta))

    def classifier(self, theta: torch.Tensor) -> torch.Tensor | None:
        """Head weight, ``(R, K, m)``."""
        if self.head is None:
            return None
        a, b = self._head_weight
        return theta[:, a:b].reshape(theta.shape[0], self.num_classes, self.feature_dim)

    def bias(self, theta: torch.Tensor) -> torch.Tensor | None:
        """Head bias, ``(R, K)``, or ``None``."""
        if self.head is None or self._head_bias is None:
            return None
        a, b = self._head_bias
        return theta[:, a:b]

    def regularizer(self, theta: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.weight_decay * (theta**2).sum(-1)

    def regularizer_grad(self, theta: torch.Tensor) -> torch.Tensor:
        return self.weight_decay * theta

    def per_sample_grads(self, theta: torch.Tensor) -> torch.Tensor:
        """$\\nabla\\ell_i(\\theta_r)$ via ``vmap(grad)``, ``(R, N, P)``."""
        theta = self._check_theta(theta)
        per_sample = vmap(grad(self._sample_loss), in_dims=(None, 0, 0))  # over samples
        return vmap(per_sample, in_dims=(0, None, None))(theta, self.inputs, self.labels)  # over runs

    def weighted_grad(self, theta: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """$\\sum_i w_{ri}\\nabla\\ell_i(\\theta_r)$: weights ``(R, N)`` -> ``(R, P)``; ``(R, S, N)`` ->
        ``(R, S, P)``. One forward pass and a ``vjp`` per run (no per-sample gradient matrix)."""
        theta = self._check_theta(theta)

        def one_run(flat: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            _, pullback = vjp(self._all_losses, flat)
            if w.ndim == 1:
                return pullback(w)[0]
            return vmap(lambda v: pullback(v)[0])(w)

        return vmap(one_run)(theta, weights.to(theta.dtype))

    def to_spec(self) -> dict:
        return {
            "kind": "module",
            "module": repr(self.module),
            "num_samples": self.num_samples,
            "num_params": self.num_params,
            "loss": self.loss_name,
            "weight_decay": self.weight_decay,
            "temperature": self.temperature,
            "head": str(self.head),
        }


def digits_mlp(
    num_classes: int = 10,
    samples_per_class: int = 20,
    hidden: int = 32,
    loss: str = "ce",
    weight_decay: float = 0.0,
    seed: int = 0,
) -> ModuleProblem:
    """A small MLP (64 -> hidden -> tanh -> num_classes) on scikit-learn's 8x8 digits, as a `ModuleProblem`.

    Takes the first ``samples_per_class`` images of each of the first ``num_classes`` digits (ordered by class),
    scales pixels to [0, 1] (they range over 0..16), and initialises the network from ``seed`` (float64).
    """
    load_digits = require("sklearn.datasets", "data", "the digits data set (scikit-learn)").load_digits

    from ..validation import check_int

    K = check_int("num_classes", num_classes, minimum=2)
    n = check_int("samples_per_class", samples_per_class)
    if K > 10:
        raise ValueError(f"num_classes={K}: the digits data set has 10 classes")
    data = load_digits()
    x = torch.as_tensor(data.data, dtype=torch.float64) / 16.0  # (1797, 64)
    y = torch.as_tensor(data.target)
    rows = []
    for k in range(K):  # a handful of classes at construction time, not a kernel
        idx = torch.nonzero(y == k).squeeze(1)
        if idx.numel() < n:
            raise ValueError(f"samples_per_class={n} exceeds the {idx.numel()} digits of class {k}")
        rows.append(idx[:n])
    rows = torch.cat(rows)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # nn.Linear draws from the global generator; restore it afterwards
    net = nn.Sequential(nn.Linear(64, check_int("hidden", hidden)), nn.Tanh(), nn.Linear(hidden, K)).double()
    torch.random.set_rng_state(gen_state)
    return ModuleProblem(net, x[rows], y[rows], loss=loss, weight_decay=weight_decay)
