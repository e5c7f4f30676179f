"""Error-controlled IG (steps="auto"): the completeness bound on every input, the closed
form on a linear model, jit/vmap agreement, and the convolution rewrite it relies on."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import xai_jax as xj
from tests.models_small import linear_f
from xai_jax.attribution.integrated_gradients import AUTO_INITIAL
from xai_jax.attribution.loop_convs import convs_as_matmuls, loop_friendly

# its module-scoped fixture is built once: every test of the file runs in one xdist worker
pytestmark = pytest.mark.xdist_group("adaptive_ig")


class BiasedCNN(nn.Module):
    """A 1-D ReLU CNN whose random non-zero biases put many kinks on every IG path."""

    @nn.compact
    def __call__(self, x):
        init_b = nn.initializers.normal(0.5)
        x = nn.relu(nn.Conv(16, (5,), bias_init=init_b)(x))
        x = nn.relu(nn.Conv(16, (3,), bias_init=init_b)(x))
        return nn.Dense(10, bias_init=init_b)(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def biased():
    model = BiasedCNN()
    params = model.init(jax.random.key(3), jnp.zeros((1, 40, 1)))["params"]
    f = xj.model_fn(model, params)
    xs = jax.random.normal(jax.random.key(4), (48, 40, 1))
    ts = jnp.argmax(jax.vmap(f)(xs), 1)
    return f, xs, ts


def _bound(f, xs, ts, tol, atol):
    d = jax.vmap(lambda x, t: f(x)[t] - f(jnp.zeros_like(x))[t])(xs, ts)
    return np.maximum(tol * np.abs(np.asarray(d)), atol)


@pytest.mark.parametrize("tol", [1e-2, 1e-3])
def test_every_input_meets_the_tolerance_where_uniform_rules_do_not(biased, tol):
    f, xs, ts = biased
    bound = _bound(f, xs, ts, tol, 1e-6)
    method = xj.integrated_gradients(f, steps="auto", tol=tol, return_delta=True)
    maps, delta = xj.attribute(method, xs, ts, batch_size=16)
    used = np.asarray(jax.vmap(method.steps_used)(xs, ts))
    converged = used + 8 <= 1024  # room for another round: it stopped on the bound
    assert converged.all(), used
    assert (np.abs(delta) <= bound).all(), np.abs(delta) / bound
    # delta is what it says: the completeness gap of the returned maps
    gap = maps.reshape(len(xs), -1).sum(1) - np.asarray(
        jax.vmap(lambda x, t: f(x)[t] - f(jnp.zeros_like(x))[t])(xs, ts))
    np.testing.assert_allclose(delta, gap, atol=2e-5 * np.abs(gap).max() + 1e-6)
    # the uniform rule with the evaluations adaptive IG used on its hardest input misses the bound somewhere
    uniform = xj.integrated_gradients(f, steps=int(used.max()), return_delta=True)
    _, d_uniform = xj.attribute(uniform, xs, ts, batch_size=16)
    assert (np.abs(d_uniform) > bound).any()


def test_hitting_max_steps_is_visible_in_delta(biased):
    f, xs, ts = biased
    bound = _bound(f, xs, ts, 1e-7, 0.0)  # beyond float32: cannot converge
    method = xj.integrated_gradients(f, steps="auto", tol=1e-7, atol=0.0, max_steps=40, return_delta=True)
    _, delta = xj.attribute(method, xs, ts, batch_size=16)
    used = np.asarray(jax.vmap(method.steps_used)(xs, ts))
    assert (used <= 40).all() and (used > 40 - 8).any()
    assert (np.abs(delta) > bound).any()


def test_linear_model_is_exact_with_the_initial_nodes():
    f, W, _ = linear_f()
    x = jnp.asarray(np.random.default_rng(1).normal(size=(6, 2)), jnp.float32)
    method = xj.integrated_gradients(f, steps="auto")
    for t in range(3):
        np.testing.assert_allclose(method(x, t), np.asarray(x) * W[t].reshape(6, 2), rtol=1e-5, atol=1e-6)
        assert int(method.steps_used(x, t)) == AUTO_INITIAL


def test_kinked_path_refines_near_the_kink():
    # F(x) = relu(sum x - 0.3) along x = a * ones(4): one kink at a = 0.075, inside the first interval
    f = lambda x: jnp.stack([jax.nn.relu(x.sum() - 0.3), x.sum()])  # noqa: E731
    x = jnp.ones(4)
    exact = 4.0 - 0.3
    m16 = xj.integrated_gradients(f, steps=AUTO_INITIAL, return_delta=True)
    assert abs(float(m16(x, 0)[1])) > 1e-2 * exact  # the uniform rule on the initial nodes misses
    auto = xj.integrated_gradients(f, steps="auto", return_delta=True)
    maps, delta = auto(x, 0)
    assert abs(float(delta)) <= 1e-2 * exact
    np.testing.assert_allclose(maps, np.full(4, exact / 4), rtol=1e-2)


def test_jit_vmap_equal_eager(biased):
    f, xs, ts = biased
    # float32 on every backend: under TF32 the two programs round apart and may pick other nodes
    method = xj.integrated_gradients(f, steps="auto", return_delta=True, precision="highest")
    batched = jax.jit(jax.vmap(method))(xs[:6], ts[:6])
    for i in range(6):
        eager = method(xs[i], ts[i])
        np.testing.assert_allclose(batched[0][i], eager[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(batched[1][i], eager[1], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"rule": "trapezoid"}, ValueError, ["rule", "auto"]),
    ({"tol": 0.0}, ValueError, ["tol"]),
    ({"tol": "big"}, TypeError, ["tol"]),
    ({"atol": -1.0}, ValueError, ["atol"]),
    ({"max_steps": 16}, ValueError, ["max_steps", "17"]),
    ({"max_steps": 20, "chunk_size": 8}, ValueError, ["chunk_size", "max_steps"]),
])
def test_bad_auto_arguments(kwargs, error, words):
    f, _, _ = linear_f()
    with pytest.raises(error) as e:
        xj.integrated_gradients(f, steps="auto", **kwargs)
    assert all(w in str(e.value) for w in words), e.value


def test_tolerance_arguments_need_auto_and_steps_must_be_int_or_auto():
    f, _, _ = linear_f()
    with pytest.raises(ValueError, match="tol, max_steps apply only with steps='auto'"):
        xj.integrated_gradients(f, steps=32, tol=1e-3, max_steps=64)
    with pytest.raises(ValueError, match="'adaptive'"):
        xj.integrated_gradients(f, steps="adaptive")


CONVS = [  # (input, kernel, strides, padding, kernel dilation, dimension numbers)
    ((2, 40, 3), (5, 3, 7), (1,), "SAME", (1,), ("NWC", "WIO", "NWC")),
    ((2, 41, 3), (4, 3, 7), (2,), "VALID", (1,), ("NWC", "WIO", "NWC")),
    ((2, 16, 15, 3), (3, 3, 3, 8), (1, 1), "SAME", (1, 1), ("NHWC", "HWIO", "NHWC")),
    ((2, 16, 15, 3), (3, 2, 3, 8), (2, 3), [(1, 0), (2, 1)], (2, 1), ("NHWC", "HWIO", "NHWC")),
    ((2, 3, 16, 15), (8, 3, 3, 3), (1, 2), "SAME", (1, 1), ("NCHW", "OIHW", "NCHW")),
]


@pytest.mark.parametrize("case", CONVS, ids=[f"{c[5][0]}-{c[3] if isinstance(c[3], str) else 'pad'}-{c[2]}"
                                              for c in CONVS])
def test_convs_as_matmuls_equal_lax_conv_and_its_gradient(case):
    xs, ks, strides, padding, dilation, dn = case
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=xs), jnp.float32)
    k = jnp.asarray(rng.normal(size=ks), jnp.float32)

    def conv(x, k):
        return lax.conv_general_dilated(x, k, strides, padding, rhs_dilation=dilation, dimension_numbers=dn,
                                        precision="highest")

    rewritten = convs_as_matmuls(conv)
    assert "conv_general_dilated" not in str(jax.make_jaxpr(rewritten)(x, k))
    want, got = conv(x, k), jax.jit(rewritten)(x, k)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()))
    g_want = jax.grad(lambda x: (conv(x, k) ** 2).sum())(x)
    g_got = jax.grad(lambda x: (rewritten(x, k) ** 2).sum())(x)
    np.testing.assert_allclose(g_got, g_want, rtol=1e-5, atol=1e-5 * float(jnp.abs(g_want).max()))


def test_convs_as_matmuls_keeps_what_it_does_not_cover_and_recurses_into_jit():
    x = jnp.ones((1, 8, 4))
    k = jnp.ones((3, 1, 4))
    grouped = lambda x: lax.conv_general_dilated(x, k, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"),  # noqa: E731
                                                 feature_group_count=4)
    assert "conv_general_dilated" in str(jax.make_jaxpr(convs_as_matmuls(grouped))(x))
    np.testing.assert_allclose(convs_as_matmuls(grouped)(x), grouped(x))
    inner = jax.jit(lambda x: lax.conv_general_dilated(x, jnp.ones((3, 4, 2)), (1,), "SAME",
                                                       dimension_numbers=("NWC", "WIO", "NWC")))
    assert "conv_general_dilated" not in str(jax.make_jaxpr(convs_as_matmuls(lambda x: inner(x) + 1))(x))
    assert (loop_friendly(inner) is inner) == (jax.default_backend() != "cpu")
