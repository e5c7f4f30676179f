"""XRAI (Kapishnikov et al. 2019) on hand-made regions and on an image (PAIR's values: test_pair_reference.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj


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


def test_xrai_bad_inputs_are_clear_errors():
    x = np.asarray(jax.random.uniform(jax.random.key(8), (16, 16, 3)))
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
