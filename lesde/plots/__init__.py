"""lesde's presentation layer: figures from lesde Datasets, one module per kind.

Every function takes Datasets (none opens a file), draws on the ``ax=`` or ``fig=`` it is given or on a new
pyplot figure, and returns the Figure; none calls ``matplotlib.use``. `save_figure` writes a figure (PNG,
PDF, SVG, ... by the extension); ``lesde plot KIND FILE --out F`` opens, draws and saves
(`lesde.cli.cmd_plot`). The package reads Datasets only: it imports none of the packages that make them.

| kind | function | Dataset |
| --- | --- | --- |
| phase | `phase_plot` | `lesde.sweep.run` |
| nc | `plot_nc_metrics` | `lesde.metrics.to_dataset` |
| cosines | `plot_class_mean_cosines`, `plot_collapse` | `lesde.simulate` |
| elasticity | `plot_elasticity` | `lesde.empirical.estimate` |
| imitation | `plot_imitation`, `plot_imitation_diagnosis` | `lesde.empirical.imitate` |
| sgd | `plot_compare` | `lesde.sgd.compare` |
| theory | `plot_theory`, `plot_theory_panel` | `lesde.theory.attach` |
"""

from ._style import PALETTE, TITLES, MissingVariables, missing_variables, save_figure
from .empirical import plot_elasticity, plot_label_noise
from .imitation_plots import plot_imitation, plot_imitation_diagnosis
from .nc import class_mean_cosines, path_quantiles, plot_class_mean_cosines, plot_collapse, plot_nc_metrics
from .phase import phase_plot
from .sgd import plot_compare
from .theory import plot_theory, plot_theory_panel, theory_panels

#: ``lesde plot`` kinds and the file each reads (``lesde plot --help`` prints this table)
KINDS = {
    "phase": "a sweep store: lesde sweep SPEC.toml --store S.zarr",
    "nc": 'NC metrics over time: lesde simulate with [simulate] save = "metrics", lesde compare-sgd, or a file '
    "of lesde.metrics.to_dataset",
    "cosines": 'class means over time: lesde simulate with [simulate] save = "means" or "full"',
    "elasticity": "an estimate: lesde estimate ... --out EST.nc",
    "imitation": "an imitation: lesde imitate EST.nc --out IMIT.nc",
    "sgd": "a comparison of SGD, SME and gradient flow: lesde compare-sgd CONFIG.toml --out CMP.nc",
    "theory": "a file with the predictions attached: lesde compare-theory FILE --out F.nc",
}

__all__ = [
    "KINDS",
    "PALETTE",
    "TITLES",
    "MissingVariables",
    "missing_variables",
    "save_figure",
    "phase_plot",
    "plot_nc_metrics",
    "plot_class_mean_cosines",
    "plot_collapse",
    "class_mean_cosines",
    "path_quantiles",
    "plot_elasticity",
    "plot_imitation",
    "plot_imitation_diagnosis",
    "plot_label_noise",
    "plot_compare",
    "plot_theory",
    "plot_theory_panel",
    "theory_panels",
]
