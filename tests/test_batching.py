import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.models_small import linear_f


def test_attribute_equals_loop_with_padding_and_keys():
    f, W, _ = linear_f()
    xs = np.random.default_rng(0).normal(size=(11, 6, 2)).astype(np.float32)
    ts = np.arange(11) % 3
    gxi = xj.gradient_x_input(f)
    out = xj.attribute(gxi, xs, ts, batch_size=4)
    assert isinstance(out, np.ndarray) and out.shape == (11, 6, 2)
    np.testing.assert_allclose(out, xs * W[ts].reshape(11, 6, 2), rtol=1e-6)
    sg = xj.smoothgrad(xj.saliency(lambda x: jnp.tanh(x).reshape(-1)[:3]), n_samples=4)
    key = jax.random.key(0)
    a = xj.attribute(sg, xs, ts, batch_size=3, key=key)
    b = xj.attribute(sg, xs, ts, batch_size=8, key=key)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(a[5], sg(jnp.asarray(xs[5]), int(ts[5]), jax.random.fold_in(key, 5)), rtol=1e-6)


def test_attribute_validates_the_batch():
    f, _, _ = linear_f()
    xs = np.zeros((4, 6, 2), np.float32)
    m = xj.saliency(f)
    with pytest.raises(ValueError, match="NaN or inf"):
        xj.attribute(m, np.where(np.arange(48).reshape(4, 6, 2) == 5, np.nan, xs), np.zeros(4, int))
    with pytest.raises(TypeError, match="targets must be integer"):
        xj.attribute(m, xs, np.zeros(4))
    with pytest.raises(ValueError, match=r"targets must have shape \(4,\)"):
        xj.attribute(m, xs, np.zeros(3, int))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        xj.attribute(m, xs, np.array([0, 1, 2, 3]), num_classes=3)
    with pytest.raises(ValueError, match="batch_size"):
        xj.attribute(m, xs, np.zeros(4, int), batch_size=0)
