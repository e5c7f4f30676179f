"""The Method contract: one type from every factory, its fields, rebind, targets=None."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj

W = jnp.asarray(np.random.default_rng(0).normal(size=(6, 2, 3)).astype(np.float32))


def linear(w=W):
    return lambda x: jnp.einsum("lc,lck->k", x, w)


XS = np.random.default_rng(1).normal(size=(5, 6, 2)).astype(np.float32)


def test_every_factory_returns_a_method_with_its_fields():
    f = linear()
    cases = {
        "saliency": (xj.saliency(f), "input", True, False),
        "gradient_x_input": (xj.gradient_x_input(f), "input", True, False),
        "integrated_gradients": (xj.integrated_gradients(f, steps=8), "input", True, False),
        "smoothgrad": (xj.smoothgrad(xj.saliency(f), n_samples=4), "input", True, True),
        "expected_gradients": (xj.expected_gradients(f, baselines=XS[:2], n_samples=4), "input", True, True),
        "occlusion": (xj.occlusion(f, window=2), "spatial", True, False),
        "rise": (xj.rise(f, n_masks=8), "spatial", False, True),
    }
    for name, (m, output, signed, keyed) in cases.items():
        assert isinstance(m, xj.Method), name
        assert dataclasses.is_dataclass(m) and m.name == name
        assert (m.output, m.signed, m.keyed) == (output, signed, keyed), name
        assert m.model is not None and m.model_fn is m.model
    with pytest.raises(dataclasses.FrozenInstanceError):
        cases["saliency"][0].keyed = True


def test_rebind_gives_the_same_method_on_another_model():
    f, g = linear(), linear(2 * W)
    ig = xj.integrated_gradients(f, steps=16, rule="trapezoid")
    x = XS[0]
    np.testing.assert_allclose(ig.rebind(g)(x, 1), 2 * ig(x, 1), rtol=1e-5)  # linear: IG doubles with W
    sg = xj.smoothgrad(xj.saliency(f), n_samples=4, sigma=0.1)
    key = jax.random.key(0)
    np.testing.assert_allclose(sg.rebind(g)(x, 0, key), 2 * sg(x, 0, key), rtol=1e-5)
    assert sg.rebind(g).keyed and sg.rebind(g).name == "smoothgrad"
    user = xj.Method.wrap(lambda x, t: x * 0.0, model=f)
    with pytest.raises(TypeError, match="cannot be rebound"):
        user.rebind(g)


def test_targets_none_is_the_predicted_class_everywhere():
    f = linear()
    predicted = np.asarray(jax.vmap(f)(jnp.asarray(XS))).argmax(1)
    sal = xj.saliency(f)
    np.testing.assert_allclose(sal(XS[0], None), sal(XS[0], int(predicted[0])))
    np.testing.assert_allclose(xj.attribute(sal, XS), xj.attribute(sal, XS, predicted))
    np.testing.assert_allclose(jax.vmap(sal)(XS, None), xj.attribute(sal, XS, predicted), rtol=1e-6)
    # SmoothGrad resolves the class once, on the clean input, and explains it on every noisy copy
    sg = xj.smoothgrad(sal, n_samples=8, sigma=0.5)
    key = jax.random.key(3)
    np.testing.assert_allclose(sg(XS[0], None, key), sg(XS[0], int(predicted[0]), key), rtol=1e-6)
    r = xj.metrics.drop_increase(f, XS, sal)
    np.testing.assert_array_equal(r["targets"], predicted)


def test_ties_pick_the_lowest_index():
    f = lambda x: jnp.array([1.0, 3.0, 3.0]) + 0.0 * x.sum()  # noqa: E731
    assert int(xj.method.predicted_class(f, XS[0])) == 1


def test_user_callables_still_work_in_attribute():
    f = linear()
    fn = lambda x, t: jax.grad(lambda z: f(z)[t])(x)  # noqa: E731
    with pytest.raises(TypeError, match="num_classes is required"):
        xj.attribute(fn, XS, np.zeros(5, int))
    np.testing.assert_allclose(xj.attribute(fn, XS, np.zeros(5, int), num_classes=3),
                               xj.attribute(xj.saliency(f), XS, np.zeros(5, int)), rtol=1e-6)
    with pytest.raises(TypeError, match="targets=None"):
        xj.attribute(fn, XS, num_classes=3)


def test_randomisation_metrics_refuse_plain_callables():
    f = linear()
    fn = lambda x, t: jax.grad(lambda z: f(z)[t])(x)  # noqa: E731
    with pytest.raises(TypeError, match="must be an xai_jax Method"):
        xj.metrics.mprt(f, XS, fn)
    with pytest.raises(TypeError, match="no weights that xai_jax can randomise"):
        xj.metrics.mprt(f, XS, xj.saliency(f))


def test_targets_beyond_int32_are_an_error_not_a_wrapped_class():
    f = linear()
    with pytest.raises(ValueError, match="beyond int32"):
        xj.attribute(xj.saliency(f), XS[:1], np.array([2**32 + 1], np.int64))


def _root(x):
    """Finite scores everywhere; the gradient of sqrt(|x|) is NaN/inf where x is 0."""
    return linear()(jnp.sqrt(jnp.abs(x)))


@pytest.mark.parametrize("make", [
    pytest.param(lambda: xj.saliency(_root), id="saliency"),
    pytest.param(lambda: xj.gradient_x_input(_root), id="gradient_x_input"),
    pytest.param(lambda: xj.integrated_gradients(_root, steps=4, baseline=1.0), id="integrated_gradients"),
    pytest.param(lambda: xj.guided_ig(_root, steps=3), id="guided_ig"),
])
def test_eager_calls_never_return_nan_maps(make):
    # issue 21: the README says eager calls raise on NaN output; every method goes through
    # explanation_method's guard (under jit the map is NaN and attribute names the inputs)
    x = jnp.asarray(XS[0]).at[2, 1].set(0.0)
    method = make()
    args = (x, 0, jax.random.key(0)) if method.keyed else (x, 0)
    with pytest.raises(ValueError, match="returned NaN or inf values for a finite x"):
        method(*args)
    assert not np.isfinite(np.asarray(jax.jit(method)(*args))).all()
