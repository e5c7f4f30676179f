"""Summary statistics for per-input metric values."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lower, upper): percentile bootstrap confidence interval of the mean."""
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0:
        raise ValueError("values is empty")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(1)
    alpha = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
