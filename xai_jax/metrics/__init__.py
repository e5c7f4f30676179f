"""Metrics, one module per family: model truth (faithfulness: drop/increase, deletion/insertion;
perturbation_curves: pixel flipping, region perturbation, ROAD; faithfulness_correlation),
ground truth (localisation), robustness (infidelity, max-sensitivity), randomisation (MPRT,
Smooth/Efficient MPRT, random logit, cascading), complexity (sparseness, complexity),
IG completeness, and bootstrap statistics."""

from xai_jax.metrics.completeness import completeness_errors
from xai_jax.metrics.complexity import complexity, sparseness
from xai_jax.metrics.faithfulness import (
    complement_log_odds,
    deletion_insertion,
    drop_increase,
    gaussian_blur,
    rise_blur_kernel,
    top_k_mask,
)
from xai_jax.metrics.faithfulness_correlation import faithfulness_correlation
from xai_jax.metrics.localisation import localisation_auroc, pointing_game, relevance_mass
from xai_jax.metrics.perturbation_curves import noisy_linear_imputation, pixel_flipping, region_perturbation, road
from xai_jax.metrics.randomisation import efficient_mprt, map_similarity, mprt, random_logit, smooth_mprt
from xai_jax.metrics.robustness import gaussian_perturbation, infidelity, max_sensitivity
from xai_jax.metrics.sanity import cascading_randomisation, spearman_rows
from xai_jax.metrics.stats import bootstrap_ci

__all__ = [
    "bootstrap_ci", "cascading_randomisation", "complement_log_odds", "completeness_errors", "complexity",
    "deletion_insertion", "drop_increase", "efficient_mprt", "faithfulness_correlation", "gaussian_blur",
    "gaussian_perturbation", "infidelity", "localisation_auroc", "map_similarity", "max_sensitivity", "mprt",
    "noisy_linear_imputation", "pixel_flipping", "pointing_game", "random_logit", "region_perturbation",
    "relevance_mass", "rise_blur_kernel", "road", "smooth_mprt", "sparseness", "spearman_rows", "top_k_mask",
]
