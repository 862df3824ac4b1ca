"""Datasets for empirical elasticity: mnist1d, geomnist, scikit-learn digits, a Gaussian mixture, or user arrays.

Every loader returns ``(inputs, labels)``: ``inputs`` float32 in its natural shape (mnist1d ``(N, 1, 40)``,
geomnist ``(N, 1, 32, 32)``, digits ``(N, 1, 8, 8)``, Gaussian mixture ``(N, dim)``, npz as stored) and ``labels``
int64 in ``0..K-1``, sorted by class (class 0 first), as the LE-SDE orders its samples. The pair carries an
``info`` dict (name, split, standardisation mean and std, label noise) that the CLI jobs record in their attrs.

Decisions
---------
- mnist1d is *generated* locally with the package's default arguments (``get_dataset_args()``, seed 42 unless
  ``options`` override it): the training split (4000 samples) or, with ``split="test"``, the test split (1000).
  Generation takes a few seconds and is cached per process. It is **standardised by default**: one mean and one
  standard deviation over every value of the *training* split (also applied to the test split), recorded in
  ``info``; ``standardize=False`` opts out. (At the default generator arguments the raw values are already close
  to mean 0, std 1: mean -3e-4, std 0.998; other arguments and other data are not.) ``standardize=True`` does the
  same for any data set.
- geomnist (`lesde.empirical._geomnist`): the LE-SDE paper's triangles, rectangles and ellipses, 32 x 32,
  generated locally; 1000 training and 300 test images per class by default (options ``n_train``, ``n_test``,
  ``size``, ``jitter``, ``generator_seed``).
- ``classes=k`` keeps the first ``k`` classes; a list keeps those classes, relabelled ``0..len-1`` in list order.
- ``per_class=n`` draws ``n`` samples per class without replacement (seeded); a list gives one count per kept
  class (imbalanced). Asking for more than a class holds is an error.
- ``label_noise=q`` replaces the labels of ``round(q N)`` samples (chosen by the seed) with a uniformly drawn
  *different* class, as in the label-corruption experiments of the LE-SDE paper (training split only). Samples stay
  sorted by their original class, so the corrupted labels are interleaved. With ``q = (K-1)/K`` (2/3 for three
  classes) the labels carry no information about the inputs.
- Splits: ``"train"`` (default) or ``"test"`` for mnist1d, geomnist and the Gaussian mixture (fresh samples from
  the same centres); digits and npz files have none.
- ``"gaussian-mixture"`` options: ``dim`` (default ``max(10, K)``), ``separation`` (distance of each class centre
  from the origin, default 3.0; centres along orthonormal random directions, so pairwise centre distance is
  ``separation * sqrt(2)``), unit isotropic noise; ``per_class`` defaults to 100 and ``classes`` to 3.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..extras import require
from ..validation import check_choice, check_int, check_positive_float, check_seed


class Data(tuple):
    """``(inputs, labels)`` with an ``info`` dict (what the data are and how they were prepared)."""

    def __new__(cls, inputs: torch.Tensor, labels: torch.Tensor, info: dict):
        self = super().__new__(cls, (inputs, labels))
        self.info = info
        return self


@functools.lru_cache(maxsize=4)
def _mnist1d(seed: int) -> dict:
    mnist1d = require("mnist1d.data", "data", "the mnist1d data set")
    get_dataset_args, make_dataset = mnist1d.get_dataset_args, mnist1d.make_dataset

    args = get_dataset_args()
    args.seed = seed
    return make_dataset(args)  # generated, never downloaded


def _load_mnist1d(num_classes, seed, split="train", generator_seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    data = _mnist1d(int(generator_seed))
    sfx = "" if split == "train" else "_test"
    return np.asarray(data["x" + sfx], np.float32)[:, None, :], np.asarray(data["y" + sfx], np.int64)


def _load_geomnist(
    num_classes, seed, split="train", n_train=1000, n_test=300, generator_seed=0, size=32, jitter=0.1
) -> tuple[np.ndarray, np.ndarray]:
    from ._geomnist import generate

    n = check_int("n_train" if split == "train" else "n_test", n_train if split == "train" else n_test)
    return generate(
        n,
        0 if split == "train" else 1,
        int(generator_seed),
        check_int("size", size, 8),
        check_positive_float("jitter", jitter, allow_zero=True),
    )


def _load_digits(num_classes: int | None, seed: int, split="train") -> tuple[np.ndarray, np.ndarray]:
    load_digits = require("sklearn.datasets", "data", "the digits data set (scikit-learn)").load_digits

    _no_test(split, "digits")
    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)  # pixel values 0..16 -> [0, 1]
    return x, d.target.astype(np.int64)


def _no_test(split: str, name: str) -> None:
    if split != "train":
        raise ValueError(f"{name} has no test split; use split='train' and hold samples out yourself")


def _load_gaussian_mixture(
    num_classes: int | None,
    seed: int,
    split="train",
    dim: int | None = None,
    separation: float = 3.0,
    per_class: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    K = 3 if num_classes is None else num_classes
    dim = max(10, K) if dim is None else check_int("dim", dim)
    if dim < K:
        raise ValueError(f"dim must be >= the number of classes ({K}) for orthonormal centres, got {dim}")
    separation = check_positive_float("separation", separation, allow_zero=True)
    rng = np.random.default_rng(seed)
    centres, _ = np.linalg.qr(rng.standard_normal((dim, K)))  # (dim, K) orthonormal columns
    centres = separation * centres.T  # (K, dim)
    y = np.repeat(np.arange(K), per_class)
    if split != "train":  # the same centres, fresh samples
        rng = np.random.default_rng([seed, 1])
    x = centres[y] + rng.standard_normal((K * per_class, dim))
    return x.astype(np.float32), y.astype(np.int64)


def _load_npz(path: str, num_classes: int | None, seed: int, split="train") -> tuple[np.ndarray, np.ndarray]:
    _no_test(split, "an npz file")
    with np.load(path) as f:
        if "x" not in f or "y" not in f:
            raise ValueError(f"npz file {path!r} must hold arrays 'x' and 'y', found {sorted(f.files)}")
        x, y = np.asarray(f["x"], np.float32), np.asarray(f["y"])
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"npz file {path!r}: y must be 1-D with one label per row of x, got {y.shape} vs {x.shape}")
    return x, y.astype(np.int64)


LOADERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "mnist1d": _load_mnist1d,
    "geomnist": _load_geomnist,
    "digits": _load_digits,
    "gaussian-mixture": _load_gaussian_mixture,
}


def _check_counts(classes, per_class, seed) -> int:
    """``classes`` and ``per_class`` as None, an int or a list of ints (class ids >= 0, counts >= 1); the seed."""
    for arg, value in (("classes", classes), ("per_class", per_class)):
        if value is None:
            continue
        if isinstance(value, (int, np.integer)):
            check_int(arg, value)
            continue
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray, torch.Tensor)):
            raise TypeError(f"{arg} must be an int, a list of ints or None, got {value!r}")
        for v in value:
            check_int(arg, v, minimum=0 if arg == "classes" else 1)
    return check_seed("seed", seed)


def load_dataset(
    name: str,
    classes: int | Sequence[int] | None = None,
    per_class: int | Sequence[int] | None = None,
    label_noise: float = 0.0,
    seed: int = 0,
    split: str = "train",
    standardize: bool | None = None,
    **options: Any,
) -> Data:
    """Load a classification dataset as ``(inputs, labels)`` tensors.

    Parameters
    ----------
    name : "mnist1d" | "geomnist" | "digits" | "gaussian-mixture" or "npz:PATH"
        The source. ``npz:PATH`` reads arrays ``x`` (inputs) and ``y`` (integer labels) from a user file.
    classes : int or list of int, optional
        ``k`` keeps classes ``0..k-1``; a list keeps those classes, relabelled in list order. Default: all.
    per_class : int or list of int, optional
        Samples per kept class, drawn without replacement with ``seed``; a list gives imbalanced counts.
    label_noise : float
        Fraction $q \\in [0, 1)$ of samples whose label is replaced by a different uniform class.
    seed : int
        Seeds the subset draw, the label corruption and the Gaussian mixture.
    split : "train" | "test"
        Which split (module notes); label noise applies to the training split only.
    standardize : bool, optional
        Subtract the training split's mean and divide by its standard deviation (two scalars, in ``info``).
        Default: True for mnist1d, False otherwise.
    **options
        Loader options: ``separation``, ``dim`` (gaussian-mixture), ``generator_seed`` (mnist1d, default 42;
        geomnist, default 0), ``n_train``, ``n_test``, ``size``, ``jitter`` (geomnist).

    Returns
    -------
    Data
        A pair ``(inputs, labels)``: inputs float32 (N, ...), labels int64 (N,) sorted by original class; its
        ``info`` dict records name, split, standardisation and label noise.

    Examples
    --------
    >>> from lesde.empirical import load_dataset
    >>> x, y = load_dataset("digits", classes=3, per_class=[50, 30, 20])
    >>> tuple(x.shape), y.bincount().tolist()
    ((100, 1, 8, 8), [50, 30, 20])
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    split = check_choice("split", split, ("train", "test"))
    seed = _check_counts(classes, per_class, seed)
    if split == "test" and label_noise:
        raise ValueError("label_noise corrupts training labels; the test split stays clean (label_noise=0)")
    k_req = check_int("classes", classes) if isinstance(classes, (int, np.integer)) else None
    if name.startswith("npz:"):
        x, y = _load_npz(name[4:], k_req, seed, split, **options)
    elif name in LOADERS:
        if name == "gaussian-mixture":
            if isinstance(per_class, (int, np.integer)):
                options.setdefault("per_class", int(per_class))
            elif per_class is not None:
                options.setdefault("per_class", max(per_class))
            if classes is not None and k_req is None:
                k_req = max(classes) + 1
        x, y = LOADERS[name](k_req, seed, split, **options)
    else:
        raise ValueError(
            f"name={name!r} is not supported; accepted values: {', '.join(map(repr, LOADERS))}, 'npz:PATH'"
        )

    available = np.unique(y)
    if classes is None:
        keep = list(available)
    elif k_req is not None:
        keep = list(range(k_req))
    else:
        keep = [int(c) for c in classes]
        if len(set(keep)) != len(keep):
            raise ValueError(f"classes={classes!r} lists a class twice")
    info = {"dataset": name, "split": split}
    if name == "mnist1d" if standardize is None else standardize:
        x_train = x if split == "train" else LOADERS[name](k_req, seed, "train", **options)[0]
        mean, std = float(np.mean(x_train, dtype=np.float64)), float(np.std(x_train, dtype=np.float64))
        if not std > 0:
            raise ValueError(f"standardize: the training inputs of {name!r} are constant (std 0)")
        x = ((x - mean) / std).astype(np.float32)
        info.update(standardize_mean=mean, standardize_std=std)
    else:
        info["standardize"] = "none"
    missing = [c for c in keep if c not in available]
    if missing:
        raise ValueError(f"classes={classes!r}: classes {missing} are absent; the dataset has {available.tolist()}")

    K = len(keep)
    if per_class is None:
        counts = [None] * K
    elif isinstance(per_class, (int, np.integer)):
        counts = [check_int("per_class", int(per_class))] * K
    else:
        counts = [check_int("per_class", int(c)) for c in per_class]
        if len(counts) != K:
            raise ValueError(f"per_class has {len(counts)} entries but {K} classes are kept; give one count per class")

    rng = np.random.default_rng(seed)
    idx, new_labels = [], []
    for new, (c, n) in enumerate(zip(keep, counts)):
        members = np.flatnonzero(y == c)
        if n is not None:
            if n > len(members):
                raise ValueError(f"per_class asks for {n} samples of class {c}, which has only {len(members)}")
            members = np.sort(rng.choice(members, size=n, replace=False))
        idx.append(members)
        new_labels.append(np.full(len(members), new, np.int64))
    idx, labels = np.concatenate(idx), np.concatenate(new_labels)

    q = check_positive_float("label_noise", label_noise, allow_zero=True)
    if q >= 1:
        raise ValueError(f"label_noise must be in [0, 1), got {q}")
    n_flip = int(round(q * len(labels)))
    if n_flip and K < 2:
        raise ValueError("label_noise needs at least 2 classes")
    if n_flip:
        flip = rng.choice(len(labels), size=n_flip, replace=False)
        # a uniform *different* class: shift by 1..K-1 modulo K
        labels[flip] = (labels[flip] + rng.integers(1, K, size=n_flip)) % K
    info.update(label_noise=q, num_classes=K, seed=seed)
    return Data(torch.from_numpy(np.ascontiguousarray(x[idx])), torch.from_numpy(labels), info)


__all__ = ["load_dataset", "LOADERS", "Data"]
