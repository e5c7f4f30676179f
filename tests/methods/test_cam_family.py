"""The CAM family against known answers: closed forms on models whose head after the layer
is linear, the formulas recomputed by hand from the layer's activations and gradients, and
AblationCAM's forwards rerun by hand."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.models_small import Tiny2D, init
from xai_jax.adapters import LayerModel
from xai_jax.attribution.grad_cam import ABLATION_OFFSET, layer_gradient, principal_projection
from xai_jax.study.models.layers import ConvReLU

# its module-scoped fixture is built once: every test of the file runs in one xdist worker
pytestmark = pytest.mark.xdist_group("cam_family")


class Flat1D(nn.Module):
    """ConvReLU -> ConvReLU ("conv_b") -> flatten -> Dense: the head after conv_b is linear."""

    @nn.compact
    def __call__(self, x):
        a = ConvReLU(6, (3,), name="conv_a")(x)
        a = ConvReLU(5, (3,), name="conv_b")(a)
        return nn.Dense(4, name="dense")(a.reshape(a.shape[0], -1))


@pytest.fixture(scope="module")
def flat():
    model = Flat1D()
    params = init(model, (12, 2), seed=1)
    xs = jax.random.normal(jax.random.key(2), (5, 12, 2))
    return model, params, xs


def _capture(model, params, x, layer):
    """(logits, the layer's output for one input) through the linen adapter."""
    lm = LayerModel(model, params)
    logits, (a,) = lm.run(x, [lm.resolve(x, layer)])
    return logits, a


def _layer(model, params, x, t, layer):
    _, fn = layer_gradient(model, params, layer)
    a, g, _ = fn(x, t)
    return np.asarray(a, np.float64), np.asarray(g, np.float64)


def test_hires_and_xgrad_sum_to_the_logit_less_bias_on_a_linear_head(flat):
    model, params, xs = flat
    f = xj.model_fn(model, params)
    bias = np.asarray(params["dense"]["bias"])
    for x in xs:
        for t in range(4):
            y = float(f(x)[t]) - bias[t]
            hires = xj.hires_cam(model, params, "conv_b", relu=False)(x, t)
            xgrad = xj.xgrad_cam(model, params, "conv_b", relu=False)(x, t)
            np.testing.assert_allclose(float(hires.sum()), y, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(float(xgrad.sum()), y, rtol=1e-3, atol=1e-4)
            # HiResCAM: each position's exact contribution A_i . W_i,t
            a = np.asarray(_capture(model, params, x, "conv_b")[1])
            w = np.asarray(params["dense"]["kernel"])[:, t].reshape(a.shape)
            np.testing.assert_allclose(hires, (a * w).sum(-1), rtol=1e-4, atol=1e-5)


def test_hires_grad_cam_and_cam_agree_on_global_average_pooling():
    # Tiny2D: conv_b -> global average -> Dense. Grad-CAM's weights are W[:, t] / (HW) at every
    # position, so Grad-CAM = HiResCAM = LayerCAM's positive part = CAM (Zhou et al. 2016) / HW
    model = Tiny2D()
    params = init(model, (6, 7, 3), seed=3)
    x = jax.random.normal(jax.random.key(4), (6, 7, 3))
    a, _ = _layer(model, params, x, 1, "conv_b")
    cam = (a * np.asarray(params["dense"]["kernel"])[:, 1]).sum(-1) / (6 * 7)
    for method in (xj.grad_cam, xj.hires_cam):
        np.testing.assert_allclose(method(model, params, "conv_b", relu=False)(x, 1), cam, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["xgrad_cam", "hires_cam", "grad_cam_element_wise", "layer_cam"])
def test_formulas_by_hand_from_the_layer(flat, name):
    model, params, xs = flat
    x, t = xs[0], 2
    a, g = _layer(model, params, x, t, "conv_a")
    want = {
        "xgrad_cam": np.maximum((a * ((g * a).sum(0) / (a.sum(0) + 1e-7))).sum(-1), 0),
        "hires_cam": np.maximum((g * a).sum(-1), 0),
        "grad_cam_element_wise": np.maximum(g * a, 0).sum(-1),
        "layer_cam": np.maximum((np.maximum(g, 0) * a).sum(-1), 0),
    }[name]
    got = getattr(xj, name)(model, params, "conv_a")(x, t)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    batched = jax.jit(jax.vmap(getattr(xj, name)(model, params, "conv_a", precision="highest")))(xs, jnp.full(5, t))
    np.testing.assert_allclose(batched[0], want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


def test_eigen_cam_is_the_first_principal_component_with_our_sign_rule(flat):
    model, params, xs = flat
    x = xs[1]
    a, _ = _layer(model, params, x, 0, "conv_a")
    centred = a - a.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    p = centred @ vt[0]
    mean_map = a.mean(-1)
    if ((p - p.mean()) * (mean_map - mean_map.mean())).sum() < 0:
        p = -p
    np.testing.assert_allclose(xj.eigen_cam(model, params, "conv_a", relu=False)(x, 0), p, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xj.eigen_cam(model, params, "conv_a")(x, 3), np.maximum(p, 0), rtol=1e-4, atol=1e-5)
    # the sign rule holds for a flipped map too: the projection of -A is -(projection of A)
    np.testing.assert_allclose(principal_projection(jnp.asarray(-a, jnp.float32)), -p, rtol=1e-4, atol=1e-5)


def test_ablation_cam_reruns_the_model_with_each_channel_ablated(flat):
    model, params, xs = flat
    x, t = xs[2], 1
    logits, a = _capture(model, params, x, "conv_a")
    a = np.asarray(a)
    y = float(logits[t])
    fill = 0.0 if a.min() == 0 else a.min() - ABLATION_OFFSET  # post-ReLU: the minimum is 0
    weights = []
    for k in range(a.shape[-1]):
        ablated = a.copy()
        ablated[..., k] = fill
        delta = jnp.asarray(ablated - a)
        lm = LayerModel(model, params)
        y_k = float(lm.run(x, [lm.resolve(x, "conv_a")], [delta])[0][t])
        weights.append((y - y_k) / y)
    want = np.maximum((a * np.asarray(weights)).sum(-1), 0)
    np.testing.assert_allclose(xj.ablation_cam(model, params, "conv_a")(x, t), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xj.ablation_cam(model, params, "conv_a", chunk_size=2)(x, t), want, rtol=1e-4,
                               atol=1e-5)


def test_ablation_fill_below_the_minimum_for_signed_layers():
    class Signed(nn.Module):  # the layer's output is a plain conv (negative values): fill = min - 1e7
        @nn.compact
        def __call__(self, x):
            a = nn.Conv(3, (3,), name="conv")(x)
            return nn.Dense(2, name="dense")(jnp.tanh(a).reshape(a.shape[0], -1))

    model = Signed()
    params = init(model, (8, 1), seed=5)
    x = jax.random.normal(jax.random.key(6), (8, 1))
    logits, a = _capture(model, params, x, "conv")
    a = np.asarray(a)
    assert a.min() < 0
    y = float(logits[1])
    weights = []
    for k in range(3):
        ablated = a.copy()
        ablated[..., k] = a.min() - ABLATION_OFFSET
        delta = jnp.asarray(ablated - a)
        lm = LayerModel(model, params)
        y_k = float(lm.run(x, [lm.resolve(x, "conv")], [delta])[0][1])
        weights.append((y - y_k) / y)
    want = (a * np.asarray(weights)).sum(-1)
    np.testing.assert_allclose(xj.ablation_cam(model, params, "conv", relu=False)(x, 1), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["xgrad_cam", "hires_cam", "grad_cam_element_wise", "layer_cam", "eigen_cam",
                                  "ablation_cam"])
def test_maps_have_the_input_spatial_shape_and_bad_targets_give_nan_under_jit(name):
    model = Tiny2D()
    params = init(model, (6, 7, 3), seed=3)
    xs = jax.random.normal(jax.random.key(4), (2, 6, 7, 3))
    method = getattr(xj, name)(model, params)
    out = jax.jit(jax.vmap(method))(xs, jnp.array([0, 9]))
    assert out.shape == (2, 6, 7)
    assert np.isfinite(np.asarray(out[0])).all() and np.isnan(np.asarray(out[1])).all()
    with pytest.raises(ValueError, match="target 9 is out of range"):
        method(xs[0], 9)


def _zero_score_split():
    """A Split whose class 0 scores exactly 0 (AblationCAM divides by the target's score)."""
    features = lambda x: jax.nn.relu(x[..., :1] * jnp.arange(1.0, 5.0))  # noqa: E731  (H, W, 4)
    head = lambda a: jnp.stack([0.0 * a.sum(), a.mean(), -a.mean()])  # noqa: E731
    return xj.Split(features, head)


@pytest.mark.parametrize("call, expected", [
    # issue 21: a target score of 0 returned a NaN map from an eager call
    pytest.param(lambda x: xj.ablation_cam(_zero_score_split())(x, 0),
                 (ValueError, ["ablation_cam", "score is 0", "target 0", "(y - y_k) / y"]), id="eager-zero-score"),
    pytest.param(lambda x: jax.jit(xj.ablation_cam(_zero_score_split()))(x, 0), "nan", id="jit-nan-map"),
    pytest.param(lambda x: xj.ablation_cam(_zero_score_split())(x, 1), "finite", id="other-class-fine"),
])
def test_ablation_cam_zero_target_score(call, expected):
    x = jnp.abs(jax.random.normal(jax.random.key(0), (6, 5, 2))) + 0.1
    if isinstance(expected, tuple):
        with pytest.raises(expected[0]) as e:
            call(x)
        assert all(w in str(e.value) for w in expected[1]), e.value
    else:
        out = np.asarray(call(x))
        assert np.isnan(out).all() if expected == "nan" else np.isfinite(out).all()
