"""Occlusion (Zeiler & Fergus 2014) against gradient x input on linear models (Captum's values:
test_occlusion_reference.py)."""

import jax.numpy as jnp
import numpy as np
import pytest

from tests.models_small import linear_f
from xai_jax.attribution.perturbation import occlusion


def region_model_1d(lo=12, hi=20):
    return lambda x: jnp.stack([4.0 * x[lo:hi].mean(), jnp.asarray(0.0)])


def region_model_2d():
    return lambda x: jnp.stack([4.0 * x[4:10, 8:14].mean(), jnp.asarray(0.0)])


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


def test_occlusion_bad_inputs():
    f = region_model_1d()
    x = jnp.ones((40, 1))
    with pytest.raises(ValueError, match=r"window \(41,\) is larger than the input's spatial size \(40,\)"):
        occlusion(f, window=41)(x, 0)
    with pytest.raises(ValueError, match="NaN or inf"):
        occlusion(f, window=4)(x.at[0, 0].set(jnp.nan), 0)


def _covers_reference(f, x, t, win, st):
    """Occlusion as a (windows x positions) cover matrix (the former construction), in NumPy."""
    import itertools
    spatial = x.shape[:-1]
    starts = list(itertools.product(*[np.arange(-(-(d - w) // s) + 1) * s for d, w, s in zip(spatial, win, st)]))
    grids = np.meshgrid(*[np.arange(d) for d in spatial], indexing="ij")
    covers = np.stack([np.all([(g >= a) & (g < a + w) for g, a, w in zip(grids, start, win)], axis=0)
                       for start in starts]).astype(np.float64)
    y = float(f(x)[t])
    drops = np.array([y - float(f(np.where(c[..., None] > 0, 0.0, x))[t]) for c in covers])
    count = covers.sum(0)
    return np.where(count > 0, np.tensordot(drops, covers, 1) / np.maximum(count, 1), 0.0)


@pytest.mark.parametrize("shape, window, stride", [
    ((9, 11, 2), (4, 4), (3, 1)), ((9, 11, 2), (2, 5), (2, 4)), ((9, 11, 2), (3, 3), (5, 5)),
    ((23, 1), 5, 1), ((23, 1), 2, 5),
])
def test_window_sums_equal_the_cover_matrix_construction(shape, window, stride):
    # issue 21: the map is now summed window by window (O(positions) memory), not through a
    # (windows x positions) matrix; gaps (stride > window) read 0 with allow_gaps=True
    rng = np.random.default_rng(sum(shape))
    w = jnp.asarray(rng.normal(size=(*shape, 3)), jnp.float32)
    f = lambda z: jnp.tensordot(jnp.tanh(z), w, z.ndim)  # noqa: E731
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    win = window if isinstance(window, tuple) else (window,)
    st = stride if isinstance(stride, tuple) else (stride,)
    for chunk in (None, 3):
        got = occlusion(f, window=window, stride=stride, allow_gaps=True, chunk_size=chunk)(x, 1)
        np.testing.assert_allclose(got, _covers_reference(f, np.asarray(x), 1, win, st), rtol=1e-5, atol=2e-6)


def _largest_array(closed) -> int:
    """Elements of the largest constant or intermediate array in a closed jaxpr (sub-jaxprs of
    lax.map / scan / cond included): what its buffers grow with."""
    import jax.extend as jex  # noqa: F401  (jax.core's Jaxpr types)
    sizes = [int(np.size(c)) for c in closed.consts]

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            sizes.extend(int(np.prod(v.aval.shape)) for v in eqn.outvars if hasattr(v.aval, "shape"))
            for p in eqn.params.values():
                for sub in (p if isinstance(p, (list, tuple)) else [p]):
                    inner = getattr(sub, "jaxpr", None)
                    if inner is not None:
                        walk(inner if hasattr(inner, "eqns") else inner.jaxpr)
                        sizes.extend(int(np.size(c)) for c in getattr(sub, "consts", []))

    walk(closed.jaxpr)
    return max(sizes)


def test_long_signal_memory_is_linear():
    # issue 21: window=1, chunk_size=64 on a (16000, 1) signal held a constant 16,000 x 16,000
    # cover matrix (1 GB; 3.6 GB peak); now no array of the traced call exceeds chunk x length
    import jax
    n = 4000
    w = jnp.ones((n, 1, 2), jnp.float32)
    f = lambda z: jnp.einsum("lc,lck->k", jnp.tanh(z), w)  # noqa: E731
    closed = jax.make_jaxpr(occlusion(f, window=1, chunk_size=64))(jnp.zeros((n, 1)), 0)
    assert _largest_array(closed) <= 64 * n * 2  # the former construction: n * n = 16,000,000
