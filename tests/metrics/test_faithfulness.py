"""Drop/increase (Chattopadhay et al. 2018), deletion/insertion (Petsiuk et al. 2018), their masks and
blur, on a model whose evidence is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_jax.metrics import deletion_insertion, drop_increase, gaussian_blur, top_k_mask

# class 0's evidence lives in positions 0..3 only; class 1 is a constant
W = np.zeros((2, 10), np.float32)
W[0, :4] = [1.0, 2.0, 1.5, 0.5]


def evidence_model(x):
    return jnp.stack([jnp.asarray(W[0]) @ x[:, 0], jnp.asarray(1.0)])


XS = np.abs(np.random.default_rng(0).normal(size=(32, 10, 1))).astype(np.float32) + 0.5


def test_top_k_mask_counts_and_ties():
    m = top_k_mask(jnp.array([0.0, 3.0, 3.0, 1.0, 2.0]), 0.4)
    np.testing.assert_array_equal(m, [False, True, True, False, False])
    assert int(top_k_mask(jnp.zeros((7, 6)), 0.3).sum()) == round(0.3 * 42)


def test_drop_increase_perfect_random_and_by_hand():
    perfect = np.broadcast_to(np.r_[np.ones(4), np.zeros(6)], (32, 10))
    r = drop_increase(evidence_model, XS, perfect, k=0.4)
    np.testing.assert_allclose(r["drop"], 0.0, atol=1e-6)  # all evidence kept: O == Y
    assert r["increase_rate"] == 0.0
    anti = 1.0 - perfect
    r_anti = drop_increase(evidence_model, XS, anti, k=0.4)
    assert r_anti["drop_rate"] > 0.3
    # by hand for one input: keep positions 0 and 1 only (k = 0.2)
    x = XS[:1]
    sal = np.zeros((1, 10))
    sal[0, :2] = [2.0, 1.0]
    probs = lambda v: np.exp(v) / np.exp(v).sum()  # noqa: E731
    full = np.array([W[0] @ x[0, :, 0], 1.0])
    kept = np.array([W[0, :2] @ x[0, :2, 0], 1.0])
    c = full.argmax()
    y, o = probs(full)[c], probs(kept)[c]
    got = drop_increase(evidence_model, x, sal, k=0.2)
    np.testing.assert_allclose(got["drop"][0], max((y - o) / y, 0), rtol=1e-5)
    assert got["increase"][0] == float(o > y)


def test_drop_increase_bad_input():
    with pytest.raises(ValueError, match="spatial shape"):
        drop_increase(evidence_model, XS, np.zeros((32, 9)))
    with pytest.raises(ValueError, match="k must lie"):
        drop_increase(evidence_model, XS, np.zeros((32, 10)), k=0.0)
    with pytest.raises(ValueError, match="NaN"):
        drop_increase(evidence_model, XS, np.full((32, 10), np.nan))


def test_deletion_insertion_known_curves():
    f = lambda x: jnp.stack([x.sum(), jnp.asarray(0.0)])  # noqa: E731
    x = np.arange(1, 11, dtype=np.float32)[None, :, None]
    sal = x[..., 0]
    r = deletion_insertion(f, x, sal, step=1, score="logit", blur="gaussian", blur_sigma=1.0)
    # deletion removes 10, 9, 8, ... so the curve is 55 - cumulative sum of the sorted values
    want = 55 - np.r_[0, np.cumsum(np.arange(10, 0, -1))]
    np.testing.assert_allclose(r["deletion_curve"][0], want, rtol=1e-6)
    np.testing.assert_allclose(r["deletion_auc"][0], np.trapezoid(want, np.linspace(0, 1, 11)), rtol=1e-6)
    assert r["insertion_curve"][0, -1] == pytest.approx(55.0)
    blurred = np.asarray(gaussian_blur(jnp.asarray(x[0]), 1.0)).sum()
    assert r["insertion_curve"][0, 0] == pytest.approx(blurred, rel=1e-5)
    # a step of 3 over 10 positions: 0, 3, 6, 9, 10 removed
    r3 = deletion_insertion(f, x, sal, step=3, score="logit")
    np.testing.assert_allclose(r3["fractions"], [0, 0.3, 0.6, 0.9, 1.0])
    # good maps delete faster than reversed maps
    good = deletion_insertion(evidence_model, XS, np.broadcast_to(np.r_[np.ones(4), np.zeros(6)], (32, 10)))
    bad = deletion_insertion(evidence_model, XS, np.broadcast_to(np.r_[np.zeros(4), np.ones(6)], (32, 10)))
    assert good["deletion_auc_mean"] < bad["deletion_auc_mean"]


def test_rise_blur_kernel_is_the_reference_gkern():
    """RISE's reference gkern(11, 5): gaussian_filter of a Dirac on an 11x11 grid (reflect);
    our separable blur with kind="rise" must equal a 2-D convolution with it, zero-padded."""
    from scipy.ndimage import convolve, gaussian_filter

    from xai_jax.metrics.faithfulness import rise_blur_kernel

    dirac = np.zeros((11, 11))
    dirac[5, 5] = 1.0
    gkern = gaussian_filter(dirac, 5.0)  # the reference construction, reflect mode
    k1 = rise_blur_kernel(11, 5.0)
    np.testing.assert_allclose(np.outer(k1, k1), gkern, rtol=1e-5, atol=1e-8)
    assert abs(k1.sum() - 1.0) < 1e-6 and k1[0] > np.exp(-0.5 * 25) / np.sqrt(2 * np.pi * 25)  # tails folded in
    img = np.random.default_rng(0).uniform(size=(16, 20, 3)).astype(np.float32)
    want = np.stack([convolve(img[..., ch], gkern, mode="constant") for ch in range(3)], -1)
    np.testing.assert_allclose(gaussian_blur(jnp.asarray(img), 5.0, "rise"), want, rtol=1e-5, atol=1e-6)
    sig = np.random.default_rng(1).normal(size=(40, 1)).astype(np.float32)
    want1 = np.convolve(sig[:, 0], k1, mode="same")[:, None]
    np.testing.assert_allclose(gaussian_blur(jnp.asarray(sig), 5.0, "rise"), want1, rtol=1e-5, atol=1e-6)


def test_gaussian_blur_preserves_constants_and_mean():
    c = jnp.full((8, 9, 3), 2.0)
    np.testing.assert_allclose(gaussian_blur(c, 2.0), c, rtol=1e-6)
    v = jnp.asarray(np.random.default_rng(0).normal(size=(64, 1)), jnp.float32)
    assert float(jnp.std(gaussian_blur(v, 3.0))) < float(jnp.std(v))


# --------------------------------------------------------------------------------- issue 21 / 20


@pytest.mark.parametrize("n_pos, kwargs, expected", [
    pytest.param(1024, {}, np.round(np.arange(101) * 10.24).astype(int), id="default-100-points"),
    pytest.param(10, {}, np.arange(11), id="fewer-positions-than-points-every-position"),
    pytest.param(1024, dict(n_points=4), [0, 256, 512, 768, 1024], id="n-points"),
    pytest.param(10, dict(step=3), [0, 3, 6, 9, 10], id="explicit-step"),
    pytest.param(10, dict(step=3, n_points=5), (ValueError, ["n_points or step, not both"]), id="both"),
    pytest.param(10, dict(n_points=0), (ValueError, ["n_points"]), id="n-points-zero"),
    pytest.param(10, dict(step=11), (ValueError, ["step 11 exceeds the 10"]), id="step-too-large"),
])
def test_deletion_curve_points(n_pos, kwargs, expected):
    from xai_jax.metrics.faithfulness import curve_counts
    if isinstance(expected, tuple):
        with pytest.raises(expected[0]) as e:
            curve_counts(n_pos, kwargs.get("n_points"), kwargs.get("step"))
        assert all(w in str(e.value) for w in expected[1]), e.value
    else:
        np.testing.assert_array_equal(curve_counts(n_pos, kwargs.get("n_points"), kwargs.get("step")), expected)


def _tiny_cnn(x):
    """A small conv net on (H, W, 3) images: its deletion curves are not closed-form."""
    k = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3, 3, 4)), jnp.float32)
    a = jax.nn.relu(jax.lax.conv_general_dilated(x[None], k, (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC")))[0]
    return jnp.stack([a[..., 0].mean(), a[..., 1].mean(), a[..., 2:].mean()])


def test_deletion_insertion_passes_and_default_points(monkeypatch):
    # issue 21: two 32 x 32 images aborted with std::bad_alloc (every position, one vmap); now
    # 101 points in memory-bounded passes, the same values as one pass
    from xai_jax.attribution.common import PASS_ELEMENTS
    xs = np.random.default_rng(1).random((2, 32, 32, 3)).astype(np.float32)
    maps = np.random.default_rng(2).random((2, 32, 32)).astype(np.float32)
    maps[1, :4, :4] = 0.5  # ties in the second map: its curves average over tie orders
    r = deletion_insertion(_tiny_cnn, xs, maps, targets=[0, 1], tie_draws=4)
    assert r["deletion_curve"].shape == r["insertion_curve"].shape == (2, 101)
    np.testing.assert_allclose(r["fractions"], np.round(np.arange(101) * 10.24) / 1024)
    monkeypatch.setitem(PASS_ELEMENTS, "forward", 1 << 40)  # one pass: every point of an input in one vmap
    whole = deletion_insertion(_tiny_cnn, xs, maps, targets=[0, 1], tie_draws=4)
    for k in ("deletion_curve", "insertion_curve"):
        np.testing.assert_allclose(r[k], whole[k], rtol=1e-6, atol=1e-7)


def test_deletion_insertion_program_memory_is_bounded():
    # XLA's memory analysis of the compiled batch program (compile only): 64 x 64 x 3 inputs,
    # batch of 8, every position as a point (step=1: 4,097 points x 2 forwards per input)
    from xai_jax.batching import compile_only
    xs = np.zeros((8, 64, 64, 3), np.float32)
    maps = np.random.default_rng(0).random((8, 64, 64)).astype(np.float32)
    with compile_only() as plan:
        deletion_insertion(_tiny_cnn, xs, maps, targets=np.zeros(8, np.int32), step=1)
    assert plan  # the programs it would have run
    used = max(a.temp_size_in_bytes + a.argument_size_in_bytes + a.output_size_in_bytes for _, a in plan)
    assert used < 512 * 2**20  # was 8 x 8,194 masked copies of 48 KiB plus activations: > 10 GiB
