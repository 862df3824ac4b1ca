"""The tables of the Dataset schema: each known variable's ``long_name`` and ``units`` (`VARIABLE_ATTRS`),
its trailing dims (`VARIABLE_DIMS`), the index coordinates' descriptions and the ``time`` coordinate's for
each kind of Dataset (`TIME_ATTRS`). Data only: `lesde.schema` builds Datasets with them."""

from __future__ import annotations

_INDEX = {  # index coordinates: a long_name, no units
    "path": "path index",
    "class": "class index",
    "class_other": "class index (second of a pair)",
    "feature": "feature coordinate",
    "feature_other": "feature coordinate (second of a pair)",
    "sample": "sample index",
    "run": "independent training run (or SDE path aligned with one)",
    "step": "training step",
    "probe": "probe sample index",
    "process": "stochastic process",
    "component": "component of the flattened SDE state",
    "snr_mode": "nonzero singular value of the SNR matrix, largest first",
    "setting": "experiment setting (the keywords of its data)",
}

_METRIC_LONG = {
    "nc1": "NC1: tr(Sigma_W Sigma_B^+) / K",
    "nc1_quotient": "NC1 quotient tr(Sigma_W) / tr(Sigma_B)",
    "etf_error": "Frobenius distance of the normalised Gram to the simplex ETF",
    "etf_error_classifier": "Frobenius distance of the normalised W W^T to the simplex ETF",
    "self_duality": "||W^T/||W|| - M/||M|| ||_F^2",
    "mean_cosine": "mean pairwise cosine of centred class means",
    "gnc2": "GNC2: minimum one-vs-rest distance of the classifier",
    "nc_margin_normalized": "q_min(W, H) / (||W||_F^2 + ||H||_F^2)",
    "class_mean": "class mean of the features (mean over paths)",
    "class_mean_var": "variance over paths of the class means",
    "snr": "singular values of the SNR matrix Sigma_W^{-1/2} Mbar",
}
#: the measured variables lesde.theory may put a ``<name>_predicted`` beside
_PREDICTED_METRICS = tuple(_METRIC_LONG)

#: the NC metrics of :mod:`lesde.metrics` (and the mean cosine); each may get a ``<metric>_predicted``
_NC_METRIC_ATTRS: dict[str, dict[str, str]] = {
    "nc1": {"long_name": "NC1: tr(Sigma_W Sigma_B^+) / K", "units": "1"},
    "nc1_quotient": {"long_name": "NC1 quotient tr(Sigma_W) / tr(Sigma_B)", "units": "1"},
    "equinorm_means": {"long_name": "std/mean of centred class-mean norms", "units": "1"},
    "equinorm_classifier": {"long_name": "std/mean of classifier row norms", "units": "1"},
    "equiangular_means": {"long_name": "std of pairwise cosines of centred class means", "units": "1"},
    "equiangular_classifier": {"long_name": "std of pairwise cosines of classifier rows", "units": "1"},
    "maxangle_means": {"long_name": "mean |cos + 1/(K-1)| of centred class means", "units": "1"},
    "maxangle_classifier": {"long_name": "mean |cos + 1/(K-1)| of classifier rows", "units": "1"},
    "etf_error": {"long_name": "Frobenius distance of the normalised Gram to the simplex ETF", "units": "1"},
    "etf_error_classifier": {
        "long_name": "Frobenius distance of the normalised W W^T to the simplex ETF",
        "units": "1",
    },
    "self_duality": {"long_name": "||W^T/||W|| - M/||M|| ||_F^2", "units": "1"},
    "ncc_mismatch": {"long_name": "fraction where the classifier and nearest class centre disagree", "units": "1"},
    "cdnv": {"long_name": "class-distance normalised variance, mean over pairs", "units": "1"},
    "nc_margin": {"long_name": "neural-collapse margin min_i (w_y h - max_j w_j h)", "units": "1"},
    "gnc2": {"long_name": "GNC2: minimum one-vs-rest distance of the classifier", "units": "1"},
    "gnc3": {"long_name": "GNC3: mean 1 - cos(w_k, mu_k)", "units": "1"},
    "gnc3_unnormalized": {
        "long_name": "GNC3 of the GNC paper: mean 1 - w_k^T mu_k / ||w_k||, mu_k unnormalised",
        "units": "1",
    },
    "gnc1_uncentered": {
        "long_name": "GNC1 of the GNC paper: tr(Sigma_W Sigma_B^+) / K, Sigma_B uncentred",
        "units": "1",
    },
    "mean_cosine": {"long_name": "mean pairwise cosine of centred class means", "units": "1"},
}

VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    # --- coordinates ---
    **{name: {"long_name": long} for name, long in _INDEX.items()},
    "label": {"long_name": "class label of each sample"},
    "time": {"long_name": "time", "units": "1"},  # replaced by TIME_ATTRS[kind] where the builder names the kind
    # --- core simulation ---
    "features": {"long_name": "sample features X_i", "units": "1"},
    "class_mean": {"long_name": "class mean of the features", "units": "1"},
    "within_var": {"long_name": "within-class variance: mean over samples of ||X_i - Xbar_k||^2", "units": "1"},
    "state": {"long_name": "flattened SDE state", "units": "1"},
    # --- metrics ---
    **_NC_METRIC_ATTRS,
    # --- separability ---
    "separable_fraction": {"long_name": "fraction of class pairs separable", "units": "1"},
    "p_all_separable": {"long_name": "probability over paths that all class pairs are separable", "units": "1"},
    "p_all_separable_lower": {"long_name": "Wilson lower bound of p_all_separable", "units": "1"},
    "p_all_separable_upper": {"long_name": "Wilson upper bound of p_all_separable", "units": "1"},
    "separable_fraction_lower": {"long_name": "Wilson lower bound of the mean separable fraction", "units": "1"},
    "separable_fraction_upper": {"long_name": "Wilson upper bound of the mean separable fraction", "units": "1"},
    "all_separable": {"long_name": "all class pairs separable", "units": "1"},
    "separable": {"long_name": "class pair separable", "units": "1"},
    # --- SGD ---
    "loss": {"long_name": "training loss", "units": "1"},
    "accuracy": {"long_name": "training accuracy", "units": "1"},
    "classifier": {"long_name": "last-layer classifier rows w_k", "units": "1"},
    "bias": {"long_name": "classifier bias b_k", "units": "1"},
    "batch_counts": {"long_name": "times each sample was drawn into the step's minibatch", "units": "1"},
    "n_diverged": {"long_name": "runs whose parameters became NaN/inf (NaN from then on)", "units": "1"},
    # --- empirical elasticity ---
    "sampled_index": {"long_name": "index of the sample trained on at this step", "units": "1"},
    "sampled_label": {"long_name": "label of the sample trained on at this step", "units": "1"},
    "alpha": {"long_name": "intra-class elasticity alpha_t", "units": "1"},
    "beta": {"long_name": "inter-class elasticity beta_t", "units": "1"},
    "E": {"long_name": "elasticity matrix E(t)", "units": "1"},
    "validation_accuracy": {"long_name": "accuracy on the held-out validation set", "units": "1"},
    "validation_loss": {"long_name": "mean cross-entropy on the held-out validation set", "units": "1"},
    # --- empirical elasticity: estimates (lesde.empirical.estimate) ---
    "alpha_se": {"long_name": "standard error of alpha (clustered, see attrs se_cluster)", "units": "1"},
    "beta_se": {"long_name": "standard error of beta (clustered, see attrs se_cluster)", "units": "1"},
    "E_se": {"long_name": "standard error of E", "units": "1"},
    "alpha_lower": {"long_name": "lower confidence bound of alpha", "units": "1"},
    "alpha_upper": {"long_name": "upper confidence bound of alpha", "units": "1"},
    "beta_lower": {"long_name": "lower confidence bound of beta", "units": "1"},
    "beta_upper": {"long_name": "upper confidence bound of beta", "units": "1"},
    "dof": {"long_name": "degrees of freedom of the intervals (clusters - 1)", "units": "1"},
    "alpha_by_weighting": {"long_name": "alpha under each weighting (estimand)", "units": "1"},
    "alpha_by_weighting_se": {"long_name": "standard error of alpha under each weighting", "units": "1"},
    "beta_by_weighting": {"long_name": "beta under each weighting (estimand)", "units": "1"},
    "beta_by_weighting_se": {"long_name": "standard error of beta under each weighting", "units": "1"},
    "alpha_disagreement": {"long_name": "z-score of alpha(increment) - alpha(step)", "units": "1"},
    "beta_disagreement": {"long_name": "z-score of beta(increment) - beta(step)", "units": "1"},
    "alpha_integrated": {"long_name": "integrated intra-class elasticity A(t) = int_0^t alpha", "units": "1"},
    "beta_integrated": {"long_name": "integrated inter-class elasticity B(t) = int_0^t beta", "units": "1"},
    "noise": {"long_name": "residual diffusion scale sigma_hat", "units": "1"},
    "n_obs": {"long_name": "(probe, step) observations pooled in the window", "units": "1"},
    "n_steps": {"long_name": "steps pooled in the window", "units": "1"},
    "n_excluded": {"long_name": "steps dropped: regressor at rounding level", "units": "1"},
    "step_start": {"long_name": "first step of the window", "units": "1"},
    "step_stop": {"long_name": "last step of the window", "units": "1"},
    "alpha_beta_cov": {"long_name": "clustered covariance of alpha and beta", "units": "1"},
    "alpha_minus_beta": {"long_name": "alpha - beta (intra- minus inter-class elasticity)", "units": "1"},
    "alpha_minus_beta_se": {"long_name": "standard error of alpha - beta (their covariance included)", "units": "1"},
    "alpha_minus_beta_lower": {"long_name": "lower confidence bound of alpha - beta", "units": "1"},
    "alpha_minus_beta_upper": {"long_name": "upper confidence bound of alpha - beta", "units": "1"},
    "alpha_over_beta": {"long_name": "alpha / beta", "units": "1"},
    "alpha_over_beta_ci_low": {"long_name": "lower Fieller confidence bound of alpha / beta", "units": "1"},
    "alpha_over_beta_ci_high": {"long_name": "upper Fieller confidence bound of alpha / beta", "units": "1"},
    "alpha_minus_beta_by_weighting": {"long_name": "alpha - beta under each weighting (estimand)", "units": "1"},
    "alpha_minus_beta_by_weighting_se": {
        "long_name": "standard error of alpha - beta under each weighting",
        "units": "1",
    },
    "alpha_beta_cov_by_weighting": {"long_name": "covariance of alpha and beta under each weighting", "units": "1"},
    "block_length": {"long_name": "steps per block of the single-run standard errors", "units": "1"},
    # --- empirical elasticity: label corruption (lesde.empirical.label_noise_experiment) ---
    "rate": {"long_name": "label-noise rate p", "units": "1"},
    "tail_alpha": {"long_name": "tail index r of the integrated alpha, per run", "units": "1"},
    "tail_beta": {"long_name": "tail index r of the integrated beta, per run", "units": "1"},
    "tail_alpha_pooled": {"long_name": "tail index r of the integrated alpha, estimate pooled over runs", "units": "1"},
    "tail_beta_pooled": {"long_name": "tail index r of the integrated beta, estimate pooled over runs", "units": "1"},
    "train_accuracy": {"long_name": "final probe accuracy on the (corrupted) training labels", "units": "1"},
    **{
        f"tail_{q}_{stat}": {"long_name": f"{what} tail index r of the integrated {q}, over runs", "units": "1"}
        for q in ("alpha", "beta")
        for stat, what in (
            ("mean", "mean of the per-run"),
            ("se", "standard error of the mean of the per-run"),
            ("ci_low", "lower confidence bound of the mean of the per-run"),
            ("ci_high", "upper confidence bound of the mean of the per-run"),
        )
    },
    "tail_runs": {"long_name": "runs with a finite tail index", "units": "1"},
    # --- empirical elasticity: imitation (lesde.empirical.imitate) ---
    "relative_error": {
        "long_name": "||class means (LE-SDE) - class means (network)||_F / ||network||_F",
        "units": "1",
    },
    "relative_error_median": {"long_name": "median over runs of relative_error", "units": "1"},
    "ncm_accuracy": {"long_name": "nearest-class-mean accuracy of the probes", "units": "1"},
    "separation_time": {"long_name": "first time the NCM accuracy reaches separation_level (inf: never)", "units": "1"},
    "class_mean_error": {"long_name": "||class means - network's||_F / ||network's||_F", "units": "1"},
    "centred_cosine": {"long_name": "cosine of centred class-mean displacements with the network's", "units": "1"},
    "gram_distance": {
        "long_name": "distance of normalised centred class-mean Gram matrices to the network's",
        "units": "1",
    },
    "nc1_log_ratio": {"long_name": "|log(nc1_quotient / network's nc1_quotient)|", "units": "1"},
    "ncm_accuracy_gap": {"long_name": "|NCM accuracy - network's NCM accuracy|", "units": "1"},
    "separation_time_log_ratio": {"long_name": "|log(separation time / network's)|", "units": "1"},
    "discrepancy": {"long_name": "median over runs and times of each comparison's discrepancy", "units": "1"},
    "skill": {"long_name": "1 - discrepancy / the frozen network's discrepancy", "units": "1"},
    # --- sweeps ---
    "done": {"long_name": "sweep cell finished and written (1) or missing (0)", "units": "1"},
    "method": {"long_name": "integration method that produced the sweep cell", "units": "1"},
    "status": {"long_name": "sweep cell status: pending, ok or failed (message in attrs failed_cells)", "units": "1"},
    # --- empirical experiments (lesde.empirical.run_experiment) ---
    "seconds": {"long_name": "wall time of the experiment cell where it ran", "units": "s"},
    "cpu_seconds": {"long_name": "CPU time of the experiment cell's process while it ran", "units": "s"},
    "separable_pairs": {"long_name": "separable class pairs, summed over the cell's paths (-1: none)", "units": "1"},
    "all_separable_paths": {"long_name": "paths on which every class pair is separable (-1: none)", "units": "1"},
    # --- theory (lesde.theory.attach adds these; each carries a `prediction` attr naming the result) ---
    **{
        f"{name}_predicted": {"long_name": f"predicted {_METRIC_LONG[name]}", "units": "1"}
        for name in _PREDICTED_METRICS
    },
    "tb_rho": {"long_name": "Tirer-Bruna rho: Hbar^T Hbar = rho I_K at the minimizer", "units": "1"},
    "loss_predicted": {"long_name": "training objective at the predicted minimizer", "units": "1"},
    "loss_gap": {"long_name": "training objective minus its value at the predicted minimizer", "units": "1"},
    "tb_distance": {"long_name": "||W H - W* H*||_F / ||Y||_F to the Tirer-Bruna minimizer", "units": "1"},
    "tb_gram_distance": {"long_name": "||H^T H - H*^T H*||_F / ||Y^T Y||_F to the Tirer-Bruna minimizer", "units": "1"},
    "snr": {"long_name": "singular values of the SNR matrix Sigma_W^{-1/2} Mbar", "units": "1"},
    "snr_distance": {"long_name": "max over modes of |log(snr / snr_predicted)|", "units": "1"},
    "central_path_departure": {"long_name": "L_perp / L: share of the loss off the central path", "units": "1"},
    "nc_margin_normalized": {"long_name": "q_min(W, H) / (||W||_F^2 + ||H||_F^2)", "units": "1"},
    "nc_margin_gap": {"long_name": "predicted minus measured normalised NC margin", "units": "1"},
    "gnc2_gap": {"long_name": "softmax-code one-vs-rest distance minus measured gnc2", "units": "1"},
    "class_mean_var": {"long_name": "variance over paths of the class means", "units": "1"},
    "class_mean_zscore": {"long_name": "max |mean over paths - predicted mean| / its standard error", "units": "1"},
    "class_mean_var_zscore": {
        "long_name": "max |variance over paths - predicted variance| / its standard error",
        "units": "1",
    },
    "mean_cosine_distance": {"long_name": "|mean_cosine - (-1/(K-1))|", "units": "1"},
    "phase": {"long_name": "measured phase: p_all_separable > 1/2 at the summary time", "units": "1"},
    "predicted_phase": {"long_name": "predicted phase: 1 separable, 0 not, NaN where no prediction", "units": "1"},
    "phase_agreement": {"long_name": "measured phase equals predicted phase (NaN where none)", "units": "1"},
    "predicted_phase_limit": {"long_name": "t -> infinity phase: 1 separable, 0 not, NaN where no rule", "units": "1"},
    "phase_prediction_kind": {"long_name": "what predicted_phase rests on (flag_meanings)", "units": "1"},
    "p_separable_predicted": {"long_name": "predicted P(all class pairs separable at t)", "units": "1"},
    "n_paths_finite": {"long_name": "paths with finite class means (the count of the moments)", "units": "1"},
    "nc_margin_log_slope": {"long_name": "d nc_margin / d log t (loss below log 2)", "units": "1"},
    "nc_margin_log_slope_predicted": {"long_name": "predicted limit of d nc_margin / d log t", "units": "1"},
    "nc_margin_log_slope_gap": {"long_name": "measured minus predicted d nc_margin / d log t", "units": "1"},
    "max_margin_distance": {
        "long_name": "||W H / (||W||^2 + ||H||^2) - Z*||_F / ||Z*||_F to the max-margin logits",
        "units": "1",
    },
    "ce_rho": {"long_name": "||w_k||^2 at the regularised CE UFM minimizer", "units": "1"},
    "ce_distance": {"long_name": "||W H - W* H*||_F / ||W* H*||_F to the CE UFM minimizer", "units": "1"},
}
#: every NC metric may get a ``<metric>_predicted`` beside it (its value at a predicted point)
for _name, _attrs in _NC_METRIC_ATTRS.items():
    VARIABLE_ATTRS.setdefault(f"{_name}_predicted", {"long_name": f"predicted {_attrs['long_name']}", "units": "1"})

#: Trailing dims of each known variable, after the Dataset's leading dims (a variable not listed has none: one
#: value per item, like every NC metric). A builder whose layout differs passes ``(dims, values)`` instead.
VARIABLE_DIMS: dict[str, tuple[str, ...]] = {
    **{name: () for name in VARIABLE_ATTRS if name not in _INDEX and name not in ("label", "time")},
    "features": ("sample", "feature"),
    "class_mean": ("class", "feature"),
    "within_var": ("class",),
    "state": ("component",),
    "classifier": ("class", "feature"),
    "bias": ("class",),
    "separable": ("class", "class_other"),
    "E": ("class", "class_other"),
    "batch_counts": ("sample",),  # on (run, step): the minibatch of each step
    "class_mean_predicted": ("class", "feature"),  # on (time,): moments over paths
    "class_mean_var_predicted": ("class", "feature"),
    "class_mean_var": ("class", "feature"),
    "snr": ("snr_mode",),
    "snr_predicted": ("snr_mode",),
}

#: ``time`` coordinate attrs for each kind of Dataset (``make_dataset(time=...)``).
TIME_ATTRS: dict[str, dict[str, str]] = {
    "sde": {"long_name": "SDE time t", "units": "1"},
    "training": {"long_name": "training time t = step x learning rate", "units": "1"},
}
