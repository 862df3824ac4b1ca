"""Neural-collapse (NC) metrics, batched over any leading dims (path, time, run), and their xarray wrapper.

Two layers, xskillscore style: tensor kernels (`lesde.metrics.kernels`: `nc_metrics`,
`online_metrics`, `means_metrics`, `least_squares_classifier`) that take ``(..., N, m)`` features
and return one ``(...)`` tensor per metric, on the input's device with no Python loop over the leading dims; and
`to_dataset` (`lesde.metrics.dataset`), an ``xr.apply_ufunc(..., dask="parallelized")`` wrapper that
turns a simulation Dataset (``save="full"`` or ``save="means"``) into a metrics Dataset over its leading dims,
lazily for a chunked or zarr-backed one. Inputs are checked once, by the same functions
`lesde.separability` uses: float32 or float64 features (float16, bfloat16 and complex raise a TypeError),
finite values (NaN or inf raise a ValueError naming the input), integer labels covering every class 0..K-1.

Notation: K classes, class k holds n_k samples, N = sum n_k, pi_k = n_k / N; class means
mu_k; mu_G = the mean of the K class means (the unweighted mean, as in the Papyan code); centred means
Mbar = [mu_k - mu_G] (K, m); classifier W (K, m) with rows w_k and bias b (K,).

$$ \\Sigma_W = \\frac{1}{N} \\sum_i (h_i - \\mu_{y_i})(h_i - \\mu_{y_i})^\\top, \\qquad
\\Sigma_B = \\frac{1}{K} \\sum_k (\\mu_k - \\mu_G)(\\mu_k - \\mu_G)^\\top . $$

| name | definition |
| --- | --- |
| nc1 | tr(Sigma_W Sigma_B^+) / K; ``papyan=True`` drops the / K (the Papyan et al. code) |
| nc1_quotient | tr(Sigma_W) / tr(Sigma_B)  (Tirer et al.) |
| equinorm_means | std / mean of \\|\\|mu_k - mu_G\\|\\| over k (std with Bessel's correction, as the Papyan code) |
| equinorm_classifier | std / mean of \\|\\|w_k\\|\\| |
| equiangular_means | std over pairs k < l of cos(mu_k - mu_G, mu_l - mu_G) (Bessel; 0 when K = 2) |
| equiangular_classifier | std over pairs k < l of cos(w_k, w_l) |
| maxangle_means | mean over k != l of \\|cos(mu_k - mu_G, mu_l - mu_G) + 1/(K-1)\\| (Papyan "coherence") |
| maxangle_classifier | mean over k != l of \\|cos(w_k, w_l) + 1/(K-1)\\| |
| mean_cosine | mean over k != l of cos(mu_k - mu_G, mu_l - mu_G)  (-1/(K-1) at a simplex ETF) |
| etf_error | \\|\\| G / \\|\\|G\\|\\|_F - (I - 11^T/K) / sqrt(K-1) \\|\\|_F, G = Mbar Mbar^T  (Zhu et al.) |
| etf_error_classifier | the same with G = W W^T |
| self_duality | \\|\\| W / \\|\\|W\\|\\|_F - Mbar / \\|\\|Mbar\\|\\|_F \\|\\|_F^2  (squared, as the Papyan code) |
| ncc_mismatch | fraction of samples where argmax_k (W h + b)_k != argmin_k \\|\\|h - mu_k\\|\\|  (NC4) |
| cdnv | mean over pairs k < l of (Var_k + Var_l) / (2 \\|\\|mu_k - mu_l\\|\\|^2), Var_k = mean over class k of \\|\\|h_i - mu_k\\|\\|^2  (Galanti et al.) |
| nc_margin | min_i (z_{i, y_i} - max_{j != y_i} z_{ij}), z = W h + b  (the layer-peeled q_min, plus bias) |
| gnc2 | min_k dist(w_k, conv{w_j : j != k}) of the row-normalised classifier (GNC) |
| gnc3 | (1/K) sum_k (1 - cos(w_k, mu_k)), mu_k the raw (uncentred) class means (GNC; the default) |
| gnc3_unnormalized | (1/K) sum_k (1 - w_k^T mu_k / \\|\\|w_k\\|\\|), mu_k as they are: the GNC paper's GNC3 |
| gnc1_uncentered | tr(Sigma_W Sigma_B^+) / K with Sigma_B = (1/K) sum_k mu_k mu_k^T uncentred: the GNC paper's GNC1 |

**GNC defaults.** The GNC paper (Jiang et al.) writes GNC3 as (1/K) sum_k (1 - w_k^T mu_k) for unit classifier rows
and unnormalised class means of unit features, and GNC1 with an uncentred Sigma_B. lesde's defaults are ``gnc3``,
the cosine (scale-free, 0 exactly when each w_k points along its class mean, whatever the within-class spread and
the feature norm), and ``nc1``, with the centred Sigma_B of Papyan et al. (the between-class spread a classifier
sees; translation-free). The paper's versions are the named variants ``gnc3_unnormalized`` (also 0 only when the
features of each class collapse onto a unit vector along w_k, so on the sphere it adds the within-class spread to
the angle) and ``gnc1_uncentered`` (rank K instead of K-1, so it
depends on where the origin is); nc_metrics computes them by default, `lesde.sgd.DEFAULT_METRICS` records
them only when asked (``metrics="all"`` or by name).

Papyan et al.'s names are accepted as aliases wherever metric names are (`ALIASES`; the result holds the
metrics under their own names): ``nc2`` = equinorm_means, equiangular_means, maxangle_means, etf_error (the class
means); ``nc3`` = self_duality; ``nc4`` = ncc_mismatch.

Decisions where the sources are silent (what a researcher comparing with published curves would expect):

* **Imbalanced classes.** Sigma_W averages over samples (each sample weighs 1/N); Sigma_B and mu_G weigh
  classes equally (1/K), as in the Papyan code. For balanced classes both are the textbook definitions.
* **Pseudo-inverse.** Sigma_B^+ uses the top K-1 eigenpairs of Sigma_B, obtained from ``torch.linalg.eigh`` of the
  K x K Gram Mbar Mbar^T (same non-zero spectrum, times K; cheaper than the m x m matrix when m > K), so
  tr(Sigma_W Sigma_B^+) / K = sum_j v_j^T (Mbar Sigma_W Mbar^T) v_j / e_j^2 (the one place the / K is applied,
  or not, with ``papyan``). Of those eigenpairs, ones with
  e_j <= max(K, m) eps e_max (the ``torch.linalg.pinv`` rule) or below the noise floor (next point) are dropped.
* **Scale.** Features are divided by their largest absolute entry per item before anything is squared (and the
  classifier by its own; the same normalisation as `lesde.separability`), so features of magnitude 1e20 in float32 or 1e200 in float64 give the same answer as
  the rescaled state instead of overflowing. Every metric except ``nc_margin`` is scale-free; ``nc_margin`` is
  multiplied back by the two scales.
* **Noise floor.** A squared scatter (a trace, a squared norm) at or below
  ``floor = m * (4 sqrt(N) eps)^2`` in those normalised units (eps of the dtype; ``m * (4 eps)^2`` for the
  classifier) is round-off from centring, not signal, and is treated as exactly zero.
* **Degenerate inputs never give NaN or inf.** With ``R = 1 / eps`` of the dtype (4.5e15 for float64, 8.4e6 for
  float32; see `degenerate_ratio`), every ratio of scatters (nc1, nc1_quotient, cdnv pairs) uses
  0 / anything -> 0 (collapsed within-class scatter: perfect NC1), positive / 0 -> R (means coincide: the worst
  case), and is clipped to at most R. A zero vector has unit direction 0, so its cosines are 0: identical class
  means give equinorm 0, equiangular 0, maxangle 1/(K-1), mean_cosine 0, etf_error 1, and self_duality
  ||W / ||W||_F||^2 = 1; a zero classifier likewise. ``gnc2`` uses the rows normalised to the unit sphere (the
  oblique manifold of the GNC paper), a zero row staying zero.
* **Classifier metrics** need ``classifier`` (``bias`` defaults to 0), or ``use_least_squares=True``, where the
  least-squares classifier W_LS, b_LS of the same features stands in (`least_squares_classifier`).
  ``nc_margin`` and ``ncc_mismatch`` include the bias in the logits (the layer-peeled model has none; with b = 0 they agree).
* **gnc2** solves the K small simplex-constrained QPs min_lambda ||w_k - sum_j lambda_j w_j||^2 by accelerated
  projected gradient, polished by the exact KKT solve on the detected support and stopped once a duality gap
  certifies every QP of the batch (`lesde.theory.softmax_codes.one_vs_rest_distance` is the same solver); accurate to ~1e-10 in float64 on the
  configurations tested. It is the one metric with an iterative solver: pass ``names=`` without it where speed
  matters.

Examples
--------
>>> import torch, lesde.metrics as M
>>> labels = torch.arange(3).repeat_interleave(4)
>>> H = torch.randn(5, 12, 8, dtype=torch.float64)          # 5 paths, N = 12 samples, m = 8
>>> out = M.nc_metrics(H, labels, use_least_squares=True)
>>> out["nc1"].shape
torch.Size([5])
>>> list(M.nc_metrics(H, labels, use_least_squares=True, names=["nc2", "nc4"]))
['equinorm_means', 'equiangular_means', 'maxangle_means', 'etf_error', 'ncc_mismatch']
"""

from __future__ import annotations

from .dataset import to_dataset
from .inputs import amax_scale as _amax_scale  # noqa: F401  (lesde.simulate's recorder imports it from here)
from .inputs import degenerate_ratio
from .kernels import least_squares_classifier, means_metrics, nc_metrics, ncm_from_parts, online_metrics
from .statistics import ALIASES, MEANS_METRICS, METRIC_NAMES, ONLINE_METRICS, SEED_VARIANTS
from .statistics import class_split as _class_split  # noqa: F401  (likewise)

__all__ = [
    "ALIASES",
    "ONLINE_METRICS",
    "MEANS_METRICS",
    "METRIC_NAMES",
    "SEED_VARIANTS",
    "nc_metrics",
    "online_metrics",
    "means_metrics",
    "least_squares_classifier",
    "ncm_from_parts",
    "degenerate_ratio",
    "to_dataset",
]
