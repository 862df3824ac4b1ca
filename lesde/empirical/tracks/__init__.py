"""Producing tracks: batch-size-1 SGD with every probe recorded (:func:`track`, or :class:`Tracker` in your own
loop) and the discrete LE process with a known E(t) (:func:`simulate_discrete`), all three recording one layout."""

from __future__ import annotations

from .discrete_process import simulate_discrete
from .tracker import Tracker
from .tracking import DEFAULT_RUNS, init_nets, track

__all__ = ["track", "Tracker", "simulate_discrete", "init_nets", "DEFAULT_RUNS"]
