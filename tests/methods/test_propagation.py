"""The propagation interpreter (xai_jax.attribution.propagation) and the modified ReLU
gradients: Guided Backprop, Deconvnet, Guided Grad-CAM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.attribution.guided import nearest_resize
from xai_jax.attribution.propagation import Rules, propagate

RNG = np.random.default_rng(0)
W1 = RNG.normal(size=(6, 5)).astype(np.float32)
B1 = RNG.normal(size=5).astype(np.float32)
W2 = RNG.normal(size=(5, 3)).astype(np.float32)
X = RNG.normal(size=6).astype(np.float32)


def one_layer(x):
    return jax.nn.relu(x @ W1 + B1) @ W2


def test_guided_backprop_and_deconvnet_on_a_one_layer_net_equal_the_hand_formulas():
    h = X @ W1 + B1
    for t in range(3):
        gbp = np.asarray(xj.guided_backprop(one_layer)(jnp.asarray(X), t))
        np.testing.assert_allclose(gbp, W1 @ (np.maximum(W2[:, t], 0) * (h > 0)), rtol=1e-5, atol=1e-6)
        dec = np.asarray(xj.deconvnet(one_layer)(jnp.asarray(X), t))
        np.testing.assert_allclose(dec, W1 @ np.maximum(W2[:, t], 0), rtol=1e-5, atol=1e-6)


def test_nested_jaxprs_are_entered_jit_checkpoint_custom_jvp_and_jnp_maximum():
    @jax.jit
    def hidden(x):
        return jax.checkpoint(lambda z: jnp.maximum(z @ W1 + B1, 0.0))(x)

    f = lambda x: hidden(x) @ W2  # noqa: E731
    np.testing.assert_allclose(np.asarray(xj.guided_backprop(f)(jnp.asarray(X), 1)),
                               np.asarray(xj.guided_backprop(one_layer)(jnp.asarray(X), 1)), rtol=1e-6)


def test_plain_rules_reproduce_jax_grad():
    f = lambda x: jnp.tanh(jax.nn.relu(x @ W1 + B1) @ W2) * 2.0  # noqa: E731
    g, scores = propagate(f, jnp.asarray(X), lambda s: jnp.zeros_like(s).at[2].set(1.0), Rules())
    np.testing.assert_allclose(np.asarray(g), np.asarray(jax.grad(lambda x: f(x)[2])(jnp.asarray(X))), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(scores), np.asarray(f(jnp.asarray(X))), rtol=1e-6)


def test_composes_with_jit_and_vmap_and_attribute():
    xs = jnp.asarray(RNG.normal(size=(4, 6)).astype(np.float32))
    ts = jnp.array([0, 1, 2, 0])
    method = xj.guided_backprop(one_layer)
    batched = jax.jit(jax.vmap(method))(xs, ts)
    for x, t, b in zip(xs, ts, batched):
        np.testing.assert_allclose(np.asarray(b), np.asarray(method(x, t)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(xj.attribute(method, xs, ts)), np.asarray(batched), rtol=1e-6)


def test_nearest_resize_uses_torchs_floor_index():
    m = jnp.arange(3.0)
    np.testing.assert_array_equal(np.asarray(nearest_resize(m, (7,))), [0, 0, 0, 1, 1, 2, 2])  # floor(i * 3 / 7)
    m2 = jnp.arange(4.0).reshape(2, 2)
    np.testing.assert_array_equal(np.asarray(nearest_resize(m2, (4, 4)))[::2, ::2], np.asarray(m2))


def test_guided_grad_cam_is_guided_backprop_times_the_cam_on_the_study_cnn():
    from xai_jax.study.models import mnist1d_cnn

    model = mnist1d_cnn("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))
    x = jnp.asarray(RNG.normal(size=(40, 1)).astype(np.float32))
    ggc = xj.guided_grad_cam(model, params)(x, 3)
    gbp = xj.guided_backprop(xj.Model(model, params))(x, 3)
    cam = xj.grad_cam(model, params, upsample=False)(x, 3)  # the layer keeps the input's length (SAME)
    np.testing.assert_allclose(np.asarray(ggc), np.asarray(gbp * cam[:, None]), rtol=1e-5, atol=1e-7)
    assert ggc.shape == x.shape and float(jnp.abs(ggc).max()) > 0


def test_a_primitive_without_a_rule_names_itself_and_the_linen_layer():
    import flax.linen as nn

    class Gate(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Dense(4, name="inner")(x)
            return h * jax.nn.sigmoid(h)   # a product of two activations

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2, name="head")(Gate(name="gate")(x))

    net = Net()
    params = net.init(jax.random.key(0), jnp.zeros((1, 6)))
    with pytest.raises(xj.PropagationError, match=r"'mul' in layer 'Net/gate'.*fallback='gradient'"):
        xj.deeplift(xj.Model(net, params))(jnp.asarray(X), 0)
    out = xj.deeplift(xj.Model(net, params), fallback="gradient")(jnp.asarray(X), 0)
    assert np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize("factory, kwargs, error, match", [
    (xj.deeplift, {"fallback": "zero"}, ValueError, "fallback"),
    (xj.lrp, {"fallback": "plain"}, ValueError, "fallback"),
    (xj.guided_backprop, {}, None, None),
])
def test_bad_fallback_is_rejected(factory, kwargs, error, match):
    if error is None:
        factory(one_layer, **kwargs)
        return
    with pytest.raises(error, match=match):
        factory(one_layer, **kwargs)


def test_guided_grad_cam_needs_a_model_with_layers():
    with pytest.raises(TypeError, match="reads a layer"):
        xj.guided_grad_cam(one_layer)
