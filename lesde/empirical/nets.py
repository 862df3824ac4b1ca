"""Small classifiers for tracking: an MLP and a LeNet-style CNN (2-D for images, 1-D for sequences).

Both are `Classifier` modules: a ``body`` producing the penultimate feature ``h(x)`` and a linear
``head`` producing the logits ``W h(x) + b``. ``forward(x, penultimate=True)`` returns ``(h, logits)``, which
is how `lesde.empirical.track` records either feature with one forward pass. Any ``nn.Module`` mapping
inputs to logits can be tracked with ``feature="logits"``; ``"penultimate"`` needs a ``Classifier``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..validation import check_int


class Classifier(nn.Module):
    """``logits = head(body(x))``; the penultimate feature is ``body(x)``."""

    def __init__(self, body: nn.Module, head: nn.Linear):
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: torch.Tensor, penultimate: bool = False):
        h = self.body(x)  # (B, width)
        logits = self.head(h)  # (B, K)
        return (h, logits) if penultimate else logits


def mlp(in_dim: int | Sequence[int], num_classes: int, width: int = 256, depth: int = 2) -> Classifier:
    """ReLU MLP: flatten, ``depth`` hidden layers of ``width`` units, a linear head.

    ``in_dim`` is the flattened input size or the input shape (without the batch dim).

    ```pycon
    >>> import torch
    >>> from lesde.empirical import mlp
    >>> net = mlp(40, 3, width=16, depth=2)
    >>> tuple(net(torch.zeros(5, 1, 40)).shape)
    (5, 3)

    ```
    """
    in_dim = math.prod(in_dim) if isinstance(in_dim, (tuple, list, torch.Size)) else check_int("in_dim", in_dim)
    num_classes, width, depth = (
        check_int("num_classes", num_classes),
        check_int("width", width),
        check_int("depth", depth),
    )
    layers: list[nn.Module] = [nn.Flatten()]
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    return Classifier(nn.Sequential(*layers), nn.Linear(d, num_classes))


def cnn(in_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (16, 32), width: int = 128) -> Classifier:
    """LeNet-style CNN: (conv 3, ReLU, max-pool 2) per entry of ``channels``, then a ReLU layer of ``width``.

    ``in_shape`` is ``(C, H, W)`` for images (Conv2d, e.g. digits ``(1, 8, 8)``) or ``(C, L)`` for sequences
    (Conv1d, e.g. mnist1d ``(1, 40)``). Convolutions are padded so an 8x8 image survives two poolings.

    ```pycon
    >>> import torch
    >>> from lesde.empirical import cnn
    >>> net = cnn((1, 8, 8), 3)
    >>> tuple(net(torch.zeros(2, 1, 8, 8)).shape)
    (2, 3)

    ```
    """
    in_shape = tuple(check_int("in_shape", s) for s in in_shape)
    channels = tuple(check_int("channels", c) for c in channels)
    if not channels:
        raise ValueError("channels must list at least one convolution's output channels, e.g. (16, 32)")
    if len(in_shape) not in (2, 3):
        raise ValueError(f"in_shape must be (C, L) for Conv1d or (C, H, W) for Conv2d, got {in_shape}")
    conv, pool = (nn.Conv1d, nn.MaxPool1d) if len(in_shape) == 2 else (nn.Conv2d, nn.MaxPool2d)
    layers: list[nn.Module] = []
    c, spatial = in_shape[0], list(in_shape[1:])
    for out in channels:
        layers += [conv(c, int(out), kernel_size=3, padding=1), nn.ReLU(), pool(2)]
        c, spatial = int(out), [s // 2 for s in spatial]
    if min(spatial) < 1:
        raise ValueError(f"in_shape {in_shape} is too small for {len(channels)} poolings")
    layers += [nn.Flatten(), nn.Linear(c * math.prod(spatial), check_int("width", width)), nn.ReLU()]
    return Classifier(nn.Sequential(*layers), nn.Linear(width, check_int("num_classes", num_classes)))


NETS = {"mlp": mlp, "cnn": cnn}

__all__ = ["Classifier", "mlp", "cnn", "NETS"]
