"""RISE (Petsiuk et al. 2018) on models whose evidence region is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_jax.attribution.perturbation import masks_from_cells, rise, rise_cells, rise_masks, upsample_matrix


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
    # the reference's masks are smooth over (grid + 1) * cell pixels: 800 of them leave noise of the
    # size of the effect (key 0: 0.011), 4,000 a clear margin
    m2 = np.asarray(rise(region_model_2d(), n_masks=4000, grid=4, chunk_size=500)(x2, 0, key))
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


def _reference_masks(cells, shifts, spatial):
    """Petsiuk et al.'s generate_masks (github.com/eclique/RISE) for given cell draws and shifts:
    skimage's order-1 resize with mode="reflect" to (grid + 1) * cell, then the crop."""
    from skimage.transform import resize
    grid = cells.shape[1]
    cell = np.ceil(np.array(spatial) / grid).astype(int)
    out = []
    for g, shift in zip(cells, shifts):
        up = resize(g, tuple((grid + 1) * cell), order=1, mode="reflect", anti_aliasing=False)
        out.append(up[tuple(slice(a, a + d) for a, d in zip(shift, spatial))])
    return np.stack(out)


@pytest.mark.parametrize("spatial, grid", [((16, 20), 4), ((7, 9), 3), ((10, 10), 1), ((12, 5), 5), ((40,), 8),
                                           ((13,), 5), ((6,), 1)])
def test_rise_masks_are_the_reference_construction(spatial, grid):
    rng = np.random.default_rng(sum(spatial) + grid)
    n = 5
    cells = (rng.random((n, *([grid] * len(spatial)))) < 0.5).astype(np.float32)
    cell = rise_cells(spatial, grid)
    shifts = np.stack([rng.integers(0, c, n) for c in cell], 1).astype(np.int32)
    got = np.asarray(masks_from_cells(jnp.asarray(cells), jnp.asarray(shifts), spatial))
    np.testing.assert_allclose(got, _reference_masks(cells, shifts, spatial), atol=1e-6)


def test_rise_masks_draw_grid_cells_and_shifts_from_the_key():
    # rise_masks = masks_from_cells of its documented draws; grid x grid cells (not grid + 1)
    key = jax.random.key(3)
    spatial, grid, p = (16, 20), 4, 0.5
    k_cells, k_shift = jax.random.split(key)
    cells = jax.random.bernoulli(k_cells, p, (6, grid, grid)).astype(jnp.float32)
    shifts = jax.random.randint(k_shift, (6, 2), 0, jnp.asarray(rise_cells(spatial, grid)))
    want = _reference_masks(np.asarray(cells), np.asarray(shifts), spatial)
    np.testing.assert_allclose(rise_masks(key, 6, spatial, grid, p), want, atol=1e-6)
    assert (np.asarray(shifts) < np.asarray(rise_cells(spatial, grid))).all()


def test_upsample_matrix_rows_are_convex_and_reflect_at_the_borders():
    m = upsample_matrix(4, 5)  # 4 cells -> 25 pixels
    assert m.shape == (25, 4)
    np.testing.assert_allclose(m.sum(1), 1.0, rtol=1e-6)
    # pixel 0 samples q = 0.5 * 4 / 25 - 0.5 = -0.42: 0.58 of cell 0 and 0.42 of cell 1 (its mirror image of -1)
    np.testing.assert_allclose(m[0], [0.58, 0.42, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(m[-1], [0.0, 0.0, 0.42, 0.58], atol=1e-6)



def test_rise_forward_passes_do_not_change_the_map(monkeypatch):
    # issue 21: a chunk's forwards run in passes of PASS_ELEMENTS["forward"] input elements
    # (224 x 224 x 3: 27, not the 250 masks of a chunk at once); the masks and the map stay
    from xai_jax.attribution.common import PASS_ELEMENTS
    x = jnp.asarray(np.random.default_rng(0).random((16, 20, 3)), jnp.float32)
    whole = np.asarray(rise(region_model_2d(), n_masks=300, grid=4, chunk_size=100)(x, 0, jax.random.key(2)))
    monkeypatch.setitem(PASS_ELEMENTS, "forward", 7 * 16 * 20 * 3)  # 7 forwards per pass
    passes = np.asarray(rise(region_model_2d(), n_masks=300, grid=4, chunk_size=100)(x, 0, jax.random.key(2)))
    np.testing.assert_allclose(passes, whole, rtol=1e-6, atol=1e-7)
