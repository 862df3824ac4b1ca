r"""What `Tracker` checks at every ``step()``: which forward trained the sample, and whether
the parameters moved once, by one plain SGD step, since then.

A user's loop can record the wrong thing in ways that raise nothing in torch. The checks, and why each is cheap:

- **Which forward.** Every batch-size-1 forward with gradients enabled since the last ``step()`` is kept (at most
  `MAX_FORWARDS`) with its input; the trained sample's feature is the one whose input is ``inputs[index]``,
  so a second forward in the step (a penalty on another sample, a logged loss) is never mistaken for it. When no
  forward's input is ``inputs[index]`` (an input pipeline that transforms samples), the only batch-size-1 forward
  is taken, with a warning; several such forwards raise.
- **One update, after the forward.** torch bumps a tensor's version counter at every in-place change, so the sum
  of the parameters' counters (a few attribute reads) says whether any parameter changed: unchanged since the
  training forward while its gradient is nonzero means ``step()`` came before ``optimizer.step()``; changed between
  the previous ``step()`` and the training forward means an update went unrecorded (a skipped ``step()``), and
  the next increment would span two updates. Both raise. (Updates through ``p.data`` bypass the counters; the error
  says so.)
- **The update rule.** On the first `CHECK_STEPS` steps the parameters' change is compared with
  $-\eta \nabla$ (the gradients still in ``.grad``): momentum, weight decay, an adaptive method or another
  learning rate make the increments something other than the batch-size-1 SGD steps the estimators assume, and a
  warning names it. Later steps are not checked (a copy of the parameters per step would cost more than the probe
  forward for small probe sets).
"""

from __future__ import annotations

import math
import operator
import warnings
from dataclasses import dataclass

import torch

MAX_FORWARDS = 16  # batch-size-1 forwards kept between two steps
CHECK_STEPS = 3  # steps whose update is compared with -lr * grad
RULE_TOLERANCE = 1e-3  # relative difference from -lr * grad that counts as another rule
_VERSION = operator.attrgetter("_version")


@dataclass
class Forward:
    """One batch-size-1 forward with gradients enabled."""

    inputs: torch.Tensor | None  # (1, ...) as the model received it
    feature: torch.Tensor  # (1, m)
    logits: torch.Tensor  # (1, K)
    version: int  # sum of the parameters' version counters at the forward


class StepWatch:
    """The forwards since the last recorded step and the parameters' state, for one model."""

    def __init__(self, params: list[torch.Tensor], lr: float, check_rule: bool = True):
        self.params, self.lr = params, lr
        self.forwards: list[Forward] = []
        self.other_batch: int | None = None  # batch size of the last forward that was not batch-size-1
        self.warned_input = False
        self.checks_left = CHECK_STEPS if check_rule else 0
        self.update_rule = "not checked" if check_rule else "not checked (optimizer given)"
        self.reset()

    def version(self) -> int:
        return sum(map(_VERSION, self.params))

    def reset(self) -> None:
        """Start a new step from the parameters as they are now."""
        self.forwards.clear()
        self.other_batch = None
        self.start = self.version()
        self.snapshot = [p.detach().clone() for p in self.params] if self.checks_left > 0 else None

    def add(self, inputs, feature: torch.Tensor, logits: torch.Tensor) -> None:
        if logits.ndim < 1 or logits.shape[0] != 1:
            self.other_batch = int(logits.shape[0]) if logits.ndim else 0
            return
        if len(self.forwards) < MAX_FORWARDS:
            x = inputs.detach() if torch.is_tensor(inputs) else None
            out = logits.detach()  # a view: neither backward nor the optimizer writes into a forward's output
            # an intermediate feature is cloned, a later in-place layer (ReLU(inplace=True)) may overwrite it
            feat = out if feature is logits else feature.detach().clone()
            self.forwards.append(Forward(x, feat, out, self.version()))

    def training_forward(self, index: int, x: torch.Tensor) -> Forward:
        """The forward that trained sample ``index`` (row ``index`` of the training inputs ``x``), or a clear
        error."""
        same = [f for f in self.forwards if _is_input(f.inputs, x, index)]
        at_start = [f for f in same if f.version == self.start]
        if at_start:
            return at_start[0]
        if same:
            raise RuntimeError(
                f"the parameters changed between the previous tracker.step() and the forward on sample {index}: an "
                "optimizer step went unrecorded, so this increment would span two updates; call "
                "tracker.step(index, label) after every optimizer.step() (and change parameters only there)"
            )
        start = [f for f in self.forwards if f.version == self.start]
        if len(start) == 1:
            if not self.warned_input:
                self.warned_input = True
                warnings.warn(
                    f"tracker.step(index={index}): the training forward's input is not inputs[{index}] (a transformed "
                    "input, or the wrong index?); its feature is recorded as the trained sample's. Pass the index of "
                    "the sample the loss used, and the inputs as the loop feeds them",
                    UserWarning,
                    stacklevel=3,
                )
            return start[0]
        if len(start) > 1:
            raise RuntimeError(
                f"{len(start)} batch-size-1 forwards with gradients since the last step and none on inputs[{index}]: "
                f"the tracker cannot tell which one trained sample {index}; pass the index of the sample the loss used"
            )
        if self.forwards:  # batch-size-1 forwards, all after an update
            raise RuntimeError(
                "the only training forwards since the previous tracker.step() came after a parameter update: an "
                "optimizer step went unrecorded; call tracker.step(index, label) after every optimizer.step()"
            )
        if self.other_batch is not None:
            raise ValueError(
                f"Tracker records batch-size-1 SGD; the last training forward had batch {self.other_batch}"
            )
        raise RuntimeError(
            "no training forward since the last step: call model(x) with gradients enabled on the sample "
            "before optimizer.step(), then tracker.step(index, label)"
        )

    def check_update(self, fwd: Forward, index: int, step: int) -> None:
        """Raise when no parameter changed since the training forward although its gradient is nonzero; warn when
        the change is not -lr * grad (first `CHECK_STEPS` steps)."""
        if self.version() == fwd.version and any(p.grad is not None and bool(p.grad.any()) for p in self.params):
            raise RuntimeError(
                f"tracker.step() came before the parameter update: no parameter changed since the forward on sample "
                f"{index}, whose gradient is nonzero; call tracker.step(index, label) after optimizer.step() "
                "(updates through p.data are invisible to torch's version counters: update in place under "
                "torch.no_grad() instead)"
            )
        if self.checks_left <= 0 or self.snapshot is None:
            return
        self.checks_left -= 1
        rel = self._rule_difference()
        if rel is None:
            return
        if rel > self._tolerance():
            self.checks_left = 0
            self.update_rule = f"not -lr * grad (relative difference {rel:.3g} at step {step})"
            warnings.warn(
                f"the parameter update of step {step} is not -lr * gradient with lr={self.lr:g} (relative difference "
                f"{rel:.2g}): the optimizer is not plain SGD at this learning rate (momentum, weight decay, an "
                "adaptive method or another lr), and the estimators read the increments as plain batch-size-1 SGD "
                f"steps; train with torch.optim.SGD(params, lr={self.lr:g}), or give the Tracker the lr the optimizer "
                "uses",
                UserWarning,
                stacklevel=3,
            )
        else:
            self.update_rule = f"-lr * grad on the first {CHECK_STEPS - self.checks_left} steps"

    def _rule_difference(self) -> float | None:
        """||delta theta + lr g|| / ||lr g|| over the parameters (None when no gradient is left to compare with)."""
        num = den = scale = 0.0
        seen = False
        for p, p0 in zip(self.params, self.snapshot):
            d = (p.detach() - p0).double()
            if p.grad is None:
                num += float((d * d).sum())
                continue
            seen = True
            g = self.lr * p.grad.detach().double()
            num += float(((d + g) ** 2).sum())
            den += float((g * g).sum())
            scale += float((p0.double() ** 2).sum())
        if not seen or den == 0:
            return None
        self._scale = math.sqrt(scale / den)
        return math.sqrt(num / den)

    def _tolerance(self) -> float:
        eps = max(torch.finfo(p.dtype).eps for p in self.params if p.is_floating_point())
        return RULE_TOLERANCE + 16 * eps * self._scale


def _is_input(inputs: torch.Tensor | None, x: torch.Tensor, index: int) -> bool:
    """Whether a forward's input (1, ...) is training sample ``index`` of ``x`` (N, ...)."""
    if inputs is None or inputs.numel() * len(x) != x.numel():
        return False
    if inputs.dtype == x.dtype and inputs.shape[1:] == x.shape[1:]:
        if (
            inputs.data_ptr() == x.data_ptr() + index * x.stride(0) * x.element_size()
            and inputs.stride()[1:] == x.stride()[1:]
        ):
            return True  # a slice of the very tensor the tracker holds (the usual loop): no comparison needed
        return bool(torch.equal(inputs[0], x[index]))
    return bool(torch.equal(inputs.reshape(-1).to(x.dtype), x[index].reshape(-1)))


__all__ = ["StepWatch", "Forward", "MAX_FORWARDS", "CHECK_STEPS"]
