"""Score-CAM and SISE (the feature-mask methods) by hand on tiny models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models_small import Pooled2D, Tiny1D, Tiny2D, init
from xai_jax.attribution.feature_masks import otsu_threshold, score_cam, sise


def test_score_cam_matches_hand_computation():
    model = Tiny1D()
    params = init(model, (12, 1), seed=5)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(12, 1)), jnp.float32)
    A = np.maximum(np.asarray(x) @ np.asarray(params["conv"]["kernel"])[0] + np.asarray(params["conv"]["bias"]), 0)
    f = lambda v: model.apply({"params": params}, v[None])[0]  # noqa: E731
    softmax = lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum()  # noqa: E731
    t = 2
    base = softmax(np.asarray(f(jnp.zeros_like(x))))[t]
    alphas = []
    for k in range(A.shape[1]):
        a = A[:, k]
        mk = (a - a.min()) / (a.max() - a.min()) if a.max() > a.min() else np.zeros_like(a)
        alphas.append(softmax(np.asarray(f(x * mk[:, None])))[t] - base)
    want = np.maximum((A * np.array(alphas)).sum(-1), 0)
    np.testing.assert_allclose(score_cam(model, params, "conv")(x, t), want, rtol=1e-4, atol=1e-6)


def test_otsu_threshold_separates_two_modes():
    rng = np.random.default_rng(0)
    v = np.r_[rng.normal(0.2, 0.03, 500), rng.normal(0.8, 0.03, 300)].clip(0, 1)
    thr = float(otsu_threshold(jnp.asarray(v)))
    assert 0.25 < thr < 0.75

    def between(th):  # between-class variance (up to a constant) of a split at th
        a, b = v[v < th], v[v >= th]
        return len(a) * len(b) * (a.mean() - b.mean()) ** 2 if len(a) and len(b) else -1.0

    best = max(between(th) for th in np.arange(1, 256) / 256)
    assert between(thr) >= 0.999 * best


def test_sise_single_layer_by_hand_and_fusion_properties():
    model = Tiny1D()
    params = init(model, (12, 1), seed=5)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(12, 1)), jnp.float32)
    f = lambda v: model.apply({"params": params}, v[None])[0]  # noqa: E731
    t = 1
    A = np.maximum(np.asarray(x) @ np.asarray(params["conv"]["kernel"])[0] + np.asarray(params["conv"]["bias"]), 0)
    G = np.asarray(params["dense"]["kernel"])[:, t].reshape(12, -1) * (A > 0)  # d logit / d A... via ReLU output
    # gradient w.r.t. the layer output (post-ReLU) is the dense column, unmasked
    G = np.asarray(params["dense"]["kernel"])[:, t].reshape(12, -1)
    probs = jax.nn.softmax
    v = np.zeros(12)
    for k in range(A.shape[1]):
        a = A[:, k]
        mk = (a - a.min()) / (a.max() - a.min()) if a.max() > a.min() else np.zeros_like(a)
        if G[:, k].mean() > 0:
            v += float(probs(f(x * mk[:, None]))[t]) * mk
    want = (v - v.min()) / (v.max() - v.min()) if v.max() > v.min() else v
    np.testing.assert_allclose(sise(model, params, ["conv"])(x, t), want, rtol=1e-4, atol=1e-6)
    # two layers of a pooled 2-D model: map in [0, 1], input-sized, deterministic, jit/vmap-able
    pm = Pooled2D()
    pp = init(pm, (16, 16, 3))
    xs = jnp.asarray(np.random.default_rng(1).uniform(size=(2, 16, 16, 3)), jnp.float32)
    fn = sise(pm, pp)
    out = np.asarray(jax.jit(jax.vmap(fn))(xs, jnp.array([0, 1])))
    assert out.shape == (2, 16, 16) and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out[0], fn(xs[0], 0), rtol=1e-4, atol=1e-6)


def test_feature_mask_methods_bad_inputs():
    model = Tiny2D()
    params = init(model, (6, 6, 2))
    xi = jnp.ones((6, 6, 2))
    with pytest.raises(ValueError, match="layers must be a non-empty list"):
        sise(model, params, [])(xi, 0)
    with pytest.raises(ValueError, match="layer 'nope' is not a submodule.*valid layers"):
        sise(model, params, ["conv_a", "nope"])(xi, 0)
    with pytest.raises(ValueError, match="layer 'dense' outputs shape"):
        score_cam(model, params, "dense")(xi, 0)
