import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.models_small import linear_f
from xai_jax.attribution.integrated_gradients import quadrature

X = jnp.asarray(np.random.default_rng(1).normal(size=(6, 2)), jnp.float32)


@pytest.mark.parametrize("rule", xj.RULES)
def test_linear_model_closed_form_every_rule(rule):
    f, W, _ = linear_f()
    base = jnp.asarray(np.random.default_rng(2).normal(size=(6, 2)), jnp.float32)
    for baseline, b in [(0.0, np.zeros((6, 2))), (base, np.asarray(base)), (lambda x: 0.5 * x, 0.5 * np.asarray(X))]:
        for t in range(3):
            got = xj.integrated_gradients(f, steps=7, rule=rule, baseline=baseline)(X, t)
            want = (np.asarray(X) - b) * W[t].reshape(6, 2)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rule", xj.RULES)
def test_quadrature_weights_and_exactness(rule):
    a, w = quadrature(rule, 5)
    assert a.shape == w.shape == (5,)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
    assert (a >= 0).all() and (a <= 1).all()
    exact_degree = {"riemann_left": 0, "riemann_right": 0, "riemann_middle": 1, "trapezoid": 1, "gauss_legendre": 9}
    for k in range(exact_degree[rule] + 1):
        np.testing.assert_allclose((w * a.astype(np.float64) ** k).sum(), 1 / (k + 1), rtol=1e-5)
    k = exact_degree[rule] + 1
    assert abs((w * a.astype(np.float64) ** k).sum() - 1 / (k + 1)) > 5e-7  # not exact one degree up


def test_cubic_model_gauss_legendre_exact_riemann_not():
    f = lambda x: jnp.stack([jnp.sum(x**3), jnp.sum(x**2)])  # noqa: E731
    # IG of sum x^3 from 0 is x^3 exactly (integrand 3 a^2 x^2 is quadratic in a)
    gl = xj.integrated_gradients(f, steps=2, rule="gauss_legendre")(X, 0)
    np.testing.assert_allclose(gl, np.asarray(X) ** 3, rtol=1e-5, atol=1e-6)
    mid = xj.integrated_gradients(f, steps=2, rule="riemann_middle")(X, 0)
    assert np.abs(np.asarray(mid) - np.asarray(X) ** 3).max() > 1e-2


def test_completeness_on_trained_cnn(mnist1d, study_mnist1d):
    model, params = study_mnist1d
    f = xj.model_fn(model, params)
    xs, ts = mnist1d.x_test[:250], mnist1d.y_test[:250]  # the medians move < 0.003 from 1000 inputs
    gap = np.asarray(jax.vmap(lambda x, t: f(x)[t] - f(jnp.zeros_like(x))[t])(jnp.asarray(xs), jnp.asarray(ts)))
    errors = {}
    for steps in (8, 64, 256):
        ig = xj.integrated_gradients(f, steps=steps, rule="trapezoid", return_delta=True)
        attr, delta = xj.attribute(ig, xs, ts, batch_size=250)
        np.testing.assert_allclose(attr.sum((1, 2)) - gap, delta, atol=2e-3)
        errors[steps] = np.median(np.abs(delta) / np.abs(gap))
    assert errors[64] <= 0.01, errors
    assert errors[256] < errors[64] < errors[8], errors


def test_gauss_legendre_beats_riemann_on_smooth_model():
    rng = np.random.default_rng(0)
    W1 = jnp.asarray(rng.normal(size=(16, 12)), jnp.float32)
    W2 = jnp.asarray(rng.normal(size=(4, 16)), jnp.float32)
    f = lambda x: W2 @ jnp.tanh(W1 @ x.reshape(-1))  # noqa: E731
    xs = jnp.asarray(rng.normal(size=(32, 6, 2)), jnp.float32)
    errs = {}
    for rule in ("gauss_legendre", "riemann_middle", "riemann_left", "trapezoid"):
        ig = xj.integrated_gradients(f, steps=8, rule=rule, return_delta=True)
        _, delta = jax.vmap(ig, in_axes=(0, None))(xs, 1)
        errs[rule] = float(jnp.abs(delta).mean())
    assert errs["gauss_legendre"] < errs["riemann_middle"] < errs["riemann_left"]
    assert errs["gauss_legendre"] < errs["trapezoid"]


def test_chunked_equals_unchunked_and_delta_function(study_mnist1d, mnist1d):
    model, params = study_mnist1d
    f = xj.model_fn(model, params)
    x, t = jnp.asarray(mnist1d.x_test[3]), int(mnist1d.y_test[3])
    full = xj.integrated_gradients(f, steps=64)(x, t)
    for chunk in (7, 16, 64, 1000):
        np.testing.assert_allclose(xj.integrated_gradients(f, steps=64, chunk_size=chunk)(x, t), full,
                                   rtol=1e-4, atol=1e-5)
    attr, delta = xj.integrated_gradients(f, steps=64, return_delta=True)(x, t)
    np.testing.assert_allclose(xj.completeness_delta(f, attr, x, t), delta, rtol=1e-5, atol=1e-6)


def test_jit_vmap_equal_eager(study_mnist1d, mnist1d):
    model, params = study_mnist1d
    # "highest": the batched and unbatched programs must both compute in float32 (see
    # test_grad_cam.test_study_cnn_jit_vmap_equal_eager: TF32 rounds them apart on GPUs)
    ig = xj.integrated_gradients(xj.model_fn(model, params), steps=16, rule="gauss_legendre", precision="highest")
    xs, ts = jnp.asarray(mnist1d.x_test[:5]), jnp.asarray(mnist1d.y_test[:5])
    eager = np.stack([ig(x, int(t)) for x, t in zip(xs, ts)])
    np.testing.assert_allclose(jax.jit(jax.vmap(ig))(xs, ts), eager, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(jax.jit(ig)(xs[0], ts[0]), eager[0], rtol=1e-4, atol=1e-6)


def test_scores_softmax_and_log_softmax():
    f, _, _ = linear_f()
    for score, s in [("softmax", jax.nn.softmax), ("log_softmax", jax.nn.log_softmax)]:
        attr, delta = xj.integrated_gradients(f, steps=256, score=score, return_delta=True)(X, 1)
        gap = s(f(X))[1] - s(f(jnp.zeros_like(X)))[1]
        np.testing.assert_allclose(attr.sum(), gap, atol=2e-3)


def test_bad_inputs(study_mnist1d, mnist1d):
    model, params = study_mnist1d
    f = xj.model_fn(model, params)
    ig = xj.integrated_gradients(f, steps=4)
    x = jnp.asarray(mnist1d.x_test[0])
    with pytest.raises(ValueError, match=r"f cannot take x of shape \(40,\)"):
        ig(x[:, 0], 1)
    with pytest.raises(ValueError, match=r"shape \(3, 40, 1\)"):
        ig(jnp.asarray(mnist1d.x_test[:3]), 1)
    with pytest.raises(ValueError, match="target 10 is out of range: the model has 10 classes"):
        ig(x, 10)
    with pytest.raises(ValueError, match="target -1 is out of range"):
        ig(x, -1)
    with pytest.raises(TypeError, match="target must be an integer"):
        ig(x, 1.0)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        xj.integrated_gradients(f, steps=0)
    with pytest.raises(ValueError, match="rule 'trapezoid' needs steps >= 2"):
        xj.integrated_gradients(f, steps=1)
    with pytest.raises(ValueError, match="rule must be one of"):
        xj.integrated_gradients(f, rule="simpson")
    with pytest.raises(ValueError, match=r"baseline has shape \(39, 1\), expected a scalar or x's shape \(40, 1\)"):
        xj.integrated_gradients(f, baseline=jnp.zeros((39, 1)))(x, 1)
    with pytest.raises(ValueError, match="NaN or inf"):
        ig(x.at[3, 0].set(jnp.nan), 1)
    with pytest.raises(TypeError, match="float dtype"):
        ig(x.astype(jnp.int32), 1)
    with pytest.raises(ValueError, match="score must be one of"):
        xj.integrated_gradients(f, score="prob")


# ---------------------------------------------------------------------------------------------
# issue 21: NaN maps, accuracy lost with many steps, Gauss-Legendre's construction


def standardising(x):
    """A model that standardises its input ((x - mean) / std): 0/0 at the zero baseline."""
    f, _, _ = linear_f()
    return f((x - x.mean()) / x.std())


def _nan_map(out):
    assert np.isnan(np.asarray(out)).all()


@pytest.mark.parametrize("call, expected", [
    pytest.param(lambda: xj.integrated_gradients(standardising, steps=8)(X, 1),
                 (ValueError, ["integrated_gradients", "baseline", "NaN or inf"]), id="eager-names-the-baseline"),
    pytest.param(lambda: xj.integrated_gradients(standardising, steps=8, rule="riemann_middle")(X, 1),
                 (ValueError, ["baseline"]), id="eager-also-when-no-node-sits-on-the-baseline"),
    pytest.param(lambda: xj.integrated_gradients(standardising, steps="auto")(X, 1), (ValueError, ["baseline"]),
                 id="eager-adaptive"),
    pytest.param(lambda: jax.jit(xj.integrated_gradients(standardising, steps=8))(X, 1), _nan_map, id="jit-nan-map"),
    pytest.param(lambda: xj.attribute(xj.integrated_gradients(standardising, steps=8), np.stack([X, X]), [0, 1]),
                 (ValueError, ["NaN or inf", "inputs [0, 1]", "baseline"]), id="attribute-names-the-inputs"),
    pytest.param(lambda: xj.integrated_gradients(standardising, steps=8, baseline=lambda x: 0.5 * x)(X, 1),
                 lambda out: np.testing.assert_allclose(np.asarray(out).sum(), 0.0, atol=1e-4),
                 id="defined-baseline-completeness-holds"),
])
def test_model_undefined_at_the_baseline(call, expected):
    if isinstance(expected, tuple):
        with pytest.raises(expected[0]) as e:
            call()
        assert all(w in str(e.value) for w in expected[1]), e.value
    else:
        expected(call())


def quadratic(x):
    """F(x) = sum w x^2: its path gradient is linear in alpha, so the trapezoid rule is exact
    and the completeness error of IG is float32 rounding alone."""
    w = jnp.asarray(np.random.default_rng(5).normal(size=(40, 1)), jnp.float32)
    return jnp.stack([(w * x**2).sum(), x.sum()])


@pytest.mark.parametrize("chunk_size", [None, "auto", 4096])
def test_many_steps_keep_float32_completeness(chunk_size):
    # issue 21: 100,000 steps without chunk_size lost 2e-6 here (9e-4 on the CNN) to a sequential
    # float32 dot over the nodes; pairwise / compensated sums keep it at ~1e-7
    x = jnp.asarray(np.random.default_rng(6).normal(size=(40, 1)), jnp.float32)
    a = jax.jit(xj.integrated_gradients(quadratic, steps=100_000, chunk_size=chunk_size))(x, 0)
    want = float(np.sum(np.asarray(quadratic(x)[0], np.float64)))
    assert abs(float(np.asarray(a, np.float64).sum()) - want) <= 5e-7 * abs(want)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 31, 64, 100, 101, 150, 200])
def test_legendre_nodes_match_numpy_leggauss(n):
    from xai_jax.attribution.integrated_gradients import legendre_nodes
    t, v = np.polynomial.legendre.leggauss(n)
    x, w = legendre_nodes(n)
    order = np.argsort(x)
    np.testing.assert_allclose(x[order], t, atol=2e-15)
    np.testing.assert_allclose(w[order], v, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("steps, expected", [
    # issue 21: NumPy's leggauss built an n x n matrix: 6.5 GB and minutes at 20,000 steps
    pytest.param(4096, "fast", id="4096-steps-in-O(n)-memory"),
    pytest.param(2**15 + 1, (ValueError, ["gauss_legendre", "steps <= 32768", "trapezoid"]), id="above-the-limit"),
])
def test_gauss_legendre_many_steps(steps, expected):
    import time
    if isinstance(expected, tuple):
        with pytest.raises(expected[0]) as e:
            quadrature("gauss_legendre", steps)
        assert all(w in str(e.value) for w in expected[1]), e.value
        return
    t0 = time.perf_counter()
    a, w = quadrature("gauss_legendre", steps)
    assert time.perf_counter() - t0 < 5.0
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
    # exact for polynomials of degree <= 2n - 1: the integral of 9 a^8 over [0, 1] is 1
    np.testing.assert_allclose((w.astype(np.float64) * 9 * a.astype(np.float64) ** 8).sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("chunk_size", [None, "auto", 4])
def test_jit_equals_eager_on_images(chunk_size):
    """Regression: a pairwise sum written as reshape(n/2, 2, ...).sum(1) was miscompiled by
    XLA:CPU under jit for (H, W, C) inputs (garbage up to 1e36); the exact answer here is x
    on the top half (a linear model, baseline 0)."""
    x = np.asarray(jax.random.uniform(jax.random.key(7), (32, 32, 3)))
    f = lambda z: jnp.stack([z[:16].sum(), z[16:].sum()])  # noqa: E731
    ig = xj.integrated_gradients(f, steps=8, chunk_size=chunk_size)
    want = np.where(np.arange(32)[:, None, None] < 16, x, 0)
    np.testing.assert_allclose(np.asarray(jax.jit(ig)(x, 0)), want, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ig(x, 0)), want, atol=1e-6)
