"""Expected Gradients: the closed form on a linear model, the expectation over baselines on
a non-linear one, keys, and bad baselines."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.models_small import linear_f

RNG = np.random.default_rng(3)
X = jnp.asarray(RNG.normal(size=(6, 2)), jnp.float32)
REFS = jnp.asarray(RNG.normal(size=(5, 6, 2)), jnp.float32)


def test_linear_model_closed_form_with_the_drawn_baselines():
    f, W, _ = linear_f()
    key = jax.random.key(7)
    eg = xj.expected_gradients(f, baselines=REFS, n_samples=9)
    picks = jax.random.randint(jax.random.split(key)[0], (9,), 0, 5)  # the draws eg makes (documented order)
    mean_b = np.asarray(REFS)[np.asarray(picks)].mean(0)
    for t in range(3):
        np.testing.assert_allclose(eg(X, t, key), W[t].reshape(6, 2) * (np.asarray(X) - mean_b), rtol=1e-5, atol=1e-6)
    one = xj.expected_gradients(f, baselines=REFS[:1], n_samples=3)  # one baseline: IG's closed form exactly
    np.testing.assert_allclose(one(X, 1, key), W[1].reshape(6, 2) * (np.asarray(X) - np.asarray(REFS[0])),
                               rtol=1e-5, atol=1e-6)


def test_non_linear_model_expectation_is_ig_averaged_over_baselines():
    f = lambda x: jnp.stack([jnp.tanh(x).sum(), (x**2).sum()])  # noqa: E731
    eg = xj.expected_gradients(f, baselines=REFS[:3], n_samples=4096)
    got = np.asarray(eg(X, 0, jax.random.key(0)))
    want = np.mean([np.asarray(xj.integrated_gradients(f, steps=64, rule="gauss_legendre", baseline=b)(X, 0))
                    for b in REFS[:3]], axis=0)
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())
    gap = float(f(X)[0] - np.mean([float(f(b)[0]) for b in REFS[:3]]))
    assert abs(got.sum() - gap) < 0.05 * abs(gap) + 1e-3  # completeness in expectation


def test_keys_and_attribute():
    f, _, _ = linear_f()
    eg = xj.expected_gradients(f, baselines=REFS, n_samples=4)
    xs = jnp.stack([X, X + 1.0, X * 2.0])
    ts = jnp.array([0, 1, 2])
    key = jax.random.key(1)
    out = xj.attribute(eg, xs, ts, key=key, batch_size=2)
    np.testing.assert_allclose(out[2], eg(xs[2], 2, jax.random.fold_in(key, 2)), rtol=1e-6)
    assert not np.allclose(eg(X, 0, jax.random.key(1)), eg(X, 0, jax.random.key(2)))
    with pytest.raises(TypeError, match="key"):
        xj.attribute(eg, xs, ts)


@pytest.mark.parametrize("baselines, error, words", [
    (np.zeros((0, 6, 2)), ValueError, ["baselines", "M >= 1"]),
    (np.zeros((6, 2)).astype(bool), TypeError, ["baselines", "bool"]),
    (np.full((2, 6, 2), np.nan), ValueError, ["baselines", "NaN"]),
    # issue 21: a jax.Array of baselines is checked too (it returned an all-NaN map)
    (jnp.zeros((3, 6, 2)).at[1, 2, 0].set(jnp.nan), ValueError, ["baselines", "NaN", "rows [1]"]),
    (jnp.full((2, 6, 2), jnp.inf), ValueError, ["baselines", "inf"]),
])
def test_bad_baselines(baselines, error, words):
    f, _, _ = linear_f()
    with pytest.raises(error) as e:
        xj.expected_gradients(f, baselines=baselines)
    assert all(w in str(e.value) for w in words), e.value


def test_baseline_shape_must_match_x():
    f, _, _ = linear_f()
    eg = xj.expected_gradients(f, baselines=np.zeros((3, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"baselines rows have shape \(4, 3\), expected x's shape \(6, 2\)"):
        eg(X, 0, jax.random.key(0))



def test_nan_gradient_on_the_path_is_an_eager_error():
    # the eager guard (explanation_method): a NaN map for a finite x whose scores are finite is a
    # ValueError with the method's hint, not a silent NaN map; under jit the NaN map comes back
    f, _, _ = linear_f()
    root = lambda x: f(jnp.sqrt(jnp.abs(x)))  # noqa: E731  (finite, but its gradient at 0 is not)
    x = X.at[0, 0].set(0.0)  # every path point b + a (x - b) with b = 0 is 0 there
    eg = xj.expected_gradients(root, baselines=jnp.zeros((2, 6, 2)), n_samples=4)
    assert np.isnan(np.asarray(jax.jit(eg)(x, 0, jax.random.key(0)))).any()
    with pytest.raises(ValueError, match="expected_gradients returned NaN or inf.*reference input"):
        eg(x, 0, jax.random.key(0))
