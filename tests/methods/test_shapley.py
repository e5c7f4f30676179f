"""The perturbation and game-theoretic family (xai_jax.attribution.shapley): known answers on
additive and linear models, exact Shapley values against a brute-force NumPy sum, the
sampling methods against NumPy re-implementations fed the same draws, and convergence."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.attribution import shapley as S

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(12, 1)), jnp.float32)
MASK = xj.patch_mask((12,), 2)  # 6 features of 2 samples
W3 = jnp.asarray(RNG.normal(size=(3, 12)), jnp.float32)


def nonlinear(x):
    """3 classes; interactions between features, so Shapley values are not ablations."""
    v = x.reshape(-1)
    return jnp.tanh(W3 @ v) * jnp.asarray([1.0, 2.0, 3.0]) + v[0] * v[5] - 0.5 * v[2] * v[9] * v[10]


def additive(x):
    """F_t = sum_i h(x_i) per class: Shapley values are h(x_i) - h(b_i), summed over a feature."""
    v = x.reshape(-1)
    return jnp.stack([jnp.sum(jnp.sin(v) * jnp.arange(1.0, 13.0)), jnp.sum(v**3), jnp.sum(jnp.exp(0.3 * v))])


def jit(method):
    """The method compiled once (eager calls dispatch op by op: slower for these small tests)."""
    return jax.jit(method)


def per_feature(map_, mask=MASK):
    """A map shaped like x -> one value per feature (they are constant on each feature)."""
    m = np.asarray(map_).reshape(-1)
    labels = np.asarray(mask).reshape(-1)
    vals = np.array([m[labels == i][0] for i in range(labels.max() + 1)])
    for i, v in enumerate(vals):
        np.testing.assert_array_equal(m[labels == i], v)
    return vals


def game(f, x, target, mask=MASK, baseline=0.0):
    """v(coalition) from a table of all 2^n coalitions, built with NumPy masks and one vmapped
    call of f (independent of the library's perturbation code)."""
    labels = np.asarray(mask).reshape(x.shape)
    n = int(labels.max()) + 1
    coalitions = list(itertools.product([False, True], repeat=n))
    xs = np.stack([np.where(np.asarray(z)[labels], np.asarray(x), baseline) for z in coalitions])
    values = np.asarray(jax.vmap(f)(jnp.asarray(xs, jnp.float32))[:, target], np.float64)
    table = dict(zip(coalitions, values))
    return lambda z: table[tuple(bool(b) for b in z)]


def brute_force_shapley(v, n):
    """phi_i = sum over coalitions S without i of |S|! (n-|S|-1)! / n! (v(S + i) - v(S))."""
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            for s in itertools.combinations(others, size):
                z = np.zeros(n, bool)
                z[list(s)] = True
                zi = z.copy()
                zi[i] = True
                phi[i] += math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n) * (v(zi) - v(z))
    return phi


def marginal_std(v, n):
    """The standard deviation of feature i's marginal contribution over all n! orders."""
    gains = np.zeros((math.factorial(n), n))
    for row, order in enumerate(itertools.permutations(range(n))):
        z = np.zeros(n, bool)
        for i in order:
            before = v(z)
            z[i] = True
            gains[row, i] = v(z) - before
    return gains.std(0)


# ----------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("target", [0, 1, 2])
def test_additive_model_every_method_gives_the_contributions(target):
    base = 0.25
    xv = np.asarray(X).reshape(-1)
    # contribution of element j: F with only x_j moved from the baseline
    moved = np.where(np.eye(12, dtype=bool), xv[None], base)
    single = np.asarray(jax.vmap(additive)(jnp.asarray(moved)[..., None])[:, target])
    single = single - float(additive(jnp.full((12, 1), base))[target])
    want = single.reshape(6, 2).sum(1)
    key = jax.random.key(1)
    kw = dict(feature_mask=MASK, baseline=base)
    got = {
        "exact": jit(xj.shapley_values(additive, **kw))(X, target),
        "sampling": jit(xj.shapley_sampling(additive, n_samples=3, **kw))(X, target, key),
        "kernel_shap": jit(xj.kernel_shap(additive, n_samples=40, **kw))(X, target, key),
        "ablation": jit(xj.feature_ablation(additive, **kw))(X, target),
    }
    for name, m in got.items():
        np.testing.assert_allclose(per_feature(m), want, rtol=2e-5, atol=2e-5, err_msg=name)


def test_exact_shapley_matches_a_brute_force_sum_over_all_coalitions():
    for target in (0, 2):
        want = brute_force_shapley(game(nonlinear, X, target), 6)
        got = per_feature(jit(xj.shapley_values(nonlinear, feature_mask=MASK))(X, target))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        # efficiency: the values sum to F(x) - F(baseline)
        np.testing.assert_allclose(got.sum(), nonlinear(X)[target] - nonlinear(0 * X)[target], atol=1e-5)


def test_shapley_weights_sum_to_the_shapley_formula():
    w = S.shapley_weights(4)
    z = S.all_coalitions(4)
    assert z.shape == (16, 4) and (w[:, 0] <= 0).all()  # the empty coalition only ever loses
    np.testing.assert_allclose(w.sum(1), 0.0, atol=1e-15)  # a constant game gives 0
    np.testing.assert_allclose(w[:, -1], 1 / 4)  # the grand coalition: weight 1/n per feature


def test_shapley_sampling_equals_a_numpy_reimplementation_fed_the_same_orders():
    key, n_samples, target = jax.random.key(5), 7, 1
    got = per_feature(jit(xj.shapley_sampling(nonlinear, n_samples=n_samples, feature_mask=MASK))(X, target, key))
    v = game(nonlinear, X, target)
    phi = np.zeros(6)
    for order in np.asarray(S.sample_permutations(key, n_samples, 6)):
        z = np.zeros(6, bool)
        prev = v(z)
        for i in order:
            z[i] = True
            cur = v(z)
            phi[i] += cur - prev
            prev = cur
    np.testing.assert_allclose(got, phi / n_samples, atol=1e-5)


def test_sampling_methods_converge_to_the_exact_values():
    exact = per_feature(jit(xj.shapley_values(nonlinear, feature_mask=MASK))(X, 2))
    scale = np.abs(exact).max()
    ks = per_feature(jit(xj.kernel_shap(nonlinear, n_samples=3000, feature_mask=MASK))(X, 2, jax.random.key(0)))
    few = per_feature(jit(xj.kernel_shap(nonlinear, n_samples=12, feature_mask=MASK))(X, 2, jax.random.key(0)))
    assert np.abs(ks - exact).max() < 0.02 * scale
    assert np.abs(few - exact).max() > np.abs(ks - exact).max()  # more draws, closer
    # efficiency holds exactly, whatever the draws
    np.testing.assert_allclose(few.sum(), exact.sum(), atol=1e-4)
    # Shapley sampling: the mean of S marginal contributions, within 4 standard errors
    n_samples = 2000
    sv = jit(xj.shapley_sampling(nonlinear, n_samples=n_samples, feature_mask=MASK))(X, 2, jax.random.key(0))
    sv = per_feature(sv)
    bound = 4 * marginal_std(game(nonlinear, X, 2), 6) / np.sqrt(n_samples)
    assert (np.abs(sv - exact) < bound).all(), (np.abs(sv - exact), bound)


def test_kernel_shap_coalitions_follow_the_shapley_kernel():
    z = np.asarray(S.sample_kernel_coalitions(jax.random.key(0), 8000, 5, paired=False))
    sizes = np.bincount(z.sum(1), minlength=5)
    p = np.array([4 / (k * (5 - k)) for k in range(1, 5)])
    assert sizes[0] == 0 and sizes.sum() == 8000
    np.testing.assert_allclose(sizes[1:] / 8000, p / p.sum(), atol=0.02)  # ~4 standard errors
    paired = np.asarray(S.sample_kernel_coalitions(jax.random.key(0), 10, 5))
    np.testing.assert_array_equal(paired[5:], ~paired[:5])


def test_lime_recovers_a_linear_models_weights():
    # F = W x + c: v(z) = c + sum_j W_j (b_j + z_i(j) (x_j - b_j)), linear in z with
    # coefficient sum_{j in feature i} W_j (x_j - b_j), whatever the kernel
    base = jnp.linspace(-0.5, 0.5, 12)[:, None]
    f = lambda x: W3 @ x.reshape(-1) + 1.0  # noqa: E731
    want = (np.asarray(W3[1]) * (np.asarray(X) - np.asarray(base)).reshape(-1)).reshape(6, 2).sum(1)
    for kernel in (None, xj.lime_kernel("euclidean", 2.0), lambda x, xz, z: 1.0 + z.sum()):
        got = per_feature(jit(xj.lime(f, n_samples=64, feature_mask=MASK, baseline=base, kernel=kernel))(
            X, 1, jax.random.key(2)))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # every element its own feature: the coefficients are W * (x - b) themselves
    got = jit(xj.lime(f, n_samples=200, baseline=base))(X, 1, jax.random.key(3))
    np.testing.assert_allclose(got, np.asarray(W3[1])[:, None] * np.asarray(X - base), atol=1e-4)


def test_lime_equals_numpy_weighted_least_squares_with_the_same_draws():
    key, n_samples, target = jax.random.key(4), 40, 0
    got = per_feature(jit(xj.lime(nonlinear, n_samples=n_samples, feature_mask=MASK))(X, target, key))
    z = np.asarray(S.sample_lime_coalitions(key, n_samples, 6))
    labels = np.asarray(MASK)[:, None]
    xv = np.asarray(X, np.float64)
    xs = [np.where(zj[labels], xv, 0.0) for zj in z]
    y = np.array([float(nonlinear(jnp.asarray(xz, jnp.float32))[target]) for xz in xs])
    cos = np.array([xv.ravel() @ xz.ravel() / max(np.linalg.norm(xv) * np.linalg.norm(xz), 1e-8) for xz in xs])
    w = np.exp(-((1 - cos) ** 2) / 2.0)
    a = np.concatenate([np.ones((n_samples, 1)), z], 1)
    beta = np.linalg.lstsq(a * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
    np.testing.assert_allclose(got, beta[1:], rtol=1e-3, atol=1e-4)
    # ridge: the normal equations with alpha on the coefficients
    ridge = per_feature(jit(xj.lime(nonlinear, n_samples=n_samples, feature_mask=MASK, alpha=0.5))(X, target, key))
    pen = np.diag([0.0] + [0.5] * 6)
    beta_r = np.linalg.solve((a * w[:, None]).T @ a + pen, (a * w[:, None]).T @ y)
    np.testing.assert_allclose(ridge, beta_r[1:], rtol=1e-3, atol=1e-4)


def test_feature_ablation_by_hand():
    f = lambda x: jnp.stack([x.sum(), (x**2).sum()])  # noqa: E731
    x = jnp.arange(1.0, 7.0).reshape(3, 2)
    # every element: the drop is x_j (class 0), x_j^2 - b^2 (class 1)
    np.testing.assert_allclose(jit(xj.feature_ablation(f))(x, 0), x)
    np.testing.assert_allclose(jit(xj.feature_ablation(f, baseline=1.0))(x, 1), x**2 - 1.0)
    # a spatial mask (3,) broadcasts over the 2 channels: feature i is row i
    got = jit(xj.feature_ablation(f, feature_mask=np.array([0, 0, 1])))(x, 0)
    np.testing.assert_allclose(got, [[10.0, 10.0], [10.0, 10.0], [11.0, 11.0]])
    # an array baseline
    base = jnp.full_like(x, 2.0)
    np.testing.assert_allclose(jit(xj.feature_ablation(f, baseline=base))(x, 0), x - 2.0)


def test_feature_permutation_with_one_reference_is_ablation_to_it():
    ref = jnp.asarray(RNG.normal(size=(1, 12, 1)), jnp.float32)
    refs = jnp.concatenate([ref, ref, ref])
    perm = xj.feature_permutation(nonlinear, references=refs, n_samples=3, feature_mask=MASK)
    got = jit(perm)(X, 1, jax.random.key(0))
    want = jit(xj.feature_ablation(nonlinear, feature_mask=MASK, baseline=ref[0]))(X, 1)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_feature_permutation_batch_by_hand_and_its_draws():
    f = lambda x: W3 @ x.reshape(-1)  # noqa: E731
    xs = jnp.asarray(RNG.normal(size=(4, 12, 1)), jnp.float32)
    perms = np.array([RNG.permutation(4) for _ in range(6)])
    targets = np.array([0, 1, 2, 1])
    got = np.asarray(xj.feature_permutation_batch(f, xs, targets, permutations=perms, feature_mask=MASK))
    labels = np.asarray(MASK)
    xv = np.asarray(xs)[..., 0]
    for b in range(4):
        for i in range(6):
            cols = labels == i
            want = (np.asarray(W3)[targets[b], cols] * (xv[b, cols] - xv[perms[i, b], cols])).sum()
            np.testing.assert_allclose(got[b, cols, 0], want, rtol=1e-5, atol=1e-5)
    drawn = np.asarray(S.batch_permutations(jax.random.key(0), 50, 2))  # B = 2: the swap, never the identity
    np.testing.assert_array_equal(drawn, np.tile([1, 0], (50, 1)))
    chunked = xj.feature_permutation_batch(f, xs, targets, permutations=perms, feature_mask=MASK, chunk_size=4)
    np.testing.assert_allclose(chunked, got, atol=1e-6)


# ----------------------------------------------------------------------------- masks


def test_patch_masks_and_their_functions():
    np.testing.assert_array_equal(xj.patch_mask((7,), 3), [0, 0, 0, 1, 1, 1, 2])
    m = xj.patch_mask((4, 5), (2, 3))
    np.testing.assert_array_equal(m, [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [2, 2, 2, 3, 3], [2, 2, 2, 3, 3]])
    np.testing.assert_array_equal(xj.patches(2)(jnp.zeros((4, 4, 3))), xj.patch_mask((4, 4), 2))
    np.testing.assert_array_equal(xj.patches(2, channel_axis=0)(jnp.zeros((3, 4, 6))), xj.patch_mask((4, 6), 2))
    # a mask function of x gives the same maps as its array
    f = lambda x: jnp.stack([jnp.sum(jnp.sin(x)), x.sum()])  # noqa: E731
    x = jnp.asarray(RNG.normal(size=(6, 6, 2)), jnp.float32)
    a = jit(xj.shapley_values(f, feature_mask=xj.patches(3)))(x, 0)
    b = jit(xj.shapley_values(f, feature_mask=xj.patch_mask((6, 6), 3)))(x, 0)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_superpixels_through_felzenszwalb_per_input_under_vmap():
    pytest.importorskip("skimage")
    img = np.zeros((16, 16, 3), np.float32)
    img[:, 8:] = 1.0  # two flat halves: two superpixels
    labels = xj.superpixel_mask(img, scale=10, sigma=0.0, min_size=4)
    np.testing.assert_array_equal(labels, np.where(np.arange(16) < 8, 0, 1)[None].repeat(16, 0))
    f = lambda x: jnp.stack([x[..., 0].sum() + 2 * x[..., 1].sum(), x.sum()])  # noqa: E731
    xs = jnp.stack([jnp.asarray(img), jnp.asarray(img[:, ::-1])])
    method = xj.feature_ablation(f, feature_mask=xj.superpixels(4, scale=10, sigma=0.0, min_size=4))
    got = np.asarray(jax.vmap(method)(xs, jnp.array([0, 0])))
    # only the bright half matters: 8 x 16 pixels, channels 0 and 1 weigh 1 + 2
    np.testing.assert_allclose(got[0, :, 8:], 3.0 * 128)
    np.testing.assert_allclose(got[0, :, :8], 0.0)
    np.testing.assert_allclose(got[1, :, :8], 3.0 * 128)


# ----------------------------------------------------------------------------- contract


def test_attribute_and_chunked_vmap_agree():
    key = jax.random.key(0)
    xs = jnp.stack([X, 2 * X, -X])
    ts = jnp.array([0, 1, 2])
    keys = jnp.stack([jax.random.fold_in(key, i) for i in range(3)])  # what attribute gives input i
    # attribute (input i gets fold_in(key, i)) against jit(vmap) of the chunked method
    for make, keyed in ((lambda c: xj.shapley_values(nonlinear, feature_mask=MASK, chunk_size=c), False),
                        (lambda c: xj.kernel_shap(nonlinear, n_samples=16, feature_mask=MASK, chunk_size=c), True)):
        m, chunked = make(None), make(5)
        assert m.keyed == keyed and m.output == "input" and m.signed
        maps = xj.attribute(m, xs, ts, key=key) if keyed else xj.attribute(m, xs, ts)
        other = jax.jit(jax.vmap(chunked))(xs, ts, keys) if keyed else jax.jit(jax.vmap(chunked))(xs, ts)
        np.testing.assert_allclose(maps, other, rtol=1e-4, atol=1e-5, err_msg=m.name)
    # the other methods: chunked against unchunked, in one program
    methods = [xj.lime(nonlinear, n_samples=16, feature_mask=MASK, chunk_size=c) for c in (None, 5)] + \
        [xj.shapley_sampling(nonlinear, n_samples=2, feature_mask=MASK, chunk_size=c) for c in (None, 5)]
    out = jax.jit(lambda x, k: [m(x, 1, k) for m in methods])(X, key)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[2], out[3], rtol=1e-4, atol=1e-5)
    assert all(m.keyed for m in methods)


BAD = [
    (lambda: xj.shapley_values(lambda x: jnp.stack([x.sum(), -x.sum()]))(jnp.ones((13, 1)), 0), ValueError,
     "at most 12 features"),
    (lambda: xj.feature_ablation(nonlinear, feature_mask=np.zeros(12, np.float32)), TypeError, "integer labels"),
    (lambda: xj.feature_ablation(nonlinear, feature_mask=np.zeros(5, np.int32))(X, 0), ValueError,
     "expected x's shape"),
    (lambda: xj.feature_ablation(nonlinear, feature_mask=-np.ones(12, np.int32)), ValueError, "labels >= 0"),
    (lambda: xj.feature_ablation(nonlinear, feature_mask=MASK, n_features=3), ValueError, "n_features=3"),
    (lambda: xj.feature_ablation(nonlinear, feature_mask="patches"), TypeError, "feature_mask must be"),
    (lambda: jax.jit(xj.feature_ablation(nonlinear, feature_mask=lambda x: (x[:, 0] > 0).astype(jnp.int32)))(X, 0),
     ValueError, "pass n_features="),
    (lambda: xj.feature_ablation(nonlinear, baseline=float("nan")), ValueError, "baseline must be finite"),
    (lambda: xj.feature_ablation(nonlinear, baseline=jnp.zeros(5))(X, 0), ValueError, "does not broadcast"),
    (lambda: xj.kernel_shap(nonlinear, n_samples=0), ValueError, "n_samples must be >= 1"),
    (lambda: xj.kernel_shap(nonlinear, paired=1), TypeError, "paired must be"),
    (lambda: xj.lime(nonlinear, kernel=3), TypeError, "kernel must be a function"),
    (lambda: xj.lime(nonlinear, alpha=-1.0), ValueError, "alpha must be >= 0"),
    (lambda: xj.lime_kernel("manhattan"), ValueError, "distance must be"),
    (lambda: xj.feature_permutation(nonlinear, references=jnp.zeros((2, 5)))(X, 0, jax.random.key(0)), ValueError,
     "references rows have shape"),
    (lambda: xj.feature_permutation(nonlinear, references=jnp.zeros(12)), ValueError, "references must be a batch"),
    (lambda: xj.feature_permutation_batch(nonlinear, X[None], key=jax.random.key(0)), ValueError, "B >= 2"),
    (lambda: xj.feature_permutation_batch(nonlinear, jnp.stack([X, X])), TypeError, "needs key="),
    (lambda: xj.feature_permutation_batch(nonlinear, jnp.stack([X, X]), permutations=np.zeros((3, 2), int)),
     ValueError, "permutations must be"),
    (lambda: xj.feature_permutation_batch(nonlinear, jnp.stack([X, X]), [0, 5], key=jax.random.key(0)),
     ValueError, "targets must lie in"),
    (lambda: xj.patch_mask((4,), 0), ValueError, "size must be >= 1"),
    (lambda: xj.patch_mask((4, 4), (2, 2, 2)), ValueError, "one per spatial axis"),
    (lambda: xj.shapley_sampling(nonlinear)(X, 0), TypeError, "jax.random key"),
]


@pytest.mark.parametrize("call,error,match", BAD, ids=[b[2] for b in BAD])
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()
