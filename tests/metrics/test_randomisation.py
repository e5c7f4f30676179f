import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import uniform_filter
from scipy.stats import entropy, pearsonr, spearmanr

import xai_jax as xj
from tests.models_small import Tiny1D, init, linear_f
from xai_jax.metrics.randomisation import (
    _ModelMetric,
    efficient_mprt,
    histogram_entropy_row,
    map_similarity,
    mprt,
    random_logit,
    smooth_mprt,
)
from xai_jax.metrics.sanity import cascading_randomisation
from xai_jax.study.models import mnist1d_cnn

KEY = jax.random.key(3)
RNG = np.random.default_rng(0)

# the study's MNIST-1D CNN with random weights, as "trained"
CNN = mnist1d_cnn("study")
CNN_PARAMS = CNN.init(jax.random.key(11), jnp.zeros((1, 40, 1)))["params"]
CNN_XS = RNG.normal(size=(6, 40, 1)).astype(np.float32)
CNN_T = np.arange(6, dtype=np.int32)
SALIENCY = lambda p: xj.saliency(xj.model_fn(CNN, p))  # noqa: E731
INPUT_ITSELF = lambda p: (lambda x, t: x[..., 0])  # noqa: E731  (ignores the weights)

TINY = Tiny1D()
TINY_PARAMS = init(TINY, (8, 1))
TINY_XS = RNG.normal(size=(4, 8, 1)).astype(np.float32)
TINY_T = np.array([0, 1, 2, 3], np.int32)


def dense_only(p):
    """A map that depends on the dense layer's weights only: its kernel column of the target."""
    return lambda x, t: p["dense"]["kernel"][:8, t]


# ----------------------------------------------------------------------------- similarity


def skimage_ssim_1d(a, b, win=7):
    """skimage.metrics.structural_similarity's algorithm (uniform window, sample covariance,
    crop) on 1-D rows, with Quantus' data_range, written with scipy."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    r = max(a.max(), b.max()) - min(a.min(), b.min())
    m = lambda v: uniform_filter(v, size=win)  # noqa: E731
    ux, uy = m(a), m(b)
    cov = win / (win - 1)
    vx, vy, vxy = cov * (m(a * a) - ux * ux), cov * (m(b * b) - uy * uy), cov * (m(a * b) - ux * uy)
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return s[pad:-pad].mean()


def test_map_similarity_matches_scipy():
    a = RNG.normal(size=(12, 5, 6)).astype(np.float32)
    b = a + RNG.normal(size=a.shape).astype(np.float32)
    a[0, 0] = a[0, 0, 0]  # ties
    b[1] = np.round(b[1])
    fa, fb = a.reshape(12, -1), b.reshape(12, -1)
    np.testing.assert_allclose(map_similarity(a, b), [spearmanr(x, y)[0] for x, y in zip(fa, fb)], atol=1e-5)
    np.testing.assert_allclose(map_similarity(a, b, "pearson"), [pearsonr(x, y)[0] for x, y in zip(fa, fb)],
                               atol=1e-5)
    np.testing.assert_allclose(map_similarity(a, b, "ssim"), [skimage_ssim_1d(x, y) for x, y in zip(fa, fb)],
                               atol=1e-5)
    for kind in ("spearman", "pearson", "ssim"):
        np.testing.assert_allclose(map_similarity(a, a, kind), 1.0, atol=1e-6)
    np.testing.assert_allclose(map_similarity(a, -a, "pearson"), -1.0, atol=1e-6)


def test_map_similarity_constant_rows_and_bad_input():
    c = np.ones((2, 8), np.float32)
    v = np.tile(np.arange(8, dtype=np.float32), (2, 1))
    for kind in ("spearman", "pearson", "ssim"):
        assert map_similarity(c, c, kind).tolist() == [1.0, 1.0]  # unchanged explanation
    assert map_similarity(c, v).tolist() == [0.0, 0.0]  # no rank relation
    with pytest.raises(ValueError, match="same shape"):
        map_similarity(c, v[:, :4])
    with pytest.raises(ValueError, match="similarity must be one of"):
        map_similarity(c, v, "kendall")
    with pytest.raises(ValueError, match="at least 7 values"):
        map_similarity(c[:, :5], v[:, :5], "ssim")
    with pytest.raises(ValueError, match="NaN"):
        map_similarity(c * np.nan, v)


def test_histogram_entropy_matches_numpy_and_scipy():
    maps = RNG.normal(size=(8, 50)).astype(np.float32)
    maps[1] = np.round(maps[1])  # values on bin edges
    maps[2] = 0.5  # constant: one bin
    got = jax.vmap(lambda v: histogram_entropy_row(v, 100))(jnp.asarray(maps))
    want = [entropy(np.histogram(m, bins=100)[0]) for m in maps]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert float(got[2]) == 0.0


# ----------------------------------------------------------------------------- MPRT


def test_mprt_weight_independent_method_scores_one():
    for order in ("top_down", "bottom_up", "independent"):
        r = mprt(INPUT_ITSELF, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, order=order)
        assert set(r["layers"]) == set(CNN_PARAMS)
        for layer in r["layers"]:
            np.testing.assert_allclose(r["similarity"][layer], 1.0, atol=1e-6)


def test_mprt_saliency_loses_similarity_and_matches_cascading_randomisation():
    r = mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY)
    assert r["layers"] == ["dense", "conv1d_2", "conv1d_1", "conv1d"]  # top down
    assert r["mean"]["dense"] < 0.9 and (r["similarity"]["dense"] < 1).all()
    assert r["mean"]["conv1d"] < 0.5
    # the same test as the study's cascading check (Spearman of |maps|, same fresh weights)
    cascade = cascading_randomisation(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY)
    for layer in r["layers"]:
        assert r["mean"][layer] == pytest.approx(cascade[layer], abs=1e-5)
    again = mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, batch_size=4)
    for layer in r["layers"]:
        np.testing.assert_allclose(again["similarity"][layer], r["similarity"][layer], atol=1e-6)


def test_mprt_orders_on_a_map_of_the_dense_layer_only():
    def run(order):
        r = mprt(dense_only, TINY, TINY_PARAMS, TINY_XS, TINY_T, key=KEY, order=order, absolute=False)
        return r["layers"], {k: v.tolist() for k, v in r["similarity"].items()}

    layers, sim = run("independent")  # each layer alone: only the dense one matters
    assert layers == ["conv", "dense"]
    assert sim["conv"] == [1.0] * 4 and max(sim["dense"]) < 1.0
    layers, sim = run("bottom_up")  # cascading from the input: conv first (no effect), then dense
    assert layers == ["conv", "dense"]
    assert sim["conv"] == [1.0] * 4 and max(sim["dense"]) < 1.0
    layers, sim = run("top_down")  # dense first: every step differs
    assert layers == ["dense", "conv"]
    assert max(sim["dense"]) < 1.0 and sim["conv"] == sim["dense"]


def test_mprt_bad_input():
    with pytest.raises(ValueError, match="order must be one of"):
        mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, order="random")
    with pytest.raises(ValueError, match="mprt needs at least one input"):
        mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS[:0], CNN_T[:0], key=KEY)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 10\)"):
        mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T + 5, key=KEY)
    with pytest.raises(TypeError, match="jax.random key"):
        mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=3)
    with pytest.raises(TypeError, match="make_method"):
        mprt(None, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY)
    with pytest.raises(ValueError, match="similarity must be one of"):
        mprt(INPUT_ITSELF, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, similarity="cosine")
    with pytest.raises(TypeError, match="absolute must be True or False"):
        mprt(INPUT_ITSELF, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, absolute=1)


def test_randomisation_default_batch_comes_from_the_memory_budget(monkeypatch):
    from xai_jax import batching

    roomy = mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY)
    assert roomy["batch_size"] == len(CNN_XS)  # 6 small signals: one call
    monkeypatch.setattr(batching, "CPU_BATCH_BUDGET", 16 * 1024)  # a tight budget: calls of fewer inputs
    # probed once per program: SALIENCY keeps its figure, a new make_method is probed anew
    assert mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY)["batch_size"] == len(CNN_XS)
    tight = mprt(lambda p: lambda x, t: SALIENCY(p)(x, t), CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY)
    assert 1 <= tight["batch_size"] < len(CNN_XS), tight["batch_size"]
    for layer in roomy["layers"]:
        np.testing.assert_allclose(tight["similarity"][layer], roomy["similarity"][layer], atol=1e-6)
    f = xj.model_fn(CNN, CNN_PARAMS)
    assert random_logit(xj.saliency, f, CNN_XS, CNN_T, key=KEY)["batch_size"] < len(CNN_XS)
    fresh = lambda p: lambda x, t: SALIENCY(p)(x, t)  # noqa: E731
    assert efficient_mprt(fresh, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY)["batch_size"] < len(CNN_XS)
    assert mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, batch_size=5)["batch_size"] == 5


def test_randomisation_maps_that_turn_nan_are_named_on_the_device_and_host_paths():
    def nan_when_randomised(p):  # finite for the trained dense layer, NaN once it is replaced
        sal = SALIENCY(p)
        same = jnp.all(p["dense"]["kernel"] == CNN_PARAMS["dense"]["kernel"])
        return lambda x, t: jnp.where(same, sal(x, t), jnp.nan)

    for reduce in (None, lambda m: np.asarray(m)[..., 0]):
        with pytest.raises(ValueError, match=r"mprt: the method returned NaN or inf maps for inputs \[0, 1, 2"):
            mprt(nan_when_randomised, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, reduce=reduce)


# ----------------------------------------------------------------------------- smooth / efficient MPRT


def test_smooth_mprt_without_noise_is_mprt_and_ignores_weightless_methods():
    plain = mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, order="bottom_up")
    smooth = smooth_mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, noise_magnitude=0.0, n_noisy=3)
    assert smooth["layers"] == plain["layers"] == ["conv1d", "conv1d_1", "conv1d_2", "dense"]
    for layer in plain["layers"]:  # scale-free Spearman: the normalisations agree
        np.testing.assert_allclose(smooth["similarity"][layer], plain["similarity"][layer], atol=1e-5)
    noisy = smooth_mprt(INPUT_ITSELF, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, n_noisy=4)
    for layer in noisy["layers"]:  # the same noise for every model: identical maps
        np.testing.assert_allclose(noisy["similarity"][layer], 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="n_noisy must be >= 1"):
        smooth_mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, n_noisy=0)
    with pytest.raises(ValueError, match="noise_magnitude must be >= 0"):
        smooth_mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, noise_magnitude=-0.1)


def test_smooth_mprt_averages_noisy_maps():
    # Quantus' smoothing: mean over K copies x + eps_k, eps_k ~ N(0, sigma^2), sigma = 0.1 (max x - min x),
    # eps_K = 0; for the map x itself that is x + mean(eps), with the documented noise keys
    k = 5
    from xai_jax.adapters import adapt
    metric = _ModelMetric("smooth_mprt", lambda v: INPUT_ITSELF(v["params"]), adapt(TINY, TINY_PARAMS), TINY_XS,
                          TINY_T, KEY, None, 2, None, smooth=(0.1, k))
    noise_key = jax.random.fold_in(KEY, 1)
    for i, x in enumerate(TINY_XS):
        sigma = 0.1 * (x.max() - x.min())
        eps = [sigma * np.asarray(jax.random.normal(jax.random.fold_in(jax.random.fold_in(noise_key, i), s), x.shape))
               for s in range(k - 1)] + [np.zeros_like(x)]
        np.testing.assert_allclose(metric.maps({"params": TINY_PARAMS})[i], (x + np.mean(eps, 0))[..., 0], atol=1e-6)
    r = smooth_mprt(dense_only, TINY, TINY_PARAMS, TINY_XS, TINY_T, key=KEY, n_noisy=5, order="independent",
                    absolute=False)
    assert r["similarity"]["conv"].tolist() == [1.0] * 4 and r["similarity"]["dense"].max() < 1.0


def test_efficient_mprt_known_values():
    same = efficient_mprt(INPUT_ITSELF, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY)
    np.testing.assert_allclose(same["score"], 0.0, atol=1e-6)  # the map never changes
    r = efficient_mprt(SALIENCY, CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY, n_bins=20)
    from xai_jax.adapters.base import salted  # randomised weights come from fold_in(key, RANDOMISE_SALT)
    fresh = CNN.init(salted(KEY), jnp.zeros((1, 40, 1)))["params"]
    before = xj.attribute(SALIENCY(CNN_PARAMS), CNN_XS, CNN_T)
    after = xj.attribute(SALIENCY(fresh), CNN_XS, CNN_T)
    h0 = np.array([entropy(np.histogram(m, bins=20)[0]) for m in before])
    h1 = np.array([entropy(np.histogram(m, bins=20)[0]) for m in after])
    np.testing.assert_allclose(r["complexity_original"], h0, atol=1e-4)
    np.testing.assert_allclose(r["complexity_randomised"], h1, atol=1e-4)
    np.testing.assert_allclose(r["score"], (h1 - h0) / h0, atol=1e-4)
    assert r["mean"] == pytest.approx(float(np.mean((h1 - h0) / h0)), abs=1e-4)
    with pytest.warns(UserWarning, match="constant"):
        flat = efficient_mprt(lambda p: (lambda x, t: jnp.zeros(40)), CNN, CNN_PARAMS, CNN_XS, CNN_T, key=KEY)
    assert np.isnan(flat["score"]).all() and np.isnan(flat["mean"])


# ----------------------------------------------------------------------------- random logit


def test_random_logit_class_blind_method_scores_one():
    f = xj.model_fn(CNN, CNN_PARAMS)
    r = random_logit(lambda x, t: x[..., 0] ** 2, f, CNN_XS, CNN_T, key=KEY)
    np.testing.assert_allclose(r["similarity"], 1.0, atol=1e-6)
    assert (r["off_targets"] != CNN_T).all()


def test_random_logit_linear_saliency_by_hand_and_draws():
    f, w, _ = linear_f(num_classes=5, shape=(6, 2))
    xs = RNG.normal(size=(40, 6, 2)).astype(np.float32)
    t = np.arange(40, dtype=np.int32) % 5
    r = random_logit(xj.saliency, f, xs, t, key=KEY)  # a factory f -> method
    off = r["off_targets"]
    assert (off != t).all() and off.min() >= 0 and off.max() < 5
    # the saliency of class c is W_c everywhere: the score is Spearman(W_t, W_off)
    want = [spearmanr(w[a], w[b])[0] for a, b in zip(t, off)]
    np.testing.assert_allclose(r["similarity"], want, atol=1e-5)
    # uniform over the other classes: every other class is drawn for some input of each target
    for c in range(5):
        assert set(off[t == c].tolist()) <= set(range(5)) - {c}
    assert len(set(zip(t.tolist(), off.tolist()))) >= 15
    again = random_logit(xj.saliency(f), f, xs, t, key=KEY, batch_size=7)  # a method; other batches
    np.testing.assert_array_equal(again["off_targets"], off)
    np.testing.assert_allclose(again["similarity"], r["similarity"], atol=1e-6)
    assert (random_logit(xj.saliency, f, xs, t, key=jax.random.key(4))["off_targets"] != off).any()
    # num_classes restricts the draw
    r3 = random_logit(xj.saliency, f, xs[:10], t[:10] % 3, key=KEY, num_classes=3)
    assert r3["off_targets"].max() < 3
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        random_logit(xj.saliency, f, xs, t, key=KEY, num_classes=1)
    with pytest.raises(ValueError, match="exceeds the 5 classes"):
        random_logit(xj.saliency, f, xs, t, key=KEY, num_classes=6)
    with pytest.raises(ValueError, match="num_classes=3"):
        random_logit(xj.saliency, f, xs, t, key=KEY, num_classes=3)
    with pytest.raises(ValueError, match="random_logit needs at least one input"):
        random_logit(xj.saliency, f, xs[:0], t[:0], key=KEY)


@pytest.mark.parametrize("size", [30, 300])  # both ranking paths: pairwise (<= 128 values) and sort + search
def test_average_ranks_match_scipy_with_ties(size):
    from scipy.stats import rankdata

    from xai_jax.metrics.similarity import PAIRWISE_RANKS_UP_TO, average_ranks

    assert (size <= PAIRWISE_RANKS_UP_TO) == (size == 30)
    v = np.round(RNG.normal(size=size), 1).astype(np.float32)  # many exact ties
    np.testing.assert_array_equal(np.asarray(jax.jit(average_ranks)(jnp.asarray(v))), rankdata(v))
