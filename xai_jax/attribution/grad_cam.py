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

Every method takes the model as the user has it (xai_jax.attribution.layers):
    grad_cam(linen_module, params, layer="block/conv")
    grad_cam(nnx_module, layer="blocks.2.conv")
    grad_cam(eqx_module, layer=lambda m: m.layers[3])       # channels first, one input
    grad_cam(xai_jax.Split(features, head))                 # any model, split at a layer
with channel_axis= (the input's and the layer's channel axis; -1, or 0 for Equinox) and
reshape= (a layer output -> (spatial..., K) grid, e.g. ViT tokens). The layer's output is
captured, and the gradient taken with respect to it, without hooks or changes inside the
user's model. Note that a plain conv's output is pre-activation; the bundled linen models
use ConvReLU so that, as in Keras, a conv layer's output is the post-ReLU feature map.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from xai_jax.adapters import LayerModel
from xai_jax.attribution.common import explanation_method, score_transform
from xai_jax.attribution.common import upsample as upsample_to
from xai_jax.checks import is_concrete
from xai_jax.method import method_factory
from xai_jax.method import relu_signed as _relu_signed

Method = Callable[[jax.Array, jax.Array], jax.Array]
def layer_access(model, params, layer, channel_axis, reshape, who: str, many: bool = False):
    """(LayerModel, layers_for): layers_for(x) resolves the layer (or, with many=True, the
    list of layers) once per input shape."""
    lm = LayerModel(model, params, channel_axis=channel_axis, reshape=reshape, who=who)
    if many:
        if layer is not None and not isinstance(layer, (list, tuple)):
            raise TypeError(f"layers must be a list of layers (low to high), or None; got {type(layer).__name__} "
                            f"{layer!r}")
        if layer is not None and len(layer) == 0:
            raise ValueError("layers must be a non-empty list of layers, or None; got []")
    elif layer is not None:
        lm.adapter.check_layer(layer)
    cache: dict = {}

    def layers_for(x):
        key = (tuple(x.shape), str(x.dtype))
        if key not in cache:
            cache[key] = (block_ends(lm, x) if layer is None else [lm.resolve(x, one) for one in layer]) if many \
                else lm.resolve(x, layer)
        return cache[key]

    return lm, layers_for


def block_ends(lm: LayerModel, x):
    """The last convolution at each spatial resolution (SISE's default layers), in call order."""
    if lm.kind == "Split":
        return [lm.resolve(x, None)]
    found = [e for e in lm.entries(x) if e.is_conv and len(e.shape) == x.ndim]
    axis = lm.channel_axis
    spatial = [tuple(s for i, s in enumerate(e.shape) if i != axis % len(e.shape)) for e in found]
    ends = [e for i, e in enumerate(found) if i + 1 == len(found) or spatial[i + 1] != spatial[i]]
    if not ends:
        raise ValueError("layers=None found no convolution with spatial axes in the model")
    return [lm.as_grid(e, x) for e in ends]


def layer_gradient(model, params=None, layer=None, score: str = "logit", *, channel_axis=None, reshape=None,
                   who: str = "layer_gradient"):
    """Returns (lm, fn): fn(x, target) -> (A, dy/dA, logits finite), A and dy/dA the layer's
    grid (spatial..., K), for one unbatched x (inputs unchecked: the public methods check them)."""
    s = score_transform(score)
    lm, layer_for = layer_access(model, params, layer, channel_axis, reshape, who)

    def fn(x, target):
        resolved = layer_for(x)

        def score_of(delta):
            logits, grids = lm.run(x, [resolved], [delta])
            return s(logits)[target], (grids[0], jnp.isfinite(logits).all())

        g, (a, finite) = jax.grad(score_of, has_aux=True)(jnp.zeros(resolved.grid_shape, x.dtype))
        return a, g, finite

    return lm, fn


def _resize(m: jax.Array, lm: LayerModel, x: jax.Array, upsample: bool) -> jax.Array:
    return upsample_to(m, lm.spatial(x)) if upsample else m


def _check_upsample(upsample, relu=True) -> bool:
    for name, value in (("upsample", upsample), ("relu", relu)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return upsample


def _cam(weights_fn: Callable | None, model, params, layer, relu: bool, score: str, name: str, precision: str | None,
         channel_axis, reshape, upsample: bool, combine: Callable | None = None) -> Method:
    """A gradient CAM: map = sum_k weights_fn(A, g)_k A^k, or combine(A, g) for the maps that
    weight each position; then the optional ReLU and the upsampling."""
    _check_upsample(upsample, relu)
    lm, grads = layer_gradient(model, params, layer, score, channel_axis=channel_axis, reshape=reshape, who=name)

    def cam(x, target):
        a, g, finite = grads(x, target)
        spatial_axes = tuple(range(a.ndim - 1))
        m = combine(a, g) if combine is not None else (a * weights_fn(a, g, spatial_axes)).sum(-1)
        if relu:
            m = jax.nn.relu(m)
        return _resize(m, lm, x, upsample), finite

    return explanation_method(cam, lm.f, name=name, reports_scores=True, precision=precision,
                              check_input=lm.check_input)


def _grad_cam_weights(a, g, axes):
    return g.mean(axes)


def _grad_cam_pp_weights(a, g, axes):
    g2, g3 = g**2, g**3
    denom = 2.0 * g2 + a.sum(axes) * g3
    alpha = jnp.where(g != 0.0, g2 / jnp.where(denom != 0.0, denom, 1.0), 0.0)
    return (jax.nn.relu(g) * alpha).sum(axes)


@method_factory(output="spatial", signed=_relu_signed)
def grad_cam(model: Any, params: Any = None, layer: Any = None, *, relu: bool = True, score: str = "logit",
             upsample: bool = True, channel_axis: int | None = None, reshape: Callable | None = None,
             precision: str | None = None) -> Method:
    """Returns cam(x, target) -> heatmap with x's spatial shape (x without its channel axis).

    model, params, layer: the model as the user has it (see xai_jax.attribution.layers): a
      flax.linen module with its params and a layer path ("block/conv"); a Flax NNX
      module and an attribute path (layer="blocks.2.conv"); an Equinox module and a where
      function (layer=lambda m: m.layers[3]); or an xai_jax.Split(features, head)
      (layer=None). layer=None picks the last convolution.
    channel_axis: the channel axis of x and of the layer's output (None: -1, or 0 for
      Equinox). reshape: a function layer output -> (spatial..., channels) grid.
    relu: apply the final ReLU (False keeps negative evidence).
    upsample: True (default) resizes the map to x's spatial shape (linear); False returns
      it on the layer's grid, as Captum's LayerGradCam does.
    score: "logit" (default), "softmax" (the study) or "log_softmax".
    precision: None (JAX's default) or "default" / "high" / "highest", applied with
      jax.default_matmul_precision while the method is traced (see explanation_method).
    """
    return _cam(_grad_cam_weights, model, params, layer, relu, score, "grad_cam", precision, channel_axis, reshape,
                upsample)


@method_factory(output="spatial", signed=_relu_signed)
def grad_cam_plus_plus(model: Any, params: Any = None, layer: Any = None, *, relu: bool = True,
                       score: str = "logit", upsample: bool = True, channel_axis: int | None = None,
                       reshape: Callable | None = None,
                       precision: str | None = None) -> Method:
    """Grad-CAM++ with grad_cam's call shape."""
    return _cam(_grad_cam_pp_weights, model, params, layer, relu, score, "grad_cam_plus_plus", precision,
                channel_axis, reshape, upsample)


def _xgrad_cam_weights(a, g, axes):
    return (g * a).sum(axes) / (a.sum(axes) + 1e-7)


@method_factory(output="spatial", signed=_relu_signed)
def xgrad_cam(model: Any, params: Any = None, layer: Any = None, *, relu: bool = True, score: str = "logit",
              upsample: bool = True, channel_axis: int | None = None, reshape: Callable | None = None,
              precision: str | None = None) -> Method:
    """XGrad-CAM (Fu et al. 2020): w_k = sum_ij g A / (sum_ij A + 1e-7), grad_cam's call shape.
    Where the head after the layer is linear, sum_ij of the map before its ReLU is y - bias."""
    return _cam(_xgrad_cam_weights, model, params, layer, relu, score, "xgrad_cam", precision, channel_axis, reshape,
                upsample)


@method_factory(output="spatial", signed=_relu_signed)
def hires_cam(model: Any, params: Any = None, layer: Any = None, *, relu: bool = True, score: str = "logit",
              upsample: bool = True, channel_axis: int | None = None, reshape: Callable | None = None,
              precision: str | None = None) -> Method:
    """HiResCAM (Draelos & Carin 2020): ReLU(sum_k g^k * A^k), grad_cam's call shape. Where the
    head is linear, each position's value is its exact contribution to y - bias."""
    return _cam(None, model, params, layer, relu, score, "hires_cam", precision, channel_axis, reshape,
                upsample, combine=lambda a, g: (g * a).sum(-1))


@method_factory(output="spatial", signed=False)
def grad_cam_element_wise(model: Any, params: Any = None, layer: Any = None, *, score: str = "logit",
                          upsample: bool = True, channel_axis: int | None = None, reshape: Callable | None = None,
                          precision: str | None = None) -> Method:
    """Element-wise Grad-CAM (pytorch-grad-cam's GradCAMElementWise; no paper): sum_k ReLU(g^k A^k)."""
    return _cam(None, model, params, layer, False, score, "grad_cam_element_wise", precision, channel_axis, reshape,
                upsample, combine=lambda a, g: jax.nn.relu(g * a).sum(-1))


@method_factory(output="spatial", signed=_relu_signed)
def layer_cam(model: Any, params: Any = None, layer: Any = None, *, relu: bool = True, score: str = "logit",
              upsample: bool = True, channel_axis: int | None = None, reshape: Callable | None = None,
              precision: str | None = None) -> Method:
    """LayerCAM (Jiang et al. 2021): ReLU(sum_k ReLU(g^k) * A^k), grad_cam's call shape."""
    return _cam(None, model, params, layer, relu, score, "layer_cam", precision, channel_axis, reshape,
                upsample, combine=lambda a, g: (jax.nn.relu(g) * a).sum(-1))


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


@method_factory(output="spatial", signed=_relu_signed)
def eigen_cam(model: Any, params: Any = None, layer: Any = None, *, relu: bool = True,
              upsample: bool = True, channel_axis: int | None = None, reshape: Callable | None = None,
              precision: str | None = None) -> Method:
    """EigenCAM (Muhammad & Yeasin 2020): the first principal component of the layer's
    feature map, class-agnostic (the target is checked, not used); grad_cam's call shape."""
    _check_upsample(upsample, relu)
    lm, layer_for = layer_access(model, params, layer, channel_axis, reshape, "eigen_cam")

    def cam(x, target):
        del target
        logits, (a,) = lm.run(x, [layer_for(x)])
        m = principal_projection(a)
        if relu:
            m = jax.nn.relu(m)
        return _resize(m, lm, x, upsample), jnp.isfinite(logits).all()

    return explanation_method(cam, lm.f, name="eigen_cam", reports_scores=True, precision=precision,
                              check_input=lm.check_input)


ABLATION_OFFSET = 1e7  # pytorch-grad-cam's AblationLayer: min - 1e7 where the layer's minimum is not 0


@method_factory(output="spatial", signed=_relu_signed)
def ablation_cam(model: Any, params: Any = None, layer: Any = None, *, relu: bool = True, score: str = "logit",
                 chunk_size: int | None = None, upsample: bool = True, channel_axis: int | None = None,
                 reshape: Callable | None = None,
                 precision: str | None = None) -> Method:
    """AblationCAM (Desai & Ramaswamy 2020), as pytorch-grad-cam 1.5.7 computes it: channel
    k of the layer is ablated (set to 0 when the layer's minimum is 0, e.g. after a ReLU,
    else to min(A) - 1e7), the model rerun from the input, and w_k = (y - y_k) / y with y
    the target's score; map = ReLU(sum_k w_k A^k). K forwards per input (chunk_size at a
    time: lax.map; None: one vmap). grad_cam's call shape. A target whose score y is 0 has no
    weights: called eagerly a ValueError, under jit a NaN map (attribute reports it)."""
    s = score_transform(score)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    _check_upsample(upsample, relu)
    lm, layer_for = layer_access(model, params, layer, channel_axis, reshape, "ablation_cam")

    def cam(x, target):
        resolved = layer_for(x)
        logits, (a,) = lm.run(x, [resolved])  # a: (spatial..., K)
        y = s(logits)[target]
        fill = jnp.where(a.min() == 0, 0.0, a.min() - ABLATION_OFFSET)

        def ablated_score(k):
            delta = jnp.where(jnp.arange(a.shape[-1]) == k, fill - a, 0.0)  # channel k replaced by fill
            return s(lm.run(x, [resolved], [delta])[0])[target]

        channels = jnp.arange(a.shape[-1])
        y_k = jax.vmap(ablated_score)(channels) if chunk_size is None else \
            jax.lax.map(ablated_score, channels, batch_size=chunk_size)
        if is_concrete(y) and float(y) == 0.0:
            raise ValueError(f"ablation_cam: the target's score is 0 for this x (target {int(target)}, score="
                             f"{score!r}), and AblationCAM's weights (y - y_k) / y divide by it; explain another "
                             f"class, or use score='softmax' (a probability is never 0)")
        w = jnp.where(y != 0, (y - y_k) / jnp.where(y != 0, y, 1.0), jnp.nan)  # under jit: a NaN map
        m = (a * w).sum(-1)
        if relu:
            m = jax.nn.relu(m)
        return _resize(m, lm, x, upsample), jnp.isfinite(logits).all()

    return explanation_method(cam, lm.f, name="ablation_cam", reports_scores=True, precision=precision,
                              check_input=lm.check_input)

