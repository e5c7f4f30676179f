"""Complexity of explanations: how concentrated is a map's attribution mass?

- `sparseness`: Chalasani et al., ICML 2020, "Concise Explanations of Neural Networks
  using Adversarial Training" (Quantus `Sparseness`): the Gini index of |a|.
- `complexity`: Bhatt et al., IJCAI 2020, "Evaluating and Aggregating Feature-based Model
  Explanations" (Quantus `Complexity`): the entropy of the share of |a| on each position.

Pure array functions of maps (N, *spatial) (or attributions shaped like the inputs: every
value after the batch axis is one feature, as in Quantus); one jitted, vmapped call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.checks import check_finite_maps


def _checked(saliency, who: str) -> np.ndarray:
    shape = getattr(saliency, "shape", None)
    if shape is None:
        saliency = np.asarray(saliency)
        shape = saliency.shape
    if len(shape) < 2:
        raise ValueError(f"saliency must be a batch of maps (N, *spatial), got shape {tuple(shape)}")
    if shape[0] == 0:
        raise ValueError(f"{who} needs at least one input; saliency has shape {tuple(shape)}")
    if int(np.prod(shape[1:])) < 2:
        raise ValueError(f"{who}: each map of saliency {tuple(shape)} holds {int(np.prod(shape[1:]))} value, which has "
                         f"no {who}: is this one unbatched map? pass it as a batch of one, maps[None]")
    maps = check_finite_maps(saliency, tuple(shape), like="a batch of maps")
    return np.ascontiguousarray(np.abs(maps.reshape(len(maps), -1)))


@jax.jit
@jax.vmap
def _gini(a: jax.Array) -> jax.Array:
    n = a.size
    a = jnp.sort(a)
    total = a.sum()
    weights = 2 * jnp.arange(1, n + 1, dtype=a.dtype) - n - 1
    return jnp.where(total > 0, (weights * a).sum() / (n * jnp.where(total > 0, total, 1.0)), 0.0)


@jax.jit
@jax.vmap
def _entropy(a: jax.Array) -> jax.Array:
    total = a.sum()
    p = jnp.where(total > 0, a / jnp.where(total > 0, total, 1.0), 1.0 / a.size)
    return -jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0).sum()


def sparseness(saliency) -> np.ndarray:
    """Gini index of |a| per map (Chalasani et al. 2020; Quantus `Sparseness`): (N,) in [0, 1).

    With |a| sorted ascending, a_(1) <= ... <= a_(n):
        G = sum_i (2i - n - 1) a_(i) / (n sum_i a_(i)).
    One non-zero position gives (n - 1) / n (the most sparse), a constant map 0. Higher is
    sparser. An all-zero map is defined as 0 (no concentration; Quantus reaches the same
    value by adding 1e-7 to every value, which we do not: our scores are exact).
    saliency: (N >= 1, *spatial) finite maps (any sign: |a| is used).
    """
    return np.asarray(_gini(_checked(saliency, "sparseness")))


def complexity(saliency) -> np.ndarray:
    """Entropy of the attribution shares (Bhatt et al. 2020; Quantus `Complexity`): (N,) nats.

        p_i = |a_i| / sum_j |a_j|,   C = -sum_i p_i log p_i   (0 log 0 = 0).
    A uniform map gives log(n), one non-zero position 0. Lower is less complex. An all-zero
    map is defined as log(n), the limit of a constant map (Quantus divides 0 by 0 and
    returns NaN); Quantus' log(p + 1e-12) is log(p) here, exactly.
    saliency: (N >= 1, *spatial) finite maps (any sign: |a| is used).
    """
    return np.asarray(_entropy(_checked(saliency, "complexity")))
