"""Model-randomisation sanity check (Adebayo et al., NeurIPS 2018, "Sanity Checks for
Saliency Maps"): re-initialise the layers cascading from the top (output) layer down and
measure, after each step, the Spearman rank correlation between each input's original and
randomised maps. A method that depends on the learned weights loses correlation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import rankdata

from xai_jax.attribution.common import model_fn
from xai_jax.batching import run_in_batches
from xai_jax.checks import check_batch, check_int, check_key, check_targets, num_outputs, precision_scope


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair (N, D) x (N, D). A constant row has no rank
    correlation: 1.0 when the two rows are identical (the map did not change), else 0.0,
    as metrics.map_similarity defines it."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim < 2 or len(a) == 0:
        raise ValueError(f"a and b must be non-empty batches (N, D...) of the same shape, got {a.shape} and {b.shape}")
    for name, v in (("a", a), ("b", b)):
        if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)) or v.dtype == bool:
            raise TypeError(f"{name} must be a real numeric array, got dtype {v.dtype}")
        bad = ~np.isfinite(v.reshape(len(v), -1)).all(1)
        if bad.any():
            raise ValueError(f"{name} contains NaN or inf values (rows {np.flatnonzero(bad)[:5].tolist()})")
    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    same = (a.reshape(len(a), -1) == b.reshape(len(b), -1)).all(1)
    return np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1), np.where(same, 1.0, 0.0))


def cascading_randomisation(
    make_method: Callable[[Any], Callable],
    model: nn.Module,
    params: Any,
    xs,
    targets,
    *,
    key: jax.Array,
    absolute: bool = True,
    method_key: jax.Array | None = None,
    batch_size: int = 100,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
    precision: str | None = "highest",
) -> dict[str, float]:
    """{"original": 1.0, "<top layer>": rho, ..., "<bottom layer>": rho}: mean Spearman rho
    of the maps after randomising every layer from the top down to that one.

    make_method: params -> method (x, target) -> map. absolute: compare |map| (as Adebayo
    et al. do for signed maps). reduce: collapse a map to its spatial shape (e.g. channel sum).
    xs: (N >= 1, ...) finite; targets: (N,) classes in [0, C). A method that returns
    non-finite maps is reported (ValueError), never correlated.
    precision: jax.default_matmul_precision for every model evaluation (None: JAX's default;
    "highest", the default, keeps TF32 out on GPUs).
    """
    with precision_scope(precision):
        if not callable(make_method):
            raise TypeError(f"make_method must be a function params -> method, got {type(make_method).__name__}")
        xs = np.asarray(check_batch(xs, "xs", who="cascading_randomisation"), np.float32)
        targets = check_targets(targets, xs.shape[0], num_outputs(model_fn(model, params), xs.shape[1:]))
        key = check_key(key)
        if method_key is not None:
            method_key = check_key(method_key, "method_key")
        check_int(batch_size, "batch_size", 1)
        layers = list(params.keys())  # flax keeps call order
        fresh = model.init(key, jnp.zeros((1, *xs.shape[1:]), jnp.float32))["params"]
        keyed = method_key is not None
        mkey = method_key if keyed else jax.random.key(0)

        # params are an argument of one jitted function, so every randomised copy reuses
        # the same compiled program instead of re-tracing a new closure per layer.
        @jax.jit
        def run(p, x, t, i):
            def one(x, t, i):
                method = make_method(p)
                return method(x, t, jax.random.fold_in(mkey, i)) if keyed else method(x, t)

            return jax.vmap(one)(x, t, i)

        def maps(p):
            out = run_in_batches(lambda x, t, i: run(p, x, t, i), (xs, targets), min(batch_size, len(xs)),
                                 with_index=True)
            out = reduce(out) if reduce is not None else out
            bad = ~np.isfinite(np.asarray(out).reshape(len(xs), -1)).all(1)
            if bad.any():
                raise ValueError(f"the method returned NaN or inf maps for inputs {np.flatnonzero(bad)[:5].tolist()}")
            return np.abs(out) if absolute else out

        original = maps(params)
        result = {"original": 1.0}
        current = dict(params)
        for layer in reversed(layers):
            current[layer] = fresh[layer]
            result[layer] = float(spearman_rows(original, maps(current)).mean())
        return result
