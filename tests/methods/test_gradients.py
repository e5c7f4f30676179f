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


def test_noise_tunnel_variants_on_a_linear_model():
    # saliency of a linear model is W[t] whatever the noise: SmoothGrad² = W², VarGrad = 0
    f, W, _ = linear_f()
    key = jax.random.key(3)
    w = np.asarray(W[1]).reshape(6, 2)
    sq = xj.smoothgrad(xj.saliency(f), n_samples=8, sigma=0.3, nt_type="smoothgrad_sq")(X, 1, key)
    var = xj.smoothgrad(xj.saliency(f), n_samples=8, sigma=0.3, nt_type="vargrad")(X, 1, key)
    np.testing.assert_allclose(sq, w**2, rtol=1e-5)
    np.testing.assert_allclose(var, 0.0, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_noise_tunnel_variants_on_a_quadratic_model_closed_form(chunk_size):
    # f_0 = sum a x^2 / 2: saliency a (x + eps); with the same draws, SmoothGrad = a (x + mean eps),
    # SmoothGrad² = a² mean (x + eps)², VarGrad = a² var(eps) (population variance)
    a = jnp.linspace(0.5, 2.0, X.size).reshape(X.shape)
    f = lambda x: jnp.stack([0.5 * jnp.sum(a * x**2), x.sum()])  # noqa: E731
    key, n, sigma = jax.random.key(11), 10, 0.25
    eps = np.asarray(sigma * (X.max() - X.min()) * jax.random.normal(key, (n, *X.shape)))
    a_, x_ = np.asarray(a), np.asarray(X)
    want = {"smoothgrad": a_ * (x_ + eps.mean(0)), "smoothgrad_sq": (a_**2 * (x_ + eps) ** 2).mean(0),
            "vargrad": a_**2 * eps.var(0)}
    for nt_type, expected in want.items():
        sg = xj.smoothgrad(xj.saliency(f), n_samples=n, sigma=sigma, nt_type=nt_type, chunk_size=chunk_size)
        assert sg.name == nt_type and sg.signed == (nt_type == "smoothgrad")
        np.testing.assert_allclose(sg(X, 0, key), expected, rtol=1e-5, atol=1e-6)


def test_noise_tunnel_bad_nt_type():
    f, _, _ = linear_f()
    for bad in ("smooth", "VarGrad", None, 2):
        with pytest.raises(ValueError, match="nt_type must be one of"):
            xj.smoothgrad(xj.saliency(f), nt_type=bad)
