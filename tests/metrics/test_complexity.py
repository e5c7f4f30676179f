import numpy as np
import pytest

from xai_jax.metrics.complexity import complexity, sparseness


def quantus_gini(a):
    """Quantus Sparseness.evaluate_batch without its 1e-7 shift (the reference formula)."""
    a = np.sort(np.abs(a.reshape(len(a), -1)).astype(np.float64), axis=-1)
    n = a.shape[1]
    return ((2 * np.arange(1, n + 1) - n - 1) * a).sum(-1) / (n * a.sum(-1))


def test_sparseness_known_values():
    n = 12
    one_hot = np.zeros((1, 3, 4), np.float32)
    one_hot[0, 1, 2] = -5.0  # sign and size do not matter
    np.testing.assert_allclose(sparseness(one_hot), [(n - 1) / n], rtol=1e-6)
    np.testing.assert_allclose(sparseness(np.full((2, 3, 4), 0.7, np.float32)), [0.0, 0.0], atol=1e-7)
    # [0, 0, 1, 1]: weights (2i - 5) = -3, -1, 1, 3 -> (1 + 3) / (4 * 2)
    np.testing.assert_allclose(sparseness(np.array([[1.0, 0.0, 1.0, 0.0]])), [0.5], rtol=1e-6)
    # all zero: defined as 0 (Quantus' epsilon makes it a constant map)
    np.testing.assert_array_equal(sparseness(np.zeros((1, 5))), [0.0])


def test_sparseness_matches_quantus_formula_and_orders_maps():
    maps = np.random.default_rng(0).normal(size=(6, 9, 5)).astype(np.float32)
    np.testing.assert_allclose(sparseness(maps), quantus_gini(maps), rtol=1e-5)
    dense, peaked = np.ones((1, 20)), np.exp(-np.arange(20.0))[None]
    assert sparseness(peaked)[0] > sparseness(dense)[0]


def test_complexity_known_values():
    n = 10
    np.testing.assert_allclose(complexity(np.full((1, n), 3.0)), [np.log(n)], rtol=1e-6)
    np.testing.assert_allclose(complexity(-np.eye(n)[[4]]), [0.0], atol=1e-7)
    np.testing.assert_allclose(complexity(np.array([[2.0, -2.0, 0.0, 0.0]])), [np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(complexity(np.zeros((2, 2, 5))), [np.log(n)] * 2, rtol=1e-6)  # limit of constant
    maps = np.abs(np.random.default_rng(1).normal(size=(4, 7, 3)))
    p = maps.reshape(4, -1) / maps.reshape(4, -1).sum(1, keepdims=True)
    np.testing.assert_allclose(complexity(maps), -(p * np.log(p)).sum(1), rtol=1e-5)


@pytest.mark.parametrize("fn", [sparseness, complexity])
def test_bad_maps(fn):
    with pytest.raises(ValueError, match="at least one input"):
        fn(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="batch of maps"):
        fn(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([[1.0, np.nan]]))
    with pytest.raises(TypeError, match="numeric"):
        fn(np.array([["a", "b"]]))
