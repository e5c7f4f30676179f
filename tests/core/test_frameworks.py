"""One layer API, four ways to hold a model: flax.linen, Flax NNX, Equinox and Split.

The same small CNN is built in each framework with the same weights; every layer method
(the CAM family, Score-CAM, SISE) must give the same map through each adapter, within
1e-5 relative. Equinox is channels first (x: (C, L)); the others channels last.
"""

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import xai_jax as xj

# its module-scoped fixture is built once: every test of the file runs in one xdist worker
pytestmark = pytest.mark.xdist_group("frameworks")

L, C_IN, C1, C2, K = 16, 2, 4, 6, 3


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):  # (B, L, C)
        x = nn.relu(nn.Conv(C1, (3,), padding="SAME", name="conv1")(x))
        x = nn.relu(nn.Conv(C2, (3,), padding="SAME", name="conv2")(x))
        return nn.Dense(K, name="head")(x.mean(1))


class NnxNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.blocks = nnx.List([nnx.Conv(C_IN, C1, (3,), padding="SAME", rngs=rngs),
                                nnx.Conv(C1, C2, (3,), padding="SAME", rngs=rngs)])
        self.dropout = nnx.Dropout(0.5, rngs=rngs)  # must be off: the adapters run inference mode
        self.head = nnx.Linear(C2, K, rngs=rngs)

    def __call__(self, x):  # (B, L, C)
        for conv in self.blocks:
            x = jax.nn.relu(conv(x))
        return self.head(self.dropout(x.mean(1)))


class EqxNet(eqx.Module):
    layers: list
    dropout: eqx.nn.Dropout
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.layers = [eqx.nn.Conv1d(C_IN, C1, 3, padding="SAME", key=k1),
                       eqx.nn.Conv1d(C1, C2, 3, padding="SAME", key=k2)]
        self.dropout = eqx.nn.Dropout(0.5)
        self.head = eqx.nn.Linear(C2, K, key=k3)

    def __call__(self, x, key=None):  # (C, L), one input
        for conv in self.layers:
            x = jax.nn.relu(conv(x))
        return self.head(self.dropout(x.mean(-1), key=key))


@pytest.fixture(scope="module")
def nets():
    linen = LinenNet()
    params = linen.init(jax.random.key(0), jnp.zeros((1, L, C_IN)))["params"]
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape), params)  # biases != 0
    p = jax.tree.map(np.asarray, params)

    net = NnxNet(nnx.Rngs(0))
    for conv, name in zip(net.blocks, ("conv1", "conv2")):
        conv.kernel[...] = jnp.asarray(p[name]["kernel"])
        conv.bias[...] = jnp.asarray(p[name]["bias"])
    net.head.kernel[...] = jnp.asarray(p["head"]["kernel"])
    net.head.bias[...] = jnp.asarray(p["head"]["bias"])

    e = EqxNet(jax.random.key(0))
    for i, name in enumerate(("conv1", "conv2")):
        w = jnp.asarray(p[name]["kernel"]).transpose(2, 1, 0)  # (k, in, out) -> (out, in, k)
        e = eqx.tree_at(lambda m: (m.layers[i].weight, m.layers[i].bias), e,
                        (w, jnp.asarray(p[name]["bias"])[:, None]))
    e = eqx.tree_at(lambda m: (m.head.weight, m.head.bias), e,
                    (jnp.asarray(p["head"]["kernel"]).T, jnp.asarray(p["head"]["bias"])))

    def features(x):  # the linen model up to conv2's output (pre-ReLU), for one input
        h = jax.nn.relu(jnp.einsum("lkc,kco->lo", _windows(x), p["conv1"]["kernel"]) + p["conv1"]["bias"])
        return jnp.einsum("lkc,kco->lo", _windows(h), p["conv2"]["kernel"]) + p["conv2"]["bias"]

    def head(a):
        return jax.nn.relu(a).mean(0) @ p["head"]["kernel"] + p["head"]["bias"]

    xs = jax.random.normal(jax.random.key(3), (4, L, C_IN))
    return dict(linen=(linen, params), nnx=net, eqx=e, split=xj.Split(features, head), xs=xs)


def _windows(x):  # (L, C) -> (L, 3, C), SAME padding
    padded = jnp.pad(x, ((1, 1), (0, 0)))
    return jnp.stack([padded[i:i + x.shape[0]] for i in range(3)], axis=1)


METHODS = ["grad_cam", "grad_cam_plus_plus", "xgrad_cam", "hires_cam", "layer_cam", "grad_cam_element_wise",
           "eigen_cam", "ablation_cam", "score_cam"]


def _maps(method, x_last, nets, layer_args, channels_first=False):
    fn = getattr(xj, method)
    m = fn(*layer_args[0], **layer_args[1])
    x = x_last.T if channels_first else x_last
    return np.stack([np.asarray(m(x, t)) for t in range(K)])


@pytest.mark.parametrize("method", METHODS)
def test_every_layer_method_gives_the_same_map_in_every_framework(nets, method):
    model, params = nets["linen"]
    forms = {
        "nnx": (((nets["nnx"],), dict(layer="blocks.1")), False),
        "eqx": (((nets["eqx"],), dict(layer=lambda m: m.layers[1])), True),
        "split": (((nets["split"],), {}), False),
    }
    for x in nets["xs"][:1]:
        want = _maps(method, x, nets, ((model, params), dict(layer="conv2")))
        assert np.abs(want).max() > 0
        for name, (args, channels_first) in forms.items():
            got = _maps(method, x, nets, args, channels_first)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=name)


def test_sise_gives_the_same_map_in_every_framework(nets):
    model, params = nets["linen"]
    x = nets["xs"][0]
    want = xj.sise(model, params, ["conv1", "conv2"])(x, 1)
    got_nnx = xj.sise(nets["nnx"], layers=["blocks.0", "blocks.1"])(x, 1)
    got_eqx = xj.sise(nets["eqx"], layers=[lambda m: m.layers[0], lambda m: m.layers[1]])(x.T, 1)
    for got in (got_nnx, got_eqx):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # defaults: the last convolution at each resolution (here conv2 alone: both keep L)
    np.testing.assert_allclose(xj.sise(nets["nnx"])(x, 1), xj.sise(model, params)(x, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xj.sise(nets["eqx"])(x.T, 1), xj.sise(model, params)(x, 1), rtol=1e-5, atol=1e-6)
    # a Split has one feature map: SISE on it is SISE on that one layer
    np.testing.assert_allclose(xj.sise(nets["split"])(x, 1), xj.sise(model, params, ["conv2"])(x, 1),
                               rtol=1e-5, atol=1e-6)


def test_layer_none_picks_the_last_convolution(nets):
    x = nets["xs"][1]
    np.testing.assert_array_equal(xj.grad_cam(nets["nnx"])(x, 2), xj.grad_cam(nets["nnx"], layer="blocks.1")(x, 2))
    np.testing.assert_array_equal(xj.grad_cam(nets["eqx"])(x.T, 2),
                                  xj.grad_cam(nets["eqx"], layer=lambda m: m.layers[1])(x.T, 2))


def test_list_layers_in_each_framework(nets):
    model, params = nets["linen"]
    x = nets["xs"][0]
    assert xj.list_layers(model, params, x) == [("conv1", "Conv", (L, C1)), ("conv2", "Conv", (L, C2)),
                                               ("head", "Dense", (K,))]
    assert xj.list_layers(nets["nnx"], x=x) == [("blocks.0", "Conv", (L, C1)), ("blocks.1", "Conv", (L, C2)),
                                               ("dropout", "Dropout", (C2,)), ("head", "Linear", (K,))]
    assert xj.list_layers(nets["eqx"], x=x.T) == [("layers[0]", "Conv1d", (C1, L)), ("layers[1]", "Conv1d", (C2, L)),
                                                 ("dropout", "Dropout", (C2,)), ("head", "Linear", (K,))]
    assert xj.list_layers(nets["split"], x=x) == [("features", "Split", (L, C2))]


def test_jit_vmap_equals_eager_in_nnx_and_equinox(nets):
    xs, ts = nets["xs"], jnp.array([0, 1, 2, 0])
    for cam, batch in ((xj.grad_cam(nets["nnx"], layer="blocks.1"), xs),
                       (xj.grad_cam(nets["eqx"], layer=lambda m: m.layers[1]), xs.transpose(0, 2, 1)),
                       (xj.score_cam(nets["nnx"]), xs), (xj.hires_cam(nets["split"]), xs)):
        eager = np.stack([np.asarray(cam(x, t)) for x, t in zip(batch, ts)])
        np.testing.assert_allclose(jax.jit(jax.vmap(cam))(batch, ts), eager, rtol=1e-5, atol=1e-6)


def test_inference_mode_and_the_callers_model_is_untouched(nets):
    net, x = nets["nnx"], nets["xs"][0]
    assert not net.dropout.deterministic  # the caller's module stays in training mode
    cam = xj.grad_cam(net)
    first = cam(x, 0)
    np.testing.assert_array_equal(cam(x, 0), first)  # dropout off: deterministic maps
    assert not net.dropout.deterministic and type(net.blocks[1]) is nnx.Conv


def test_split_is_a_model_for_the_gradient_methods(nets):
    split, (model, params) = nets["split"], nets["linen"]
    x = nets["xs"][0]
    np.testing.assert_allclose(split(x), xj.model_fn(model, params)(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xj.saliency(split)(x, 1), xj.saliency(xj.model_fn(model, params))(x, 1),
                               rtol=1e-5, atol=1e-6)


def test_wrong_layouts_and_arguments_are_clear_errors(nets):
    x = nets["xs"][0]
    with pytest.raises(TypeError, match=r"params is given only for flax.linen.*layer='blocks.1'"):
        xj.grad_cam(nets["nnx"], "blocks.1")
    with pytest.raises(TypeError, match="params is given only for flax.linen"):
        xj.score_cam(nets["eqx"], {"w": 1})
    with pytest.raises(TypeError, match="needs its params"):
        xj.grad_cam(nets["linen"][0])
    with pytest.raises(TypeError, match="layer must be None for a Split"):
        xj.grad_cam(nets["split"], layer="features")
    with pytest.raises(ValueError, match=r"layer 'layers.1' is not a submodule of the Equinox model"):
        xj.grad_cam(nets["eqx"], layer="layers.1")
    with pytest.raises(TypeError, match="where function"):
        xj.grad_cam(nets["eqx"], layer=3)
    with pytest.raises(TypeError, match="attribute path"):
        xj.grad_cam(nets["nnx"], layer=lambda m: m.blocks[1])
    with pytest.raises(TypeError, match="reads a layer, so model must be an xai_jax.Model.*got a plain function "
                                        "builtins.function"):
        xj.grad_cam(lambda x: x)
    with pytest.raises(ValueError, match=r"layer 'blocks.7' is not a submodule.*valid layers: \['blocks.0'"):
        xj.grad_cam(nets["nnx"], layer="blocks.7")(x, 0)
    # an Equinox model given a channels-last input: its first conv takes 2 channels, x has 16
    with pytest.raises(ValueError, match=r"channel_axis=0 reads 16 channels from x of shape \(16, 2\).*takes 2"):
        xj.grad_cam(nets["eqx"])(x, 0)
    # an NNX model told its layout is channels first
    with pytest.raises(ValueError, match=r"channel_axis=0 reads 16 channels.*takes 2 input channels"):
        xj.grad_cam(nets["nnx"], channel_axis=0)(x, 0)
    # a layer that is no grid, and a reshape that does not make one
    with pytest.raises(ValueError, match="not a feature map"):
        xj.grad_cam(nets["nnx"], layer="head")(x, 0)
    with pytest.raises(ValueError, match="reshape must map layer 'blocks.1'"):
        xj.grad_cam(nets["nnx"], layer="blocks.1", reshape=lambda a: a.ravel())(x, 0)
    with pytest.raises(ValueError, match="only rearrange values"):
        xj.grad_cam(nets["nnx"], layer="blocks.1", reshape=lambda a: a * a)(x, 0)
    with pytest.raises(ValueError, match="where function must return a submodule"):
        xj.grad_cam(nets["eqx"], layer=lambda m: m.layers[1].weight)(x.T, 0)


def test_reshape_must_only_rearrange(nets):
    x = nets["xs"][0]
    for bad in (lambda a: a + 1.0, lambda a: 2.0 * a, lambda a: jnp.cumsum(a, 0)):
        with pytest.raises(ValueError, match="only rearrange"):
            xj.grad_cam(nets["nnx"], layer="blocks.1", reshape=bad)(x, 0)
    # a selection (dropping the first position) and a flip are rearrangements
    for good in (lambda a: a[1:], lambda a: a[::-1]):
        assert xj.grad_cam(nets["nnx"], layer="blocks.1", reshape=good)(x, 0).shape == (L,)
    with pytest.raises(TypeError, match="relu must be a bool"):
        xj.grad_cam(nets["nnx"], relu=0)
    with pytest.raises(TypeError, match="layers must be a list"):
        xj.sise(nets["nnx"], layers=1)
