import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.models_small import linear_f


def test_attribute_equals_loop_with_padding_and_keys():
    f, W, _ = linear_f()
    xs = np.random.default_rng(0).normal(size=(11, 6, 2)).astype(np.float32)
    ts = np.arange(11) % 3
    gxi = xj.gradient_x_input(f)
    out = xj.attribute(gxi, xs, ts, batch_size=4)
    assert isinstance(out, np.ndarray) and out.shape == (11, 6, 2)
    np.testing.assert_allclose(out, xs * W[ts].reshape(11, 6, 2), rtol=1e-6)
    sg = xj.smoothgrad(xj.saliency(lambda x: jnp.tanh(x).reshape(-1)[:3]), n_samples=4)
    key = jax.random.key(0)
    a = xj.attribute(sg, xs, ts, batch_size=3, key=key)
    b = xj.attribute(sg, xs, ts, batch_size=8, key=key)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(a[5], sg(jnp.asarray(xs[5]), int(ts[5]), jax.random.fold_in(key, 5)), rtol=1e-6)


def test_attribute_validates_the_batch():
    f, _, _ = linear_f()
    xs = np.zeros((4, 6, 2), np.float32)
    m = xj.saliency(f)
    with pytest.raises(ValueError, match="NaN or inf"):
        xj.attribute(m, np.where(np.arange(48).reshape(4, 6, 2) == 5, np.nan, xs), np.zeros(4, int))
    with pytest.raises(TypeError, match="targets must be integer"):
        xj.attribute(m, xs, np.zeros(4))
    with pytest.raises(ValueError, match=r"targets must have shape \(4,\)"):
        xj.attribute(m, xs, np.zeros(3, int))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        xj.attribute(m, xs, np.array([0, 1, 2, 3]), num_classes=3)
    with pytest.raises(ValueError, match="batch_size"):
        xj.attribute(m, xs, np.zeros(4, int), batch_size=0)


def test_device_resident_inputs_and_results():
    f, W, _ = linear_f()
    xs = np.random.default_rng(0).normal(size=(11, 6, 2)).astype(np.float32)
    ts = np.arange(11) % 3
    gxi = xj.gradient_x_input(f)
    want = xj.attribute(gxi, xs, ts, batch_size=4)
    for x_in, t_in in [(jnp.asarray(xs), jnp.asarray(ts)), (jnp.asarray(xs), ts), (xs, jnp.asarray(ts))]:
        got = xj.attribute(gxi, x_in, t_in, batch_size=4, to_numpy=False)
        assert isinstance(got, jax.Array) and got.shape == (11, 6, 2)  # one array, trimmed
        np.testing.assert_array_equal(np.asarray(got), want)
        np.testing.assert_array_equal(xj.attribute(gxi, x_in, t_in, batch_size=4), want)
    ig = xj.integrated_gradients(f, steps=8, return_delta=True)  # a pytree of results
    maps, delta = xj.attribute(ig, jnp.asarray(xs), ts, batch_size=4, to_numpy=False)
    assert isinstance(maps, jax.Array) and maps.shape == (11, 6, 2) and delta.shape == (11,)
    one = xj.attribute(gxi, jnp.asarray(xs), ts, batch_size=64, to_numpy=False)  # one batch, no concatenation
    assert one.shape == (11, 6, 2)
    empty = xj.attribute(gxi, jnp.zeros((0, 6, 2)), np.zeros(0, int), to_numpy=False)
    assert isinstance(empty, jax.Array) and empty.shape == (0, 6, 2)


@pytest.mark.parametrize("bad, match", [
    ("x", r"xs contains NaN or inf values \(inputs \[5\] of 11\)"),
    ("target", r"targets must lie in \[0, 3\) \(the model has 3 classes\), got 7 \(inputs \[2\] of 11\)"),
    ("negative", r"targets must be class indices >= 0, got -1 \(inputs \[9\] of 11\)"),
    ("map", r"the method returned NaN or inf for inputs \[4\] of 11"),
])
def test_fused_validation_names_the_inputs_on_device(bad, match):
    f, _, _ = linear_f()
    xs = np.random.default_rng(0).normal(size=(11, 6, 2)).astype(np.float32)
    ts = np.arange(11) % 3
    method = xj.saliency(f)
    if bad == "x":
        xs[5, 0, 0] = np.nan
    elif bad == "target":
        ts[2] = 7
    elif bad == "negative":
        ts[9] = -1
    else:
        def method(x, t):  # a user method that breaks on input 4 only
            return jnp.where(x[0, 0] == xs[4, 0, 0], jnp.nan, x)

        method.num_classes = 3
    with pytest.raises(ValueError, match=match):
        xj.attribute(method, jnp.asarray(xs), jnp.asarray(ts), batch_size=4, to_numpy=False)


def test_numpy_inputs_are_put_on_the_device_one_batch_ahead(monkeypatch):
    from xai_jax import batching

    monkeypatch.setattr(batching, "HOST_FEED_PLATFORMS", ())  # the accelerator path, on this CPU
    events = []
    real_put = jax.device_put

    def put(x, *a, **k):
        events.append(("put", int(np.asarray(x).ravel()[0])))
        return real_put(x, *a, **k)

    monkeypatch.setattr(batching.jax, "device_put", put)
    xs = np.arange(10, dtype=np.float32).reshape(10, 1)

    def fn(x):
        events.append(("run", int(np.asarray(x).ravel()[0])))
        return x

    out = batching.run_in_batches(fn, (xs,), 4)
    np.testing.assert_array_equal(out, xs)
    # batch k + 1 is transferred before batch k runs (double buffering)
    assert events == [("put", 0), ("put", 4), ("run", 0), ("put", 8), ("run", 4), ("run", 8)]


def test_on_a_cpu_backend_numpy_batches_go_to_the_call_as_they_are(monkeypatch):
    from xai_jax import batching

    if jax.devices()[0].platform != "cpu":
        pytest.skip("the host feed is for CPU backends")
    puts = []
    real_put = jax.device_put
    monkeypatch.setattr(batching.jax, "device_put", lambda *a, **k: puts.append(1) or real_put(*a, **k))
    xs = np.arange(10, dtype=np.float32).reshape(10, 1)
    seen = []
    fn = jax.jit(lambda x, i: (x[:, 0] * 2, i))

    def spy(x, i):
        seen.append((type(x), type(i)))
        return fn(x, i)

    out, index = batching.run_in_batches(spy, (xs,), 4, with_index=True)
    np.testing.assert_array_equal(out, 2 * xs[:, 0])
    np.testing.assert_array_equal(index, np.arange(10))
    assert not puts and all(t == (np.ndarray, np.ndarray) for t in seen)
    # a jax.Array stays on its device: sliced there, the padded batch gathered there
    dev = jnp.asarray(xs)
    out, index = batching.run_in_batches(lambda x, i: (x, i), (dev,), 4, with_index=True, to_numpy=False)
    assert isinstance(out, jax.Array)
    np.testing.assert_array_equal(np.asarray(out), xs)


def test_default_batch_size_comes_from_xla_memory_analysis(monkeypatch):
    from xai_jax import batching

    f, W, _ = linear_f()
    xs = np.random.default_rng(0).normal(size=(300, 6, 2)).astype(np.float32)
    ts = np.arange(300) % 3
    ig = xj.integrated_gradients(f, steps=64)
    want = xj.attribute(ig, xs, ts, batch_size=7)
    np.testing.assert_allclose(xj.attribute(ig, xs, ts), want, rtol=1e-6, atol=1e-7)  # default: one big batch
    fn = batching._batched(ig, False, None, 3)
    rows = (jax.ShapeDtypeStruct((6, 2), jnp.float32), jax.ShapeDtypeStruct((), jnp.int32),
            jax.ShapeDtypeStruct((), jnp.int32))
    roomy = batching.auto_batch_size(fn, rows, 300, (jax.random.key(0),))
    assert roomy == 300  # a linear model on 12 values: everything fits in one call
    # a tight budget: smaller calls (IG's pairwise node sum fuses with the gradients: ~200 bytes per input)
    monkeypatch.setattr(batching, "CPU_BATCH_BUDGET", 16 * 1024)
    tight = batching.auto_batch_size(fn, rows, 300, (jax.random.key(0),), multiple=4)
    assert 1 <= tight < 300 and tight % 4 == 0, tight
    # attribute probes once per (method, input shape): a new N reuses the figure
    capacity = batching.inputs_per_call(fn, rows, (jax.random.key(0),))
    assert batching.batch_for(7, capacity) == min(7, capacity)


@pytest.mark.parametrize("n, capacity", [(1000, 957), (200, 33), (5000, 1379), (10, 3), (65, 64), (7, 100),
                                         (1, 1), (999, 1000), (4096, 64)])
def test_batches_are_balanced_and_few_shapes(n, capacity):
    from xai_jax import batching

    size = batching.batch_for(n, capacity)
    calls = -(-n // size)
    assert size <= max(capacity, 1) and calls == -(-n // capacity)  # the fewest calls the capacity allows
    grain = max(1, capacity // batching.BATCH_SHAPES)
    assert calls * size - n < calls * grain  # padding: under one grain per call (not a whole batch)
    if n > capacity:
        assert size % grain == 0  # one of capacity // grain shapes, whatever n is
    assert batching.batch_for(n, capacity, multiple=4) % 4 == 0
