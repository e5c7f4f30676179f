"""Ground-truth localisation: compare a saliency map with a known support mask.

On MNIST-1D the support is where the digit's template lies (xai_jax.data.mnist1d).
- pointing game (Zhang et al. 2016): is the most salient position inside the support?
- relevance mass (Arras et al. 2022): share of the positive relevance inside the support.
- AUROC: the saliency as a score for "inside the support" (Mann-Whitney U, ties averaged).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _check(saliency, support) -> tuple[np.ndarray, np.ndarray]:
    saliency = np.asarray(saliency, np.float64)
    support = np.asarray(support, bool)
    if saliency.shape != support.shape:
        raise ValueError(f"saliency {saliency.shape} and support {support.shape} must have the same shape")
    saliency = saliency.reshape(saliency.shape[0], -1)
    support = support.reshape(support.shape[0], -1)
    if not support.any(1).all() or support.all(1).any():
        raise ValueError("every support mask must hold at least one position inside and one outside")
    return saliency, support


def pointing_game(saliency, support) -> np.ndarray:
    """(N,) 1.0 where the argmax of the map lies in the support."""
    sal, sup = _check(saliency, support)
    return sup[np.arange(len(sal)), sal.argmax(1)].astype(np.float64)


def relevance_mass(saliency, support) -> np.ndarray:
    """(N,) sum of positive relevance inside / sum of positive relevance (0 if none)."""
    sal, sup = _check(saliency, support)
    pos = np.maximum(sal, 0)
    total = pos.sum(1)
    return np.where(total > 0, (pos * sup).sum(1) / np.where(total > 0, total, 1), 0.0)


def localisation_auroc(saliency, support) -> np.ndarray:
    """(N,) AUROC of the map against the mask; 0.5 is chance, 1.0 perfect."""
    sal, sup = _check(saliency, support)
    ranks = rankdata(sal, axis=1)
    n_pos = sup.sum(1)
    n_neg = sup.shape[1] - n_pos
    u = (ranks * sup).sum(1) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)
