import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.models_small import Pooled2D, Tiny1D, Tiny2D, init


def _relu(v):
    return np.maximum(v, 0)


def _tiny1d_by_hand(params, x, t):
    w = np.asarray(params["conv"]["kernel"])[0]  # (1, K)
    b = np.asarray(params["conv"]["bias"])
    A = _relu(np.asarray(x) @ w + b)  # (L, K)
    dense = np.asarray(params["dense"]["kernel"])  # (L*K, classes)
    G = dense[:, t].reshape(A.shape)  # d y_t / d A
    return A, G


def test_grad_cam_1d_matches_hand_computation():
    model = Tiny1D()
    params = init(model, (12, 1), seed=3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(12, 1)), jnp.float32)
    for t in range(4):
        A, G = _tiny1d_by_hand(params, x, t)
        want = _relu((A * G.mean(0)).sum(-1))
        got = xj.grad_cam(model, params, "conv")(x, t)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        # Grad-CAM++ closed form
        g2, g3 = G**2, G**3
        denom = 2 * g2 + A.sum(0) * g3
        alpha = np.where(G != 0, g2 / np.where(denom != 0, denom, 1), 0)
        wpp = (_relu(G) * alpha).sum(0)
        np.testing.assert_allclose(xj.grad_cam_plus_plus(model, params, "conv")(x, t),
                                   _relu((A * wpp).sum(-1)), rtol=1e-5, atol=1e-6)


def test_grad_cam_2d_matches_hand_computation_and_auto_layer():
    model = Tiny2D()
    params = init(model, (5, 6, 2), seed=1)
    x = jnp.asarray(np.random.default_rng(2).uniform(size=(5, 6, 2)), jnp.float32)
    # A = conv_b output; y = dense(mean A) -> dy/dA_ij^k = W[k, t] / (H W)
    a1 = jax.nn.relu(jax.lax.conv_general_dilated(
        x[None], params["conv_a"]["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
        + params["conv_a"]["bias"])
    A = _relu(np.asarray(a1) @ np.asarray(params["conv_b"]["kernel"])[0, 0] + np.asarray(params["conv_b"]["bias"]))
    W = np.asarray(params["dense"]["kernel"])
    for t in range(3):
        weights = W[:, t] / 30.0  # mean over the 5x6 grid of the constant gradient
        want = _relu((A * weights).sum(-1))
        np.testing.assert_allclose(xj.grad_cam(model, params)(x, t), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(xj.grad_cam(model, params, "conv_b")(x, t), want, rtol=1e-5, atol=1e-6)


def test_upsampled_to_input_shape_and_auto_layer_is_last_conv():
    model = Pooled2D()
    params = init(model, (16, 16, 3))
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(16, 16, 3)), jnp.float32)
    cam = xj.grad_cam(model, params)(x, 1)
    assert cam.shape == (16, 16)
    np.testing.assert_allclose(cam, xj.grad_cam(model, params, "c2")(x, 1))
    assert not np.allclose(cam, xj.grad_cam(model, params, "c1")(x, 1))


def test_relu_zeroed_cam_is_zeros_not_nan():
    model = Tiny1D()
    params = init(model, (12, 1))
    params = jax.tree.map(lambda v: v, params)
    params["dense"]["kernel"] = -jnp.abs(params["dense"]["kernel"])  # all evidence negative
    params["conv"]["bias"] = jnp.abs(params["conv"]["bias"]) + 0.1  # A > 0 somewhere
    x = jnp.ones((12, 1))
    for method in (xj.grad_cam, xj.grad_cam_plus_plus):
        cam = method(model, params, "conv")(x, 0)
        assert np.all(np.isfinite(cam)) and np.all(np.asarray(cam) == 0.0)
    # without the final ReLU the same map is negative, not zero
    assert np.asarray(xj.grad_cam(model, params, "conv", relu=False)(x, 0)).max() < 0


def test_study_cnn_jit_vmap_equal_eager(study_mnist1d, mnist1d):
    model, params = study_mnist1d
    xs, ts = jnp.asarray(mnist1d.x_test[:6]), jnp.asarray(mnist1d.y_test[:6])
    # precision="highest": two code paths are compared, so both must compute in float32. Under
    # TF32 (the GPU default) the batched and unbatched convolutions round differently (1.3%
    # apart, measured on an H100); at "highest" they agree to float32 rounding on every backend.
    for method in (xj.grad_cam, xj.grad_cam_plus_plus):
        cam = method(model, params, score="softmax", precision="highest")
        eager = np.stack([cam(x, int(t)) for x, t in zip(xs, ts)])
        assert eager.shape == (6, 40)
        np.testing.assert_allclose(jax.jit(jax.vmap(cam))(xs, ts), eager, rtol=1e-4, atol=1e-7)


def test_bad_inputs(study_mnist1d, mnist1d):
    model, params = study_mnist1d
    x = jnp.asarray(mnist1d.x_test[0])
    valid = r"valid layers: \['conv1d', 'conv1d_1', 'conv1d_2', 'dense'\]"
    with pytest.raises(ValueError, match=r"layer 'conv9' is not a submodule.*" + valid):
        xj.grad_cam(model, params, "conv9")(x, 0)
    with pytest.raises(ValueError, match="layer .dense. outputs shape \\(10,\\) per input, which is not a feature map"):
        xj.grad_cam(model, params, "dense")(x, 0)
    with pytest.raises(ValueError, match="target 12 is out of range"):
        xj.grad_cam(model, params)(x, 12)
    with pytest.raises(ValueError, match="x must have a channel axis and at least one spatial axis, got shape "
                                         "\\(40,\\)"):
        xj.grad_cam(model, params)(x[:, 0], 0)
    with pytest.raises(ValueError, match="NaN or inf"):
        xj.grad_cam_plus_plus(model, params)(x.at[0, 0].set(jnp.inf), 0)
