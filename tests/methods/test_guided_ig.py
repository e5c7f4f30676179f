"""Guided IG (Kapishnikov et al. 2021) against known answers (PAIR's values: test_pair_reference.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj

W = jax.random.normal(jax.random.key(0), (12, 2, 3))


def linear(x):
    return jnp.einsum("lc,lck->k", x, W)


def test_guided_ig_on_a_linear_model_is_w_times_x_minus_baseline():
    # every path from b to x integrates a constant gradient to w . (x - b), feature by feature
    x = jax.random.normal(jax.random.key(1), (12, 2))
    for max_dist, baseline in ((0.02, 0.0), (1.0, 0.3), (0.0, -0.5)):
        a = xj.guided_ig(linear, steps=25, max_dist=max_dist, baseline=baseline)(x, 1)
        np.testing.assert_allclose(a, W[..., 1] * (x - baseline), rtol=1e-4, atol=1e-5)


def test_guided_ig_moves_low_gradient_features_first():
    # F = x0 x1 from (0, 0) to (1, 2): on the line dF/dx1 = x0 < dF/dx0 = x1, so with an
    # unbounded path (max_dist = 1) x1 moves first, while x0 ~ 0: x1 gets ~0, and x0 then
    # moves with dF/dx0 = x1 = 2: ~2. IG splits it 1 / 1 (the straight line).
    f = lambda x: jnp.stack([x[0, 0] * x[1, 0]])  # noqa: E731
    x = jnp.array([[1.0], [2.0]])
    a = xj.guided_ig(f, steps=100, fraction=0.5, max_dist=1.0)(x, 0)
    assert a[0, 0] > 1.95 and abs(float(a[1, 0])) < 0.05
    np.testing.assert_allclose(xj.guided_ig(f, steps=100, fraction=0.5, max_dist=0.0)(x, 0), [[1.0], [1.0]],
                               atol=0.03)


def test_guided_ig_max_dist_zero_is_a_left_riemann_ig_and_vmaps():
    f = lambda x: jnp.tanh(x * jnp.arange(1.0, 13.0)[:, None]).sum((0, 1))[None] * jnp.array([1.0, -1.0])  # noqa
    xs = jax.random.normal(jax.random.key(2), (3, 12, 1))
    gig = xj.guided_ig(f, steps=16, max_dist=0.0)
    alphas = jnp.arange(16) / 16
    for x in xs:
        grads = jax.vmap(lambda a: jax.grad(lambda z: f(z)[0])(a * x))(alphas)
        np.testing.assert_allclose(gig(x, 0), x * grads.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(gig))(xs, jnp.zeros(3, int))[2], gig(xs[2], 0), rtol=1e-5, atol=1e-6)


def test_guided_ig_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="fraction must lie in"):
        xj.guided_ig(linear, fraction=0.0)
    with pytest.raises(ValueError, match="max_dist must lie in"):
        xj.guided_ig(linear, max_dist=2.0)
    with pytest.raises(ValueError, match="baseline has shape"):
        xj.guided_ig(linear, baseline=jnp.zeros((3, 2)))(jnp.ones((12, 2)), 0)
    x = np.asarray(jax.random.uniform(jax.random.key(8), (16, 16, 3)))
    f = lambda z: jnp.stack([z[:8].sum(), z[8:].sum()])  # noqa: E731
    with pytest.raises(ValueError, match="baseline contains NaN"):
        xj.guided_ig(f, baseline=jnp.full(x.shape, jnp.nan))


def standardising(x):
    """A model that standardises its input: 0/0 at a constant input such as the zero baseline."""
    z = (x - x.mean()) / x.std()
    return jnp.einsum("lc,lck->k", z, W)


@pytest.mark.parametrize("call, expected", [
    # issue 21: Guided IG on a model that is 0/0 at the baseline returned an all-NaN map eagerly
    pytest.param(lambda x: xj.guided_ig(standardising, steps=5)(x, 1), (ValueError, ["guided_ig", "baseline"]),
                 id="eager-raises-naming-the-baseline"),
    pytest.param(lambda x: jax.jit(xj.guided_ig(standardising, steps=5))(x, 1), "nan", id="jit-nan-map"),
    pytest.param(lambda x: xj.guided_ig(standardising, steps=5, baseline=jnp.linspace(-1, 1, 24).reshape(12, 2))(
        x, 1), "finite", id="a-non-constant-baseline-is-fine"),
])
def test_guided_ig_model_undefined_at_the_baseline(call, expected):
    x = jax.random.normal(jax.random.key(1), (12, 2))
    if isinstance(expected, tuple):
        with pytest.raises(expected[0]) as e:
            call(x)
        assert all(w in str(e.value) for w in expected[1]), e.value
    else:
        out = np.asarray(call(x))
        assert np.isnan(out).all() if expected == "nan" else np.isfinite(out).all()
