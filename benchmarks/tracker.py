"""What ``Tracker`` costs in a user's loop, against a hand-written recording of the same probes, side by side.

What is compared and why: a researcher who keeps their own training loop chooses between ``Tracker`` and writing
the recording by hand. The hand-written recording here is the least one can write that records the same data:
after each ``optimizer.step()``, one ``no_grad`` forward of the probes into a preallocated tensor, the trained
sample's output of the training forward, its index, and the features' one-step increment. ``Tracker`` records the
same and also checks the loop (which forward trained the sample, one update per call, the update rule on the first
steps; :mod:`lesde.empirical.tracks._step_watch`). The plain loop without any recording is timed for scale.

Measurement: the machine is shared and its speed drifts within seconds, so each of ``--rounds`` rounds times the
three loops back to back for ``--steps`` steps each, in a rotating order, and the ratio Tracker / hand-written is
formed within the round; the median and quartiles over rounds are reported. The ``Tracker`` time includes
``dataset()`` (building the Dataset from the records), the hand-written one no Dataset at all, so the ratio if
anything overstates the Tracker's cost; ``--no-dataset`` leaves it out.

    OMP_NUM_THREADS=1 python benchmarks/tracker.py --dataset digits --width 64 --rounds 11
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from lesde.empirical import Tracker, init_nets, load_dataset, mlp
from lesde.empirical.tracks.track_inputs import sample_order, select_probes


def plain(model, opt, x, y, order) -> float:
    t0 = time.perf_counter()
    for i in order.tolist():
        opt.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        opt.step()
    return time.perf_counter() - t0


def by_hand(model, opt, x, y, order, probes) -> float:
    px = x[probes]
    S = len(order)
    with torch.no_grad():
        first = model(px)
    feats = torch.empty((S + 1,) + first.shape, dtype=first.dtype)
    incr = torch.empty_like(feats)
    s_out = torch.empty((S + 1, first.shape[-1]), dtype=first.dtype)
    idx = torch.empty(S + 1, dtype=torch.long)
    feats[0] = first
    t0 = time.perf_counter()
    for s, i in enumerate(order.tolist(), 1):
        opt.zero_grad()
        out = model(x[i : i + 1])
        F.cross_entropy(out, y[i : i + 1]).backward()
        opt.step()
        s_out[s] = out.detach()[0]
        idx[s] = i
        with torch.no_grad():
            feats[s] = model(px)
        torch.sub(feats[s], feats[s - 1], out=incr[s])
    return time.perf_counter() - t0


def tracked(model, opt, x, y, order, probes, dataset: bool) -> float:
    t0 = time.perf_counter()
    with Tracker(model, x, y, optimizer=opt, probes=probes, steps=len(order)) as tr:
        for i in order.tolist():
            opt.zero_grad()
            F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
            opt.step()
            tr.step(i, y[i])
        if dataset:
            tr.dataset()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-dataset", action="store_true", help="leave the Tracker's dataset() out of its time")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    x, y = load_dataset(a.dataset, classes=3)
    net = mlp(tuple(x.shape[1:]), 3, width=a.width, depth=2)
    probes = select_probes(y, a.probes, 0)
    order = sample_order(len(y), 1, a.steps, 0)[0]
    times = {"plain": [], "hand-written": [], "Tracker": []}
    for r in range(a.rounds):
        kinds = list(times)
        kinds = kinds[r % 3 :] + kinds[: r % 3]  # rotate the order against drifts in the machine's speed
        for k in kinds:
            model = init_nets(net, 1, r)[0]
            opt = torch.optim.SGD(model.parameters(), lr=a.lr)
            if k == "plain":
                times[k].append(plain(model, opt, x, y, order))
            elif k == "hand-written":
                times[k].append(by_hand(model, opt, x, y, order, probes))
            else:
                times[k].append(tracked(model, opt, x, y, order, probes, not a.no_dataset))
    t = {k: np.array(v) for k, v in times.items()}
    ratio = t["Tracker"] / t["hand-written"]
    over_plain = t["hand-written"] / t["plain"]
    q = np.percentile(ratio, [25, 50, 75])
    print(f"{a.dataset}, MLP {a.width}x2, {a.probes} probes, {a.steps} steps, {a.threads} thread(s), {a.rounds} rounds")
    for k, v in t.items():
        print(f"  {k:13s} {1e3 * np.median(v) / a.steps:7.3f} ms/step (median over rounds)")
    print(f"  hand-written / plain loop: {np.median(over_plain):.2f}x")
    print(f"  Tracker / hand-written: {q[1]:.3f}x (quartiles {q[0]:.3f}-{q[2]:.3f})"
          f"{' (dataset() included)' if not a.no_dataset else ''}")  # fmt: skip
    print(f"# torch {torch.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
