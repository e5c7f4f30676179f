"""Ground-truth localisation: compare a saliency map with a known support mask.

On MNIST-1D the support is where the digit's template lies (xai_jax.study.data.mnist1d).
- pointing game (Zhang et al. 2016): is the most salient position inside the support?
  Ties at the maximum count as a uniformly random pick among them (the expectation).
- relevance mass (Arras et al. 2022): share of the positive relevance inside the support;
  `shift="min"` first subtracts each map's minimum, so a constant offset (RISE's maps are
  all positive) does not dilute it.
- AUROC: the saliency as a score for "inside the support" (Mann-Whitney U, ties averaged).

Signed maps (IG, Gradient x Input) carry negative evidence inside the support too; these
metrics rank it below noise. Pass |map| for the magnitude view (xai_jax.study.suite reports both
and ranks signed methods by the absolute variant: a position's relevance is its magnitude,
the sign its direction).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from xai_jax.checks import check_finite_maps


def _check(saliency, support, who: str) -> tuple[np.ndarray, np.ndarray]:
    """Finite maps (N >= 1, ...) and boolean (or 0/1) supports of the same shape."""
    support = np.asarray(support)
    if support.dtype != bool:
        if not np.issubdtype(support.dtype, np.number) or not np.isin(support, (0, 1)).all():
            raise TypeError(f"support must be a boolean mask (or 0/1), got dtype {support.dtype}")
        support = support.astype(bool)
    if support.ndim < 2 or support.shape[0] == 0:
        raise ValueError(f"{who} needs at least one input: support must be (N >= 1, ...), got shape {support.shape}")
    saliency = check_finite_maps(saliency, support.shape, like="the same shape as support").astype(np.float64)
    saliency = saliency.reshape(saliency.shape[0], -1)
    support = support.reshape(support.shape[0], -1)
    if not support.any(1).all() or support.all(1).any():
        raise ValueError("every support mask must hold at least one position inside and one outside")
    return saliency, support


def pointing_game(saliency, support) -> np.ndarray:
    """(N,) 1.0 where the map's maximum lies in the support; with several positions at the
    maximum, the share of them inside (the expectation over a random pick, no index bias)."""
    sal, sup = _check(saliency, support, "pointing_game")
    at_max = sal == sal.max(1, keepdims=True)
    return (at_max & sup).sum(1) / at_max.sum(1)


SHIFTS = ("none", "min")


def relevance_mass(saliency, support, *, shift: str = "none") -> np.ndarray:
    """(N,) sum of positive relevance inside / sum of positive relevance (0 if none).

    shift="min": the map minus its minimum (offset-invariant: a map c + g scores as g does).
    """
    if not isinstance(shift, str) or shift not in SHIFTS:
        raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}")
    sal, sup = _check(saliency, support, "relevance_mass")
    if shift == "min":
        sal = sal - sal.min(1, keepdims=True)
    pos = np.maximum(sal, 0)
    total = pos.sum(1)
    return np.where(total > 0, (pos * sup).sum(1) / np.where(total > 0, total, 1), 0.0)


def localisation_auroc(saliency, support) -> np.ndarray:
    """(N,) AUROC of the map against the mask; 0.5 is chance, 1.0 perfect."""
    sal, sup = _check(saliency, support, "localisation_auroc")
    ranks = rankdata(sal, axis=1)
    n_pos = sup.sum(1)
    n_neg = sup.shape[1] - n_pos
    u = (ranks * sup).sum(1) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)
