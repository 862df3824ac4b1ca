"""A small CNN of your own, trained on your own image arrays as an experiment of tracked runs, here or on a cluster.

The arrays: an ``.npz`` file with ``x`` (N, C, H, W) float images, ``y`` (N,) integer labels 0..K-1 and, for a
validation accuracy, ``x_test`` and ``y_test``. Without ``--arrays`` the script writes a demonstration file of
geomnist shapes (triangles, rectangles, ellipses) and uses it. Every run is a cell of a
`lesde.empirical.Experiment`: `load_arrays` and `small_cnn` are plain module-level functions, so
the cells pickle to Dask workers; the store is resumable (rerun the same command after Ctrl-C) and the estimate of
E(t) is computed from it once every run is done.

    lesde example copy cnn_on_arrays.py
    python cnn_on_arrays.py                                  # the runs one after the other, here
    python cnn_on_arrays.py --workers 2                      # a LocalCluster of 2 processes on 127.0.0.1
    python cnn_on_arrays.py --scheduler tcp://HOST:8786      # a running Dask cluster
    python cnn_on_arrays.py --arrays mine.npz --out results  # your arrays
    python cnn_on_arrays.py --tiny                           # seconds (what the tests run)

It writes ``cnn_on_arrays.zarr`` (the store of runs), ``cnn_on_arrays.nc`` (the estimate with its power-law fit)
and ``cnn_on_arrays.png`` into ``--out``. The store names the arrays by path and SHA-256: changed arrays need a new
store. ``run(out_dir, tiny=False, arrays=None, workers=None, scheduler=None)`` does the same from Python.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lesde.atomic_write import write_netcdf
from lesde.empirical import Experiment, estimate, experiment_tracks, fit, load_dataset, run_experiment
from lesde.empirical.experiments import require_complete
from lesde.plots import plot_elasticity, save_figure

# --- the demonstration arrays (geomnist) ---
CLASSES = 3
IMAGES_PER_CLASS = 300
IMAGE_SIZE = 32
# --- the network and the runs ---
CHANNELS = 8  # of the first convolution (the second has twice as many)
LR = 0.01
STEPS = 3000
RUNS = 4
PROBES = 150
SEED = 0
# --- tiny run (tests) ---
TINY = dict(images_per_class=24, size=16, channels=4, steps=60, runs=2, probes=30)
STEM = "cnn_on_arrays"


def small_cnn(input_shape, num_classes: int, channels: int = CHANNELS) -> nn.Module:
    """Two 3x3 convolutions with ReLU, a 2x2 max-pool between them, global average pooling and a linear head."""
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * channels, num_classes),
    )


def load_arrays(path: str, digest: str | None = None) -> tuple:
    """``(x, y, x_test, y_test)`` (or ``(x, y)``) from the ``.npz`` at ``path``, checked against its SHA-256."""
    if digest is not None and file_digest(path) != digest:
        raise ValueError(f"{path} changed since the experiment started; write the results into a new store")
    with np.load(path) as f:
        names = ["x", "y", "x_test", "y_test"] if "x_test" in f else ["x", "y"]
        arrays = [f[n] for n in names]
    return tuple(torch.from_numpy(a.astype(np.float32 if i % 2 == 0 else np.int64)) for i, a in enumerate(arrays))


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_demo_arrays(path: Path, images_per_class: int = IMAGES_PER_CLASS, size: int = IMAGE_SIZE) -> Path:
    """geomnist shapes as user-supplied arrays would be: ``x`` (N, 1, size, size), ``y``, and a test split."""
    options = dict(classes=CLASSES, n_train=images_per_class, n_test=images_per_class // 3, size=size, seed=SEED)
    x, y = load_dataset("geomnist", **options)
    xt, yt = load_dataset("geomnist", split="test", **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x.numpy(), y=y.numpy(), x_test=xt.numpy(), y_test=yt.numpy())
    return path


def run(out_dir, tiny: bool = False, arrays=None, workers=None, scheduler=None, progress: bool = False):
    """Track the runs into ``out_dir/cnn_on_arrays.zarr``, estimate and fit E(t); returns (estimate, PNG path)."""
    out = Path(out_dir)
    size = TINY if tiny else dict(images_per_class=IMAGES_PER_CLASS, size=IMAGE_SIZE, channels=CHANNELS,
                                  steps=STEPS, runs=RUNS, probes=PROBES)  # fmt: skip
    if arrays is None:
        arrays = out / f"{STEM}_arrays.npz"
        if not arrays.exists():
            write_demo_arrays(arrays, size["images_per_class"], size["size"])
    exp = Experiment(
        data=functools.partial(load_arrays, str(arrays), digest=file_digest(arrays)),
        net=functools.partial(small_cnn, channels=size["channels"]),
        lr=LR,
        steps=size["steps"],
        n_runs=size["runs"],
        probes=size["probes"],
        seed=SEED,
    )
    store = out / f"{STEM}.zarr"
    require_complete(run_experiment(exp, store, workers=workers, scheduler=scheduler, progress=progress))
    tracks = experiment_tracks(store)  # every run, one Dataset over `run`
    est = estimate(tracks, form="feature", window=10 if tiny else None)
    result = fit(est, model="power")
    est = result.curves(est)
    est.attrs.update(dataset=str(arrays), net=f"small CNN ({size['channels']} channels)")
    write_netcdf(est, out / f"{STEM}.nc")
    png = save_figure(plot_elasticity(est, result), out / f"{STEM}.png")
    acc = tracks["validation_accuracy"].isel(validation_step=-1) if "validation_accuracy" in tracks else None
    print(f"{tracks.sizes['run']} runs x {tracks.attrs['steps']} steps x {tracks.sizes['probe']} probes; "
          f"median alpha {float(est.alpha.median()):+.4g}, beta {float(est.beta.median()):+.4g}"
          + ("" if acc is None else f"; validation accuracy {float(acc.mean()):.3f}"))  # fmt: skip
    print(result.summary())
    return est, png


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", default=None, help=".npz with x, y (and x_test, y_test); default: a demo file")
    parser.add_argument("--out", default=".", help="folder for the store, the .nc and the .png")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, default=None, help="start a Dask LocalCluster of N workers")
    group.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long version")
    args = parser.parse_args()
    _, png = run(args.out, args.tiny, args.arrays, args.workers, args.scheduler, progress=not args.tiny)
    print(f"wrote {Path(args.out) / (STEM + '.nc')} and {png}")
