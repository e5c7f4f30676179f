"""CAMs on token grids: `reshape=` on a linen ViT, against a by-hand Grad-CAM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.study.models import ViT1D, patch_grid

# its module-scoped fixture is built once: every test of the file runs in one xdist worker
pytestmark = pytest.mark.xdist_group("grad_cam_tokens")


@pytest.fixture(scope="module")
def vit():
    model = ViT1D(patch=4, dim=16, depth=2, heads=2, mlp_dim=32, num_classes=5)
    params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
    xs = jax.random.normal(jax.random.key(1), (3, 40, 1))
    return model, params, xs


def _by_hand(model, params, x, t):
    """Grad-CAM on the last block's norm1 tokens, written out: g = dy/d(norm1 output) with
    the block's input held fixed, weights = mean of g over the patch tokens (class token
    dropped), map = ReLU(tokens . weights), linearly upsampled from 10 patches to 40."""
    def forward(m, x, delta):
        h = m.tokens(x)
        for block in m.blocks[:-1]:
            h = block(h)
        last = m.blocks[-1]
        normed = last.norm1(h)
        return m.classify(last.attend(h, normed + delta))[0, t], normed[0]

    _, normed = model.apply({"params": params}, x[None], 0.0, method=forward)
    g = jax.grad(lambda d: model.apply({"params": params}, x[None], d[None], method=forward)[0])(
        jnp.zeros_like(normed))
    cam = jax.nn.relu(normed[1:] @ g[1:].mean(0))
    return jax.image.resize(cam, (40,), "linear")


def test_grad_cam_on_the_token_grid_matches_the_by_hand_computation(vit):
    model, params, xs = vit
    layer = f"block_{model.depth - 1}/norm1"
    cam = xj.grad_cam(model, params, layer=layer, reshape=patch_grid)
    for x in xs[:2]:
        for t in (0, 2):
            want = _by_hand(model, params, x, t)
            got = cam(x, t)
            assert got.shape == (40,)
            assert float(jnp.abs(want).max()) > 0
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    batched = jax.jit(jax.vmap(cam))(xs, jnp.array([0, 1, 2]))
    np.testing.assert_allclose(batched[1], cam(xs[1], 1), rtol=1e-5, atol=1e-6)


def test_a_reshape_that_makes_no_grid_is_a_clear_error(vit):
    model, params, xs = vit
    with pytest.raises(ValueError, match="reshape must map layer 'block_1/norm1'"):
        xj.grad_cam(model, params, layer="block_1/norm1", reshape=lambda t: t.ravel())(xs[0], 0)
    assert xj.layer_cam(model, params, layer="block_1/norm1", reshape=patch_grid)(xs[0], 0).shape == (40,)
