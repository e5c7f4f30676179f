"""MetricResult: what every metric returns.

A read-only Mapping that keeps each metric's own keys (r["drop_rate"], r["similarity"], ...)
and adds, per output:
    .scores            per-input values: an (N,) array, or {output name: (N,) array}
    .mean              their mean (NaN scores left out), a float or {output: float}
    .ci                95% percentile bootstrap interval of the mean (2,000 draws, seed 0):
                       (low, high), or {output: (low, high)}; (NaN, NaN) for fewer than 2 finite scores
    .higher_is_better  True/False, or {output: bool} (it can depend on options such as order=)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

CI_DRAWS = 2000
CI_LEVEL = 0.95
CI_SEED = 0


def bootstrap_interval(scores: np.ndarray) -> tuple[float, float]:
    """(low, high): the 95% percentile bootstrap interval of the mean of the finite scores."""
    v = np.asarray(scores, np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(CI_SEED)
    # draws in blocks: memory O(block x N), not O(2,000 x N) (the same draws as one call)
    block = max(1, min(CI_DRAWS, (1 << 22) // v.size))
    means = np.concatenate([v[rng.integers(0, v.size, (min(block, CI_DRAWS - i), v.size))].mean(1)
                            for i in range(0, CI_DRAWS, block)])
    alpha = (1 - CI_LEVEL) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def _mean(scores: np.ndarray) -> float:
    v = np.asarray(scores, np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


class MetricResult(Mapping):
    """A metric's values (a Mapping of its documented keys) with per-input scores, their mean,
    95% bootstrap CI and score direction. See the module docstring."""

    def __init__(self, name: str, values: Mapping[str, Any], scores: np.ndarray | Mapping[str, np.ndarray],
                 higher_is_better: bool | Mapping[str, bool]):
        self.name = name
        self._values = dict(values)
        if isinstance(scores, Mapping):
            self.scores = {k: np.asarray(v) for k, v in scores.items()}
            if not isinstance(higher_is_better, Mapping):
                higher_is_better = {k: bool(higher_is_better) for k in self.scores}
            self.higher_is_better = dict(higher_is_better)
        else:
            self.scores = np.asarray(scores)
            self.higher_is_better = bool(higher_is_better)
        self._ci = None

    # ---------------------------------------------------------------- Mapping
    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) and not isinstance(self.scores, dict):
            return self.scores[key]  # result[i] / result[a:b]: the per-input scores
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"MetricResult({self.name!r}, mean={self.mean!r}, higher_is_better={self.higher_is_better!r})"

    # ---------------------------------------------------------------- summaries
    @property
    def mean(self) -> float | dict[str, float]:
        if isinstance(self.scores, dict):
            return {k: _mean(v) for k, v in self.scores.items()}
        return _mean(self.scores)

    @property
    def ci(self) -> tuple[float, float] | dict[str, tuple[float, float]]:
        if self._ci is None:
            if isinstance(self.scores, dict):
                self._ci = {k: bootstrap_interval(v) for k, v in self.scores.items()}
            else:
                self._ci = bootstrap_interval(self.scores)
        return self._ci

    def __array__(self, dtype=None, copy=None):
        """np.asarray(result): the per-input scores (a result with one output)."""
        if isinstance(self.scores, dict):
            raise TypeError(f"{self.name} has several outputs {sorted(self.scores)}: take result.scores[name]")
        return np.asarray(self.scores, dtype=dtype)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)
