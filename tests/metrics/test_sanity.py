"""Cascading randomisation (Adebayo et al. 2018) and its rank correlation against scipy."""

import jax
import numpy as np
from scipy.stats import spearmanr

import xai_jax as xj
from tests.models_small import Tiny2D, init
from xai_jax.metrics import cascading_randomisation, spearman_rows


def test_spearman_matches_scipy_and_randomisation_check():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 30)), rng.normal(size=(5, 30))
    want = [spearmanr(a[i], b[i]).statistic for i in range(5)]
    np.testing.assert_allclose(spearman_rows(a, b), want, rtol=1e-5, atol=1e-7)  # float32 ranks (the JAX Spearman)
    model = Tiny2D()
    params = init(model, (8, 8, 2), seed=0)
    xs = rng.normal(size=(16, 8, 8, 2)).astype(np.float32)
    ts = np.zeros(16, np.int32)
    key = jax.random.key(3)
    # a "method" that ignores the weights keeps rho = 1; Grad-CAM loses it
    blind = cascading_randomisation(lambda p: (lambda x, t: x.sum(-1) ** 2), model, params, xs, ts, key=key)
    assert list(blind) == ["original", "dense", "conv_b", "conv_a"]
    np.testing.assert_allclose(list(blind.values()), 1.0)
    cam = cascading_randomisation(lambda p: xj.grad_cam(model, p, "conv_b", relu=False), model, params, xs, ts,
                                  key=key)
    assert cam["conv_a"] < 0.6, cam


def test_spearman_rows_constant_rows_follow_map_similarity():
    """An unchanged constant map (e.g. an all-zero ReLU Grad-CAM) did not change: 1, as mprt says."""
    from xai_jax.metrics import map_similarity

    a = np.zeros((3, 8))
    b = np.zeros((3, 8))
    b[1, 2] = 1.0  # row 1 changed; rows 0 and 2 identical constants
    np.testing.assert_allclose(spearman_rows(a, b), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(spearman_rows(a, b), map_similarity(a, b, "spearman"), atol=1e-6)
