"""Tiny models whose attributions can be computed by hand."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.study.models.layers import ConvReLU


def linear_f(num_classes=3, shape=(6, 2), seed=0):
    """f(x) = W @ vec(x) + c; returns (f, W (classes, size), c)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(num_classes, int(np.prod(shape)))).astype(np.float32)
    c = rng.normal(size=num_classes).astype(np.float32)
    return (lambda x: jnp.asarray(W) @ x.reshape(-1) + jnp.asarray(c)), W, c


class Tiny1D(nn.Module):
    """x (L, 1) -> ConvReLU(k features, kernel 1) -> flatten -> Dense(classes)."""

    features: int = 3
    classes: int = 4

    @nn.compact
    def __call__(self, x):
        a = ConvReLU(self.features, (1,), name="conv")(x)
        return nn.Dense(self.classes, name="dense")(a.reshape(a.shape[0], -1))


class Tiny2D(nn.Module):
    """x (H, W, C) -> ConvReLU(3x3) -> ConvReLU(1x1) -> global average -> Dense."""

    classes: int = 3

    @nn.compact
    def __call__(self, x):
        a = ConvReLU(4, (3, 3), name="conv_a")(x)
        a = ConvReLU(5, (1, 1), name="conv_b")(a)
        return nn.Dense(self.classes, name="dense")(a.mean((1, 2)))


class Pooled2D(nn.Module):
    classes: int = 3

    @nn.compact
    def __call__(self, x):
        a = ConvReLU(4, (3, 3), name="c1")(x)
        a = nn.max_pool(a, (2, 2), (2, 2))
        a = ConvReLU(6, (3, 3), name="c2")(a)
        a = nn.max_pool(a, (2, 2), (2, 2))
        return nn.Dense(self.classes, name="dense")(a.mean((1, 2)))


def init(model, shape, seed=0):
    return model.init(jax.random.key(seed), jnp.zeros((1, *shape)))["params"]
