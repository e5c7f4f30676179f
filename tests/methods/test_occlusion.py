"""Occlusion (Zeiler & Fergus 2014) against gradient x input on linear models (Captum's values:
test_occlusion_reference.py)."""

import jax.numpy as jnp
import numpy as np
import pytest

from tests.models_small import linear_f
from xai_jax.attribution.perturbation import occlusion


def region_model_1d(lo=12, hi=20):
    return lambda x: jnp.stack([4.0 * x[lo:hi].mean(), jnp.asarray(0.0)])


def region_model_2d():
    return lambda x: jnp.stack([4.0 * x[4:10, 8:14].mean(), jnp.asarray(0.0)])


def test_occlusion_window_one_on_linear_model_is_gradient_x_input():
    f, W, c = linear_f(shape=(6, 1))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 1)), jnp.float32)
    for t in range(3):
        np.testing.assert_allclose(occlusion(f, window=1)(x, t), np.asarray(x)[:, 0] * W[t], rtol=1e-5, atol=1e-6)
    # window 2 stride 1: each position averages the drops of the windows covering it
    m = np.asarray(occlusion(f, window=2, stride=1)(x, 0))
    e = np.asarray(x)[:, 0] * W[0]
    pairs = e[:-1] + e[1:]
    want = np.r_[pairs[0], (pairs[:-1] + pairs[1:]) / 2, pairs[-1]]
    np.testing.assert_allclose(m, want, rtol=1e-5, atol=1e-6)
    m2 = np.asarray(occlusion(region_model_2d(), window=(2, 2))(jnp.ones((16, 20, 3)), 0))
    assert m2[4:10, 8:14].min() > 0 and m2[:4].max() == 0


def test_occlusion_bad_inputs():
    f = region_model_1d()
    x = jnp.ones((40, 1))
    with pytest.raises(ValueError, match=r"window \(41,\) is larger than the input's spatial size \(40,\)"):
        occlusion(f, window=41)(x, 0)
    with pytest.raises(ValueError, match="NaN or inf"):
        occlusion(f, window=4)(x.at[0, 0].set(jnp.nan), 0)
