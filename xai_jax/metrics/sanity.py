"""Model-randomisation sanity check (Adebayo et al., NeurIPS 2018, "Sanity Checks for
Saliency Maps"): re-initialise the layers cascading from the top (output) layer down and
measure, after each step, the Spearman rank correlation between each input's original and
randomised maps. A method that depends on the learned weights loses correlation.
"""

from __future__ import annotations

import numpy as np


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair (N, D) x (N, D). A constant row has no rank
    correlation: 1.0 when the two rows are identical (the map did not change), else 0.0,
    as metrics.map_similarity defines it."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim < 2 or len(a) == 0:
        raise ValueError(f"a and b must be non-empty batches (N, D...) of the same shape, got {a.shape} and {b.shape}")
    from xai_jax.metrics.similarity import map_similarity  # the one Spearman implementation, and its checks
    return map_similarity(a, b, "spearman").astype(np.float64)


def cascading_randomisation(*args, absolute: bool = True, batch_size: int | None = None,
                            precision: str | None = "highest", **kwargs) -> dict[str, float]:
    """{"original": 1.0, "<top layer>": rho, ..., "<bottom layer>": rho}: mean Spearman rho
    of the maps after randomising every layer from the top down to that one.

    An alias of `mprt(..., order="top_down", similarity="spearman", normalise=False)` (one
    implementation), in either of its forms: cascading_randomisation(model, xs, explanation,
    targets=None, *, key=None, ...) or the former (make_method, module, params, xs, targets,
    *, key, ...). absolute: compare |map| (as Adebayo et al. do for signed maps).
    """
    from xai_jax.metrics.randomisation import mprt
    result = mprt(*args, order="top_down", similarity="spearman", absolute=absolute, normalise=False,
                  batch_size=batch_size, precision=precision, **kwargs)
    return {"original": 1.0, **result["mean"]}
