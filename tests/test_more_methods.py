import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models_small import Pooled2D, Tiny1D, Tiny2D, init, linear_f
from xai_jax.attribution.feature_masks import otsu_threshold, score_cam, sise
from xai_jax.attribution.perturbation import occlusion, rise, rise_masks


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


def test_bad_inputs():
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
    with pytest.raises(ValueError, match=r"window \(41,\) is larger than the input's spatial size \(40,\)"):
        occlusion(f, window=41)(x, 0)
    with pytest.raises(ValueError, match="NaN or inf"):
        occlusion(f, window=4)(x.at[0, 0].set(jnp.nan), 0)
    model = Tiny2D()
    params = init(model, (6, 6, 2))
    xi = jnp.ones((6, 6, 2))
    with pytest.raises(ValueError, match="layers must be a non-empty list"):
        sise(model, params, [])(xi, 0)
    with pytest.raises(ValueError, match="layer 'nope' is not a submodule.*valid layers"):
        sise(model, params, ["conv_a", "nope"])(xi, 0)
    with pytest.raises(ValueError, match="layer 'dense' outputs shape"):
        score_cam(model, params, "dense")(xi, 0)
