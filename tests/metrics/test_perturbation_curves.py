import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_jax.metrics.perturbation_curves import (
    noisy_linear_imputation,
    patch_index,
    pixel_flipping,
    region_perturbation,
    road,
)
from xai_jax.metrics.ties import tie_broken_ranks

RNG = np.random.default_rng(0)
L = 40
W = RNG.normal(size=L).astype(np.float32)
XS = RNG.normal(size=(4, L, 1)).astype(np.float32)
T0 = np.zeros(4, np.int32)


def linear_model(x):
    """Class 0: w . x (so s_0 after flipping = the sum of the unflipped w_i x_i); class 1: 0."""
    return jnp.stack([jnp.asarray(W) @ x[:, 0], jnp.asarray(0.0)])


def flipped_curve(contrib, order, step=1, fill_contrib=None):
    """Closed form for the linear model: total - cumulative contributions in `order`."""
    c = contrib[order]
    if fill_contrib is not None:
        c = c - fill_contrib[order]
    counts = np.minimum(np.arange(1, -(-len(c) // step) + 1) * step, len(c))
    return contrib.sum() - np.cumsum(c)[counts - 1]


# ---------------------------------------------------------------- pixel flipping


def test_pixel_flipping_linear_model_is_the_cumulative_sum():
    sal = W * XS[..., 0]  # distinct values: no ties
    r = pixel_flipping(linear_model, XS, sal, targets=T0, score="logit")
    assert r["curves"].shape == (4, L) and r["tie_share"] == 0.0  # no unperturbed point, as Quantus
    for i in range(4):
        np.testing.assert_allclose(r["curves"][i], flipped_curve(sal[i], np.argsort(-sal[i])), atol=1e-4)
    np.testing.assert_allclose(r["auc"], np.trapezoid(r["curves"], dx=1.0, axis=1), rtol=1e-6)
    np.testing.assert_allclose(r["curves"][:, -1], 0.0, atol=1e-6)  # everything flipped to 0
    # reversing the map visits positions in the reverse order
    rev = pixel_flipping(linear_model, XS, -sal, targets=T0, score="logit")
    for i in range(4):
        np.testing.assert_allclose(rev["curves"][i], flipped_curve(sal[i], np.argsort(sal[i])), atol=1e-4)
    # Bach et al.'s premise on this model: MoRF falls faster than its reverse
    assert (r["auc"] < rev["auc"]).all()


def test_pixel_flipping_steps_and_fill():
    sal = W * XS[..., 0]
    r = pixel_flipping(linear_model, XS, sal, targets=T0, score="logit", features_in_step=3, fill=0.5)
    assert r["curves"].shape == (4, 14)  # ceil(40 / 3), the last step flips the last position
    for i in range(4):
        want = flipped_curve(sal[i], np.argsort(-sal[i]), step=3, fill_contrib=0.5 * W)
        np.testing.assert_allclose(r["curves"][i], want, atol=1e-4)
    chunked = pixel_flipping(linear_model, XS, sal, targets=T0, score="logit", features_in_step=3, fill=0.5,
                             chunk_size=4, precision=None)
    np.testing.assert_allclose(chunked["curves"], r["curves"], atol=1e-5)


def test_pixel_flipping_ties_average_random_orders_not_the_index():
    sal = (W * XS[..., 0]).copy()
    a, b = int(np.argmax(sal[0])), int(np.argsort(sal[0])[-2])
    sal[0, b] = sal[0, a]  # the two most salient positions tie; their contributions differ
    draws, key = 256, jax.random.key(3)
    r = pixel_flipping(linear_model, XS, sal, targets=T0, score="logit", tie_draws=draws, key=key)
    assert r["tie_share"] == 0.25
    # the exact expectation over the library's draws: input 0 draws from fold_in(k_ties, 0)
    ranks = np.asarray(tie_broken_ranks(jnp.asarray(sal[0]), jax.random.fold_in(jax.random.split(key)[0], 0), draws))
    contrib = W * XS[0, :, 0]
    want = np.mean([flipped_curve(contrib, np.argsort(rk)) for rk in ranks], 0)
    np.testing.assert_allclose(r["curves"][0], want, atol=1e-4)
    # only the first point depends on the order: a mix q of "a first" and 1 - q of "b first"
    q = (r["curves"][0, 0] - (contrib.sum() - contrib[b])) / (contrib[b] - contrib[a])
    assert 0.35 < q < 0.65 and abs(q * draws - round(q * draws)) < 1e-2
    order_a = np.argsort(-sal[0], kind="stable")
    np.testing.assert_allclose(r["curves"][0, 1:], flipped_curve(contrib, order_a)[1:], atol=1e-4)
    for i in range(1, 4):  # inputs without ties keep their single order
        np.testing.assert_allclose(r["curves"][i], flipped_curve(W * XS[i, :, 0], np.argsort(-sal[i])), atol=1e-4)
    # tie_draws=1: ties by index (the study's convention), still counted in tie_share
    by_index = pixel_flipping(linear_model, XS, sal, targets=T0, score="logit", tie_draws=1)
    np.testing.assert_allclose(by_index["curves"][0], flipped_curve(contrib, order_a), atol=1e-4)
    assert by_index["tie_share"] == 0.25
    # per-input keys: the batch size changes nothing
    r1 = pixel_flipping(linear_model, XS, sal, targets=T0, score="logit", tie_draws=draws, key=key, batch_size=1)
    np.testing.assert_allclose(r1["curves"], r["curves"], rtol=1e-6, atol=1e-6)  # batch shapes round apart


# ---------------------------------------------------------------- region perturbation


def one_patch_model(lo, hi):
    v = RNG.uniform(0.5, 1.5, size=hi - lo).astype(np.float32)

    def f(x):  # depends on x[lo:hi] only
        return jnp.stack([jnp.asarray(v) @ x[lo:hi, 0], jnp.asarray(0.0)])

    return f, v


def test_patch_grid_is_centred_as_quantus():
    ids, count = patch_index((36,), 8)  # padded to 40: 2 before, 2 after
    assert count == 5
    np.testing.assert_array_equal(np.bincount(ids.ravel()), [6, 8, 8, 8, 6])
    ids2, count2 = patch_index((16, 16), 4)
    assert count2 == 16 and (np.bincount(ids2.ravel()) == 16).all()
    assert ids2[5, 9] == 1 * 4 + 2


def test_region_perturbation_model_of_one_patch_morf_lerf():
    f, v = one_patch_model(6, 14)  # exactly the second patch of the centred grid on 36
    xs = RNG.uniform(0.5, 1.5, size=(3, 36, 1)).astype(np.float32)
    y = xs[:, 6:14, 0] @ v
    sal = np.zeros((3, 36), np.float32)
    sal[:, 6:14] = 1.0  # patch sums (0, 8, 0, 0, 0): the zero patches tie, harmlessly
    t = np.zeros(3, np.int32)
    morf = region_perturbation(f, xs, sal, targets=t, patch_size=8, score="logit", tie_draws=4)
    np.testing.assert_allclose(morf["curves"], np.repeat(y[:, None], 5, 1), rtol=1e-5)
    np.testing.assert_allclose(morf["aopc"], 5 * y / 6, rtol=1e-5)
    np.testing.assert_allclose(morf["auc"], 4 * y, rtol=1e-5)
    assert morf["tie_share"] == 1.0
    lerf = region_perturbation(f, xs, sal, targets=t, patch_size=8, score="logit", order="lerf", tie_draws=4)
    np.testing.assert_allclose(lerf["curves"], np.c_[np.zeros((3, 4)), y], atol=1e-5)
    np.testing.assert_allclose(lerf["aopc"], y / 6, rtol=1e-5)
    assert morf["aopc_mean"] > lerf["aopc_mean"]
    short = region_perturbation(f, xs, sal, targets=t, patch_size=8, score="logit", order="lerf",
                                regions_evaluation=3, tie_draws=4)
    np.testing.assert_allclose(short["curves"], 0.0, atol=1e-6)


def test_region_perturbation_2d_and_tied_patch_sums():
    xs = RNG.uniform(0.5, 1.5, size=(2, 16, 16, 1)).astype(np.float32)
    v = RNG.uniform(0.5, 1.5, size=(4, 4)).astype(np.float32)

    def f(x):  # depends on patch (1, 2) of the 4x4 grid of 4x4 patches only
        return jnp.stack([jnp.sum(jnp.asarray(v) * x[4:8, 8:12, 0]), jnp.asarray(0.0)])

    y = (xs[:, 4:8, 8:12, 0] * v).sum((1, 2))
    sal = RNG.uniform(0.0, 0.1, size=(2, 16, 16)).astype(np.float32)
    sal[:, 4:8, 8:12] += 1.0
    t = np.zeros(2, np.int32)
    morf = region_perturbation(f, xs, sal, targets=t, patch_size=4, score="logit")
    assert morf["curves"].shape == (2, 16) and morf["tie_share"] == 0.0
    np.testing.assert_allclose(morf["curves"], np.repeat(y[:, None], 16, 1), rtol=1e-5)
    lerf = region_perturbation(f, xs, sal, targets=t, patch_size=4, score="logit", order="lerf")
    np.testing.assert_allclose(lerf["curves"][:, :15], 0.0, atol=1e-5)
    np.testing.assert_allclose(lerf["curves"][:, 15], y, rtol=1e-5)
    # two patches tie for the highest sum; the model reads one: step 1 is its mean over orders
    sal_tied = np.zeros((2, 16, 16), np.float32)
    sal_tied[:, 4:8, 8:12] = 1.0
    sal_tied[:, 12:16, 0:4] = 1.0
    tied = region_perturbation(f, xs, sal_tied, targets=t, patch_size=4, score="logit",
                               regions_evaluation=2, tie_draws=256)
    q = tied["curves"][:, 0] / y
    assert ((0.35 < q) & (q < 0.65)).all() and np.allclose(q * 256, np.round(q * 256), atol=1e-2)
    np.testing.assert_allclose(tied["curves"][:, 1], y, rtol=1e-5)


# ---------------------------------------------------------------- ROAD


def test_imputation_weights_by_hand():
    x = RNG.normal(size=(6, 7, 2)).astype(np.float32)
    removed = np.zeros((6, 7), bool)
    removed[3, 4] = removed[0, 0] = True
    out, res = noisy_linear_imputation(x, removed, noise=0.0)
    direct = x[2, 4] + x[4, 4] + x[3, 3] + x[3, 5]
    diagonal = x[2, 3] + x[2, 5] + x[4, 3] + x[4, 5]
    np.testing.assert_allclose(out[3, 4], direct / 6 + diagonal / 12, rtol=1e-5)
    # a corner has 2 direct and 1 diagonal neighbour: the mean over those (weights sum 5/12)
    np.testing.assert_allclose(out[0, 0], (x[0, 1] / 6 + x[1, 0] / 6 + x[1, 1] / 12) / (5 / 12), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(out)[~removed], x[~removed])
    assert float(res) < 1e-5
    line = RNG.normal(size=(9, 1)).astype(np.float32)
    one = np.zeros(9, bool)
    one[4] = True
    np.testing.assert_allclose(noisy_linear_imputation(line, one, noise=0.0)[0][4], (line[3] + line[5]) / 2, rtol=1e-6)


def test_imputation_reproduces_lines_and_planes():
    t = np.arange(L, dtype=np.float32)
    x = np.stack([2.0 - 0.3 * t, 0.5 + 0.1 * t], -1)  # two channels, two lines
    removed = RNG.random(L) < 0.8
    removed[[0, -1]] = False  # the ends anchor the line (a removed end would be extrapolated flat)
    out, res = noisy_linear_imputation(x, removed, noise=0.0)
    np.testing.assert_allclose(out, x, atol=1e-4)
    i, j = np.mgrid[:16, :16].astype(np.float32)
    plane = (1.0 + 0.2 * i - 0.15 * j)[..., None]
    removed = RNG.random((16, 16)) < 0.7
    removed[[0, -1], :] = removed[:, [0, -1]] = False
    out, res = noisy_linear_imputation(plane, removed, noise=0.0)
    np.testing.assert_allclose(out, plane, atol=1e-4)
    assert float(res) < 1e-4


def test_imputation_matches_a_direct_solve_and_adds_keyed_noise():
    x = RNG.normal(size=(16, 16, 3)).astype(np.float32)
    removed = RNG.random((16, 16)) < 0.9  # 90% removed, borders included
    idx = np.flatnonzero(removed)
    pos = {p: k for k, p in enumerate(idx)}
    a = np.zeros((len(idx), len(idx)))
    rhs = np.zeros((len(idx), 3))
    for k, p in enumerate(idx):  # s_i v_i - sum_removed w v_j = sum_kept w x_j
        r, c = divmod(p, 16)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if (dr or dc) and 0 <= rr < 16 and 0 <= cc < 16:
                    w = 1 / 12 if dr and dc else 1 / 6
                    a[k, k] += w
                    if removed[rr, cc]:
                        a[k, pos[rr * 16 + cc]] -= w
                    else:
                        rhs[k] += w * x[rr, cc]
    want = x.astype(np.float64).copy()
    want[removed] = np.linalg.solve(a, rhs)
    clean, res = noisy_linear_imputation(x, removed, noise=0.0)
    np.testing.assert_allclose(clean, want, atol=1e-4)
    key = jax.random.key(7)
    noisy, _ = noisy_linear_imputation(x, removed, noise=0.5, key=key)
    delta = np.asarray(noisy - clean)
    np.testing.assert_allclose(delta, 0.5 * removed[..., None] * np.asarray(jax.random.normal(key, x.shape)),
                               atol=1e-5)


def test_road_on_lines_keeps_a_linear_model_unchanged():
    t = np.arange(L, dtype=np.float32)
    slopes = RNG.normal(size=(4, 1)).astype(np.float32)
    xs = (1.0 + slopes * t)[..., None]
    sal = RNG.uniform(0, 1, size=(4, L)).astype(np.float32)
    sal[:, [0, -1]] = -1.0  # MoRF removes the ends last: at most 90% removed keeps them
    r = road(linear_model, xs, sal, targets=T0, score="logit", percentages=(10, 50, 90), noise=0.0)
    np.testing.assert_allclose(r["curves"], np.repeat(xs[..., 0] @ W[:, None], 3, 1), atol=1e-3)
    assert r["imputation_residual"].max() < 1e-4 and r["tie_share"] == 0.0
    # with a removed end the line is extrapolated flat: the score changes (the test can fail)
    lerf = road(linear_model, xs, sal, targets=T0, score="logit", percentages=(10,), noise=0.0, order="lerf")
    assert np.abs(lerf["curves"][:, 0] - xs[..., 0] @ W).max() > 1e-2


def test_road_morf_removes_the_evidence_lerf_keeps_it():
    xs = np.zeros((3, L, 1), np.float32)
    xs[:, 18:22] = 1.0  # a bump on zeros

    def bump_model(x):  # class 0 iff the bump is there: logits (sum x[18:22] - 2, 0)
        return jnp.stack([x[18:22, 0].sum() - 2.0, jnp.asarray(0.0)])

    sal = xs[..., 0] + RNG.uniform(0, 0.01, size=(3, L)).astype(np.float32) * (xs[..., 0] > 0)
    t = np.zeros(3, np.int32)
    kw = dict(targets=t, score="logit", percentages=(10, 20, 50), noise=0.0, tie_draws=8)
    morf = road(bump_model, xs, sal, **kw)  # counts 4, 8, 20: the bump goes first
    lerf = road(bump_model, xs, sal, order="lerf", **kw)  # zeros go first
    # MoRF: every kept value is 0, so the imputation is 0; LeRF: the bump is never touched
    np.testing.assert_allclose(morf["curves"], -2.0, atol=1e-5)
    np.testing.assert_allclose(lerf["curves"], 2.0, atol=1e-5)
    np.testing.assert_array_equal(morf["accuracy"], 0.0)
    np.testing.assert_array_equal(lerf["accuracy"], 1.0)
    assert morf["tie_share"] == 1.0  # the zeros tie at the cut of 8 and 20
    noisy = road(bump_model, xs, sal, **{**kw, "noise": 0.01})
    assert np.abs(noisy["curves"] + 2.0).max() < 0.2 and (noisy["curves"] != -2.0).any()


def test_road_on_a_plane_with_predicted_targets():
    i, j = np.mgrid[:16, :16].astype(np.float32)
    xs = np.stack([(0.3 + 0.05 * i + 0.02 * j), (1.0 - 0.03 * i + 0.04 * j)])[..., None]
    v = RNG.normal(size=(16, 16)).astype(np.float32)

    def f(x):
        s = jnp.sum(jnp.asarray(v) * x[..., 0])
        return jnp.stack([s, -s])

    sal = RNG.uniform(0, 1, size=(2, 16, 16)).astype(np.float32)
    sal[:, [0, -1], :] = sal[:, :, [0, -1]] = -1.0  # the border (60 positions) goes last
    r = road(f, xs, sal, percentages=(30, 70), noise=0.0, score="logit")  # targets=None: predicted class
    y = np.abs((xs[..., 0] * v).sum((1, 2)))  # the predicted class's logit
    np.testing.assert_allclose(r["curves"], np.repeat(y[:, None], 2, 1), atol=1e-3)
    np.testing.assert_array_equal(r["accuracy"], 1.0)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, err", [
    (lambda: pixel_flipping(linear_model, XS, W * XS[..., 0], features_in_step=41), ValueError),
    (lambda: pixel_flipping(linear_model, XS, W * XS[..., 0], tie_draws=0), ValueError),
    (lambda: pixel_flipping(linear_model, XS, W * XS[..., 0], key=0), TypeError),
    (lambda: pixel_flipping(linear_model, XS, W * XS[..., 0], targets=np.full(4, 2)), ValueError),
    (lambda: pixel_flipping(linear_model, XS, np.ones((4, 39))), ValueError),
    (lambda: region_perturbation(linear_model, XS, W * XS[..., 0], patch_size=41), ValueError),
    (lambda: region_perturbation(linear_model, XS, W * XS[..., 0], regions_evaluation=6), ValueError),
    (lambda: region_perturbation(linear_model, XS, W * XS[..., 0], order="best"), ValueError),
    (lambda: road(linear_model, XS, W * XS[..., 0], percentages=(50, 100)), ValueError),
    (lambda: road(linear_model, XS, W * XS[..., 0], percentages=()), TypeError),
    (lambda: road(linear_model, XS, W * XS[..., 0], noise=-0.1), ValueError),
    (lambda: road(linear_model, XS, W * XS[..., 0], order="random"), ValueError),
    (lambda: noisy_linear_imputation(XS[0], np.ones(L, bool)), ValueError),
])
def test_bad_arguments_raise(call, err):
    with pytest.raises(err):
        call()


def test_non_finite_scores_raise():
    def nan_when_zeroed(x):  # NaN once position 0 is flipped to 0
        return jnp.stack([jnp.log(jnp.abs(x[0, 0])) * jnp.where(x[0, 0] == 0, jnp.nan, 1.0), jnp.asarray(0.0)])

    sal = np.zeros((1, L), np.float32)
    sal[0, 0] = 1.0
    with pytest.raises(ValueError, match="NaN or inf"):
        pixel_flipping(nan_when_zeroed, XS[:1] + 3.0, sal + np.arange(L) * 1e-3, targets=np.zeros(1, int))


# ------------------------------------------------------------- issue 21: chunk_size="auto"


@pytest.mark.parametrize("metric", [pixel_flipping, region_perturbation])
def test_auto_chunks_equal_one_vmap_and_bound_memory(metric, monkeypatch):
    # the default chunk_size="auto" evaluates a curve in passes of PASS_ELEMENTS["forward"] input
    # elements (pixel flipping at 224 x 224 x 3 was one vmap of 50,176 forwards: 600 GiB)
    from xai_jax.attribution.common import PASS_ELEMENTS
    from xai_jax.batching import compile_only
    xs = RNG.normal(size=(3, 12, 10, 2)).astype(np.float32)
    maps = RNG.random((3, 12, 10)).astype(np.float32)
    f = lambda x: jnp.stack([jnp.tanh(x).sum(), (x**2).mean()])  # noqa: E731
    kw = dict(score="logit", **({"patch_size": 2} if metric is region_perturbation
                                                                 else {}))
    t = np.zeros(3, np.int32)
    whole = metric(f, xs, maps, targets=t, chunk_size=None, **kw)["curves"]
    monkeypatch.setitem(PASS_ELEMENTS, "forward", 3 * 240 * 7)  # 7 points per pass for 3 rows of 240 values
    np.testing.assert_allclose(metric(f, xs, maps, targets=t, **kw)["curves"], whole, rtol=1e-6, atol=1e-7)
    if metric is region_perturbation:
        return  # its default curve at 224 px has 784 points; pixel flipping's 50,176 make the point
    # compile only, at 96 x 96 x 3 with a model whose forward holds 64 channels (2.4 MB): the
    # default passes stay small, while one vmap over the curve's 9,216 points would need ~20 GiB
    w = jnp.asarray(RNG.normal(size=(3, 64)), jnp.float32)
    wide = lambda x: jnp.stack([jnp.tanh(x @ w).mean(), x.mean()])  # noqa: E731
    big, big_maps = np.zeros((1, 96, 96, 3), np.float32), RNG.random((1, 96, 96)).astype(np.float32)
    monkeypatch.setitem(PASS_ELEMENTS, "forward", 1 << 22)
    used = {}
    for chunk in ("auto", None):
        with compile_only() as plan:
            metric(wide, big, big_maps, targets=[0], chunk_size=chunk, **kw)
        used[chunk] = max(a.temp_size_in_bytes + a.argument_size_in_bytes + a.output_size_in_bytes for _, a in plan)
    assert used["auto"] < 1 << 30 and used[None] > 20 * used["auto"]
