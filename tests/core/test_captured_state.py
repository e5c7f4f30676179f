"""Programs cached on a callable are compiled again when the arrays it captures change (issue 21,
class 1): a closure over a dict whose item is replaced, a functools.partial, a bound method, a
global, a callable object, an NNX module updated in place. Each row builds f, computes a result,
replaces f's weights, and compares the cached path with a function defined afresh (no cache)."""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
import xai_jax.metrics as M
from xai_jax.batching import program_cache
from xai_jax.captured import fingerprint

SHAPE, CLASSES = (6, 2), 3


def weights(seed):
    rng = np.random.default_rng(seed)
    return {"w1": jnp.asarray(rng.normal(size=(5, 12)), jnp.float32),
            "w2": jnp.asarray(rng.normal(size=(CLASSES, 5)), jnp.float32)}


def apply(p, x):
    return p["w2"] @ jnp.tanh(p["w1"] @ x.reshape(-1))


def fresh(p):
    return lambda x: apply(p, x)  # a new function each time: nothing cached on it


class Net:
    def __init__(self, p):
        self.p = p

    def logits(self, x):
        return apply(self.p, x)

    def __call__(self, x):
        return apply(self.p, x)


def as_lambda_over_dict():
    P = {"p": weights(0)}
    return (lambda z: apply(P["p"], z)), (lambda new: P.__setitem__("p", new))


def as_partial():
    P = {"p": weights(0)}
    return functools.partial(lambda box, z: apply(box["p"], z), P), (lambda new: P.__setitem__("p", new))


def as_bound_method():
    net = Net(weights(0))
    return net.logits, (lambda new: setattr(net, "p", new))


def as_callable_object():
    net = Net(weights(0))
    return net, (lambda new: setattr(net, "p", new))


def as_global():
    ns = {"apply": apply, "W": weights(0)}
    exec("def g(z):\n    return apply(W, z)\n", ns)  # a module-level function reading the global W
    return ns["g"], (lambda new: ns.__setitem__("W", new))


def as_nnx_module():
    nnx = pytest.importorskip("flax.nnx")

    class Two(nnx.Module):
        def __init__(self, p):
            self.w1, self.w2 = nnx.Param(p["w1"]), nnx.Param(p["w2"])

        def __call__(self, x):
            return apply({"w1": self.w1[...], "w2": self.w2[...]}, x)

    m = Two(weights(0))

    def update(new):
        m.w1[...] = new["w1"]
        m.w2[...] = new["w2"]

    return (lambda z: m(z)), update


FORMS = {"lambda over a dict item": as_lambda_over_dict, "functools.partial": as_partial,
         "bound method": as_bound_method, "callable object": as_callable_object, "global": as_global,
         "NNX module updated in place": as_nnx_module}

XS = np.random.default_rng(1).normal(size=(4, *SHAPE)).astype(np.float32)
TS = np.arange(4) % CLASSES
MAPS = np.abs(np.random.default_rng(2).normal(size=(4, *SHAPE))).sum(-1).astype(np.float32)
KEY = jax.random.key(0)

# (name, result(f)): every path that caches compiled programs on f or on the method; the
# slower rows (each compiles three programs) run with `make fuzz`
SLOW = pytest.mark.fuzz
RESULTS = [
    pytest.param(lambda f: xj.attribute(xj.saliency(f), XS, TS), id="attribute(saliency(f))"),
    pytest.param(lambda f: xj.attribute(xj.saliency(f), XS), id="attribute, predicted targets"),
    pytest.param(lambda f: M.drop_increase(f, XS, MAPS, TS)["drop"], id="drop_increase"),
    pytest.param(lambda f: M.infidelity(f, XS, np.repeat(MAPS[..., None], 2, -1), TS, key=KEY, n_perturb_samples=3,
                                        perturb_fn=M.gaussian_perturbation(0.1))["infidelity"], id="infidelity"),
    pytest.param(lambda f: M.deletion_insertion(f, XS, MAPS, TS)["deletion_auc"], id="deletion_insertion",
                 marks=SLOW),
    pytest.param(lambda f: M.pixel_flipping(f, XS, MAPS, TS)["auc"], id="pixel_flipping", marks=SLOW),
    pytest.param(lambda f: M.faithfulness_correlation(f, XS, MAPS, TS, n_runs=4, subset_size=3, key=KEY)["correlation"],
                 id="faithfulness_correlation", marks=SLOW),
    pytest.param(lambda f: M.max_sensitivity(f, XS, xj.saliency(f), TS, key=KEY, n_perturb_samples=2)["sensitivity"],
                 id="max_sensitivity", marks=SLOW),
    pytest.param(lambda f: M.random_logit(f, XS, xj.saliency(f), TS, key=KEY)["similarity"], id="random_logit",
                 marks=SLOW),
]


@pytest.mark.parametrize("form", list(FORMS))
def test_replaced_weights_recompile(form):
    f, update = FORMS[form]()
    s = xj.saliency(f)
    before = xj.attribute(s, XS, TS)
    np.testing.assert_allclose(before, xj.attribute(xj.saliency(fresh(weights(0))), XS, TS), rtol=1e-6)
    update(weights(1))
    after = xj.attribute(s, XS, TS)  # the same Method object, its program cached on it
    want = xj.attribute(xj.saliency(fresh(weights(1))), XS, TS)
    assert np.abs(want - before).max() > 0.1  # the row can fail
    np.testing.assert_allclose(after, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("result", RESULTS)
def test_every_cached_path_follows_the_weights(result):
    f, update = as_lambda_over_dict()
    result(f)  # compiled and cached with weights(0)
    update(weights(1))
    got, want = np.asarray(result(f), np.float64), np.asarray(result(fresh(weights(1))), np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_nothing_changed_nothing_recompiled():
    P = {"p": weights(0)}

    def g(z):
        g.traces += 1  # runs when traced, not when a compiled program runs (a function's attributes are not walked)
        return apply(P["p"], z)

    g.traces = 0
    s = xj.saliency(g)
    xj.attribute(s, XS, TS)
    M.drop_increase(g, XS, MAPS, TS)
    traced = g.traces
    xj.attribute(s, XS, TS)
    M.drop_increase(g, XS, MAPS, TS)
    assert g.traces - traced <= 2  # the cached programs (num_outputs' eval_shape traces f once per call)
    P["p"] = weights(1)
    xj.attribute(s, XS, TS)
    assert g.traces - traced > 3


def test_stale_programs_are_dropped():
    P = {"p": weights(0)}
    g = lambda z: apply(P["p"], z)  # noqa: E731
    M.drop_increase(g, XS, MAPS, TS)
    entries = len(vars(g)["_xai_jax_programs"])
    for seed in range(1, 3):
        P["p"] = weights(seed)
        M.drop_increase(g, XS, MAPS, TS)
    assert len(vars(g)["_xai_jax_programs"]) == entries  # the programs of the current weights only


def test_fingerprint_sees_values_and_freed_arrays():
    box = {"w": np.ones(3), "scale": 2.0}
    g = lambda z: z * box["scale"]  # noqa: E731
    fp = fingerprint(g)
    assert fp == fingerprint(g)
    box["scale"] = 3.0
    assert fp != fingerprint(g)  # a Python scalar by value
    fp = fingerprint(g)
    box["w"] = np.ones(3)  # a new array: even if it reuses the freed one's id, the weak reference is dead
    assert fp != fingerprint(g)
    cache = program_cache(g)
    cache["x"] = 1
    assert "x" in program_cache(g)
    box["scale"] = 4.0
    assert "x" not in program_cache(g)


def test_fingerprint_cost_on_the_study_cnn():
    """The walk costs well under 1 ms per call for the study CNN (measured ~0.1-0.2 ms)."""
    from xai_jax.study.models import mnist1d_cnn
    model = mnist1d_cnn("study")
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), params)
    for method in (xj.saliency(xj.model_fn(model, params)), xj.grad_cam(model, params)):
        fingerprint(method)
        t = time.perf_counter()
        for _ in range(50):
            fingerprint(method)
        assert (time.perf_counter() - t) / 50 < 2e-3  # 1 ms target; slack for a loaded CI machine
        assert fingerprint(method).complete
