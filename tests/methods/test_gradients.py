import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.models_small import linear_f

X = jnp.asarray(np.random.default_rng(1).normal(size=(6, 2)), jnp.float32)


def test_saliency_and_gradient_x_input_closed_form():
    f, W, _ = linear_f()
    for t in range(3):
        np.testing.assert_allclose(xj.saliency(f)(X, t), W[t].reshape(6, 2), rtol=1e-6)
        np.testing.assert_allclose(xj.gradient_x_input(f)(X, t), np.asarray(X) * W[t].reshape(6, 2), rtol=1e-6)


def test_smoothgrad_keyed_deterministic_and_wraps_ig():
    f = lambda x: jnp.stack([jnp.sum(jnp.sin(x)), jnp.sum(x**2)])  # noqa: E731
    key = jax.random.key(7)
    sg = xj.smoothgrad(xj.saliency(f), n_samples=16, sigma=0.2)
    a, b = sg(X, 0, key), sg(X, 0, key)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, sg(X, 0, jax.random.key(8)))
    # the same thing by hand: mean of cos(x + noise), noise ~ N(0, (0.2 * range)^2)
    noise = 0.2 * (X.max() - X.min()) * jax.random.normal(key, (16, *X.shape))
    np.testing.assert_allclose(a, np.cos(np.asarray(X + noise)).mean(0), rtol=1e-5, atol=1e-6)
    # SmoothGrad of IG on sum x^2 with baseline 0: IG is (x + eps)^2 per sample
    sg_ig = xj.smoothgrad(xj.integrated_gradients(f, steps=4), n_samples=16, sigma=0.2)
    np.testing.assert_allclose(sg_ig(X, 1, key), (np.asarray(X + noise) ** 2).mean(0), rtol=1e-4, atol=1e-5)
    # chunked equals unchunked; jit/vmap equal eager
    chunked = xj.smoothgrad(xj.saliency(f), n_samples=16, sigma=0.2, chunk_size=5)
    np.testing.assert_allclose(chunked(X, 0, key), a, rtol=1e-6)
    xs = jnp.stack([X, 2 * X])
    keys = jax.random.split(key, 2)
    batched = jax.jit(jax.vmap(sg))(xs, jnp.array([0, 0]), keys)
    np.testing.assert_allclose(batched[1], sg(2 * X, 0, keys[1]), rtol=1e-5)


def test_smoothgrad_bad_arguments():
    f, _, _ = linear_f()
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        xj.smoothgrad(xj.saliency(f), n_samples=0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        xj.smoothgrad(xj.saliency(f), sigma=0.0)
    with pytest.raises(TypeError, match="key must be a jax.random key"):
        xj.smoothgrad(xj.saliency(f))(X, 0, 3)
