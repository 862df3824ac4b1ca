r"""Batch-size-1 SGD with every probe tracked at every recorded step, for many runs at once.

``runs`` independent copies of a network (different initialisations and sample orders) are stacked with
``torch.func.stack_module_state`` and trained together: one ``vmap(grad(...))`` call per step computes every
run's cross-entropy gradient on its own sampled example, one fused in-place update applies
:math:`\theta \leftarrow \theta - \eta \nabla_\theta \ell(\theta; x_{I_s}, y_{I_s})`, and after each recorded step
one vmapped forward evaluates every probe for every run.

Layout of the returned Dataset (what the estimators in :mod:`lesde.empirical.estimators` read)
------------------------------------------------------------------------------------------
- ``features(run, step, probe, feature)``: :math:`f_s(x_i)` at recorded steps ``0, r, 2r, ...`` (``r =
  record_every``), ``feature`` the logits or the penultimate layer.
- ``increment(run, step, probe, feature)``: :math:`f_s(x_i) - f_{s-1}(x_i)`, the change made by the *single* SGD
  step ``s`` (when ``record_every > 1`` an extra probe forward runs just before each recorded step, so the
  estimators always see one-step increments, whatever the recording stride).
- ``sampled_feature(run, step, feature)``: :math:`f_{s-1}(x_{I_s})`, the trained example's feature *before* the
  step, and ``sampled_residual(run, step, class)``: :math:`e_{L_s} - \mathrm{softmax}(\text{logits}_{s-1}(x_{I_s}))`.
  Recording these separately means the sampled example need not be a probe (decision: probes are a free choice;
  the default is every training sample).
- ``sampled_index``, ``sampled_label``, ``sampled_loss`` over ``(run, step)``; ``loss`` and ``accuracy`` over
  ``(run, step)`` are the mean cross-entropy and the accuracy on the probes after the step.
- coordinates ``label(probe)``, ``sample_index(probe)`` (index into the training set) and ``time(step) = step *
  lr``. Step 0 holds the initial features; its sampled_* entries are NaN / -1.

Decisions: each run's network is a deep copy of ``net`` re-initialised (``reset_parameters`` of every submodule)
under its own seed, drawn with the sample order from ``torch.Generator().manual_seed(seed)``; see
:func:`init_nets`, which reproduces the initialisations for reference loops. Samples are drawn uniformly with
replacement. Probes given as an int are a class-stratified random subset of that size.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from .._validate import check_choice, check_int, check_positive_float
from ._common import finish
from .nets import Classifier

FEATURES = ("logits", "penultimate")


def run_seeds(runs: int, seed: int) -> tuple[list[int], torch.Generator]:
    """Per-run initialisation seeds, and the generator (advanced past them) that then draws the sample order."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, 2**62, (runs,), generator=g).tolist(), g


def init_nets(net: nn.Module, runs: int, seed: int = 0) -> list[nn.Module]:
    """``runs`` deep copies of ``net``, copy ``r`` re-initialised under ``run_seeds(runs, seed)[0][r]``.

    The global RNG state is restored afterwards (``torch.random.fork_rng``), so tracking has no side effects.
    """
    seeds, _ = run_seeds(runs, seed)
    nets = []
    for s in seeds:
        copy_ = copy.deepcopy(net)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            for m in copy_.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        nets.append(copy_)
    return nets


def sample_order(num_samples: int, runs: int, steps: int, seed: int = 0) -> torch.Tensor:
    """(runs, steps) indices drawn uniformly with replacement: ``I_s`` of each run."""
    _, g = run_seeds(runs, seed)
    return torch.randint(0, num_samples, (runs, steps), generator=g)


def select_probes(
    labels: torch.Tensor, probes: int | Sequence[int] | torch.Tensor | None, seed: int = 0
) -> torch.Tensor:
    """Probe indices sorted by (label, index). ``None``: all; int ``P``: class-stratified random subset."""
    labels = labels.cpu()
    N = len(labels)
    if probes is None:
        idx = torch.arange(N)
    elif isinstance(probes, (int, np.integer)) and not isinstance(probes, bool):
        P = check_int("probes", int(probes))
        if P > N:
            raise ValueError(f"probes={P} exceeds the {N} training samples")
        counts = torch.bincount(labels).double()
        share = counts * P / N
        take = share.floor().long().clamp(min=1)
        # hand out what flooring left over to the largest remainders, so the total is exactly P
        for k in torch.argsort(share - share.floor(), descending=True)[: max(0, P - int(take.sum()))]:
            take[k] += 1
        take = torch.minimum(take, counts.long())
        g = torch.Generator().manual_seed(int(seed) + 7919)
        idx = torch.cat(
            [
                torch.nonzero(labels == k).flatten()[torch.randperm(int(counts[k]), generator=g)[: int(take[k])]]
                for k in range(len(counts))
            ]
        )
    else:
        idx = torch.as_tensor(probes, dtype=torch.long).flatten()
        if idx.numel() == 0 or idx.min() < 0 or idx.max() >= N:
            raise ValueError(f"probes must be indices in [0, {N}), got {probes!r}")
    order = torch.argsort(labels[idx] * N + idx)  # by label, then by index
    return idx[order]


def track(
    net: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    lr: float,
    steps: int,
    runs: int = 8,
    probes: int | Sequence[int] | torch.Tensor | None = None,
    record_every: int = 1,
    feature: str = "logits",
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> xr.Dataset:
    r"""Train ``runs`` copies of ``net`` by batch-size-1 SGD and record every probe's feature.

    Step :math:`s = 1, \dots, \text{steps}` of run :math:`r` draws :math:`I_s` uniformly from the training set and
    applies :math:`\theta_s = \theta_{s-1} - \eta \nabla_\theta\, \mathrm{CE}(\text{net}_{\theta_{s-1}}(x_{I_s}),
    y_{I_s})`; time is :math:`t = s\eta`.

    Parameters
    ----------
    net : nn.Module
        Template; every run gets a re-initialised copy (:func:`init_nets`). ``feature="penultimate"`` needs a
        :class:`~lesde.empirical.nets.Classifier`.
    inputs, labels : tensors (N, ...) and (N,)
        Training set (labels ``0..K-1``).
    lr, steps, runs : learning rate :math:`\eta`, SGD steps, independent runs.
    probes : None, int or indices
        Samples whose features are recorded: all (default), a stratified random subset of that size, or indices.
    record_every : int
        Record at steps ``0, r, 2r, ...``; increments are always one-step (see the module notes).
    feature : {"logits", "penultimate"}
    seed : int
        Seeds initialisations, sample order and probe subset.
    device, dtype : where and in which precision to train (float64 for exactness checks).
    progress : bool
        Show a tqdm bar over steps.

    Returns
    -------
    xarray.Dataset
        Layout in the module docstring; ``attrs`` hold the configuration.

    Examples
    --------
    >>> from lesde.empirical import load_dataset, mlp
    >>> x, y = load_dataset("gaussian-mixture", classes=3, per_class=10)
    >>> ds = track(mlp(10, 3, width=8), x, y, lr=0.05, steps=4, runs=2, progress=False)
    >>> dict(ds.features.sizes)
    {'run': 2, 'step': 5, 'probe': 30, 'feature': 3}
    """
    lr = check_positive_float("lr", lr)
    steps, runs, record_every = (
        check_int("steps", steps),
        check_int("runs", runs),
        check_int("record_every", record_every),
    )
    feature = check_choice("feature", feature, FEATURES)
    penultimate = feature == "penultimate"
    if penultimate and not isinstance(net, Classifier):
        raise TypeError("feature='penultimate' needs a lesde.empirical.nets.Classifier (body + head); use 'logits'")
    device = torch.device(device)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.ndim != 1 or len(labels) != len(inputs):
        raise ValueError(f"labels must be (N,) with N = len(inputs) = {len(inputs)}, got {tuple(labels.shape)}")
    N, K = len(labels), int(labels.max()) + 1
    probe_idx = select_probes(labels, probes, seed)
    P = len(probe_idx)

    nets = [m.to(device=device, dtype=dtype) for m in init_nets(net, runs, seed)]
    params, buffers = stack_module_state(nets)  # name -> (R, ...)
    params = {k: v.detach().clone() for k, v in params.items()}
    base = copy.deepcopy(nets[0]).to("meta")
    kwargs = {"penultimate": True} if isinstance(net, Classifier) else {}

    def forward(p, b, x):  # one run: x (B, ...) -> (feature (B, m), logits (B, K))
        out = functional_call(base, (p, b), (x,), kwargs)
        h, logits = out if kwargs else (out, out)
        return (h if penultimate else logits), logits

    def sample_loss(p, b, x, y):  # one run, one example: x (1, ...), y (1,)
        feat, logits = forward(p, b, x)
        return F.cross_entropy(logits, y), (feat.detach(), logits.detach())

    step_grad = vmap(grad(sample_loss, has_aux=True))  # over runs
    probe_forward = vmap(forward, in_dims=(0, 0, None))  # all probes, every run

    X = inputs.to(device=device, dtype=dtype)
    Y = labels.to(device)
    PX, PY = X[probe_idx.to(device)], Y[probe_idx.to(device)]
    order = sample_order(N, runs, steps, seed).to(device)  # (R, steps)

    rec_steps = np.arange(0, steps + 1, record_every)
    S = len(rec_steps)
    with torch.no_grad():
        feat0, logits0 = probe_forward(params, buffers, PX)  # (R, P, m), (R, P, K)
    m = feat0.shape[-1]
    nan = float("nan")
    features = torch.empty((runs, S, P, m), dtype=dtype, device=device)
    increment = torch.full((runs, S, P, m), nan, dtype=dtype, device=device)
    s_feat = torch.full((runs, S, m), nan, dtype=dtype, device=device)
    s_res = torch.full((runs, S, K), nan, dtype=dtype, device=device)
    s_loss = torch.full((runs, S), nan, dtype=dtype, device=device)
    loss = torch.empty((runs, S), dtype=dtype, device=device)
    acc = torch.empty((runs, S), dtype=dtype, device=device)

    def record(j, feat, logits):
        features[:, j] = feat
        loss[:, j] = F.cross_entropy(logits.transpose(1, 2), PY.expand(runs, P), reduction="none").mean(1)
        acc[:, j] = (logits.argmax(-1) == PY).to(dtype).mean(1)

    record(0, feat0, logits0)
    prev = feat0
    plist = list(params.values())
    bar = range(1, steps + 1)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc=f"track {runs} runs x {P} probes", unit="step", mininterval=1.0)
    for s in bar:
        j, recorded = divmod(s, record_every)
        recorded = recorded == 0
        if recorded and record_every > 1:
            with torch.no_grad():
                prev, _ = probe_forward(params, buffers, PX)
        i = order[:, s - 1]  # (R,)
        grads, (f_i, logit_i) = step_grad(params, buffers, X[i].unsqueeze(1), Y[i].unsqueeze(1))
        torch._foreach_add_(plist, [grads[k] for k in params], alpha=-lr)
        if recorded:
            with torch.no_grad():
                feat, logits = probe_forward(params, buffers, PX)
            record(j, feat, logits)
            increment[:, j] = feat - prev
            prev = feat
            s_feat[:, j] = f_i[:, 0]
            prob = torch.softmax(logit_i[:, 0], -1)  # (R, K)
            s_res[:, j] = F.one_hot(Y[i], K).to(dtype) - prob
            s_loss[:, j] = -torch.log(prob.gather(1, Y[i][:, None])[:, 0])

    rec_t = torch.as_tensor(rec_steps[1:] - 1, device=device)
    s_idx = torch.full((runs, S), -1, dtype=torch.long)
    s_idx[:, 1:] = order[:, rec_t].cpu()
    s_lab = torch.where(s_idx >= 0, labels[s_idx.clamp(min=0)], -1)

    def np_(t):
        return t.detach().cpu().numpy()

    ds = xr.Dataset(
        {
            "features": (("run", "step", "probe", "feature"), np_(features)),
            "increment": (("run", "step", "probe", "feature"), np_(increment)),
            "sampled_feature": (("run", "step", "feature"), np_(s_feat)),
            "sampled_residual": (("run", "step", "class"), np_(s_res)),
            "sampled_index": (("run", "step"), s_idx.numpy()),
            "sampled_label": (("run", "step"), s_lab.numpy()),
            "sampled_loss": (("run", "step"), np_(s_loss)),
            "loss": (("run", "step"), np_(loss)),
            "accuracy": (("run", "step"), np_(acc)),
        },
        coords={
            "run": np.arange(runs),
            "step": rec_steps,
            "probe": np.arange(P),
            "feature": np.arange(m),
            "class": np.arange(K),
            "label": ("probe", labels[probe_idx].numpy()),
            "sample_index": ("probe", probe_idx.numpy()),
            "time": ("step", rec_steps * lr),
        },
    )
    return finish(
        ds,
        source="track",
        lr=lr,
        steps=steps,
        runs=runs,
        record_every=record_every,
        feature=feature,
        seed=seed,
        device=str(device),
        dtype=str(dtype).replace("torch.", ""),
        num_classes=K,
        num_samples=N,
        class_counts=torch.bincount(labels, minlength=K).tolist(),
        net=repr(net),
    )


__all__ = ["track", "init_nets", "sample_order", "select_probes", "run_seeds"]
