"""Layer and neuron attribution (xai_jax.attribution.layer): closed forms where the head
after the layer is linear, completeness on non-linear heads and on a ViT's token embeddings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.models_small import Tiny1D, Tiny2D, init
from xai_jax.study.models import ViT1D

MODEL = Tiny1D(features=3, classes=4)
PARAMS = init(MODEL, (8, 1))
X = jnp.asarray(np.random.default_rng(0).normal(size=(8, 1)), jnp.float32)
M = xj.Model(MODEL, PARAMS)


def conv_params():
    leaves = jax.tree.leaves_with_path(PARAMS["conv"])
    kernel = next(v for p, v in leaves if "kernel" in jax.tree_util.keystr(p))
    bias = next(v for p, v in leaves if "bias" in jax.tree_util.keystr(p))
    return np.asarray(kernel).reshape(3), np.asarray(bias)


def activation(x):
    k, b = conv_params()
    return np.maximum(np.asarray(x) * k[None] + b[None], 0.0)  # (8, 3)


DENSE = np.asarray(PARAMS["dense"]["kernel"]).T.reshape(4, 8, 3)  # flatten order (L, K)


def test_linear_head_closed_forms():
    a = activation(X)
    a_b = activation(jnp.zeros_like(X) + 0.3)
    t = 2
    got = jax.jit(lambda x: [
        xj.layer_activation(M, layer="conv")(x, t),
        xj.layer_gradient_x_activation(M, layer="conv")(x, t),
        xj.layer_integrated_gradients(M, layer="conv", steps=3, baseline=0.3)(x, t),
        xj.layer_conductance(M, layer="conv", steps=5, baseline=0.3)(x, t),
        xj.layer_gradient_x_activation(M, layer="conv", upsample=True)(x, t),
    ])(X)
    np.testing.assert_allclose(got[0], a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], a * DENSE[t], rtol=1e-5, atol=1e-6)
    # the head is linear: IG in the layer's space is exact for any rule, and the conductance's
    # sum over the path telescopes to (A(x) - A(b)) dy/dA
    np.testing.assert_allclose(got[2], (a - a_b) * DENSE[t], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[3], (a - a_b) * DENSE[t], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[4], (a * DENSE[t]).sum(-1), rtol=1e-5, atol=1e-6)  # same grid: no resize


def test_neuron_gradient_and_ig_closed_forms():
    k, b = conv_params()
    neuron = (5, 1)
    ng = jax.jit(xj.neuron_gradient(M, layer="conv", neuron=neuron))(X, 0)
    want = np.zeros((8, 1))
    want[5, 0] = k[1] * (float(X[5, 0]) * k[1] + b[1] > 0)
    np.testing.assert_allclose(ng, want, atol=1e-6)
    # IG of the unit: only x_5 moves it; its sum is A(x) - A(b) (up to the ReLU kink's quadrature error)
    nig = np.asarray(jax.jit(xj.neuron_integrated_gradients(M, layer="conv", neuron=neuron, steps=256,
                                                            rule="riemann_middle"))(X, 0))
    assert np.count_nonzero(nig) <= 1
    np.testing.assert_allclose(nig.sum(), activation(X)[5, 1] - activation(0 * X)[5, 1], atol=5e-3)
    # a selector function: the same unit
    sel = jax.jit(xj.neuron_gradient(M, layer="conv", neuron=lambda a: a[5, 1]))(X, 0)
    np.testing.assert_allclose(sel, ng)


def test_completeness_on_a_nonlinear_head():
    model = Tiny2D(classes=3)
    m = xj.Model(model, init(model, (6, 6, 2)))
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(6, 6, 2)), jnp.float32)
    gap, lig, cond = jax.jit(lambda x: (m(x)[1] - m(0 * x)[1],
        xj.layer_integrated_gradients(m, layer="conv_a", steps=64, rule="gauss_legendre")(x, 1),
        xj.layer_conductance(m, layer="conv_a", steps=128, chunk_size=32)(x, 1)))(x)
    assert lig.shape == cond.shape == (6, 6, 4)
    # every path into the head goes through conv_a: both sum to F(x) - F(b)
    np.testing.assert_allclose(float(lig.sum()), float(gap), rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(float(cond.sum()), float(gap), rtol=1e-2, atol=1e-3)


def test_layer_ig_on_vit_token_embeddings():
    model = ViT1D(patch=4, dim=8, depth=1, heads=2, mlp_dim=16, num_classes=3)
    m = xj.Model(model, model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"])
    x = jax.random.normal(jax.random.key(1), (40, 1))
    lig = xj.layer_integrated_gradients(m, layer="embed", steps=32, rule="gauss_legendre")
    assert lig.output == "layer"
    got, gap = jax.jit(lambda x: (lig(x, 0), m(x)[0] - m(0 * x)[0]))(x)
    assert got.shape == (10, 8)  # one row per patch token
    per_patch = got.sum(-1)
    np.testing.assert_allclose(float(per_patch.sum()), float(gap), rtol=1e-2, atol=1e-3)


BAD = [
    (lambda: xj.layer_activation(lambda x: x.sum(0)), TypeError, "reads a layer"),
    (lambda: xj.layer_activation(M, layer="nope")(X, 0), ValueError, "not a submodule"),
    (lambda: xj.layer_integrated_gradients(M, layer="conv", rule="simpson"), ValueError, "rule must be"),
    (lambda: xj.layer_conductance(M, layer="conv", steps=0), ValueError, "steps must be >= 1"),
    (lambda: xj.layer_gradient_x_activation(M, layer="conv", upsample="yes"), TypeError, "upsample must be a bool"),
    (lambda: xj.neuron_gradient(M, layer="conv", neuron=(9, 0))(X, 0), ValueError, "is not an index"),
    (lambda: xj.neuron_gradient(M, layer="conv", neuron=(1,))(X, 0), ValueError, "is not an index"),
    (lambda: xj.neuron_gradient(M, layer="conv", neuron="a"), TypeError, "neuron must be an index"),
    (lambda: xj.neuron_gradient(M, layer="conv", neuron=lambda a: a[0])(X, 0), ValueError, "give a scalar"),
    (lambda: xj.layer_activation(M, layer="conv")(X, 7), ValueError, "target"),
]


@pytest.mark.parametrize("call,error,match", BAD, ids=[b[2] for b in BAD])
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()
