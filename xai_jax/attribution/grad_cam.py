"""Grad-CAM (Selvaraju et al., ICCV 2017) and Grad-CAM++ (Chattopadhay et al., WACV 2018).

For the feature map A (spatial..., K) of a layer and the target score y:

    Grad-CAM    w_k = mean_ij dy/dA_ij^k
    Grad-CAM++  w_k = sum_ij relu(dy/dA_ij^k) * a_ij^k,
                a_ij^k = g^2 / (2 g^2 + sum_ab A_ab^k g^3),  g = dy/dA_ij^k  (0 where g = 0)
                (the closed form the paper derives for y = exp(S); higher derivatives of
                 a piecewise-linear network vanish, so powers of the first derivative remain)
    map = ReLU(sum_k w_k A^k), upsampled (linear) from the layer's grid to the input's.

The layer's output is captured, and the gradient taken with respect to it, through
`flax.linen.intercept_methods`: no hooks or changes inside the user's model. Note that a
plain nn.Conv's output is pre-activation; the bundled models use ConvReLU so that, as in
Keras, a conv layer's output is the post-ReLU feature map.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xai_jax.attribution.common import (
    apply_with_layers,
    explanation_method,
    layer_method_prelude,
    resolve_layer,
    score_transform,
    upsample,
)


def layer_gradient(model: nn.Module, params: Any, layer: str | None, score: str = "logit"):
    """Returns (f, fn): fn(x, target) -> (A, dy/dA, logits finite), A and dy/dA (layer
    spatial..., K), for one unbatched x (inputs unchecked: the public methods check them)."""
    s = score_transform(score)
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"layer must be a layer path (str) or None, got {type(layer).__name__} {layer!r}")
    f, layers_for = layer_method_prelude(model, params, lambda x: resolve_layer(model, params, x, layer))

    def fn(x, target):
        name, shape = layers_for(x)

        def score_of(delta):
            logits, acts = apply_with_layers(model, params, x, [name], [delta])
            return s(logits)[target], (acts[0], jnp.isfinite(logits).all())

        g, (a, finite) = jax.grad(score_of, has_aux=True)(jnp.zeros(shape, x.dtype))
        return a[0], g[0], finite

    return f, fn


def _cam(weights_fn: Callable, model, params, layer, relu: bool, score: str, name: str, precision: str | None):
    f, grads = layer_gradient(model, params, layer, score)

    def cam(x, target):
        a, g, finite = grads(x, target)
        spatial_axes = tuple(range(a.ndim - 1))
        m = (a * weights_fn(a, g, spatial_axes)).sum(-1)
        if relu:
            m = jax.nn.relu(m)
        return upsample(m, x.shape[:-1]), finite

    return explanation_method(cam, f, name=name, reports_scores=True, precision=precision)


def _grad_cam_weights(a, g, axes):
    return g.mean(axes)


def _grad_cam_pp_weights(a, g, axes):
    g2, g3 = g**2, g**3
    denom = 2.0 * g2 + a.sum(axes) * g3
    alpha = jnp.where(g != 0.0, g2 / jnp.where(denom != 0.0, denom, 1.0), 0.0)
    return (jax.nn.relu(g) * alpha).sum(axes)


def grad_cam(model: nn.Module, params: Any, layer: str | None = None, *, relu: bool = True,
             score: str = "logit", precision: str | None = None) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Returns cam(x, target) -> heatmap with x's spatial shape (x.shape[:-1]).

    model: a linen module applied as model.apply({"params": params}, x_batched) -> logits.
    layer: a submodule path such as "conv1d_2" or "block/Conv_0"; None picks the last
      convolution. relu: apply the final ReLU (False keeps negative evidence).
    score: "logit" (default), "softmax" (the study) or "log_softmax".
    precision: None (JAX's default) or "default" / "high" / "highest", applied with
      jax.default_matmul_precision while the method is traced (see explanation_method).
    """
    return _cam(_grad_cam_weights, model, params, layer, relu, score, "grad_cam", precision)


def grad_cam_plus_plus(model: nn.Module, params: Any, layer: str | None = None, *, relu: bool = True,
                       score: str = "logit",
                       precision: str | None = None) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Grad-CAM++ with grad_cam's call shape."""
    return _cam(_grad_cam_pp_weights, model, params, layer, relu, score, "grad_cam_plus_plus", precision)
