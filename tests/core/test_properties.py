"""Property-based checks (hypothesis) of the method contract: a result of the documented shape,
batch-size and input-order invariance, NaN in never a finite map out. `make test` runs a few
examples; `make fuzz` runs many (HYPOTHESIS_PROFILE=fuzz)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import xai_jax as xj  # noqa: E402

settings.register_profile("quick", max_examples=8, deadline=None, derandomize=True)
settings.register_profile("fuzz", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

W = jnp.asarray(np.random.default_rng(0).normal(size=(8, 2, 3)).astype(np.float32))
F = lambda x: jnp.tanh(jnp.einsum("lc,lck->k", x, W))  # noqa: E731
METHODS = {"saliency": xj.saliency(F), "ig": xj.integrated_gradients(F, steps=8),
           "gxi": xj.gradient_x_input(F), "occlusion": xj.occlusion(F, window=2)}
SHAPES = {"saliency": (8, 2), "ig": (8, 2), "gxi": (8, 2), "occlusion": (8,)}

inputs = st.integers(1, 6).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-3, 3, width=32), min_size=n * 16, max_size=n * 16),
    st.lists(st.integers(0, 2), min_size=n, max_size=n)))


def batch(values, targets):
    xs = np.asarray(values, np.float32).reshape(len(targets), 8, 2)
    return xs, np.asarray(targets, np.int32)


@pytest.mark.parametrize("name", sorted(METHODS))
@given(data=inputs, seed=st.integers(0, 2**16))
def test_shape_batch_size_and_order_invariance(name, data, seed):
    xs, ts = batch(*data)
    method = METHODS[name]
    full = xj.attribute(method, xs, ts)
    assert full.shape == (len(xs), *SHAPES[name]) and np.isfinite(full).all()
    one_by_one = xj.attribute(method, xs, ts, batch_size=1)
    np.testing.assert_allclose(one_by_one, full, rtol=1e-5, atol=1e-6)
    perm = np.random.default_rng(seed).permutation(len(xs))
    np.testing.assert_allclose(xj.attribute(method, xs[perm], ts[perm]), full[perm], rtol=1e-5, atol=1e-6)
    # targets=None: the predicted class, the same as passing it (where the top two scores are apart: a
    # near-tie may be resolved either way by programs compiled differently)
    scores = np.sort(np.asarray(jax.vmap(F)(jnp.asarray(xs))), 1)
    clear = scores[:, -1] - scores[:, -2] > 1e-3
    predicted = np.asarray(jax.vmap(F)(jnp.asarray(xs))).argmax(1)
    np.testing.assert_allclose(xj.attribute(method, xs)[clear], xj.attribute(method, xs, predicted)[clear],
                               rtol=1e-6)


@pytest.mark.parametrize("name", sorted(METHODS))
@given(data=inputs, where=st.integers(0, 15))
def test_nan_in_is_never_a_finite_map_out(name, data, where):
    xs, ts = batch(*data)
    xs[0].reshape(-1)[where] = np.nan
    method = METHODS[name]
    with pytest.raises(ValueError, match="NaN or inf"):
        xj.attribute(method, xs, ts)
    traced = np.asarray(jax.jit(jax.vmap(method))(jnp.asarray(xs), jnp.asarray(ts)))
    assert np.isnan(traced[0]).all()  # inside the caller's jit: NaN out, never a finite map


@given(data=inputs)
def test_metric_results_have_one_score_per_input(data):
    xs, ts = batch(*data)
    r = xj.metrics.drop_increase(F, xs, METHODS["saliency"], ts, k=0.5)
    assert set(r.scores) == {"drop", "increase"}
    for v in r.scores.values():
        assert v.shape == (len(xs),) and np.isfinite(v).all()
    lo, hi = r.ci["drop"]
    assert (np.isnan(lo) and len(xs) < 2) or lo <= r.mean["drop"] + 1e-12 <= hi + 2e-12
