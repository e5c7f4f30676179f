"""Guided IG, Blur IG and XRAI against known answers (PAIR's values: test_pair_reference.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import xai_jax as xj
from xai_jax.attribution.blur_ig import blur_difference, blur_matrix

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


@pytest.mark.parametrize("sigma", [0.0, 0.3, 0.5, 1.7, 6.0, 50.0])
def test_blur_matrices_are_scipys_gaussian_filter(sigma):
    n, eye = 20, np.eye(20)

    def scipy_matrix(s):
        return np.stack([ndimage.gaussian_filter1d(eye[:, j], s, mode="constant") if s > 0 else eye[:, j]
                         for j in range(n)], 1)

    np.testing.assert_allclose(blur_matrix(n, sigma, 201), scipy_matrix(sigma), atol=2e-7)
    want = (scipy_matrix(sigma + 0.01) - scipy_matrix(sigma)) / 0.01
    np.testing.assert_allclose(blur_difference(n, sigma, 0.01, 201), want, atol=2e-6 * max(1.0, np.abs(want).max()))


def _blur_ig_reference(f, x, t, max_sigma, steps, h, sigma_axes):
    """PAIR's formula in float64 with scipy (any number of spatial axes)."""
    sig = [i * max_sigma / steps for i in range(steps + 1)]
    grad = jax.jit(jax.grad(lambda z: f(z)[t]))

    def blur(s):
        return x if s == 0 else ndimage.gaussian_filter(x, sigma=[s * a for a in sigma_axes], mode="constant")

    total = np.zeros_like(x)
    for i in range(steps):
        xi = blur(sig[i])
        total += (sig[i + 1] - sig[i]) * (blur(sig[i] + h) - xi) / h * np.asarray(grad(jnp.asarray(xi, jnp.float32)))
    return -total


def test_blur_ig_matches_pairs_formula_on_signals_and_images():
    # smooth models (no max-pool ties), so float32 and float64 paths give the same gradients
    x1 = np.asarray(jax.random.normal(jax.random.key(3), (16, 2)), np.float64)
    w1 = jax.random.normal(jax.random.key(4), (16, 2, 3))
    f1 = lambda x: jnp.tanh(jnp.einsum("lc,lck->k", x, w1))  # noqa: E731
    got = xj.blur_ig(f1, max_sigma=8.0, steps=12)(jnp.asarray(x1, jnp.float32), 2)
    want = _blur_ig_reference(f1, x1, 2, 8.0, 12, 0.01, (1, 0))
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    x2 = np.asarray(jax.random.uniform(jax.random.key(5), (10, 9, 3)), np.float64)
    w2 = jax.random.normal(jax.random.key(6), (10, 9, 3, 2))
    f2 = lambda x: jnp.sin(jnp.einsum("hwc,hwck->k", x, w2))  # noqa: E731
    got = xj.blur_ig(f2, max_sigma=5.0, steps=6)(jnp.asarray(x2, jnp.float32), 1)
    want = _blur_ig_reference(f2, x2, 1, 5.0, 6, 0.01, (1, 1, 0))
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    # channels first: the same numbers, transposed
    got_cf = xj.blur_ig(lambda z: f2(jnp.moveaxis(z, 0, -1)), max_sigma=5.0, steps=6, channel_axis=0)(
        jnp.asarray(np.moveaxis(x2, -1, 0), jnp.float32), 1)
    np.testing.assert_allclose(np.moveaxis(np.asarray(got_cf), 0, -1), want, atol=1e-5 * np.abs(want).max())


def test_xrai_greedy_on_hand_made_regions():
    attr = np.zeros((6, 6), np.float32)
    attr[:3, :3] = 1.0   # A: mean 1
    attr[3:, 3:] = 3.0   # D: mean 3
    attr[:3, 3:] = 2.0   # B
    regions = np.zeros((4, 6, 6), bool)
    regions[0, :3, :3] = True          # A (9 px, mean 1)
    regions[1, 3:, 3:] = True          # D (9 px, mean 3)
    regions[2, :3, :] = True           # A + B (18 px, mean 1.5; after A is taken, its new pixels have mean 2)
    regions[3, :, :] = True            # everything
    heat, ranks = xj.xrai_regions(attr, regions, min_pixel_diff=1)
    # order: D (3) first; then A+B (mean 1.5 > whole-image mean 1.2 > A's 1); then the whole
    # image adds the lower-left block (mean 0); A is then empty and dropped
    assert heat[4, 4] == 3.0 and ranks[4, 4] == 1
    assert heat[0, 0] == 1.5 and heat[0, 4] == 1.5 and ranks[0, 0] == 2
    assert heat[4, 0] == 0.0 and ranks[4, 0] == 3
    # min_pixel_diff drops regions adding too few new pixels; uncovered pixels get their mean
    heat, ranks = xj.xrai_regions(attr, regions[:2], min_pixel_diff=10)
    np.testing.assert_allclose(heat, np.full((6, 6), attr.mean()))
    assert (ranks == 1).all()


def test_xrai_on_an_image_with_felzenszwalb_regions_and_bad_inputs():
    x = np.asarray(jax.random.uniform(jax.random.key(7), (32, 32, 3)))
    f = lambda z: jnp.stack([z[:16].sum(), z[16:].sum()])  # noqa: E731
    ig = xj.integrated_gradients(f, steps=8)
    heat, ranks = xj.xrai(ig, return_ranks=True)(x, 0)
    assert heat.shape == ranks.shape == (32, 32)
    assert heat[:10].mean() > heat[22:].mean()  # the top half is all the evidence for class 0
    masks = xj.felzenszwalb_segments(x)
    assert masks.dtype == bool and masks.shape[1:] == (32, 32) and masks.any((1, 2)).sum() >= 6
    with pytest.raises(ValueError, match="xrai is for images"):
        xj.xrai(ig)(x[0], 0)
    with pytest.raises(TypeError, match="outside jit/vmap"):
        jax.jit(xj.xrai(ig))(x, 0)
    with pytest.raises(ValueError, match="segments must be None"):
        xj.xrai(ig, segments=np.zeros((3, 32, 32)))
    with pytest.raises(ValueError, match="NaN or inf for target 5"):
        xj.xrai(ig)(x, 5)
    with pytest.raises(ValueError, match="x contains NaN"):
        xj.xrai(ig)(np.where(x > 0.5, np.nan, x), 0)
    with pytest.raises(ValueError, match="segments have shape"):
        xj.xrai(ig, segments=np.zeros((3, 8, 8), bool))(x, 0)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="fraction must lie in"):
        xj.guided_ig(linear, fraction=0.0)
    with pytest.raises(ValueError, match="max_dist must lie in"):
        xj.guided_ig(linear, max_dist=2.0)
    with pytest.raises(ValueError, match="baseline has shape"):
        xj.guided_ig(linear, baseline=jnp.zeros((3, 2)))(jnp.ones((12, 2)), 0)
    with pytest.raises(ValueError, match="max_sigma must be > 0"):
        xj.blur_ig(linear, max_sigma=0.0)
    with pytest.raises(ValueError, match=r"blur_ig takes x of shape \(length, C\) or \(H, W, C\)"):
        xj.blur_ig(lambda z: z.sum()[None])(jnp.ones(5), 0)


def test_more_bad_inputs_are_clear_errors():
    x = np.asarray(jax.random.uniform(jax.random.key(8), (16, 16, 3)))
    f = lambda z: jnp.stack([z[:8].sum(), z[8:].sum()])  # noqa: E731
    attr = np.ones((16, 16))
    masks = np.ones((2, 16, 16), bool)
    with pytest.raises(ValueError, match="at least one region"):
        xj.xrai_regions(attr, np.zeros((0, 16, 16), bool))
    with pytest.raises(ValueError, match="attr contains NaN"):
        xj.xrai_regions(np.where(attr > 0, np.nan, 0.0), masks)
    with pytest.raises(ValueError, match="min_pixel_diff must be >= 1"):
        xj.xrai_regions(attr, masks, min_pixel_diff=-3)
    with pytest.raises(ValueError, match="area_threshold must lie in"):
        xj.xrai_regions(attr, masks, area_threshold=5.0)
    with pytest.raises(ValueError, match="must return attributions shaped like x"):
        xj.xrai(lambda z, t: z.sum(-1), segments=masks)(x, 0)
    with pytest.raises(ValueError, match="image contains NaN"):
        xj.felzenszwalb_segments(np.where(x > 0.5, np.nan, x))
    with pytest.raises(ValueError, match="image must be \\(H, W, C\\)"):
        xj.felzenszwalb_segments(np.moveaxis(x, -1, 0))
    with pytest.raises(ValueError, match="baseline contains NaN"):
        xj.guided_ig(f, baseline=jnp.full(x.shape, jnp.nan))
