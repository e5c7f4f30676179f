"""Layer and neuron attribution: attributions to a layer's units, and of one unit to the input.

The layer is read through the model's adapter (xai_jax.adapters), as the CAMs read it: its
output A(x) (the layer's own shape for one input) is captured, and a delta added to it, in
one forward pass, without hooks. For an input x, a baseline input b, the target score
y = F(x)_target and a quadrature (alpha_k, w_k) on [0, 1] (xai_jax.quadrature):

- layer_activation:             A(x)
- layer_gradient_x_activation:  A(x) * dy/dA
- layer_integrated_gradients (Captum's LayerIntegratedGradients): IG in the layer's output
  space, between the layer outputs of b and x, with the forward pass continued from x
  (the layer's output is replaced, as a hook would):
      (A(x) - A(b)) * sum_k w_k dy/dA at A(b) + alpha_k (A(x) - A(b))
  e.g. on a ViT's patch embeddings (the layer "embed"): one attribution per token and
  embedding unit; summed over units, one per patch. Its sum is ~ y(x) - y(with A(b)).
- layer_conductance (Dhamdhere, Sundararajan & Yan, ICLR 2019, "How important is a
  neuron?"): the IG path of the input, x_k = b + alpha_k (x - b), seen at the layer:
      sum_k (A(x_{k+1}) - A(x_k)) * dy/dA(x_k),    alpha = the rule's steps + 1 nodes
  (Captum's LayerConductance: with rule="trapezoid" the nodes run from 0 to 1, so the
  conductances of all units sum to ~ F(x) - F(b)).
- neuron_gradient:               d A(x)[neuron] / dx, shaped like x
- neuron_integrated_gradients:   IG of A(.)[neuron] from b to x, shaped like x
  (Captum's NeuronGradient and NeuronIntegratedGradients). `neuron` is an index into the
  layer's output for one input (a tuple, or an int for a flat layer) or a function A -> scalar;
  these two explain a unit, not a class: the target is checked, not used.

The layer methods return maps shaped like the layer's output (Method.output "layer"); with
upsample=True they sum it over the channel axis and resize it to x's spatial shape (as
Captum's LayerAttribution.interpolate after a sum), a map like a CAM's ("spatial"), for
which the layer must be a feature map or `reshape=` must make it one (grad_cam's options).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.adapters import LayerModel
from xai_jax.attribution.common import explanation_method, score_transform, upsample
from xai_jax.attribution.integrated_gradients import check_baseline, quadrature, resolve_baseline
from xai_jax.checks import check_optional_int, check_positive_int
from xai_jax.method import method_factory


def _layer_output(settings: dict) -> str:
    return "spatial" if settings.get("upsample") else "layer"


class _Layer:
    """One layer of a model, resolved once per input shape: run(x, delta) -> (logits, A)."""

    def __init__(self, model, params, layer, channel_axis, reshape, upsample_, who):
        if not isinstance(upsample_, bool):
            raise TypeError(f"upsample must be a bool, got {type(upsample_).__name__} {upsample_!r}")
        self.lm = LayerModel(model, params, channel_axis=channel_axis, reshape=reshape, who=who)
        if layer is not None:
            self.lm.adapter.check_layer(layer)
        self.layer, self.upsample, self.f = layer, upsample_, self.lm.f
        self._entries: dict = {}

    def entry(self, x):
        key = (tuple(x.shape), str(x.dtype))
        if key not in self._entries:
            self.lm.check_input(x)
            entry = self.lm.adapter.resolve(self.layer, tuple(x.shape), x.dtype)
            grid = self.lm.as_grid(entry, x) if self.upsample else None  # checks the layout now
            self._entries[key] = (entry, grid)
        return self._entries[key]

    def run(self, x, delta=None):
        entry, _ = self.entry(x)
        logits, (a,) = self.lm.adapter.run(x, [entry.handle], None if delta is None else [delta])
        return logits, a

    def grad(self, x, target, s, delta=None):
        """(dy/dA at A(x) + delta, A(x) + delta, whether the logits are finite)."""
        entry, _ = self.entry(x)
        d0 = jnp.zeros(entry.shape, x.dtype) if delta is None else delta

        def score(d):
            logits, a = self.run(x, d)
            return s(logits)[target], (a + d, jnp.isfinite(logits).all())

        g, (a, finite) = jax.grad(score, has_aux=True)(d0)
        return g, a, finite

    def finish(self, attribution, x):
        """The layer-shaped attribution, or (upsample=True) its channel sum resized to x's spatial shape."""
        if not self.upsample:
            return attribution
        _, grid = self.entry(x)
        return upsample(grid.to_grid(attribution).sum(-1), self.lm.spatial(x))


def _run(fn, xs, chunk_size):
    if chunk_size is None or chunk_size >= xs[0].shape[0]:
        return jax.vmap(fn)(*xs)
    return jax.lax.map(lambda args: fn(*args), xs, batch_size=chunk_size)


def _check_steps(steps, rule, extra: int = 0):
    steps = check_positive_int(steps, "steps")
    quadrature(rule, steps + extra)  # checks the rule and its minimum steps now
    return steps


@method_factory(output=_layer_output)
def layer_activation(model: Any, params: Any = None, layer: Any = None, *, upsample: bool = False,
                     channel_axis: int | None = None, reshape: Callable | None = None, precision: str | None = None):
    """Returns act(x, target) -> the layer's output A(x) (the target is checked, not used)."""
    L = _Layer(model, params, layer, channel_axis, reshape, upsample, "layer_activation")

    def act(x, target):
        del target
        logits, a = L.run(x)
        return L.finish(a, x), jnp.isfinite(logits).all()

    return explanation_method(act, L.f, name="layer_activation", reports_scores=True, precision=precision,
                              check_input=L.lm.check_input)


@method_factory(output=_layer_output)
def layer_gradient_x_activation(model: Any, params: Any = None, layer: Any = None, *, score: str = "logit",
                                upsample: bool = False, channel_axis: int | None = None,
                                reshape: Callable | None = None, precision: str | None = None):
    """Returns gxa(x, target) -> A(x) * dy/dA (Captum's LayerGradientXActivation)."""
    s = score_transform(score)
    L = _Layer(model, params, layer, channel_axis, reshape, upsample, "layer_gradient_x_activation")

    def gxa(x, target):
        g, a, finite = L.grad(x, target, s)
        return L.finish(a * g, x), finite

    return explanation_method(gxa, L.f, name="layer_gradient_x_activation", reports_scores=True,
                              precision=precision, check_input=L.lm.check_input)


@method_factory(output=_layer_output)
def layer_integrated_gradients(model: Any, params: Any = None, layer: Any = None, *, steps: int = 50,
                               rule: str = "trapezoid", baseline: Any = 0.0, score: str = "logit",
                               chunk_size: int | None = None, upsample: bool = False,
                               channel_axis: int | None = None, reshape: Callable | None = None,
                               precision: str | None = None):
    """Returns lig(x, target) -> IG in the layer's output space (module docstring), shaped like
    the layer's output. baseline: an INPUT baseline (scalar, array shaped like x, or x ->
    baseline), whose layer output A(b) starts the path. steps, rule: the quadrature
    (xai_jax.quadrature; Captum's method="riemann_trapezoid" is rule="trapezoid",
    "gausslegendre" is "gauss_legendre"). chunk_size: gradients per vmapped batch."""
    s = score_transform(score)
    steps = _check_steps(steps, rule)
    baseline = check_baseline(baseline)
    chunk_size = check_optional_int(chunk_size, "chunk_size")
    L = _Layer(model, params, layer, channel_axis, reshape, upsample, "layer_integrated_gradients")
    alphas, weights = quadrature(rule, steps)

    def lig(x, target):
        b = resolve_baseline(baseline, x)
        _, a_x = L.run(x)
        _, a_b = L.run(b)
        a_x, a_b = jax.lax.stop_gradient(a_x), jax.lax.stop_gradient(a_b)

        def grad_at(alpha):  # the layer's output replaced by A(b) + alpha (A(x) - A(b))
            return L.grad(x, target, s, delta=(1.0 - alpha) * (a_b - a_x))[0]

        grads = _run(grad_at, (jnp.asarray(alphas, x.dtype),), chunk_size)
        avg = jnp.tensordot(jnp.asarray(weights, x.dtype), grads, axes=1)
        finite = jnp.isfinite(L.f(x)).all()
        return L.finish((a_x - a_b) * avg, x), finite

    return explanation_method(lig, L.f, name="layer_integrated_gradients", reports_scores=True, precision=precision,
                              check_input=L.lm.check_input)


@method_factory(output=_layer_output)
def layer_conductance(model: Any, params: Any = None, layer: Any = None, *, steps: int = 50,
                      rule: str = "trapezoid", baseline: Any = 0.0, score: str = "logit",
                      chunk_size: int | None = None, upsample: bool = False, channel_axis: int | None = None,
                      reshape: Callable | None = None, precision: str | None = None):
    """Returns cond(x, target) -> the conductance of each of the layer's units (Dhamdhere et
    al. 2019; module docstring), shaped like the layer's output: steps + 1 points of the
    input path at the rule's nodes, as Captum's LayerConductance (n_steps=steps)."""
    s = score_transform(score)
    steps = _check_steps(steps, rule, extra=1)
    baseline = check_baseline(baseline)
    chunk_size = check_optional_int(chunk_size, "chunk_size")
    L = _Layer(model, params, layer, channel_axis, reshape, upsample, "layer_conductance")
    alphas = np.sort(quadrature(rule, steps + 1)[0])

    def cond(x, target):
        b = resolve_baseline(baseline, x)
        g, a, _ = _run(lambda alpha: L.grad(b + alpha * (x - b), target, s), (jnp.asarray(alphas, x.dtype),),
                       chunk_size)
        total = ((a[1:] - a[:-1]) * g[:-1]).sum(0)
        return L.finish(total, x), jnp.isfinite(L.f(x)).all()

    return explanation_method(cond, L.f, name="layer_conductance", reports_scores=True, precision=precision,
                              check_input=L.lm.check_input)


def _neuron_selector(neuron: Any) -> Callable[[jax.Array], jax.Array]:
    if callable(neuron):
        return neuron
    index = (neuron,) if isinstance(neuron, (int, np.integer)) and not isinstance(neuron, bool) else neuron
    if not isinstance(index, tuple) or not index or not all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in index):
        raise TypeError(f"neuron must be an index into the layer's output for one input (an int or a tuple of ints) "
                        f"or a function A -> scalar, got {type(neuron).__name__} {neuron!r}")
    return lambda a: a[index]


def _neuron_value(L: _Layer, pick: Callable, neuron: Any, who: str) -> Callable:
    def value(z):
        entry, _ = L.entry(z)
        if not callable(neuron):
            index = (neuron,) if not isinstance(neuron, tuple) else neuron
            if len(index) != len(entry.shape) or any(not -n <= i < n for i, n in zip(index, entry.shape)):
                raise ValueError(f"{who}: neuron {neuron!r} is not an index into layer {entry.name!r}'s output of "
                                 f"shape {entry.shape}")
        logits, a = L.run(z)
        out = jnp.asarray(pick(a))
        if out.shape != ():
            raise ValueError(f"{who}: the neuron selector must give a scalar, got shape {out.shape}")
        return out, jnp.isfinite(logits).all()
    return value


@method_factory()
def neuron_gradient(model: Any, params: Any = None, layer: Any = None, *, neuron: Any,
                    channel_axis: int | None = None, precision: str | None = None):
    """Returns ng(x, target) -> d A(x)[neuron] / dx shaped like x (Captum's NeuronGradient;
    the target is checked, not used)."""
    L = _Layer(model, params, layer, channel_axis, None, False, "neuron_gradient")
    value = _neuron_value(L, _neuron_selector(neuron), neuron, "neuron_gradient")

    def ng(x, target):
        del target
        g, finite = jax.grad(value, has_aux=True)(x)
        return g, finite

    return explanation_method(ng, L.f, name="neuron_gradient", reports_scores=True, precision=precision,
                              check_input=L.lm.check_input)


@method_factory()
def neuron_integrated_gradients(model: Any, params: Any = None, layer: Any = None, *, neuron: Any,
                                steps: int = 50, rule: str = "trapezoid", baseline: Any = 0.0,
                                chunk_size: int | None = None, channel_axis: int | None = None,
                                precision: str | None = None):
    """Returns nig(x, target) -> IG of the unit A(.)[neuron] from the baseline to x, shaped like
    x (Captum's NeuronIntegratedGradients; the target is checked, not used)."""
    steps = _check_steps(steps, rule)
    baseline = check_baseline(baseline)
    chunk_size = check_optional_int(chunk_size, "chunk_size")
    L = _Layer(model, params, layer, channel_axis, None, False, "neuron_integrated_gradients")
    value = _neuron_value(L, _neuron_selector(neuron), neuron, "neuron_integrated_gradients")
    alphas, weights = quadrature(rule, steps)

    def nig(x, target):
        del target
        b = resolve_baseline(baseline, x)
        grads = _run(lambda alpha: jax.grad(lambda z: value(z)[0])(b + alpha * (x - b)),
                     (jnp.asarray(alphas, x.dtype),), chunk_size)
        return (x - b) * jnp.tensordot(jnp.asarray(weights, x.dtype), grads, axes=1), value(x)[1]

    return explanation_method(nig, L.f, name="neuron_integrated_gradients", reports_scores=True,
                              precision=precision, check_input=L.lm.check_input)
