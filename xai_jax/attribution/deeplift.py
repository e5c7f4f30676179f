"""DeepLIFT with the Rescale rule, and DeepLiftShap.

DeepLIFT (Shrikumar, Greenside & Kundaje 2017, "Learning important features through
propagating activation differences", ICML) explains F_target(x) - F_target(b) for a
baseline b. Multipliers m are propagated backward like gradients, through the jaxpr
interpreter of xai_jax.attribution.propagation, with the forward evaluated at x and at b:

    linear primitives (conv, dot_general, add, sub, mul/div by constants, sums, pooling
      by averages, reshapes and other shape changes): the plain gradient;
    elementwise non-linearities y = g(a) with one live operand (ReLU = max(a, 0), tanh,
      logistic, exp, ...): the Rescale rule m_a = m_y * (g(a) - g(a_b)) / (a - a_b),
      the plain gradient where |a - a_b| < eps (Captum's eps = 1e-10);
    max pooling (reduce_window_max, reduce_max): Captum's rule, which routes
      m_y * (max(y, y_b) - y_b) through x's arg-max and m_y * (y - max(y, y_b)) through
      the baseline's, divided by a - a_b (the plain gradient where |a - a_b| < eps);

and the attribution is (x - b) * m. Summation to delta: sum_i attribution_i =
F_target(x) - F_target(b), exactly for any network built from these primitives.

A primitive with no DeepLIFT rule (a product or maximum of two live values, a division by
a live value, jnp.where on a condition that depends on x, a loop) raises PropagationError
naming the primitive and layer; fallback="gradient" uses the plain gradient there
instead (and summation to delta no longer holds).

DeepLiftShap (Lundberg & Lee 2017; Captum's DeepLiftShap): the mean over baselines b_k
of DeepLIFT(x; b_k), so that sum_i attribution_i = F(x) - mean_k F(b_k).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.common import as_model_function, check_float, explanation_method
from xai_jax.attribution.guided import target_one_hot
from xai_jax.attribution.propagation import (
    AFFINE_CONST,
    LINEAR_POOLS,
    LINEAR_WEIGHTED,
    SELECT_MAX,
    SHAPE,
    UNARY,
    Rules,
    Step,
    propagate,
    unsupported,
)
from xai_jax.method import Method, method_factory


class Rescale(Rules):
    """DeepLIFT's backward rules (module docstring)."""

    reference = True

    def __init__(self, eps: float = 1e-10):
        self.eps = eps

    def backward(self, step: Step, cts: list) -> list:
        p, n = step.primitive, sum(step.live)
        if p == "select_n" and step.depends[0]:
            unsupported(step, "DeepLIFT has no rule for a selection whose condition depends on the input "
                              "(jnp.where on x); write ReLU as jax.nn.relu")
        if p in SHAPE or p in LINEAR_POOLS or p in ("add", "sub", "neg", "add_any", "cumsum") or \
                (p in LINEAR_WEIGHTED and n == 1) or (p == "mul" and n == 1) or (p == "div" and step.live == (
                    True, False)):
            return step.vjp(cts)
        if p in SELECT_MAX[:1] + SELECT_MAX[2:3]:   # reduce_max, reduce_window_max
            return self._max(step, cts)
        if n == 1 and p in UNARY + AFFINE_CONST:
            k = step.live.index(True)
            if tuple(step.invals[k].shape) == tuple(step.outvals[0].shape):
                return self._rescale(step, cts, k)
        unsupported(step, "DeepLIFT's Rescale rule has no rule for this primitive (e.g. a non-linearity of two "
                          "live values)")

    def _rescale(self, step: Step, cts: list, k: int) -> list:
        a, a_ref = step.invals[k], step.refs_in[k]
        dy = step.outvals[0] - step.refs_out[0]
        da = a - a_ref
        small = jnp.abs(da) < self.eps
        grad = step.vjp(cts)[k]
        out: list = [None] * len(step.invals)
        out[k] = jnp.where(small, grad, cts[0] * dy / jnp.where(small, 1.0, da))
        return out

    def _max(self, step: Step, cts: list) -> list:
        y, y_ref = step.outvals[0], step.refs_out[0]
        top = jnp.maximum(y, y_ref)
        through_x = step.vjp([cts[0] * (top - y_ref)])[0]
        through_ref = step.vjp([cts[0] * (y - top)], at=step.refs_in)[0]
        da = step.invals[0] - step.refs_in[0]
        small = jnp.abs(da) < self.eps
        grad = step.vjp(cts)[0]
        return [jnp.where(small, grad, (through_x + through_ref) / jnp.where(small, 1.0, da))]


def _baselines(value: Any, name: str, batch: bool) -> jax.Array | None:
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        if batch:
            raise TypeError(f"{name} must be an array (M, *x.shape) of baselines, got {value!r}")
        return None if value is None else jnp.asarray(float(value), jnp.float32)
    arr = np.asarray(value) if not isinstance(value, jax.Array) else value
    if arr.dtype == object or not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if isinstance(arr, np.ndarray) and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf values")
    if batch and (arr.ndim < 2 or arr.shape[0] < 1):
        raise ValueError(f"{name} must be a batch (M >= 1, *x.shape) of baselines, got shape {arr.shape}")
    return jnp.asarray(arr, jnp.float32)


def _check_fallback(fallback):
    if fallback not in (None, "gradient"):
        raise ValueError(f"fallback must be None (an unhandled primitive is an error) or 'gradient', got {fallback!r}")
    return fallback


def _deeplift_one(f, x, b, target, rules, fallback):
    m, scores = propagate(f, x, target_one_hot(target), rules, reference=b, fallback=fallback)
    return (x - b) * m, scores


@method_factory()
def deeplift(f: Callable[[jax.Array], jax.Array], *, baseline: Any = None, eps: float = 1e-10,
             fallback: str | None = None, precision: str | None = None) -> Method:
    """DeepLIFT, Rescale rule (module docstring). Returns dl(x, target) -> (x - b) * m, shaped like x.

    baseline: None (zeros, as Captum), a float (a constant input) or an array shaped like x.
    eps: |a - a_b| below which a non-linearity uses its plain gradient.
    fallback: None (an unhandled primitive raises) or "gradient".
    """
    f = as_model_function(f)
    base = _baselines(baseline, "baseline", batch=False)
    eps = check_float(eps, "eps", low=0.0)
    rules = Rescale(eps)
    fallback = _check_fallback(fallback)

    @jax.jit  # one compiled pass per input shape (inlined under the caller's jit)
    def run(x, target):
        b = jnp.zeros_like(x) if base is None else jnp.broadcast_to(base, x.shape).astype(x.dtype)
        attr, scores = _deeplift_one(f, x, b, target, rules, fallback)
        return attr, jnp.isfinite(scores).all()

    def fn(x, target):
        if base is not None and base.ndim and tuple(base.shape) != tuple(x.shape):
            raise ValueError(f"baseline has shape {tuple(base.shape)}, expected x's shape {tuple(x.shape)} or a float")
        return run(x, target)

    return explanation_method(fn, f, name="deeplift", reports_scores=True, precision=precision)


@method_factory()
def deeplift_shap(f: Callable[[jax.Array], jax.Array], *, baselines: Any, eps: float = 1e-10,
                  fallback: str | None = None, precision: str | None = None) -> Method:
    """DeepLiftShap (Captum's DeepLiftShap): the mean over the rows b_k of `baselines`
    (M, *x.shape) of DeepLIFT(x; b_k), evaluated as one vmap. Returns dls(x, target)."""
    f = as_model_function(f)
    refs = _baselines(baselines, "baselines", batch=True)
    eps = check_float(eps, "eps", low=0.0)
    rules = Rescale(eps)
    fallback = _check_fallback(fallback)

    @jax.jit
    def run(x, target):
        attrs, scores = jax.vmap(lambda b: _deeplift_one(f, x, b.astype(x.dtype), target, rules, fallback))(refs)
        return attrs.mean(0), jnp.isfinite(scores).all()

    def fn(x, target):
        if tuple(refs.shape[1:]) != tuple(x.shape):
            raise ValueError(f"baselines rows have shape {tuple(refs.shape[1:])}, expected x's shape {tuple(x.shape)}")
        return run(x, target)

    return explanation_method(fn, f, name="deeplift_shap", reports_scores=True, precision=precision)
