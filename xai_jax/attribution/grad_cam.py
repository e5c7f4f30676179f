"""The CAM family: class activation maps of a layer, from its feature map and gradients.

For the feature map A (spatial..., K) of a layer, g = dy/dA and the target score y:

    Grad-CAM      (Selvaraju et al., ICCV 2017)    w_k = mean_ij g_ij^k
    Grad-CAM++    (Chattopadhay et al., WACV 2018) w_k = sum_ij relu(g_ij^k) * a_ij^k,
                  a_ij^k = g^2 / (2 g^2 + sum_ab A_ab^k g^3)  (0 where g = 0)
                  (the closed form the paper derives for y = exp(S); higher derivatives of
                   a piecewise-linear network vanish, so powers of the first derivative remain)
    XGrad-CAM     (Fu et al., BMVC 2020, "Axiom-based Grad-CAM")
                  w_k = sum_ij g_ij^k A_ij^k / (sum_ij A_ij^k + 1e-7)
    AblationCAM   (Desai & Ramaswamy, WACV 2020) w_k = (y - y_k) / y, y_k the score with
                  channel k ablated (see ablation_cam)
    map = ReLU(sum_k w_k A^k)

and the maps that weight each position, not each channel:

    HiResCAM      (Draelos & Carin 2020, "Use HiResCAM instead of Grad-CAM")
                  map = ReLU(sum_k g^k * A^k)
    element-wise  (pytorch-grad-cam's GradCAMElementWise; no paper)
                  map = sum_k ReLU(g^k * A^k)
    LayerCAM      (Jiang et al., IEEE TIP 2021) map = ReLU(sum_k ReLU(g^k) * A^k)
    EigenCAM      (Muhammad & Yeasin, IJCNN 2020) map = ReLU(projection of the centred
                  A (positions x K) on its first right singular vector); no gradients.
                  Sign rule: the singular vector's sign is chosen so that the projection
                  correlates positively with the channel mean of A (an SVD's sign is
                  arbitrary; pytorch-grad-cam keeps LAPACK's).

Every map is upsampled (linear) from the layer's grid to the input's spatial shape;
relu=False keeps negative evidence (the element-wise map has no final ReLU to drop).

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


def _cam(weights_fn: Callable, model, params, layer, relu: bool, score: str, name: str, precision: str | None,
         combine: Callable | None = None):
    """A gradient CAM: map = sum_k weights_fn(A, g)_k A^k, or combine(A, g) for the maps that
    weight each position; then the optional ReLU and the upsampling."""
    f, grads = layer_gradient(model, params, layer, score)

    def cam(x, target):
        a, g, finite = grads(x, target)
        spatial_axes = tuple(range(a.ndim - 1))
        m = combine(a, g) if combine is not None else (a * weights_fn(a, g, spatial_axes)).sum(-1)
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


def _xgrad_cam_weights(a, g, axes):
    return (g * a).sum(axes) / (a.sum(axes) + 1e-7)


def xgrad_cam(model: nn.Module, params: Any, layer: str | None = None, *, relu: bool = True, score: str = "logit",
              precision: str | None = None) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """XGrad-CAM (Fu et al. 2020): w_k = sum_ij g A / (sum_ij A + 1e-7), grad_cam's call shape.
    Where the head after the layer is linear, sum_ij of the map before its ReLU is y - bias."""
    return _cam(_xgrad_cam_weights, model, params, layer, relu, score, "xgrad_cam", precision)


def hires_cam(model: nn.Module, params: Any, layer: str | None = None, *, relu: bool = True, score: str = "logit",
              precision: str | None = None) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """HiResCAM (Draelos & Carin 2020): ReLU(sum_k g^k * A^k), grad_cam's call shape. Where the
    head is linear, each position's value is its exact contribution to y - bias."""
    return _cam(None, model, params, layer, relu, score, "hires_cam", precision,
                combine=lambda a, g: (g * a).sum(-1))


def grad_cam_element_wise(model: nn.Module, params: Any, layer: str | None = None, *, score: str = "logit",
                          precision: str | None = None) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Element-wise Grad-CAM (pytorch-grad-cam's GradCAMElementWise; no paper): sum_k ReLU(g^k A^k)."""
    return _cam(None, model, params, layer, False, score, "grad_cam_element_wise", precision,
                combine=lambda a, g: jax.nn.relu(g * a).sum(-1))


def layer_cam(model: nn.Module, params: Any, layer: str | None = None, *, relu: bool = True, score: str = "logit",
              precision: str | None = None) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """LayerCAM (Jiang et al. 2021): ReLU(sum_k ReLU(g^k) * A^k), grad_cam's call shape."""
    return _cam(None, model, params, layer, relu, score, "layer_cam", precision,
                combine=lambda a, g: (jax.nn.relu(g) * a).sum(-1))


def principal_projection(a: jax.Array) -> jax.Array:
    """EigenCAM's map before its ReLU: the centred feature map (positions x K) projected on
    its first right singular vector, signed to correlate positively with the channel mean
    (module docstring). Shape: a's spatial shape."""
    flat = a.reshape(-1, a.shape[-1])
    centred = flat - flat.mean(0)
    _, _, vt = jnp.linalg.svd(centred, full_matrices=False)
    projection = centred @ vt[0]
    mean_map = flat.mean(-1)
    sign = jnp.where(((projection - projection.mean()) * (mean_map - mean_map.mean())).sum() < 0, -1.0, 1.0)
    return (sign * projection).reshape(a.shape[:-1])


def eigen_cam(model: nn.Module, params: Any, layer: str | None = None, *, relu: bool = True,
              precision: str | None = None) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """EigenCAM (Muhammad & Yeasin 2020): the first principal component of the layer's
    feature map, class-agnostic (the target is checked, not used); grad_cam's call shape."""
    f, layers_for = layer_method_prelude(model, params, lambda x: resolve_layer(model, params, x, layer))

    def cam(x, target):
        del target
        name, _ = layers_for(x)
        logits, acts = apply_with_layers(model, params, x, [name])
        m = principal_projection(acts[0][0])
        if relu:
            m = jax.nn.relu(m)
        return upsample(m, x.shape[:-1]), jnp.isfinite(logits).all()

    return explanation_method(cam, f, name="eigen_cam", reports_scores=True, precision=precision)


ABLATION_OFFSET = 1e7  # pytorch-grad-cam's AblationLayer: min - 1e7 where the layer's minimum is not 0


def ablation_cam(model: nn.Module, params: Any, layer: str | None = None, *, relu: bool = True,
                 score: str = "logit", chunk_size: int | None = None,
                 precision: str | None = None) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """AblationCAM (Desai & Ramaswamy 2020), as pytorch-grad-cam 1.5.7 computes it: channel
    k of the layer is ablated (set to 0 when the layer's minimum is 0, e.g. after a ReLU,
    else to min(A) - 1e7), the model rerun from the input, and w_k = (y - y_k) / y with y
    the target's score; map = ReLU(sum_k w_k A^k). K forwards per input (chunk_size at a
    time: lax.map; None: one vmap). grad_cam's call shape."""
    s = score_transform(score)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    f, layers_for = layer_method_prelude(model, params, lambda x: resolve_layer(model, params, x, layer))

    def cam(x, target):
        name, shape = layers_for(x)
        logits, acts = apply_with_layers(model, params, x, [name])
        a = acts[0]  # (1, spatial..., K)
        y = s(logits)[target]
        fill = jnp.where(a.min() == 0, 0.0, a.min() - ABLATION_OFFSET)

        def ablated_score(k):
            delta = jnp.where(jnp.arange(a.shape[-1]) == k, fill - a, 0.0)  # channel k replaced by fill
            return s(apply_with_layers(model, params, x, [name], [delta])[0])[target]

        channels = jnp.arange(a.shape[-1])
        y_k = jax.vmap(ablated_score)(channels) if chunk_size is None else \
            jax.lax.map(ablated_score, channels, batch_size=chunk_size)
        w = (y - y_k) / y
        m = (a[0] * w).sum(-1)
        if relu:
            m = jax.nn.relu(m)
        return upsample(m, x.shape[:-1]), jnp.isfinite(logits).all()

    return explanation_method(cam, f, name="ablation_cam", reports_scores=True, precision=precision)
