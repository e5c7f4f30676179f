"""drop_increase's precise convention (exact where float32 softmax saturates) and the tie
rule (expectation over uniformly random tie orders), against float64 / enumerated answers."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_jax.metrics import deletion_insertion, drop_increase

W = np.array([1.0, 1.0, -1.0, -1.0, 0.5, 0.25], np.float32)


def linear2(x):
    """Two classes: logit_0 = W . x, logit_1 = 0."""
    return jnp.stack([jnp.asarray(W) @ x[:, 0], jnp.asarray(0.0)])


def softmax64(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def reference(x, keep, c=0):
    """float64 drop and increase for one input and one keep mask (fill 0)."""
    full = np.array([W.astype(np.float64) @ x[:, 0], 0.0])
    kept = np.array([W.astype(np.float64) @ (x[:, 0] * keep), 0.0])
    y, o = softmax64(full)[c], softmax64(kept)[c]
    return max((y - o) / y, 0.0), float(o > y)


def test_saturated_softmax_increase_is_exact():
    # logit 30 -> 35 when the two negative-weight positions are removed: p rises from
    # 1 - 9e-14 to 1 - 6e-16, both 1.0 in float32 (float64 still tells them apart)
    x = np.array([20.0, 15.0, 2.5, 2.5, 0.0, 0.0], np.float32)[None, :, None]
    sal = np.array([[6.0, 5.0, 1.0, 1.5, 3.0, 2.0]], np.float32)  # top 2 by saliency: positions 0, 1
    study = drop_increase(linear2, x, sal, k=2 / 6, convention="study")
    precise = drop_increase(linear2, x, sal, k=2 / 6)
    assert study["saturated_share"] == 1.0 and precise["saturated_share"] == 1.0
    assert study["increase_rate"] == 0.0  # float32 softmax: 1.0 > 1.0 is false
    assert precise["increase_rate"] == 1.0  # the truth (float64 agrees)
    assert reference(x[0], np.r_[1, 1, 0, 0, 0, 0]) == (0.0, 1.0)
    # a drop of a saturated input: logit 40 -> 20 keeps p at 1 - 2e-9 (float32: 1.0, drop 0)
    x2 = np.array([20.0, 20.0, 0.0, 0.0, 0.0, 0.0], np.float32)[None, :, None]
    sal2 = np.array([[6.0, 0.5, 1.0, 1.5, 3.0, 2.0]], np.float32)  # keeps 0, 4: logit 20
    got = drop_increase(linear2, x2, sal2, k=2 / 6)
    want, _ = reference(x2[0], np.r_[1, 0, 0, 0, 1, 0])
    assert want > 0 and got["drop"][0] == pytest.approx(want, rel=1e-4)


def test_unsaturated_precise_equals_float64_and_study():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(64, 6, 1)).astype(np.float32)
    sal = rng.normal(size=(64, 6)).astype(np.float32)  # continuous: no ties
    precise = drop_increase(linear2, xs, sal, k=0.5, targets=np.zeros(64, int))
    study = drop_increase(linear2, xs, sal, k=0.5, targets=np.zeros(64, int), convention="study")
    want = np.array([reference(x, (s >= np.sort(s)[3]).astype(float)) for x, s in zip(xs, sal)])
    np.testing.assert_allclose(precise["drop"], want[:, 0], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(precise["increase"], want[:, 1])
    np.testing.assert_allclose(study["drop"], precise["drop"], rtol=1e-4, atol=1e-6)
    assert precise["tie_share"] == 0.0


def test_ties_at_the_cut_are_the_expectation_over_random_orders():
    x = np.array([1.0, 2.0, -1.0, 3.0, 4.0, -2.0], np.float32)[None, :, None]
    sal = np.array([[5.0, 0.0, 0.0, 0.0, 0.0, 1.0]], np.float32)  # keep 3: 0, 5, then 1 of 4 zeros
    subsets = [np.isin(np.arange(6), (0, 5, z)).astype(float) for z in (1, 2, 3, 4)]
    refs = np.array([reference(x[0], keep) for keep in subsets])
    exact = drop_increase(linear2, x, sal, k=0.5, targets=[0])  # C(4, 1) = 4 <= 64: enumerated
    assert exact["tie_share"] == 1.0
    assert exact["drop"][0] == pytest.approx(refs[:, 0].mean(), rel=1e-5)
    assert exact["increase"][0] == pytest.approx(refs[:, 1].mean())
    by_index = drop_increase(linear2, x, sal, k=0.5, targets=[0], convention="study")
    assert by_index["drop"][0] == pytest.approx(refs[0, 0], rel=1e-4)  # lowest index: position 1
    assert abs(by_index["drop"][0] - exact["drop"][0]) > 0.05  # index order is biased here


def test_large_tie_groups_use_keyed_draws():
    rng = np.random.default_rng(1)
    n = 30
    w = rng.normal(size=n).astype(np.float32)
    f = lambda x: jnp.stack([jnp.asarray(w) @ x[:, 0], jnp.asarray(0.0)])  # noqa: E731
    x = rng.normal(size=(1, n, 1)).astype(np.float32)
    sal = np.zeros((1, n), np.float32)
    sal[0, :3] = [3.0, 2.0, 1.0]  # keep 12: 3 fixed, 9 of 27 tied: C(27, 9) = 4.7e6 subsets
    # Monte-Carlo truth from many random subsets (float64)
    full = np.array([w @ x[0, :, 0], 0.0])
    drops = []
    for _ in range(4000):
        keep = np.zeros(n)
        keep[:3] = 1
        keep[3 + rng.choice(27, 9, replace=False)] = 1
        y, o = softmax64(full)[0], softmax64([w @ (x[0, :, 0] * keep), 0.0])[0]
        drops.append(max((y - o) / y, 0.0))
    a = drop_increase(f, x, sal, k=0.4, targets=[0], tie_draws=256)
    b = drop_increase(f, x, sal, k=0.4, targets=[0], tie_draws=256)
    assert a["drop"][0] == b["drop"][0]  # keyed: deterministic
    assert a["drop"][0] == pytest.approx(np.mean(drops), abs=4 * np.std(drops) / np.sqrt(256) + 0.01)


def test_deletion_with_ties_averages_orders():
    f = lambda x: jnp.stack([x.sum(), jnp.asarray(0.0)])  # noqa: E731
    x = np.array([4.0, 1.0, 2.0, 3.0], np.float32)[None, :, None]
    sal = np.array([[9.0, 1.0, 1.0, 0.0]], np.float32)  # positions 1 and 2 tie
    r = deletion_insertion(f, x, sal, score="logit", tie_draws=512)
    orders = [(0, 1, 2, 3), (0, 2, 1, 3)]
    curves = [10 - np.r_[0, np.cumsum(x[0, list(o), 0])] for o in orders]
    mean = np.mean(curves, 0)
    assert r["tie_share"] == 1.0
    np.testing.assert_allclose(r["deletion_curve"][0, [0, 1, 3, 4]], mean[[0, 1, 3, 4]], rtol=1e-6)
    assert abs(r["deletion_curve"][0, 2] - mean[2]) < 0.15  # 1 or 2 removed second, ~half the draws each
    no_ties = deletion_insertion(f, x, np.array([[9.0, 2.0, 1.0, 0.0]], np.float32), score="logit")
    assert no_ties["tie_share"] == 0.0
    np.testing.assert_allclose(no_ties["deletion_curve"][0], curves[0], rtol=1e-6)


def test_compiled_programs_do_not_keep_the_model_alive():
    """Programs are cached on f itself: once the caller drops f, f (and its params) are freed."""
    import gc
    import weakref

    import xai_jax as xj

    def make():
        w = jnp.ones(6)
        return lambda x: jnp.stack([w @ x[:, 0], jnp.asarray(0.0)])

    f = make()
    ref = weakref.ref(f)
    xs = np.random.default_rng(0).normal(size=(3, 6, 1)).astype(np.float32)
    drop_increase(f, xs, np.random.default_rng(1).random((3, 6)), k=0.5)
    xj.attribute(xj.saliency(f), xs, np.zeros(3, int))
    del f
    gc.collect()
    assert ref() is None


def test_topk_masks_keep_every_tied_position_when_the_cut_takes_them_all():
    import jax

    from xai_jax.metrics.ties import topk_keep_masks

    m = jnp.concatenate([jnp.ones(1), jnp.zeros(10)])  # keep 11 of 11: 10 tied zeros, all kept
    masks, weights = topk_keep_masks(m, 11, jax.random.key(0), 4)
    assert float(weights.sum()) == pytest.approx(1.0)
    assert bool(np.asarray(masks)[np.asarray(weights) > 0].all())


@pytest.mark.parametrize("size", [40, 200])  # the pairwise path (<= 128 values) and the sort path
def test_index_ranks_match_a_stable_numpy_sort_with_ties_and_signed_zeros(size):
    from xai_jax.metrics.ties import index_ranks

    rng = np.random.default_rng(size)
    v = np.round(rng.normal(size=(5, size)), 1).astype(np.float32)  # many exact ties
    v[:, :6] = [0.0, -0.0, 0.0, -0.0, 1.0, 1.0]  # -0.0 == 0.0 is a tie, broken by index
    want = np.empty_like(v, dtype=np.int32)
    for row, w in zip(v, want, strict=True):
        w[np.argsort(-row, kind="stable")] = np.arange(size)
    got = np.asarray(jax.jit(jax.vmap(index_ranks))(jnp.asarray(v)))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.asarray(index_ranks(jnp.asarray(v[0].reshape(-1, 2 if size == 40 else 4)))),
                                  want[0].reshape(-1, 2 if size == 40 else 4))
