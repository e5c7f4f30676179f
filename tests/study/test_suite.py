"""method_suite: the default set, and "all" (every method of the library) on signals and images."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_jax.study.models import mnist1d_cnn, vgg7
from xai_jax.study.suite import DEFAULT_METHODS, IMAGE_ONLY, MORE_METHODS, explain_all, method_suite


def test_default_and_all_sets():
    model = mnist1d_cnn("study")
    assert tuple(method_suite(model, None, ndim=1)) == DEFAULT_METHODS
    everything = method_suite(model, None, ndim=1, methods="all", references=np.zeros((4, 40, 1)))
    assert set(everything) == set(DEFAULT_METHODS) | (set(MORE_METHODS) - set(IMAGE_ONLY))
    assert "Expected Gradients" not in method_suite(model, None, ndim=1, methods="all")  # no references
    images = method_suite(vgg7("study"), None, ndim=2, methods="all", references=np.zeros((2, 8, 8, 3)))
    assert set(images) == set(DEFAULT_METHODS) | set(MORE_METHODS)
    with pytest.raises(ValueError, match="unknown methods \\['XRAI'\\] for 1-D signals"):
        method_suite(model, None, ndim=1, methods=["Grad-CAM", "XRAI"])
    with pytest.raises(ValueError, match="needs references"):
        method_suite(model, None, ndim=1, methods=["Expected Gradients"])
    with pytest.raises(ValueError, match="methods must be 'default', 'all'"):
        method_suite(model, None, ndim=1, methods="everything")


@pytest.mark.parametrize("ndim", [1, 2])
def test_every_new_method_explains_through_the_suite(ndim):
    rng = np.random.default_rng(0)
    if ndim == 1:
        model, shape, n = mnist1d_cnn("study"), (40, 1), 3
    else:
        model, shape, n = vgg7("study"), (16, 16, 3), 1
    params = model.init(jax.random.key(0), jnp.zeros((1, *shape)))["params"]
    xs = rng.uniform(size=(n, *shape)).astype(np.float32)
    refs = rng.uniform(size=(4, *shape)).astype(np.float32)  # not the explained inputs: x - b != 0
    suite = method_suite(model, params, ndim=ndim, light=True, image_size=16, references=refs,
                         methods=[m for m in MORE_METHODS if ndim == 2 or m not in IMAGE_ONLY])
    maps, ms = explain_all(suite, params, xs, np.zeros(n, int), key=jax.random.key(1))
    for name, m in maps.items():
        assert m.shape == (n, *shape[:-1]), name
        assert np.isfinite(m).all() and np.abs(m).max() > 0, name
        assert ms[name] > 0


def test_the_suite_takes_any_adapted_model():
    """A BatchNorm CNN held by NNX: the suite's methods explain it and the sanity check randomises it."""
    import jax

    from tests.adapters import bn_models as B
    from xai_jax import Model
    from xai_jax.study.suite import explain_all, method_suite, sanity_all

    _, variables = B.linen_model()
    model = Model(B.nnx_model(variables))
    xs, ts = B.inputs(3), np.array([0, 1, 2])
    suite = method_suite(model, ndim=2, methods=["Grad-CAM", "Saliency"], image_size=8)
    maps, _ = explain_all(suite, None, xs, ts, key=jax.random.key(0))
    assert maps["Grad-CAM"].shape == (3, 8, 8) and maps["Saliency"].shape == (3, 8, 8)
    sanity = sanity_all(suite, model, None, xs, ts, key=jax.random.key(1))
    assert list(sanity["Saliency"]) == ["original", "head", "conv2", "bn", "conv1"]
