"""Completeness error of Integrated Gradients per input (Sundararajan et al. 2017, axiom)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.common import score_transform
from xai_jax.attribution.integrated_gradients import integrated_gradients, resolve_baseline
from xai_jax.batching import attribute
from xai_jax.checks import check_batch, check_int, check_targets, num_outputs


def completeness_errors(f: Callable, xs, targets, *, steps: int = 64, rule: str = "trapezoid",
                        baseline=0.0, score: str = "logit", batch_size: int = 100) -> dict[str, np.ndarray]:
    """Per input: "delta" = sum IG - (F(x) - F(b)), "gap" = F(x) - F(b), and
    "relative" = |delta| / |gap| (inf-safe: gap below 1e-12 counts as 1e-12).
    xs: (N >= 1, ...) finite; targets: (N,) classes in [0, C)."""
    xs = np.asarray(check_batch(xs, "xs", who="completeness_errors"))
    targets = check_targets(targets, xs.shape[0], num_outputs(f, xs.shape[1:], xs.dtype))
    check_int(batch_size, "batch_size", 1)
    ig = integrated_gradients(f, steps=steps, rule=rule, baseline=baseline, score=score, return_delta=True)
    _, delta = attribute(ig, xs, targets, batch_size=batch_size, progress=False)

    sc = score_transform(score)

    @jax.jit
    def gaps(x, t):  # F(x) - F(b) of the same score IG differentiates
        return jax.vmap(lambda x, t: sc(f(x))[t] - sc(f(resolve_baseline(baseline, x)))[t])(x, t)

    gap = np.asarray(gaps(jnp.asarray(xs), jnp.asarray(targets)))
    return {"delta": delta, "gap": gap, "relative": np.abs(delta) / np.maximum(np.abs(gap), 1e-12)}
