"""Re-exports of :mod:`lesde.plots.empirical` (the empirical figures' home since 0.2), where they were before."""

from ..plots.empirical import plot_elasticity, plot_imitation, plot_imitation_diagnosis, plot_label_noise

__all__ = ["plot_elasticity", "plot_imitation", "plot_imitation_diagnosis", "plot_label_noise"]
