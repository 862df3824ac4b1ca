"""Producing tracks: batch-size-1 SGD with every probe recorded (:func:`track`, or :class:`Tracker` in your own
loop) and the discrete LE process with a known E(t) (:func:`simulate_discrete`), the three recording one layout.

The modules in the order the data flows: :mod:`.track_inputs` (the training set checked, probes, seeds, sample
order) and :mod:`.track_options` (the options as objects, the checked request) -> the stacked engines
(:mod:`._engine`) and the record buffer (:mod:`._buffer`) with its zarr checkpoints (:mod:`._zarr_checkpoint`)
-> the producers (:mod:`.tracking`, :mod:`.tracker`, :mod:`.discrete_process`) -> :mod:`.track_layout`, the one
builder of the track Dataset.
"""

from __future__ import annotations

from ._zarr_checkpoint import CheckpointError
from .discrete_process import simulate_discrete
from .track_inputs import DEFAULT_RUNS, init_nets
from .track_options import Checkpoint, Validation
from .tracker import Tracker
from .tracking import track

__all__ = [
    "track",
    "Tracker",
    "simulate_discrete",
    "init_nets",
    "DEFAULT_RUNS",
    "Checkpoint",
    "CheckpointError",
    "Validation",
]
