"""Models that are not what the method assumes (issue 21, class 5): a model returning
probabilities under a softmax score is an error naming outputs="probabilities"; declared, it
gives what the same model returning logits gives (no second softmax); a saturated softmax
score's all-zero maps warn, suggesting score="logit"."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
import xai_jax.metrics as M

W = jnp.asarray(np.random.default_rng(0).normal(size=(3, 12)), jnp.float32)
XS = np.random.default_rng(1).normal(size=(4, 6, 2)).astype(np.float32)
TS = np.array([0, 1, 2, 0])
MAPS = np.abs(np.random.default_rng(2).normal(size=(4, 6))).astype(np.float32)
KEY = jax.random.key(0)


def logits(x):
    return W @ x.reshape(-1)


def probabilities(x):
    return jax.nn.softmax(logits(x))


# (id, result(model, **declared)): each takes the model's outputs through a softmax score
SOFTMAX_PATHS = [
    pytest.param(lambda m, **o: xj.attribute(xj.rise(m, n_masks=64, grid=2, **o), XS, TS, key=KEY), id="rise",
                 marks=pytest.mark.fuzz),  # (slower rows run with make fuzz; the eager rise row below stays)
    pytest.param(lambda m, **o: xj.attribute(xj.saliency(m, score="softmax", **o), XS, TS), id="saliency-softmax"),
    pytest.param(lambda m, **o: xj.attribute(xj.integrated_gradients(m, steps=8, score="log_softmax", **o), XS, TS),
                 id="ig-log-softmax", marks=pytest.mark.fuzz),  # (slower rows run with make fuzz)
    pytest.param(lambda m, **o: M.drop_increase(m, XS, MAPS, TS, **o)["drop"], id="drop_increase"),
    pytest.param(lambda m, **o: M.deletion_insertion(m, XS, MAPS, TS, **o)["insertion_auc"], id="deletion_insertion"),
    pytest.param(lambda m, **o: M.pixel_flipping(m, XS, MAPS, TS, **o)["auc"], id="pixel_flipping"),
]


@pytest.mark.parametrize("result", SOFTMAX_PATHS)
def test_probabilities_are_an_error_unless_declared(result):
    with pytest.raises(ValueError, match=r"non-negative and sum to 1.*outputs='probabilities'"):
        result(probabilities)
    declared = np.asarray(result(probabilities, outputs="probabilities"), np.float64)
    want = np.asarray(result(logits), np.float64)
    np.testing.assert_allclose(declared, want, rtol=2e-5, atol=1e-6)  # no second softmax


def test_eager_calls_and_bad_values():
    with pytest.raises(ValueError, match="rise: the model's outputs are non-negative and sum to 1"):
        xj.rise(probabilities, n_masks=16, grid=2)(XS[0], 0, KEY)
    with pytest.raises(ValueError, match=r"outputs must be one of \('logits', 'probabilities'\)"):
        xj.saliency(logits, outputs="probs")
    with pytest.raises(ValueError, match="outputs must be one of"):
        M.drop_increase(logits, XS, MAPS, TS, outputs="softmax")
    with pytest.raises(TypeError, match="outputs"):  # no score, no outputs
        xj.eigen_cam(logits, outputs="probabilities")
    # score="logit" uses the outputs as they are: no error, whatever they are
    assert np.isfinite(xj.saliency(probabilities)(XS[0], 0)).all()
    # an explicit outputs="logits" is trusted (the escape hatch for logits that look like probabilities)
    assert np.isfinite(xj.saliency(probabilities, score="softmax", outputs="logits")(XS[0], 0)).all()
    m = xj.rise(probabilities, n_masks=16, grid=2, outputs="probabilities")
    assert m.outputs == "probabilities" and m.rebind(probabilities).outputs == "probabilities"


def test_saturated_softmax_warns_naming_the_inputs():
    saturated = lambda x: 1000.0 * logits(x)  # noqa: E731
    ts = np.asarray(jax.vmap(saturated)(XS)).argmax(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = xj.attribute(xj.saliency(saturated, score="softmax"), XS, ts)
    rows = np.flatnonzero(~maps.reshape(4, -1).any(1)).tolist()
    assert 0 in rows  # the float32 softmax saturates: its gradient is exactly 0
    assert [str(w.message) for w in caught if "all zero" in str(w.message)] == [
        f"saliency: the maps of inputs {rows} of 4 are all zero with a softmax score: the softmax saturates for "
        f"confident inputs (its gradient vanishes, perturbed copies all score 1.0); pass score='logit' (or "
        f"'log_softmax') to explain them"]
    with pytest.warns(UserWarning, match=r"the maps of this x are all zero.*probability is 1"):
        xj.saliency(saturated, score="softmax")(XS[0], int(ts[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the logit score explains them, silently
        assert xj.attribute(xj.saliency(saturated), XS, ts).any()
