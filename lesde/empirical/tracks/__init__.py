"""Producing tracks: batch-size-1 SGD with every probe recorded (`track`, or `Tracker` in your own
loop) and the discrete LE process with a known E(t) (`simulate_discrete`), the three recording one layout.

The modules in the order the data flows: `.track_inputs` (the training set checked, probes, seeds, sample
order) and `.track_options` (the options as objects, the checked request) -> the stacked engines
(`._engine`) and the record buffer (`._buffer`) with its zarr checkpoints (`._zarr_checkpoint`)
-> the producers (`.tracking`, `.tracker`, `.discrete_process`) -> `.track_layout`, the one
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
