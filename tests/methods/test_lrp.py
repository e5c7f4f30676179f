"""LRP: conservation, every rule against its closed form in NumPy on a two-layer net,
composites and per-layer assignment, the BatchNorm canonizer, errors."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax import lrp_rules as R

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))
import bn_models  # noqa: E402

RNG = np.random.default_rng(2)
W1 = RNG.normal(size=(6, 5)).astype(np.float64)
B1 = RNG.normal(size=5).astype(np.float64)
W2 = RNG.normal(size=(5, 3)).astype(np.float64)
B2 = RNG.normal(size=3).astype(np.float64)
X = RNG.normal(size=6).astype(np.float64)   # mixed signs: every term of every rule is exercised
T = 1
EPS = 1e-6


def net(x):
    return jax.nn.relu(x @ W1.astype(np.float32) + B1.astype(np.float32)) @ W2.astype(np.float32) \
        + B2.astype(np.float32)


def stab(z, eps=EPS):
    return z + np.where(z >= 0, 1.0, -1.0) * eps


def pos(a):
    return np.maximum(a, 0)


def neg(a):
    return np.minimum(a, 0)


def top_relevance():
    """Relevance at the hidden ReLU's output: the output layer's epsilon rule from R = one_hot * z."""
    a = np.maximum(X @ W1 + B1, 0)
    z = a @ W2 + B2
    r = np.zeros(3)
    r[T] = z[T]
    return a * (W2 @ (r / stab(z))), z[T]   # ReLU passes it on unchanged


def first_layer(rule: str, r):
    """The closed forms of Zennit's rules for the dense layer z = x W1 + B1 (NumPy, float64)."""
    x, w, b = X, W1, B1
    xp, xn = pos(x), neg(x)
    if rule == "epsilon":
        return x * (w @ (r / stab(x @ w + b)))
    if rule in ("zplus", "alpha1beta0", "alpha2beta1"):
        alpha, beta = {"zplus": (1, 0), "alpha1beta0": (1, 0), "alpha2beta1": (2, 1)}[rule]
        zp = xp @ pos(w) + pos(b) + xn @ neg(w)
        zn = xp @ neg(w) + neg(b) + xn @ pos(w)
        plus = xp * (pos(w) @ (r / stab(zp))) + xn * (neg(w) @ (r / stab(zp)))
        minus = xp * (neg(w) @ (r / stab(zn))) + xn * (pos(w) @ (r / stab(zn)))
        return alpha * plus - beta * minus
    if rule == "gamma":
        g = 0.25
        wp, wn = w + g * pos(w), w + g * neg(w)
        zp = xp @ wp + (b + g * pos(b)) + xn @ wn
        zn = xp @ wn + (b + g * neg(b)) + xn @ wp
        z = x @ w + b
        sp = np.where(z > 0, r / stab(zp), 0)
        sn = np.where(z < 0, r / stab(zn), 0)
        return xp * (wp @ sp) + xn * (wn @ sp) + xp * (wn @ sn) + xn * (wp @ sn)
    if rule == "zbox":
        lo, hi = -3.0 * np.ones_like(x), 3.0 * np.ones_like(x)
        z = x @ w - lo @ pos(w) - hi @ neg(w)   # the biases cancel
        s = r / stab(z)
        return x * (w @ s) - lo * (pos(w) @ s) - hi * (neg(w) @ s)
    if rule == "flat":
        return np.ones_like(w) @ (r / stab(np.full(w.shape[1], float(w.shape[0]))))
    if rule == "wsquare":
        return w**2 @ (r / stab((w**2).sum(0) + b**2))
    raise AssertionError(rule)


RULES = {"epsilon": R.Epsilon(EPS), "zplus": R.ZPlus(), "alpha1beta0": "alpha1beta0", "alpha2beta1": "alpha2beta1",
         "gamma": R.Gamma(0.25), "zbox": R.ZBox(-3.0, 3.0), "flat": "flat", "wsquare": "wsquare"}


@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_on_the_first_layer_of_a_two_layer_net_equals_its_closed_form(rule):
    r_hidden, _ = top_relevance()
    comp = R.Composite(dense=R.Epsilon(EPS), first=RULES[rule], first_kinds=("dense",))
    got = np.asarray(xj.lrp(net, composite=comp)(jnp.asarray(X, jnp.float32), T), np.float64)
    np.testing.assert_allclose(got, first_layer(rule, r_hidden), rtol=2e-4, atol=2e-5)


def test_lrp_zero_conserves_the_logit_on_a_bias_free_relu_network():
    w1, w2 = W1.astype(np.float32), W2.astype(np.float32)
    f = lambda x: jax.nn.relu(x @ w1) @ w2  # noqa: E731
    x = jnp.asarray(X, jnp.float32)
    for t in range(3):
        rel = xj.lrp(f, rule="zero")(x, t)
        assert abs(float(rel.sum()) - float(f(x)[t])) < 1e-5 * max(1.0, abs(float(f(x)[t])))


def test_conservation_through_convolutions_and_pools_without_biases():
    import flax.linen as nn

    class Conv(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.max_pool(nn.relu(nn.Conv(4, (3, 3), use_bias=False)(x)), (2, 2), (2, 2))
            x = nn.relu(nn.Conv(5, (3, 3), use_bias=False)(x)).mean((1, 2))
            return nn.Dense(3, use_bias=False)(x)

    model = Conv()
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 2)))
    f = xj.Model(model, params)
    x = jax.random.uniform(jax.random.key(1), (8, 8, 2))
    t = int(jnp.argmax(f(x)))
    rel = xj.lrp(f, rule="zero")(x, t)
    assert abs(float(rel.sum()) - float(f(x)[t])) < 1e-4 * abs(float(f(x)[t]))


def test_composites_by_name_and_rules_by_layer_name_on_a_linen_model():
    model, variables = bn_models.linen_model()
    m = xj.Model(model, variables)
    x = jnp.asarray(bn_models.inputs(1)[0])
    by_kind = xj.lrp(m, composite="EpsilonPlus")(x, 1)
    by_name = xj.lrp(m, composite=R.Composite(conv=R.Epsilon(), layers={"conv1": R.ZPlus(), "conv2": "zplus"}))(x, 1)
    np.testing.assert_allclose(np.asarray(by_name), np.asarray(by_kind), rtol=1e-6, atol=1e-7)
    one = xj.lrp(m, composite=R.Composite(layers={"conv2": R.ZPlus()}))(x, 1)
    assert float(jnp.abs(one - by_kind).max()) > 1e-4   # conv1 keeps epsilon: a different map
    flat_first = xj.lrp(m, composite="EpsilonPlusFlat")(x, 1)
    np.testing.assert_allclose(np.asarray(flat_first), np.asarray(xj.lrp(
        m, composite=R.Composite(conv=R.ZPlus(), layers={"conv1": R.Flat()}))(x, 1)), rtol=1e-6, atol=1e-7)


def merged_bn_function(variables):
    """The BN net with the BatchNorm merged into conv1 by hand (W' = W s, b' = (b - mean) s + beta)."""
    p, st = variables["params"], variables["batch_stats"]["bn"]
    scale = p["bn"]["scale"] / jnp.sqrt(st["var"] + 1e-5)
    w1, b1 = p["conv1"]["kernel"] * scale, (p["conv1"]["bias"] - st["mean"]) * scale + p["bn"]["bias"]

    def conv(x, w, b):
        y = jax.lax.conv_general_dilated(x[None], w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y[0] + b

    def f(x):
        a = jax.nn.relu(conv(jax.nn.relu(conv(x, w1, b1)), p["conv2"]["kernel"], p["conv2"]["bias"]))
        return a.mean((0, 1)) @ p["head"]["kernel"] + p["head"]["bias"]

    return f


def test_the_canonizer_equals_merging_batchnorm_by_hand_in_every_framework():
    model, variables = bn_models.linen_model()
    x = jnp.asarray(bn_models.inputs(1)[0])
    merged = merged_bn_function(variables)
    for name in ("EpsilonAlpha2Beta1", "EpsilonGammaBox"):
        comp = R.composite(name, low=-4.0, high=4.0)
        expected = np.asarray(xj.lrp(merged, composite=comp)(x, 2))
        got = np.asarray(xj.lrp(xj.Model(model, variables), composite=comp)(x, 2))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    comp = R.composite("EpsilonPlus")
    expected = np.asarray(xj.lrp(merged, composite=comp)(x, 2))
    em, es = bn_models.equinox_model(variables)
    ht, hp, hs = bn_models.haiku_model(variables)
    for m, xin, back in [(xj.Model(model, variables), x, lambda r: r),
                         (bn_models.nnx_model(variables), x, lambda r: r),
                         (xj.Model(em, state=es), jnp.moveaxis(x, -1, 0), lambda r: jnp.moveaxis(r, 0, -1)),
                         (xj.Model(ht, hp, state=hs), x, lambda r: r)]:
        got = np.asarray(back(xj.lrp(m, composite=comp)(xin, 2)))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    # BatchNorm left to Pass: the bias it adds now keeps no relevance (ZBox alone would not tell:
    # it is invariant to a positive per-channel scale and ignores biases)
    unmerged = np.asarray(xj.lrp(xj.Model(model, variables), composite=comp, canonize=False)(x, 2))
    assert np.abs(unmerged - expected).max() > 1e-3 * np.abs(expected).max()


def test_a_product_of_activations_is_an_error_naming_it_unless_fallback():
    f = lambda x: (jnp.tanh(x) * x) @ jnp.ones((6, 2))  # noqa: E731
    with pytest.raises(xj.PropagationError, match="'mul'"):
        xj.lrp(f)(jnp.asarray(X, jnp.float32), 0)
    assert np.isfinite(np.asarray(xj.lrp(f, fallback="gradient")(jnp.asarray(X, jnp.float32), 0))).all()


@pytest.mark.parametrize("build, error, match", [
    (lambda: xj.lrp(net, rule="zbox"), ValueError, "ZBox"),
    (lambda: xj.lrp(net, rule="nope"), ValueError, "rule must be one of"),
    (lambda: xj.lrp(net, rule=3), TypeError, "LRP rule"),
    (lambda: xj.lrp(net, rule="epsilon", composite="EpsilonPlus"), TypeError, "not both"),
    (lambda: xj.lrp(net, composite="EpsilonMinus"), ValueError, "composite must be one of"),
    (lambda: xj.lrp(net, composite=R.composite("EpsilonGammaBox")), ValueError, "low= and high="),
    (lambda: R.AlphaBeta(2.0, 2.0), ValueError, "alpha - beta = 1"),
    (lambda: xj.lrp(net, canonize="yes"), TypeError, "canonize"),
    (lambda: R.Composite(first_kinds=("pool",)), ValueError, "first_kinds"),
])
def test_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()
