"""Empirical elasticity: train networks with batch size 1, track every probe, estimate, fit and imitate E(t).

The stages follow the data:

``data.load_dataset`` -> ``nets.mlp`` / ``nets.cnn`` -> `.tracks` (``track``, or ``Tracker`` in your own
training loop, or ``simulate_discrete``, the ground truth; one track layout) -> `.estimation` (``estimate``:
the feature, residual and means forms) -> ``fitting.fit`` -> ``imitation.imitate`` (and ``imitation.drift_check``);
`.experiments` runs many tracked runs of many settings as cells (here or on a Dask cluster, into one resumable
store: ``Experiment``, ``run_experiment``, ``experiment_tracks``), and ``label_corruption`` is the paper's
label-corruption experiment on them. The command-line jobs (``lesde estimate``, ``lesde imitate``) are in
`lesde.cli`.
"""

from __future__ import annotations

from .data import load_dataset
from .estimation import estimate
from .experiments import (
    DatasetLoader,
    Experiment,
    ExperimentIncomplete,
    ExperimentInterrupted,
    experiment_tracks,
    open_experiment,
    run_experiment,
)
from .fitting import FitResult, ParamFit, fit
from .imitation import drift_check, imitate
from .label_corruption import RATES, label_noise_experiment, tail_index
from .nets import Classifier, cnn, mlp
from .tail_statistics import tail_statistics
from .tracks import DEFAULT_RUNS, Checkpoint, Tracker, Validation, init_nets, simulate_discrete, track
from .tracks.tracker import combine_runs

__all__ = [
    "load_dataset",
    "mlp",
    "cnn",
    "Classifier",
    "track",
    "Checkpoint",
    "Validation",
    "Tracker",
    "combine_runs",
    "init_nets",
    "simulate_discrete",
    "estimate",
    "fit",
    "FitResult",
    "ParamFit",
    "imitate",
    "drift_check",
    "Experiment",
    "DatasetLoader",
    "run_experiment",
    "open_experiment",
    "experiment_tracks",
    "ExperimentInterrupted",
    "ExperimentIncomplete",
    "label_noise_experiment",
    "tail_index",
    "tail_statistics",
    "DEFAULT_RUNS",
    "RATES",
]
