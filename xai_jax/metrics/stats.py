"""Summary statistics for per-input metric values."""

from __future__ import annotations

import warnings

import numpy as np

from xai_jax.checks import check_float, check_int


def bootstrap_ci(values, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lower, upper): percentile bootstrap confidence interval of the mean.

    One value has no spread to resample: (value, NaN, NaN) with a RuntimeWarning, as
    MetricResult.ci gives (NaN, NaN) for fewer than 2 finite scores (a zero-width interval
    would claim certainty). Two or more values: the interval (zero-width only for equal values)."""
    if values is None or isinstance(values, (str, bytes)):
        raise TypeError(f"values must be a sequence or array of real numbers, got {type(values).__name__}")
    raw = np.asarray(values)
    if raw.dtype == object or not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)
                                   or raw.dtype == bool):
        raise TypeError(f"values must be real numbers, got an array of dtype {raw.dtype}")
    v = raw.astype(np.float64).ravel()
    if v.size == 0:
        raise ValueError("bootstrap_ci needs at least one value; values is empty")
    if not np.isfinite(v).all():
        raise ValueError(f"values contains {int((~np.isfinite(v)).sum())} NaN or inf entries")
    check_int(n_boot, "n_boot", 1)
    check_int(seed, "seed", 0)
    check_float(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
    if v.size == 1:
        warnings.warn("bootstrap_ci got one value: a confidence interval needs at least 2, so its bounds are NaN",
                      RuntimeWarning, stacklevel=2)
        return float(v[0]), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(1)
    alpha = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
