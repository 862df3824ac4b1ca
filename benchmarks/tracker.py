"""What ``Tracker`` costs in a user's loop, against a hand-written recording of the same probes, side by side.

What is compared and why: a researcher who keeps their own training loop chooses between ``Tracker`` and writing
the recording by hand. The hand-written recording here is the least one can write that records the same data:
after each ``optimizer.step()``, one ``no_grad`` forward of the probes into a preallocated tensor, the trained
sample's output of the training forward, its index, and the features' one-step increment. ``Tracker`` records the
same and also checks the loop (which forward trained the sample, one update per call, the update rule on the first
steps; :mod:`lesde.empirical.tracks._step_watch`). The plain loop without any recording is timed for scale.

Measurement: the machine is shared and its speed drifts within seconds, so each of ``--rounds`` rounds trains
three copies of the network on the same ``--steps`` samples, interleaved step by step (one step of each loop in
turn, the order rotating every step, each step timed on its own), and forms the ratio Tracker / hand-written within
the round; the median and quartiles over rounds are reported. The ``Tracker`` time includes ``dataset()``
(building the Dataset from the records), the hand-written one no Dataset at all, so the ratio if anything
overstates the Tracker's cost; ``--no-dataset`` leaves it out.

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

KINDS = ("plain", "hand-written", "Tracker")


class Loop:
    """One model trained step by step, recorded by hand, by a Tracker, or not at all (``kind``)."""

    def __init__(self, kind: str, model, x, y, probes, steps: int, lr: float):
        self.kind, self.model, self.x, self.y = kind, model, x, y
        self.opt = torch.optim.SGD(model.parameters(), lr=lr)
        self.tracker = None
        if kind == "Tracker":
            self.tracker = Tracker(model, x, y, optimizer=self.opt, probes=probes, steps=steps)
        elif kind == "hand-written":
            self.px = x[probes]
            with torch.no_grad():
                first = model(self.px)
            self.feats = torch.empty((steps + 1,) + first.shape, dtype=first.dtype)
            self.incr = torch.empty_like(self.feats)
            self.s_out = torch.empty((steps + 1, first.shape[-1]), dtype=first.dtype)
            self.idx = torch.empty(steps + 1, dtype=torch.long)
            self.feats[0] = first
        self.s = 0

    def step(self, i: int) -> None:
        x, y, model, opt = self.x, self.y, self.model, self.opt
        opt.zero_grad()
        out = model(x[i : i + 1])
        F.cross_entropy(out, y[i : i + 1]).backward()
        opt.step()
        self.s = s = self.s + 1
        if self.kind == "Tracker":
            self.tracker.step(i, y[i])
        elif self.kind == "hand-written":
            self.s_out[s] = out.detach()[0]
            self.idx[s] = i
            with torch.no_grad():
                self.feats[s] = model(self.px)
            torch.sub(self.feats[s], self.feats[s - 1], out=self.incr[s])


def one_round(net, x, y, probes, order, lr, seed, dataset: bool) -> dict[str, float]:
    """Seconds of each loop over the same steps, interleaved step by step (the order rotating every step)."""
    loops = [Loop(k, init_nets(net, 1, seed)[0], x, y, probes, len(order), lr) for k in KINDS]
    spent = dict.fromkeys(KINDS, 0.0)
    for s, i in enumerate(order.tolist()):
        for k in range(len(loops)):
            loop = loops[(s + k) % len(loops)]
            t0 = time.perf_counter()
            loop.step(i)
            spent[loop.kind] += time.perf_counter() - t0
    tr = loops[KINDS.index("Tracker")].tracker
    if dataset:
        t0 = time.perf_counter()
        tr.dataset()
        spent["Tracker"] += time.perf_counter() - t0
    tr.close()
    return spent


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
    times = {k: [] for k in KINDS}
    one_round(net, x, y, probes, order[:20], a.lr, 0, True)  # imports and first-call costs outside the timing
    for r in range(a.rounds):
        for k, v in one_round(net, x, y, probes, order, a.lr, r, not a.no_dataset).items():
            times[k].append(v)
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
