"""xai_jax.registry: every registered method builds, and its spec says what its Method is."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax import registry
from xai_jax.study.models import mnist1d_cnn, vgg7


@pytest.fixture(scope="module")
def models():
    out = {}
    for ndim, module, shape in ((1, mnist1d_cnn("study"), (40, 1)), (2, vgg7("study"), (16, 16, 3))):
        params = module.init(jax.random.key(0), jnp.zeros((1, *shape)))["params"]
        refs = np.random.default_rng(0).uniform(size=(4, *shape)).astype(np.float32)
        out[ndim] = (xj.Model(module, params), registry.Context(ndim=ndim, size=max(shape[:-1]), light=True,
                                                                references=refs))
    return out


@pytest.mark.parametrize("ndim", [1, 2])
def test_every_spec_builds_the_method_it_declares(models, ndim):
    model, ctx = models[ndim]
    for name in registry.names("all", ctx):
        spec = registry.REGISTRY[name]
        method = spec.build(model, ctx)
        assert isinstance(method, xj.Method), name
        assert method.keyed == spec.keyed, f"{name}: spec keyed={spec.keyed}, Method keyed={method.keyed}"
        assert spec.reduce in ("sum", "abs_sum"), name
        assert registry.lookup(spec.key) is spec and registry.lookup(name) is spec


def test_sets_and_lookup():
    assert set(registry.names("default")) <= set(registry.names("all", registry.Context(references=np.zeros(1))))
    assert "XRAI" not in registry.names("all", registry.Context(ndim=1))
    assert "Expected Gradients" not in registry.names("all", registry.Context(ndim=2))
    assert registry.lookup("GRAD-cam").name == "Grad-CAM"
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        registry.lookup("nope")
    with pytest.raises(TypeError, match="MethodSpec"):
        registry.register("x")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.MethodSpec("Other", "saliency", lambda m, c: None, "x", "y"))
