"""Modified ReLU gradients: Guided Backprop, Deconvnet and Guided Grad-CAM.

Each is the gradient of the target score dF_target/dx with the backward pass of every
ReLU, max(a, c) with c a constant (jax.nn.relu, nn.relu, jnp.maximum(a, 0)), replaced;
every other primitive keeps its plain gradient (as Captum, whose hooks change only ReLU
modules). With g the cotangent arriving at the ReLU's output:

    Guided Backprop (Springenberg et al. 2015, "Striving for simplicity"):
        g_in = max(g, 0) * [a > c]
    Deconvnet (Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks"):
        g_in = max(g, 0)
    Guided Grad-CAM (Selvaraju et al. 2017): guided_backprop(x) * Grad-CAM's map on the
        layer's grid, upsampled to x's spatial shape by nearest neighbour (index
        floor(i * n_layer / n_input), as Captum's GuidedGradCam through torch's interpolate),
        broadcast over x's channels.

The backward pass runs through the jaxpr interpreter of xai_jax.attribution.propagation,
so these work on any JAX function and any adapted model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from xai_jax.adapters import LayerModel
from xai_jax.attribution.common import as_model_function, explanation_method
from xai_jax.attribution.grad_cam import grad_cam
from xai_jax.attribution.propagation import Rules, Step, propagate
from xai_jax.method import Method, method_factory


def relu_input(step: Step):
    """(index of the live operand, its value, the constant) when the step is a ReLU-like
    max(a, c) with one live operand of the output's shape, else None."""
    if step.primitive != "max" or sum(step.live) != 1:
        return None
    k = step.live.index(True)
    a = step.invals[k]
    if tuple(a.shape) != tuple(step.outvals[0].shape):
        return None
    return k, a, step.invals[1 - k]


class ModifiedReLU(Rules):
    """The plain gradient, with ReLU's backward replaced (module docstring)."""

    def __init__(self, guided: bool):
        self.guided = guided

    def backward(self, step: Step, cts: list) -> list:
        relu = relu_input(step)
        if relu is None:
            return step.vjp(cts)
        k, a, c = relu
        g = jnp.maximum(cts[0], 0)
        if self.guided:
            g = jnp.where(a > c, g, jnp.zeros_like(g))
        out: list = [None, None]
        out[k] = g
        return out


def target_one_hot(target) -> Callable[[jax.Array], jax.Array]:
    """scores -> one_hot(target) shaped like the scores: the cotangent of F_target."""
    return lambda s: jnp.zeros_like(s).at[target].set(1)


def _relu_method(f, guided: bool, name: str, precision: str | None) -> Method:
    f = as_model_function(f)
    rules = ModifiedReLU(guided)

    @jax.jit  # one compiled backward pass per input shape (inlined under the caller's jit)
    def fn(x, target):
        g, scores = propagate(f, x, target_one_hot(target), rules)
        return g, jnp.isfinite(scores).all()

    return explanation_method(fn, f, name=name, reports_scores=True, precision=precision)


@method_factory()
def guided_backprop(f: Callable[[jax.Array], jax.Array], *, precision: str | None = None) -> Method:
    """Guided Backprop (Springenberg et al. 2015): dF_target/dx with ReLU's backward
    g_in = max(g, 0) * [a > 0]. Returns gbp(x, target) -> map shaped like x.

    f: a function x -> class scores of one unbatched x, or any adapted model (xai_jax.Model,
    an NNX or Equinox module, ...). precision: as in saliency.
    """
    return _relu_method(f, True, "guided_backprop", precision)


@method_factory()
def deconvnet(f: Callable[[jax.Array], jax.Array], *, precision: str | None = None) -> Method:
    """Deconvnet (Zeiler & Fergus 2014): dF_target/dx with ReLU's backward g_in = max(g, 0)
    (Captum's Deconvolution). Returns deconv(x, target) -> map shaped like x."""
    return _relu_method(f, False, "deconvnet", precision)


def nearest_resize(m: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """m resized to `shape` by nearest neighbour, source index floor(i * n_in / n_out) per axis
    (torch's interpolate(mode="nearest"), which Captum's GuidedGradCam uses)."""
    for axis, (n_in, n_out) in enumerate(zip(m.shape, shape)):
        if n_in != n_out:
            idx = (jnp.arange(n_out) * n_in) // n_out
            m = jnp.take(m, idx, axis=axis)
    return m


@method_factory()
def guided_grad_cam(model: Any, params: Any = None, layer: Any = None, *, channel_axis: int | None = None,
                    reshape: Callable | None = None, score: str = "logit", precision: str | None = None) -> Method:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided_backprop(x) times Grad-CAM's map (with
    its ReLU) on the layer's grid, upsampled nearest to x's spatial shape and broadcast over
    the channels, as Captum's GuidedGradCam. Returns ggc(x, target) -> map shaped like x.

    model, params, layer, channel_axis, reshape: as grad_cam (layer=None: the last convolution).
    score: Grad-CAM's differentiated score ("logit", as Captum).
    """
    cam = grad_cam(model, params, layer, upsample=False, channel_axis=channel_axis, reshape=reshape, score=score,
                   precision=precision)
    lm = LayerModel(model, params, channel_axis=channel_axis, reshape=reshape, who="guided_grad_cam")
    gbp = guided_backprop(lm.f, precision=precision)

    @jax.jit
    def combined(x, target):
        m, finite = cam.raw(x, target)
        g, _ = gbp.raw(x, target)
        return g * lm.expand(nearest_resize(m, lm.spatial(x)), x), finite

    def fn(x, target):
        lm.check_input(x)
        return combined(x, target)

    return explanation_method(fn, lm.f, name="guided_grad_cam", reports_scores=True, precision=precision,
                              check_input=lm.check_input)
