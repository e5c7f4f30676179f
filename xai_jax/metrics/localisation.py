"""Ground-truth localisation: compare a saliency map with a known support mask.

On MNIST-1D the support is where the digit's template lies (xai_jax.data.mnist1d).
- pointing game (Zhang et al. 2016): is the most salient position inside the support?
- relevance mass (Arras et al. 2022): share of the positive relevance inside the support.
- AUROC: the saliency as a score for "inside the support" (Mann-Whitney U, ties averaged).
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
    """(N,) 1.0 where the argmax of the map lies in the support."""
    sal, sup = _check(saliency, support, "pointing_game")
    return sup[np.arange(len(sal)), sal.argmax(1)].astype(np.float64)


def relevance_mass(saliency, support) -> np.ndarray:
    """(N,) sum of positive relevance inside / sum of positive relevance (0 if none)."""
    sal, sup = _check(saliency, support, "relevance_mass")
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
