"""RISE (Petsiuk et al. 2018) on models whose evidence region is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_jax.attribution.perturbation import rise, rise_masks


def region_model_1d(lo=12, hi=20):
    return lambda x: jnp.stack([4.0 * x[lo:hi].mean(), jnp.asarray(0.0)])


def region_model_2d():
    return lambda x: jnp.stack([4.0 * x[4:10, 8:14].mean(), jnp.asarray(0.0)])


def test_rise_concentrates_on_the_evidence_and_is_keyed():
    x = jnp.ones((40, 1))
    r = rise(region_model_1d(), n_masks=1000, grid=8, chunk_size=300)
    key = jax.random.key(0)
    m = np.asarray(r(x, 0, key))
    assert m.shape == (40,)
    assert m[12:20].mean() > m[np.r_[0:8, 24:40]].mean() + 0.05
    assert 12 <= m.argmax() < 20
    np.testing.assert_array_equal(m, r(x, 0, key))
    assert not np.allclose(m, r(x, 0, jax.random.key(1)))
    x2 = jnp.ones((16, 20, 3))
    m2 = np.asarray(rise(region_model_2d(), n_masks=800, grid=4)(x2, 0, key))
    inside = np.zeros((16, 20), bool)
    inside[4:10, 8:14] = True
    assert m2.shape == (16, 20) and m2[inside].mean() > m2[~inside].mean() + 0.02
    assert inside.ravel()[m2.argmax()]


def test_rise_masks_shape_range_and_keep_rate():
    masks = np.asarray(rise_masks(jax.random.key(0), 2000, (30, 30), 5, 0.3))
    assert masks.shape == (2000, 30, 30) and masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean() - 0.3) < 0.02


def test_rise_bad_inputs():
    f = region_model_1d()
    x = jnp.ones((40, 1))
    with pytest.raises(ValueError, match="n_masks must be >= 1"):
        rise(f, n_masks=0)
    with pytest.raises(ValueError, match=r"p must lie in \(0, 1\], got 0"):
        rise(f, p=0.0)
    with pytest.raises(ValueError, match=r"p must lie in \(0, 1\], got 1.5"):
        rise(f, p=1.5)
    with pytest.raises(ValueError, match="target 2 is out of range"):
        rise(f, n_masks=10)(x, 2, jax.random.key(0))
