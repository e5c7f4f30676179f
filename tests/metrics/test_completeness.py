"""Completeness errors of IG (Sundararajan et al. 2017) and bootstrap confidence intervals."""

import jax.numpy as jnp
import numpy as np

from xai_jax.metrics import bootstrap_ci, completeness_errors

XS = np.abs(np.random.default_rng(0).normal(size=(32, 10, 1))).astype(np.float32) + 0.5


def test_completeness_errors_linear_is_zero_and_bootstrap():
    f = lambda x: jnp.stack([3.0 * x.sum(), -x.sum()])  # noqa: E731
    r = completeness_errors(f, XS, np.zeros(32, np.int32), steps=4)
    np.testing.assert_allclose(r["delta"], 0.0, atol=1e-4)
    np.testing.assert_allclose(r["gap"], 3 * XS.sum((1, 2)), rtol=1e-5)
    v = np.random.default_rng(0).normal(1.0, 1.0, 400)
    mean, lo, hi = bootstrap_ci(v)
    assert lo < mean < hi and lo < 1.0 < hi
    _, lo2, hi2 = bootstrap_ci(v[:50])
    assert hi2 - lo2 > hi - lo
