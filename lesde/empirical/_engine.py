r"""Stacked copies of a network: one batch-size-1 SGD step and one probe forward for all runs at once.

Two implementations with one interface (``params``, ``sgd_step``, ``forward``):

- :class:`FunctionalEngine`, for any ``nn.Module``: parameters stacked with ``torch.func.stack_module_state``, the
  forward ``vmap``-ed over runs through ``functional_call``; the step's gradient is one ``autograd.grad`` of the
  summed per-run losses through the vmapped forward (runs share no parameter, so the sum's gradient is every run's
  own gradient; measured 1.05 ms per step here against 1.85 ms for ``vmap(grad(...))`` on the default problem).
- :class:`MLPEngine`, for chains of ``Flatten``/``Linear``/``ReLU`` (``lesde.empirical.mlp`` and plain
  ``nn.Sequential`` MLPs), written by hand because the profile of the generic path showed where the time goes on a
  CPU: vmap's batching rule for ``linear`` runs ``bmm``, then the bias ``add``, then ``relu`` as three passes over
  the (runs, probes, width) activations (4.3 ms per probe forward against 2.2 ms fused with ``baddbmm`` and an
  in-place ``relu_``), and the batch-size-1 gradient is ~20 tiny kernels whose dispatch cost dominates its 4 MFLOP.
  Here the backward is explicit (:math:`\delta = \mathrm{softmax}(z) - e_y`, then ``baddbmm_`` rank-1 weight
  updates in place). Both engines are tested equal to a plain per-run autograd loop to 1e-12 in float64.

Features (``feature``): ``"logits"``, ``"penultimate"`` (the input of the last ``nn.Linear``), or the name of any
submodule (``dict(net.named_modules())``), whose output a forward hook captures and flattens to (batch, m).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

FORCE: str | None = None  # "functional" or "mlp": force an engine (tests and benchmarks); None picks


def resolve_feature(net: nn.Module, feature: str) -> tuple[str, str | None]:
    """(kind, module name): kind "logits", "input" (of the named last Linear) or "output" (of the named module)."""
    if not isinstance(feature, str):
        raise TypeError(f"feature must be 'logits', 'penultimate' or a module name, got {feature!r}")
    if feature == "logits":
        return "logits", None
    names = {n: m for n, m in net.named_modules() if n}
    if feature == "penultimate":
        linear = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]  # "" is the network itself
        if not linear:
            raise ValueError(
                "feature='penultimate' is the input of the network's last nn.Linear, and this network has none; "
                "name the module whose output is the feature instead (feature='<module name>')"
            )
        return "input", linear[-1]
    if feature not in names:
        shown = ", ".join(repr(n) for n in list(names)[:20])
        raise ValueError(
            f"feature={feature!r} is not 'logits', 'penultimate' or a submodule of the network; its submodules: "
            f"{shown}{', ...' if len(names) > 20 else ''}"
        )
    return "output", feature


class FeatureHook:
    """Captures the feature of every forward of ``module`` (a hook on its input or output)."""

    def __init__(self, net: nn.Module, kind: str, name: str | None):
        self.kind, self.value, self.handle = kind, None, None
        if kind == "logits":
            return
        mod = dict(net.named_modules())[name]
        if kind == "input":
            self.handle = mod.register_forward_pre_hook(self._pre)
        else:
            self.handle = mod.register_forward_hook(self._post)

    def _pre(self, module, args):
        self.value = args[0]

    def _post(self, module, args, out):
        if not torch.is_tensor(out):
            raise TypeError(f"the feature module returned {type(out).__name__}; it must return a tensor")
        self.value = out

    def take(self, logits: torch.Tensor) -> torch.Tensor:
        """The captured feature of the last forward, flattened to (batch, m); the logits when kind is "logits"."""
        if self.kind == "logits":
            return logits
        v, self.value = self.value, None
        if v is None:
            raise RuntimeError("the feature module was not called in the network's forward")
        return v.flatten(1) if v.ndim > 2 else v

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()


def check_supported(net: nn.Module) -> None:
    for name, m in net.named_modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            raise TypeError(
                f"module {name!r} ({type(m).__name__}) updates running statistics, which stacked runs cannot do; "
                "drive your own training loop with lesde.empirical.Tracker instead"
            )


class FunctionalEngine:
    """Any module: vmapped ``functional_call`` over stacked parameters."""

    name = "functional"

    def __init__(self, nets: list[nn.Module], feature: str):
        kind, mod = resolve_feature(nets[0], feature)
        params, self.buffers = stack_module_state(nets)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.plist = list(self.params.values())
        base = copy.deepcopy(nets[0]).to("meta")
        hook = FeatureHook(base, kind, mod)

        def fwd(p, b, x):  # one run: x (B, ...) -> (feature (B, m), logits (B, K))
            logits = functional_call(base, (p, b), (x,))
            if not torch.is_tensor(logits) or logits.ndim != 2:
                raise TypeError("the network must return logits of shape (batch, classes)")
            return hook.take(logits), logits

        self._probe = vmap(fwd, in_dims=(0, 0, None))
        self._single = vmap(fwd)

    def sgd_step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step of every run on its own example x[r] (R, ...), y[r]; returns its pre-step feature, logits."""
        with torch.enable_grad():
            feat, logits = self._single(self.params, self.buffers, x.unsqueeze(1))
            loss = F.cross_entropy(logits[:, 0], y, reduction="sum")  # sum over runs: each run's own gradient
            grads = torch.autograd.grad(loss, self.plist)
        with torch.no_grad():
            torch._foreach_add_(self.plist, grads, alpha=-lr)
        return feat[:, 0].detach(), logits[:, 0].detach()

    @torch.no_grad()
    def forward(self, x: torch.Tensor, upcoming: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (R, B, m) and logits (R, B, K) of shared inputs x (B, ...) for every run (``upcoming``, the
        next step's examples, is a hint this engine does not use)."""
        return self._probe(self.params, self.buffers, x)


def _chain(net: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The modules of a plain chain ``[Flatten] Linear [ReLU] Linear [ReLU] ... Linear``, or None."""
    from .nets import Classifier

    if type(net) is Classifier and type(net.body) is nn.Sequential:
        mods = [(f"body.{n}", m) for n, m in net.body.named_children()] + [("head", net.head)]
    elif type(net) is nn.Sequential:
        mods = list(net.named_children())
    else:
        return None
    prev = None  # type of the previous non-Flatten module
    for i, (_, m) in enumerate(mods):
        if type(m) is nn.Flatten:
            if i or (m.start_dim, m.end_dim) != (1, -1):
                return None
        elif type(m) is nn.ReLU:
            if prev is not nn.Linear:  # a ReLU first or twice in a row: leave it to the generic engine
                return None
        elif type(m) is not nn.Linear:
            return None
        if type(m) is not nn.Flatten:
            prev = type(m)
    return mods if prev is nn.Linear else None


class MLPEngine:
    r"""Flatten/Linear/ReLU chains: stacked ``bmm`` forwards into reused buffers, the next training example carried
    in the probe forward, and an explicit batch-size-1 backward.

    What the profile of the stacked forward showed (``benchmarks/tracking.py``), and what is done about it:

    - Fresh multi-MB outputs are fresh pages, whose first-touch zeroing by the kernel cost 0.3-0.8 ms per layer
      whenever the allocator had returned them: every layer writes into one of two reused buffer sets
      (:meth:`_outputs`), then ``relu_`` in place.
    - ``baddbmm``'s prefill of the broadcast bias is a pass over the output (0.29 ms a step for the second
      layer): the second Linear keeps :math:`[W \mid b]` as one (runs, out, in + 1) tensor and reads its input
      from a buffer with a ones column, so its bias costs nothing and its SGD update of weight and bias is one
      ``baddbmm_``. ``params`` holds views of it under the module's parameter names.
    - ``forward(x, upcoming=x_next)`` appends each run's next training example as one more row: its activations
      are what the next ``sgd_step`` on that tensor needs (same weights), so the step runs no forward of its own.
      The backward is :math:`\delta = \mathrm{softmax}(z) - e_y`, then per layer one ``bmm`` for the next delta,
      a ``threshold_backward`` and in-place rank-1 weight (``baddbmm_``) and bias (``add_``) updates.
    """

    name = "mlp"

    def __init__(self, nets: list[nn.Module], feature: str, chain: list[tuple[str, nn.Module]]):
        kind, mod = resolve_feature(nets[0], feature)
        stacked, _ = stack_module_state(nets)
        self.params = {k: v.detach().clone() for k, v in stacked.items()}
        ops = [(n, m) for n, m in chain if type(m) is not nn.Flatten]
        self.layers = []  # per Linear: W (R, out, in), b (R, 1, out) or None, whether a ReLU follows
        linear_names = []
        for j, (name, m) in enumerate(ops):
            if type(m) is nn.Linear:
                b = self.params.get(f"{name}.bias")
                relu = j + 1 < len(ops) and type(ops[j + 1][1]) is nn.ReLU
                self.layers.append((self.params[f"{name}.weight"], None if b is None else b.unsqueeze(1), relu))
                linear_names.append(name)
        self._wb1 = None  # [W | b] of the second Linear (class notes)
        if len(self.layers) > 1 and self.layers[1][1] is not None:
            W, b, relu = self.layers[1]
            inn, name = W.shape[2], linear_names[1]
            self._wb1 = torch.cat([W, b.mT], -1)
            self.params[f"{name}.weight"], self.params[f"{name}.bias"] = self._wb1[..., :inn], self._wb1[..., inn]
            self.layers[1] = (self._wb1[..., :inn], self._wb1[..., inn].unsqueeze(1), relu)
        # the feature is the input of op p (p = len(ops): the logits): ("in", k) the input of Linear k, ("pre", k)
        # its output before the ReLU, ("logits", last)
        names = [n for n, _ in chain]
        if kind == "logits":
            pos = len(chain)
        elif kind == "input":
            pos = names.index(mod) if mod in names else -1
        else:
            pos = names.index(mod) + 1 if mod in names else (len(chain) - 1 if mod == "body" else -1)
        pos -= sum(type(m) is nn.Flatten for _, m in chain[:pos]) if pos > 0 else 0
        self.supported = pos >= 0
        if pos == len(ops):
            self.feat_at = ("logits", len(self.layers) - 1)
        elif pos >= 0:
            k = sum(type(m) is nn.Linear for _, m in ops[:pos])  # Linears before op p
            self.feat_at = ("in", k) if type(ops[pos][1]) is nn.Linear else ("pre", k - 1)
        self._x0 = None  # (x, its version, buffer): the first layer's input rows for the last probe set, plus one
        self._ring, self._turn = {}, {}  # rows -> two sets of layer outputs, and which one is next
        self._pending = None  # (x, layer inputs, feature, logits, buffer set) of the next training examples

    def _first_input(self, x: torch.Tensor | None, upcoming: torch.Tensor | None) -> torch.Tensor:
        """(R, n, in): the rows of ``x`` (shared by every run; kept between calls on the same tensor), then each
        run's ``upcoming`` row."""
        W = self.layers[0][0]
        R = W.shape[0]
        if x is None:
            return upcoming.reshape(R, 1, -1)
        B = x.shape[0]
        if self._x0 is None or self._x0[0] is not x or self._x0[1] != x._version:
            buf = torch.empty((R, B + 1, W.shape[2]), dtype=W.dtype, device=W.device)
            buf[:, :B] = x.reshape(B, -1)
            self._x0 = (x, x._version, buf)
        buf = self._x0[2]
        if upcoming is None:
            return buf[:, :B]
        buf[:, B] = upcoming.reshape(R, -1)
        return buf

    def _outputs(self, n: int) -> tuple[tuple[int, int], list[torch.Tensor]]:
        """One of two reused sets of layer outputs for ``n`` rows. They alternate, so a forward's results stay
        valid through the next forward; a pending example whose set is about to be overwritten is dropped (the
        next ``sgd_step`` then runs its own forward)."""
        if n not in self._ring:
            ones = self._wb1 is not None  # the first layer's output carries the ones column the second one reads
            sets = []
            for _ in range(2):
                bufs = [torch.empty((W.shape[0], n, W.shape[1] + (k == 0 and ones)), dtype=W.dtype, device=W.device)
                        for k, (W, _, _) in enumerate(self.layers)]  # fmt: skip
                if ones:
                    bufs[0][..., -1] = 1.0
                sets.append(bufs)
            self._ring[n], self._turn[n] = sets, 0
        turn = self._turn[n]
        self._turn[n] = 1 - turn
        if self._pending is not None and self._pending[4] == (n, turn):
            self._pending = None
        return (n, turn), self._ring[n][turn]

    def _run(self, h: torch.Tensor):
        """Every layer on the rows of ``h`` (R, n, in): the feature, the logits, each Linear's input (its ones
        column included) and the buffer set."""
        acts, feat = [], None
        where, at = self.feat_at
        which, outs = self._outputs(h.shape[1])
        for k, (W, b, relu) in enumerate(self.layers):
            acts.append(h)
            if where == "in" and at == k:
                feat = h[..., : W.shape[2]]
            out = outs[k][..., : W.shape[1]]  # the first layer's output buffer has the ones column
            if k == 1 and self._wb1 is not None:
                h = torch.bmm(h, self._wb1.mT, out=out)
            else:
                h = torch.bmm(h, W.mT, out=out) if b is None else torch.baddbmm(b, h, W.mT, out=out)
            if where == "pre" and at == k:
                feat = h.clone()
            if relu:
                h.relu_()
            h = outs[k]
        return (h if where == "logits" else feat), h, acts, which

    @torch.no_grad()
    def forward(self, x: torch.Tensor, upcoming: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (R, B, m) and logits (R, B, K) of shared inputs x (B, ...), valid until the forward after next;
        with ``upcoming`` (R, ...) each run's next training example rides along for the next ``sgd_step`` on it."""
        B = x.shape[0]
        feat, logits, acts, which = self._run(self._first_input(x, upcoming))
        if upcoming is not None:
            self._pending = (upcoming, [a[:, B:] for a in acts], feat[:, B:], logits[:, B:], which)
        return feat[:, :B], logits[:, :B]

    @torch.no_grad()
    def sgd_step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step of every run on its own example x[r], y[r]; returns its pre-step feature and logits."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is x:
            _, acts, feat, logits, _ = pending
        else:
            feat, logits, acts, _ = self._run(self._first_input(None, x))
        delta = torch.softmax(logits, -1)  # (R, 1, K); dCE/dlogits = softmax - onehot
        delta.view(-1, delta.shape[-1])[torch.arange(len(y), device=y.device), y] -= 1.0
        for k in range(len(self.layers) - 1, -1, -1):
            W, b, _ = self.layers[k]
            nxt = None
            if k:
                nxt = torch.bmm(delta, W)  # before W changes
                if self.layers[k - 1][2]:  # through the ReLU: its input was > 0 where its output (acts[k]) is
                    nxt = torch.ops.aten.threshold_backward(nxt, acts[k][..., : W.shape[2]], 0.0)
            if k == 1 and self._wb1 is not None:
                self._wb1.baddbmm_(delta.mT, acts[1], alpha=-lr)  # weight and bias (the ones column) at once
            else:
                W.baddbmm_(delta.mT, acts[k], alpha=-lr)
                if b is not None:
                    b.add_(delta, alpha=-lr)
            delta = nxt
        return feat[:, 0].clone(), logits[:, 0].clone()


def make_engine(nets: list[nn.Module], feature: str, in_shape: tuple[int, ...]):
    """The fast engine where it applies (and ``FORCE`` allows), the functional one otherwise."""
    check_supported(nets[0])
    chain = _chain(nets[0]) if FORCE != "functional" else None
    if chain is not None and len(in_shape) != 1 and type(chain[0][1]) is not nn.Flatten:
        chain = None  # Linear on (B, C, L) inputs acts on the last dim: leave those semantics to the generic path
    if chain is not None:
        eng = MLPEngine(nets, feature, chain)
        if eng.supported:
            return eng
    if FORCE == "mlp":
        raise ValueError("FORCE='mlp' but the network is not a Flatten/Linear/ReLU chain with that feature")
    return FunctionalEngine(nets, feature)


__all__ = ["make_engine", "FunctionalEngine", "MLPEngine", "FeatureHook", "resolve_feature", "FORCE"]
