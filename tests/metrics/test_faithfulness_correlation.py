import jax
import numpy as np
import pytest

from tests.models_small import linear_f
from xai_jax.metrics.faithfulness_correlation import faithfulness_correlation

KEY = jax.random.key(7)
F, W, C = linear_f(num_classes=3, shape=(6, 2))
XS = np.random.default_rng(0).normal(size=(5, 6, 2)).astype(np.float32)
T = np.array([0, 1, 2, 0, 1], np.int32)
GRAD = W[T].reshape(5, 6, 2)  # the exact gradient of the linear model for each target


def test_faithfulness_correlation_gxi_on_linear_model_is_one():
    # GxI spatial map (channel sum): removing positions S changes the logit by exactly sum_S map
    maps = (XS * GRAD).sum(-1)  # = xj.gradient_x_input(F) summed over channels
    kw = dict(targets=T, subset_size=3, n_runs=30, key=KEY, score="logit")
    r = faithfulness_correlation(F, XS, maps, **kw)
    np.testing.assert_allclose(r["correlation"], 1.0, atol=1e-5)
    np.testing.assert_allclose(faithfulness_correlation(F, XS, -maps, **kw)["correlation"], -1.0, atol=1e-5)
    # per-value attributions (shaped like x): single values are removed, still exactly 1
    gxi = XS * GRAD
    np.testing.assert_allclose(faithfulness_correlation(F, XS, gxi, **kw)["correlation"], 1.0, atol=1e-5)


def test_faithfulness_correlation_by_hand_and_deterministic():
    maps = np.random.default_rng(4).normal(size=(5, 6)).astype(np.float32)
    kw = dict(targets=T, subset_size=2, n_runs=8, key=KEY, score="softmax", fill="black")
    r = faithfulness_correlation(F, XS, maps, **kw)["correlation"]
    probs = lambda v: np.exp(v - v.max()) / np.exp(v - v.max()).sum()  # noqa: E731
    for i in (0, 3):
        x, t = XS[i], T[i]
        y = probs(W @ x.ravel() + C)[t]
        sums, deltas = [], []
        for run in range(8):
            chosen = np.asarray(jax.random.choice(jax.random.fold_in(jax.random.fold_in(KEY, i), run), 6, (2,),
                                                  replace=False))
            masked = x.copy()
            masked[chosen] = x.min()
            sums.append(maps[i, chosen].sum())
            deltas.append(y - probs(W @ masked.ravel() + C)[t])
        np.testing.assert_allclose(r[i], np.corrcoef(sums, deltas)[0, 1], rtol=1e-4)
    np.testing.assert_allclose(faithfulness_correlation(F, XS, maps, batch_size=2, **kw)["correlation"], r, rtol=1e-5)


def test_faithfulness_correlation_bad_input():
    maps = np.zeros((5, 6), np.float32)
    with pytest.raises(ValueError, match="subset_size=7 exceeds the 6 spatial positions"):
        faithfulness_correlation(F, XS, maps, subset_size=7, key=KEY)
    with pytest.raises(ValueError, match="subset_size must be >= 1"):
        faithfulness_correlation(F, XS, maps, subset_size=0, key=KEY)
    with pytest.raises(ValueError, match="n_runs must be >= 2"):
        faithfulness_correlation(F, XS, maps, subset_size=2, n_runs=1, key=KEY)
    with pytest.raises(ValueError, match="fill must be"):
        faithfulness_correlation(F, XS, maps, subset_size=2, fill="grey", key=KEY)
    with pytest.raises(ValueError, match="targets must be class indices >= 0"):
        faithfulness_correlation(F, XS, maps, targets=-T - 1, subset_size=2, key=KEY)
    with pytest.raises(ValueError, match="saliency must have shape"):
        faithfulness_correlation(F, XS, maps[:, :4], subset_size=2, key=KEY)
    with pytest.raises(ValueError, match="at least one input"):
        faithfulness_correlation(F, XS[:0], maps[:0], subset_size=2, key=KEY)


@pytest.mark.parametrize("n_features, expected", [
    # issue 21: subset_size had no default; round(sqrt(n)), at least 1 (Quantus' 224 on 224 x 224)
    (224 * 224, 224), (40, 6), (12, 3), (1, 1), (2, 1), (224 * 224 * 3, 388),
])
def test_default_subset_size_rule(n_features, expected):
    from xai_jax.metrics.faithfulness_correlation import default_subset_size
    assert default_subset_size(n_features) == expected


def test_default_subset_size_is_used():
    maps = (XS * GRAD).sum(-1)  # 6 positions: subset of round(sqrt(6)) = 2
    kw = dict(targets=T, n_runs=8, key=KEY, score="logit")
    np.testing.assert_array_equal(faithfulness_correlation(F, XS, maps, **kw)["correlation"],
                                  faithfulness_correlation(F, XS, maps, subset_size=2, **kw)["correlation"])
