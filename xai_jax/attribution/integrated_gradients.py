"""Integrated Gradients (Sundararajan, Taly & Yan, ICML 2017, "Axiomatic Attribution for
Deep Networks").

    IG_i(x) = (x_i - b_i) * integral_0^1  dF(b + a (x - b)) / dx_i  da

with F the score of the target class and b the baseline. The integral is a quadrature
sum_k w_k g(a_k) over `steps` gradient evaluations; the rules on [0, 1] (n = steps):

    riemann_left    a_k = k/n,          k = 0..n-1,  w_k = 1/n
    riemann_right   a_k = k/n,          k = 1..n,    w_k = 1/n
    riemann_middle  a_k = (k + 1/2)/n,  k = 0..n-1,  w_k = 1/n
    trapezoid       a_k = k/(n-1),      k = 0..n-1,  w_k = 1/(n-1), halved at both ends (n >= 2)
    gauss_legendre  a_k = (t_k + 1)/2,  w_k = v_k/2, (t_k, v_k) the n-point Gauss-Legendre
                    nodes and weights on [-1, 1]; exact for polynomials of degree 2n - 1.

    linspace_mean   a_k = k/(n-1),      k = 0..n-1,  w_k = 1/n  (NOT in RULES: biased)

The last averages a linspace that includes both ends with equal weights, as tf-explain
and PAIR saliency do: it over-weights the two end points by (n-1)/(2n) each relative to
the trapezoid rule, so it is exact only for constant gradients. It exists to reproduce
the study's IG (tf-explain, n_steps=10 -> 11 nodes); do not use it otherwise.

Completeness: sum_i IG_i(x) = F(x) - F(b) up to the quadrature error; `return_delta=True`
returns that error per input (see `completeness_delta`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.common import (
    check_positive_int,
    check_target,
    check_x,
    explanation_method,
    output_size,
    score_transform,
)
from xai_jax.checks import check_array, check_callable, check_choice, check_optional_int, is_concrete

RULES = ("riemann_left", "riemann_right", "riemann_middle", "trapezoid", "gauss_legendre")
Baseline = float | jax.Array | np.ndarray | Callable[[jax.Array], jax.Array]


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) of a rule with `steps` nodes on [0, 1]; the weights sum to 1."""
    return _quadrature(check_choice(rule, "rule", (*RULES, "linspace_mean")), check_positive_int(steps, "steps"))


@lru_cache(maxsize=64)
def _quadrature(rule: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    if rule == "riemann_left":
        a, w = np.arange(n) / n, np.full(n, 1.0 / n)
    elif rule == "riemann_right":
        a, w = np.arange(1, n + 1) / n, np.full(n, 1.0 / n)
    elif rule == "riemann_middle":
        a, w = (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)
    elif rule == "trapezoid":
        if n < 2:
            raise ValueError(f"rule 'trapezoid' needs steps >= 2, got {n}")
        a = np.linspace(0.0, 1.0, n)
        w = np.full(n, 1.0 / (n - 1))
        w[[0, -1]] *= 0.5
    elif rule == "linspace_mean":
        if n < 2:
            raise ValueError(f"rule 'linspace_mean' needs steps >= 2, got {n}")
        a, w = np.linspace(0.0, 1.0, n), np.full(n, 1.0 / n)
    elif rule == "gauss_legendre":
        t, v = np.polynomial.legendre.leggauss(n)
        a, w = (t + 1.0) / 2.0, v / 2.0
    else:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    return a.astype(np.float32), w.astype(np.float32)


def check_baseline(baseline: Baseline, name: str = "baseline") -> Baseline:
    """At construction: a callable, or a finite real scalar / array (kept as float32 NumPy)."""
    if callable(baseline):
        return baseline
    if isinstance(baseline, (str, bytes, bool, np.bool_)) or baseline is None:
        raise TypeError(f"{name} must be a number, an array shaped like x or a callable x -> baseline, "
                        f"got {type(baseline).__name__} {baseline!r}")
    if not is_concrete(baseline):
        return baseline
    b = np.asarray(baseline)
    if not (np.issubdtype(b.dtype, np.floating) or np.issubdtype(b.dtype, np.integer)) or b.dtype == bool:
        raise TypeError(f"{name} must be numeric, got an array of dtype {b.dtype}")
    if not np.isfinite(b).all():
        raise ValueError(f"{name} contains NaN or inf values (shape {b.shape}); a baseline must be finite")
    return b.astype(np.float32)


def resolve_baseline(baseline: Baseline, x: jax.Array, name: str = "baseline") -> jax.Array:
    """The baseline for x: a scalar, an array shaped like x, or a callable x -> baseline
    (whose output is checked: numeric, scalar or x's shape, finite when concrete)."""
    if callable(baseline):
        b = baseline(x)
        if not hasattr(b, "shape") and not isinstance(b, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}(x) must return a number or an array shaped like x, got {type(b).__name__}")
        b = jnp.asarray(b)
        if not (jnp.issubdtype(b.dtype, jnp.floating) or jnp.issubdtype(b.dtype, jnp.integer)) or b.dtype == bool:
            raise TypeError(f"{name}(x) must return a numeric array, got dtype {b.dtype}")
        if is_concrete(b) and not bool(np.isfinite(np.asarray(b)).all()):
            raise ValueError(f"{name}(x) returned NaN or inf values; a baseline must be finite")
        what = f"{name}(x) returned"
    else:
        b = check_baseline(baseline, name)
        what = f"{name} has"
    b = jnp.asarray(b, x.dtype)
    if b.ndim == 0:
        return x * 0.0 + b  # not a constant: XLA would otherwise constant-fold f(baseline)
    if b.shape != x.shape:
        raise ValueError(f"{what} shape {tuple(b.shape)}, expected a scalar or x's shape {tuple(x.shape)}")
    return b


def completeness_delta(f: Callable, attributions: jax.Array, x: jax.Array, target, baseline: Baseline = 0.0,
                       score: str = "logit") -> jax.Array:
    """sum(attributions) - (F(x) - F(baseline)) for one input; F the target's score."""
    s = score_transform(score)
    x = check_x(x)
    target = check_target(target, output_size(check_callable(f, "f"), x))
    attributions = check_array(attributions, "attributions")
    if attributions.shape != x.shape:
        raise ValueError(f"attributions must have x's shape {tuple(x.shape)}, got {tuple(attributions.shape)}")
    b = resolve_baseline(baseline, x)
    return attributions.sum() - (s(f(x))[target] - s(f(b))[target])


def integrated_gradients(
    f: Callable[[jax.Array], jax.Array],
    *,
    steps: int = 64,
    rule: str = "trapezoid",
    baseline: Baseline = 0.0,
    chunk_size: int | None = None,
    score: str = "logit",
    return_delta: bool = False,
    multiply_by_inputs: bool = True,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Returns ig(x, target) -> attributions shaped like x.

    f: one unbatched x -> class scores (logits). Batch with jax.vmap(ig) or xai_jax.attribute.
    steps: gradient evaluations; rule: one of RULES (see the module docstring).
    baseline: scalar, array shaped like x, or callable x -> baseline.
    chunk_size: evaluate the alphas chunk_size at a time (lax.scan), so peak memory does not
      grow with steps; None evaluates all alphas in one vmap. (On XLA:CPU a convolution's
      backward pass inside a loop body runs ~3x slower than outside it, measured here;
      unrolling the chunks instead keeps the speed but XLA then holds every chunk's buffers
      at once, so the scan stays. Use chunking where memory, not speed, binds.)
    score: "logit" (default), "softmax" or "log_softmax" of f's output is differentiated.
    return_delta: return (attributions, completeness delta) instead.
    multiply_by_inputs: False returns the averaged path gradient without the (x - b) factor
      (the study's faulty variant; not an attribution that satisfies completeness).
    """
    check_callable(f, "f")
    steps = check_positive_int(steps, "steps")
    alphas, weights = quadrature(rule, steps)
    chunk_size = check_optional_int(chunk_size, "chunk_size")
    if chunk_size is not None:
        chunk_size = min(chunk_size, steps)
    s = score_transform(score)
    baseline = check_baseline(baseline)

    def path_gradient_sum(x, b, target):
        def weighted_grads(alphas_c, weights_c, x, b):
            grad_at = lambda a: jax.grad(lambda z: s(f(z))[target])(b + a * (x - b))  # noqa: E731
            return jnp.tensordot(weights_c, jax.vmap(grad_at)(alphas_c), axes=1)

        if chunk_size is None or chunk_size >= steps:
            return weighted_grads(jnp.asarray(alphas), jnp.asarray(weights), x, b)
        n_chunks = -(-steps // chunk_size)
        pad = n_chunks * chunk_size - steps  # padded nodes get weight 0
        a = np.pad(alphas, (0, pad)).reshape(n_chunks, chunk_size)
        w = np.pad(weights, (0, pad)).reshape(n_chunks, chunk_size)
        total, _ = jax.lax.scan(lambda t, aw: (t + weighted_grads(aw[0], aw[1], x, b), None),
                                jnp.zeros_like(x), (jnp.asarray(a), jnp.asarray(w)))
        return total

    def ig(x, target):
        b = resolve_baseline(baseline, x)
        avg = path_gradient_sum(x, b, target)
        attributions = (x - b) * avg if multiply_by_inputs else avg
        if callable(baseline):  # a traced baseline cannot be checked: NaN out, never a finite map
            attributions = jnp.where(jnp.isfinite(b).all(), attributions, jnp.nan)
        if return_delta:
            delta = attributions.sum() - (s(f(x))[target] - s(f(b))[target])
            return attributions, delta
        return attributions

    method = explanation_method(ig, f, name="integrated_gradients")
    method.returns_delta = return_delta
    return method
