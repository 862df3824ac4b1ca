"""Re-exports of :mod:`lesde.plots.nc` (the NC figures' home since 0.2), where they were before."""

from .plots.nc import class_mean_cosines, path_quantiles, plot_class_mean_cosines, plot_collapse, plot_nc_metrics

__all__ = ["plot_nc_metrics", "plot_class_mean_cosines", "plot_collapse", "class_mean_cosines", "path_quantiles"]
