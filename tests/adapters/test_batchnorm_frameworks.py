"""One BatchNorm CNN with the same weights in flax.linen, Flax NNX, Equinox (eqx.nn.State) and
Haiku (transform_with_state): the layer methods, list_layers and MPRT agree across them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.adapters import bn_models as B

pytest.importorskip("flax")
pytest.importorskip("equinox")


@pytest.fixture(scope="module")
def models():
    return B.adapted_models()


def layout(x, channels_first):
    return np.moveaxis(x, -1, -3 if x.ndim == 4 else 0) if channels_first else x


def test_same_scores_in_every_framework(models):
    m, module, variables = models
    xs = B.inputs()
    want = np.asarray(module.apply(variables, xs, train=False))
    assert set(m) >= {"linen", "nnx", "equinox"}
    for name, (model, cf) in m.items():
        got = np.stack([np.asarray(model(x)) for x in layout(xs, cf)])
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)
    # the running statistics matter: a BatchNorm on batch statistics would give other scores
    assert not np.allclose(want, module.apply({"params": variables["params"], "batch_stats": {
        "bn": {"mean": jnp.zeros(B.C1), "var": jnp.ones(B.C1)}}}, xs, train=False), atol=1e-3)


@pytest.mark.parametrize("method", ["grad_cam", "layer_cam", "grad_cam_plus_plus"])
def test_layer_methods_agree_across_frameworks(models, method):
    m, _, _ = models
    xs = B.inputs()
    targets = np.array([0, 1, 2])
    maps = {}
    for name, (model, cf) in m.items():
        fn = getattr(xj, method)(model, layer="conv2")
        maps[name] = xj.attribute(fn, layout(xs, cf), targets)
    for name, got in maps.items():
        np.testing.assert_allclose(got, maps["linen"], atol=1e-5, err_msg=name)
    assert np.abs(maps["linen"]).max() > 1e-3  # not a trivially zero map


def test_list_layers_names_are_accepted_by_layer(models):
    m, _, _ = models
    x = B.inputs(1)[0]
    for name, (model, cf) in m.items():
        layers = xj.list_layers(model, x=layout(x, cf))
        names = [n for n, *_ in layers]
        assert names == ["conv1", "bn", "conv2", "head"], (name, names)
        for layer in ("conv1", "bn"):
            cam = xj.grad_cam(model, layer=layer)(layout(x, cf), 1)
            assert cam.shape == (B.H, B.W) and np.isfinite(np.asarray(cam)).all()


def test_mprt_runs_on_every_framework_with_the_same_layer_order(models):
    m, _, _ = models
    xs = B.inputs(4)
    t = np.array([0, 1, 2, 0])
    results = {}
    for name, (model, cf) in m.items():
        r = xj.metrics.mprt(model, layout(xs, cf), xj.saliency(model), t, key=jax.random.key(3))
        results[name] = r
        assert r["layers"] == ["head", "conv2", "bn", "conv1"], (name, r["layers"])
        for layer in r["layers"]:
            s = r["similarity"][layer]
            assert s.shape == (4,) and np.isfinite(s).all()
        assert not any(r.higher_is_better.values()) and set(r.scores) == set(r["layers"])
    # randomising the head changes the saliency maps in every framework
    for name, r in results.items():
        assert r["mean"]["conv1"] < 0.99, name


def test_mprt_bottom_up_and_random_logit_take_any_model(models):
    m, _, _ = models
    xs = B.inputs(3)
    for name, (model, cf) in m.items():
        r = xj.metrics.mprt(model, layout(xs, cf), xj.grad_cam(model, layer="conv2"), order="bottom_up")
        assert r["layers"] == ["conv1", "bn", "conv2", "head"], name
        rl = xj.metrics.random_logit(model, layout(xs, cf), xj.saliency(model))
        assert rl["similarity"].shape == (3,) and rl.scores.shape == (3,)


def test_linen_short_form_with_full_variables_and_train_flag(models):
    _, module, variables = models
    x = B.inputs(1)[0]
    cam = xj.grad_cam(module, variables, layer="conv2")(x, 0)  # no Split, no call_kwargs needed
    ref = xj.grad_cam(xj.Model(module, variables, call_kwargs={"train": False}), layer="conv2")(x, 0)
    np.testing.assert_allclose(cam, ref, atol=1e-6)


def test_batchnorm_in_training_mode_is_a_clear_error(models):
    _, module, variables = models
    x = B.inputs(1)[0]
    with pytest.raises(ValueError, match="call_kwargs"):
        xj.grad_cam(xj.Model(module, variables, call_kwargs={"train": True}), layer="conv2")(x, 0)
    with pytest.raises(ValueError, match="batch_stats"):
        xj.saliency(xj.Model(module, {"params": variables["params"]}))(x, 0)


def test_equinox_stateful_model_without_state_names_the_fix(models):
    m, _, _ = models
    eqx_model = m["equinox"][0].module
    x = layout(B.inputs(1)[0], True)
    with pytest.raises(ValueError, match=r"Model\(model, state=state\)"):
        xj.list_layers(eqx_model, x=x)


def test_the_users_model_is_never_changed(models):
    m, module, variables = models
    before = jax.tree.map(np.asarray, variables)
    nnx_model = m["nnx"][0].module
    kernel = np.asarray(nnx_model.conv1.kernel[...])
    xj.metrics.mprt(m["nnx"][0], B.inputs(2), xj.saliency(m["nnx"][0]), [0, 1])
    xj.metrics.mprt(m["linen"][0], B.inputs(2), xj.saliency(m["linen"][0]), [0, 1])
    np.testing.assert_array_equal(np.asarray(nnx_model.conv1.kernel[...]), kernel)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, variables), before)


def test_haiku_without_state():
    hk = pytest.importorskip("haiku")

    def net(x):
        x = jax.nn.relu(hk.Conv2D(4, 3, name="conv")(x))
        return hk.Linear(3, name="head")(x.mean((1, 2)))

    t = hk.transform(net)
    xs = B.inputs(2)
    params = t.init(jax.random.key(0), xs)
    model = xj.Model(t, params)
    want = np.asarray(t.apply(params, None, xs))
    np.testing.assert_allclose(np.stack([np.asarray(model(x)) for x in xs]), want, atol=1e-6)
    assert [n for n, *_ in xj.list_layers(model, x=xs[0])] == ["conv", "head"]
    assert xj.grad_cam(model, layer="conv")(xs[0], 1).shape == (B.H, B.W)
    r = xj.metrics.mprt(model, xs, xj.saliency(model), [0, 1])
    assert r["layers"] == ["head", "conv"]
