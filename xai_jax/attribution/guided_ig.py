"""Guided Integrated Gradients (Kapishnikov et al., CVPR 2021, "Guided Integrated Gradients:
an Adaptive Path Method for Removing Noise"), as PAIR saliency 0.2.1 computes it.

The path starts at the baseline and, at each of `steps` steps, moves the `fraction` of
features with the smallest |gradient| towards the input, until the L1 distance to the
input has shrunk by 1/steps of the total; no feature may lead or lag the straight line by
more than `max_dist` (in alpha). Attribution: sum over the path of (x_new - x_old) * grad,
with the gradient taken once per step (PAIR's rule). max_dist=0 is IG on the straight
line; max_dist=1 the unbounded Guided IG.

JAX form: the steps are a lax.scan; PAIR's data-dependent inner loop ("while gamma > 1")
is a lax.while_loop, capped at n_features + 1 rounds (each round that does not finish the
step moves at least one feature to its bound, so the cap is never reached; PAIR's loop is
uncapped). The arithmetic runs in x's dtype (PAIR: float64); the L1 target's tolerance
is PAIR's 1e-9 in float64 and 10 eps of the dtype otherwise, so float32 finishes a step
where PAIR would at float64 precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from xai_jax.attribution.common import (
    as_model_function,
    check_float,
    check_positive_int,
    compensated_add,
    explanation_method,
    score_transform,
)
from xai_jax.attribution.integrated_gradients import check_baseline_scores
from xai_jax.attribution.loop_convs import loop_friendly
from xai_jax.checks import is_concrete
from xai_jax.method import method_factory

Method = Callable[[jax.Array, jax.Array], jax.Array]
EPSILON = 1e-9  # PAIR's tolerance on the L1 target (float64)


@method_factory()
def guided_ig(f: Callable[[jax.Array], jax.Array], *, steps: int = 200, fraction: float = 0.25,
              max_dist: float = 0.02, baseline: float | jax.Array = 0.0, score: str = "logit",
              precision: str | None = None) -> Method:
    """Returns gig(x, target) -> attributions shaped like x (jit- and vmap-compatible).

    steps: path steps (gradients); fraction in (0, 1]: share of the features moved per
    round; max_dist in [0, 1]: how far (in alpha) a feature may stray from the straight
    line; baseline: a number or an array shaped like x.
    """
    f = as_model_function(f)
    steps = check_positive_int(steps, "steps")
    fraction = check_float(fraction, "fraction", low=0.0, high=1.0, low_open=True)
    max_dist = check_float(max_dist, "max_dist", low=0.0, high=1.0)
    s = score_transform(score)
    looped = loop_friendly(f)  # evaluated inside lax.scan (XLA:CPU: convolutions as matmuls)
    if hasattr(baseline, "shape") and jnp.ndim(baseline) > 0:
        base_array = jnp.asarray(baseline)
        if not jnp.issubdtype(base_array.dtype, jnp.floating):
            raise TypeError(f"baseline must be a number or a float array shaped like x, got dtype {base_array.dtype}")
        if is_concrete(base_array) and not bool(jnp.isfinite(base_array).all()):
            raise ValueError("baseline contains NaN or inf values")
    else:
        base_array = None
        baseline = check_float(baseline, "baseline")

    def gig(x, target):
        if base_array is not None and base_array.shape != x.shape:
            raise ValueError(f"baseline has shape {tuple(base_array.shape)}, expected x's shape {tuple(x.shape)}")
        # x * 0 + baseline, not a constant: XLA would constant-fold the model at a constant baseline
        b = (base_array if base_array is not None else x * 0.0 + baseline).astype(x.dtype)
        defined = check_baseline_scores(f, b, x, "guided_ig")  # the path starts at b: the model must be defined there
        grad_fn = jax.grad(lambda z: s(looped(z))[target])
        total = x - b
        l1_total = jnp.abs(total).sum()
        n = x.size
        k = int(math.floor(fraction * (n - 1)))  # np.quantile(..., method="lower") of n values
        tol = EPSILON if x.dtype == jnp.float64 else 10 * float(jnp.finfo(x.dtype).eps)

        def step(carry, i):
            path, attr = carry
            g = grad_fn(path)
            alpha = (i + 1.0) / steps
            a_min, a_max = jnp.maximum(alpha - max_dist, 0.0), jnp.minimum(alpha + max_dist, 1.0)
            x_min, x_max = b + total * a_min, b + total * a_max
            l1_target = l1_total * (1.0 - (i + 1.0) / steps)
            # |g| sorted once per step: within a step the rounds only mask more features (those
            # at x_max) as inf, so the k-th smallest of the masked |g| (PAIR's np.quantile
            # "lower") is the (k+1)-th smallest unmasked value, found by a cumsum per round
            order = jnp.argsort(jnp.abs(g).ravel())
            sorted_abs = jnp.abs(g).ravel()[order]

            def round_(state):
                p, (at, comp), _, it = state
                old = p
                p_alpha = jnp.where(total != 0, (p - b) / jnp.where(total != 0, total, 1.0), a_max)
                p = jnp.where(p_alpha < a_min, x_min, p)
                l1_current = jnp.abs(p - x).sum()
                close = jnp.abs(l1_target - l1_current) <= jnp.maximum(
                    tol * jnp.maximum(jnp.abs(l1_target), jnp.abs(l1_current)), tol)
                at_max = p == x_max
                unmasked = ~at_max.ravel()[order]
                rank = jnp.cumsum(unmasked)
                threshold = jnp.where(rank[-1] > k, sorted_abs[jnp.argmax(rank > k)], jnp.inf)
                sel = (jnp.abs(g) <= threshold) & ~at_max
                l1_s = (jnp.abs(p - x_max) * sel).sum()
                gamma = jnp.where(l1_s > 0, (l1_current - l1_target) / jnp.where(l1_s > 0, l1_s, 1.0), jnp.inf)
                moved = jnp.where(sel, jnp.where(gamma > 1.0, x_max, p + (x_max - p) * gamma), p)
                p = jnp.where(close, p, moved)
                # Kahan-compensated: the sum over steps x rounds does not lose digits as steps grow
                return p, compensated_add((at, comp), (p - old) * g), close | (gamma <= 1.0), it + 1

            path, attr, _, _ = jax.lax.while_loop(lambda st: ~st[2] & (st[3] <= n), round_,
                                                  (path, attr, jnp.asarray(False), 0))
            return (path, attr), None

        zeros = jnp.zeros_like(x)
        (_, (attr, _)), _ = jax.lax.scan(step, (b, (zeros, zeros)), jnp.arange(steps, dtype=x.dtype))
        return jnp.where(defined, jnp.where(l1_total == 0, 0.0, attr), jnp.nan)

    return explanation_method(gig, f, name="guided_ig", precision=precision)
