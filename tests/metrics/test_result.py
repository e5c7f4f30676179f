"""MetricResult: the metric's keys kept, per-input scores, mean, 95% bootstrap CI, direction."""

import numpy as np
import pytest

from xai_jax.metrics import MetricResult, bootstrap_ci
from xai_jax.metrics.result import bootstrap_interval


def test_keys_scores_mean_ci_and_direction():
    scores = np.random.default_rng(0).normal(1.0, 1.0, 300)
    r = MetricResult("m", {"value": scores, "mean": float(scores.mean()), "extra": "kept"}, scores, False)
    assert dict(r)["extra"] == "kept" and r["value"] is not None and set(r) == {"value", "mean", "extra"}
    assert r.mean == pytest.approx(scores.mean()) and r.higher_is_better is False
    _, lo, hi = bootstrap_ci(scores)  # the same percentile bootstrap: 2,000 draws, seed 0
    assert r.ci == pytest.approx((lo, hi)) and lo < r.mean < hi
    np.testing.assert_array_equal(np.asarray(r), scores)  # np.asarray(result): the scores
    assert r[3] == scores[3]  # integer indexing reads the per-input scores


def test_several_outputs_and_small_or_nan_samples():
    r = MetricResult("m", {}, {"a": np.array([1.0, np.nan, 3.0]), "b": np.array([2.0])},
                     {"a": True, "b": False})
    assert r.mean == {"a": 2.0, "b": 2.0}  # NaN scores are left out of the mean
    assert np.isnan(r.ci["b"][0]) and np.isnan(r.ci["b"][1])  # fewer than 2 scores: no interval
    assert r.higher_is_better == {"a": True, "b": False}
    with pytest.raises(TypeError, match="several outputs"):
        np.asarray(r)
    assert np.isnan(bootstrap_interval(np.array([np.nan, np.nan]))).all()



@pytest.mark.parametrize("values, expected", [
    # issue 21: one value returned a zero-width interval, claiming certainty
    pytest.param([0.5], (0.5, "nan", "nan"), id="one-value-nan-bounds-and-warns"),
    pytest.param([0.5, 0.5], (0.5, 0.5, 0.5), id="equal-values-zero-width"),
    pytest.param([0.2, 0.8], (0.5, 0.2, 0.8), id="two-values"),
])
def test_bootstrap_ci_small_samples(values, expected):
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mean, lo, hi = bootstrap_ci(values)
    assert mean == pytest.approx(expected[0])
    if expected[1] == "nan":
        assert np.isnan(lo) and np.isnan(hi)
        assert any(issubclass(w.category, RuntimeWarning) and "one value" in str(w.message) for w in caught)
    else:
        assert (lo, hi) == pytest.approx(expected[1:])
        assert not caught
