from xai_jax.metrics.completeness import completeness_errors
from xai_jax.metrics.faithfulness import deletion_insertion, drop_increase, gaussian_blur, top_k_mask
from xai_jax.metrics.localisation import localisation_auroc, pointing_game, relevance_mass
from xai_jax.metrics.sanity import cascading_randomisation, spearman_rows
from xai_jax.metrics.stats import bootstrap_ci

__all__ = [
    "bootstrap_ci", "completeness_errors", "cascading_randomisation", "deletion_insertion", "drop_increase",
    "gaussian_blur",
    "localisation_auroc", "pointing_game", "relevance_mass", "spearman_rows", "top_k_mask",
]
