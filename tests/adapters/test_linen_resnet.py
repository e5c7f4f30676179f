"""A linen ResNet-18 (BatchNorm with batch_stats, __call__(x, train=True)) works with the layer
methods, list_layers, the metrics and MPRT as the user has it: grad_cam(model, variables, layer=...)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj

nn = pytest.importorskip("flax.linen")


class BasicBlock(nn.Module):
    filters: int
    strides: int = 1

    @nn.compact
    def __call__(self, x, train: bool = True):
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        y = nn.Conv(self.filters, (3, 3), (self.strides, self.strides), use_bias=False)(x)
        y = nn.relu(norm()(y))
        y = nn.Conv(self.filters, (3, 3), use_bias=False)(y)
        y = norm(scale_init=nn.initializers.zeros_init())(y)
        if x.shape != y.shape:
            x = norm()(nn.Conv(self.filters, (1, 1), (self.strides, self.strides), use_bias=False)(x))
        return nn.relu(x + y)


class ResNet18(nn.Module):
    widths: tuple = (8, 16, 32, 64)
    num_classes: int = 5

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Conv(self.widths[0], (3, 3), use_bias=False, name="stem")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name="stem_bn")(x))
        for i, w in enumerate(self.widths):
            for j in range(2):
                x = BasicBlock(w, strides=2 if (i > 0 and j == 0) else 1, name=f"layer{i + 1}_{j}")(x, train)
        return nn.Dense(self.num_classes, name="fc")(x.mean((1, 2)))


@pytest.fixture(scope="module")
def resnet():
    model = ResNet18()
    xs = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))  # jitted: eager init is slow
    # one training step's statistics, so that batch_stats differ from their initial values
    _, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, xs)
    return model, {"params": variables["params"], "batch_stats": updates["batch_stats"]}, xs


def test_grad_cam_on_a_named_layer_without_split(resnet):
    model, variables, xs = resnet
    names = [n for n, *_ in xj.list_layers(model, variables, xs[0])]
    assert "layer4_1/Conv_1" in names and "stem_bn" in names
    cam = xj.grad_cam(model, variables, layer="layer4_1")
    maps = xj.attribute(cam, xs, [0, 1, 2, 3])
    assert maps.shape == (4, 16, 16) and np.isfinite(maps).all() and maps.max() > 0
    # the same map as a hand-written Split at that layer, with the running statistics
    held = xj.Model(model, variables)
    np.testing.assert_allclose(np.asarray(held(xs[0])),
                               np.asarray(model.apply(variables, xs[:1], train=False)[0]), atol=1e-5)
    direct = xj.grad_cam(held, layer="layer4_1")(xs[0], 0)
    np.testing.assert_allclose(direct, maps[0], atol=1e-5)


def test_metrics_and_mprt_on_the_resnet(resnet):
    model, variables, xs = resnet
    held = xj.Model(model, variables)
    r = xj.metrics.drop_increase(held, xs, xj.grad_cam(held, layer="layer3_1"))
    assert set(r.scores) == {"drop", "increase"} and r.scores["drop"].shape == (4,)
    # MPRT's layers (it runs on the BatchNorm CNN of every framework in test_batchnorm_frameworks):
    # the modules that own parameters, nested ones included, in first-call order
    layers = held.adapter.param_layers(xs.shape[1:], jnp.float32)
    assert layers[:4] == ["stem", "stem_bn", "layer1_0/Conv_0", "layer1_0/BatchNorm_0"] and layers[-1] == "fc"
    assert len(layers) == 1 + 1 + 4 * 2 * 4 + 2 * 3 + 1  # stem conv + norm, 8 blocks x 4, 3 downsamplings x 2, fc
