"""DeepLIFT (Rescale) and DeepLiftShap: summation to delta, a two-layer closed form, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj

RNG = np.random.default_rng(1)
W1 = RNG.normal(size=(6, 5)).astype(np.float32)
B1 = RNG.normal(size=5).astype(np.float32)
W2 = RNG.normal(size=(5, 3)).astype(np.float32)
X = RNG.normal(size=6).astype(np.float32)
B = (0.3 * RNG.normal(size=6)).astype(np.float32)


def two_layer(x):
    return jax.nn.relu(x @ W1 + B1) @ W2


def test_two_layer_relu_net_equals_the_rescale_closed_form():
    hx, hb = X @ W1 + B1, B @ W1 + B1
    rescale = (np.maximum(hx, 0) - np.maximum(hb, 0)) / (hx - hb)
    for t in range(3):
        expected = (X - B) * (W1 @ (W2[:, t] * rescale))
        got = np.asarray(xj.deeplift(two_layer, baseline=B)(jnp.asarray(X), t))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


class Pools(nn.Module):
    """conv -> ReLU -> max pool -> conv -> tanh -> average pool -> dense: every DeepLIFT rule."""

    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(nn.relu(nn.Conv(4, (3, 3))(x)), (2, 2), (2, 2))
        x = nn.avg_pool(jnp.tanh(nn.Conv(5, (3, 3))(x)), (2, 2), (2, 2))
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_summation_to_delta_with_max_and_average_pooling_and_tanh():
    model = Pools()
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 2)))
    f = xj.Model(model, params)
    x = jax.random.normal(jax.random.key(1), (8, 8, 2))
    bs = jax.random.normal(jax.random.key(2), (3, 8, 8, 2))
    a = xj.deeplift(f, baseline=bs[0])(x, 1)
    assert abs(float(a.sum()) - float(f(x)[1] - f(bs[0])[1])) < 1e-5
    shap = xj.deeplift_shap(f, baselines=bs)(x, 1)
    assert abs(float(shap.sum()) - float(f(x)[1] - jax.vmap(f)(bs)[:, 1].mean())) < 1e-5
    singles = jnp.stack([xj.deeplift(f, baseline=b)(x, 1) for b in bs])
    np.testing.assert_allclose(np.asarray(shap), np.asarray(singles.mean(0)), rtol=1e-4, atol=1e-6)


def test_summation_to_delta_on_the_study_cnn_with_the_zero_baseline():
    from xai_jax.study.models import mnist1d_cnn

    model = mnist1d_cnn("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))
    f = xj.Model(model, params)
    x = jax.random.normal(jax.random.key(3), (40, 1))
    a = xj.deeplift(f)(x, 4)
    assert abs(float(a.sum()) - float(f(x)[4] - f(jnp.zeros_like(x))[4])) < 1e-5


def test_a_two_input_nonlinearity_is_an_error_unless_the_gradient_fallback_is_asked_for():
    f = lambda x: (x * jnp.tanh(x)).sum(keepdims=True)  # noqa: E731
    with pytest.raises(xj.PropagationError, match="'mul'"):
        xj.deeplift(f)(jnp.ones(3), 0)
    g = xj.deeplift(f, fallback="gradient")(jnp.ones(3), 0)
    assert np.isfinite(np.asarray(g)).all()
    where = lambda x: jnp.where(x > 0, x, 0.1 * x).sum(keepdims=True)  # noqa: E731
    with pytest.raises(xj.PropagationError, match="select_n"):
        xj.deeplift(where)(jnp.ones(3), 0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"baseline": np.zeros(4, np.float32)}, ValueError, "baseline has shape"),
    ({"baseline": "zeros"}, TypeError, "numeric"),
    ({"baseline": np.array([np.nan] * 6, np.float32)}, ValueError, "NaN"),
    ({"eps": -1.0}, ValueError, "eps"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        xj.deeplift(two_layer, **kwargs)(jnp.asarray(X), 0)


@pytest.mark.parametrize("baselines, error, match", [
    (np.zeros(6, np.float32), ValueError, "batch"),
    (0.0, TypeError, "array"),
    (np.zeros((2, 5), np.float32), ValueError, "rows have shape"),
])
def test_bad_shap_baselines(baselines, error, match):
    with pytest.raises(error, match=match):
        xj.deeplift_shap(two_layer, baselines=baselines)(jnp.asarray(X), 0)
