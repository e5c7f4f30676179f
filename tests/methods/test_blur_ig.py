"""Blur IG (Xu et al. 2020) against PAIR's formula computed with scipy (PAIR's values: test_pair_reference.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import xai_jax as xj
from xai_jax.attribution.blur_ig import blur_difference, blur_matrix

W = jax.random.normal(jax.random.key(0), (12, 2, 3))


def linear(x):
    return jnp.einsum("lc,lck->k", x, W)


@pytest.mark.parametrize("sigma", [0.0, 0.3, 0.5, 1.7, 6.0, 50.0])
def test_blur_matrices_are_scipys_gaussian_filter(sigma):
    n, eye = 20, np.eye(20)

    def scipy_matrix(s):
        return np.stack([ndimage.gaussian_filter1d(eye[:, j], s, mode="constant") if s > 0 else eye[:, j]
                         for j in range(n)], 1)

    np.testing.assert_allclose(blur_matrix(n, sigma, 201), scipy_matrix(sigma), atol=2e-7)
    want = (scipy_matrix(sigma + 0.01) - scipy_matrix(sigma)) / 0.01
    np.testing.assert_allclose(blur_difference(n, sigma, 0.01, 201), want, atol=2e-6 * max(1.0, np.abs(want).max()))


def _blur_ig_reference(f, x, t, max_sigma, steps, h, sigma_axes):
    """PAIR's formula in float64 with scipy (any number of spatial axes)."""
    sig = [i * max_sigma / steps for i in range(steps + 1)]
    grad = jax.jit(jax.grad(lambda z: f(z)[t]))

    def blur(s):
        return x if s == 0 else ndimage.gaussian_filter(x, sigma=[s * a for a in sigma_axes], mode="constant")

    total = np.zeros_like(x)
    for i in range(steps):
        xi = blur(sig[i])
        total += (sig[i + 1] - sig[i]) * (blur(sig[i] + h) - xi) / h * np.asarray(grad(jnp.asarray(xi, jnp.float32)))
    return -total


def test_blur_ig_matches_pairs_formula_on_signals_and_images():
    # smooth models (no max-pool ties), so float32 and float64 paths give the same gradients
    x1 = np.asarray(jax.random.normal(jax.random.key(3), (16, 2)), np.float64)
    w1 = jax.random.normal(jax.random.key(4), (16, 2, 3))
    f1 = lambda x: jnp.tanh(jnp.einsum("lc,lck->k", x, w1))  # noqa: E731
    got = xj.blur_ig(f1, max_sigma=8.0, steps=12)(jnp.asarray(x1, jnp.float32), 2)
    want = _blur_ig_reference(f1, x1, 2, 8.0, 12, 0.01, (1, 0))
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    x2 = np.asarray(jax.random.uniform(jax.random.key(5), (10, 9, 3)), np.float64)
    w2 = jax.random.normal(jax.random.key(6), (10, 9, 3, 2))
    f2 = lambda x: jnp.sin(jnp.einsum("hwc,hwck->k", x, w2))  # noqa: E731
    got = xj.blur_ig(f2, max_sigma=5.0, steps=6)(jnp.asarray(x2, jnp.float32), 1)
    want = _blur_ig_reference(f2, x2, 1, 5.0, 6, 0.01, (1, 1, 0))
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    # channels first: the same numbers, transposed
    got_cf = xj.blur_ig(lambda z: f2(jnp.moveaxis(z, 0, -1)), max_sigma=5.0, steps=6, channel_axis=0)(
        jnp.asarray(np.moveaxis(x2, -1, 0), jnp.float32), 1)
    np.testing.assert_allclose(np.moveaxis(np.asarray(got_cf), 0, -1), want, atol=1e-5 * np.abs(want).max())


def test_blur_ig_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="max_sigma must be > 0"):
        xj.blur_ig(linear, max_sigma=0.0)
    with pytest.raises(ValueError, match=r"blur_ig takes x of shape \(length, C\) or \(H, W, C\)"):
        xj.blur_ig(lambda z: z.sum()[None])(jnp.ones(5), 0)


@pytest.mark.parametrize("kwargs, words", [
    # issue 21: a max_sigma below the radius-0 limit of a truncated Gaussian returned an all-NaN map
    (dict(max_sigma=1e-30), ["max_sigma=1e-30", "blurs nothing", ">= 0.125"]),
    (dict(max_sigma=0.1, steps=5), ["max_sigma=0.1", ">= 0.125"]),
])
def test_blur_ig_degenerate_max_sigma_is_an_error(kwargs, words):
    with pytest.raises(ValueError) as e:
        xj.blur_ig(linear, **kwargs)
    assert all(w in str(e.value) for w in words), e.value


def test_blur_ig_smallest_max_sigma_is_finite():
    x = jax.random.normal(jax.random.key(2), (12, 2))
    a = jax.jit(xj.blur_ig(linear, max_sigma=0.125, steps=5))(x, 0)
    assert np.isfinite(np.asarray(a)).all()
