"""Faithfulness correlation (Bhatt et al., IJCAI 2020, "Evaluating and Aggregating
Feature-based Model Explanations"), as Quantus 0.6 `FaithfulnessCorrelation` defines it.

All n_runs masked copies of a batch of inputs are evaluated in one jitted, vmapped call;
run r of input i draws its subset from fold_in(fold_in(key, i), r).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.common import score_transform
from xai_jax.batching import run_in_batches
from xai_jax.checks import (
    at_precision,
    check_batch,
    check_finite_maps,
    check_float,
    check_int,
    check_key,
    check_targets,
    num_outputs,
    precision_scope,
)
from xai_jax.metrics.layout import with_channel_axis
from xai_jax.metrics.robustness import cached_runner
from xai_jax.metrics.shared import PREDICTED
from xai_jax.metrics.similarity import pearson_row

FILLS = ("black", "white", "mean")  # Quantus' per-input baselines: min, max, mean of x


def _fill_value(fill) -> Callable[[jax.Array], jax.Array]:
    if isinstance(fill, str):
        if fill not in FILLS:
            raise ValueError(f"fill must be a finite number or one of {FILLS}, got {fill!r}")
        return {"black": jnp.min, "white": jnp.max, "mean": jnp.mean}[fill]
    value = check_float(fill, "fill")
    return lambda x: jnp.asarray(value, x.dtype)


def default_subset_size(n_features: int) -> int:
    """faithfulness_correlation's default subset size: round(sqrt(n_features)), at least 1
    (224 for a 224 x 224 map, Quantus' default)."""
    return max(1, int(round(np.sqrt(n_features))))


@functools.partial(with_channel_axis, input_shaped=("saliency",))
@at_precision
def faithfulness_correlation(
    f: Callable[[jax.Array], jax.Array],
    xs,
    saliency,
    *,
    targets=None,
    subset_size: int | None = None,
    n_runs: int = 100,
    fill: float | str = 0.0,
    key: jax.Array,
    score: str = "softmax",
    batch_size: int = 100,
    precision: str | None = "highest",
) -> dict[str, np.ndarray | float]:
    """Faithfulness correlation (Bhatt et al. 2020), as Quantus `FaithfulnessCorrelation`.

    For runs r = 1..n_runs, draw a subset S_r of subset_size features uniformly without
    replacement, set them to `fill`, and record
        A_r = sum_{i in S_r} a_i,     D_r = f_c(x) - f_c(x with S_r set to fill);
    the score is Pearson's correlation of (A_r) and (D_r) over the runs, in [-1, 1], higher
    is better. f_c is the `score` of class c ("softmax", "logit", "log_softmax").

    saliency: (N, *spatial) maps, whose features are the spatial positions (a chosen
    position is filled in every channel), or attributions shaped like the inputs, whose
    features are single values (as Quantus flattens them). subset_size: 1 <= subset_size
    <= the number of features n; None (default): round(sqrt(n)), at least 1, which is
    Quantus' fixed default of 224 for a 224 x 224 map and scales with the input (6 of
    MNIST-1D's 40 positions; 388 of the 150,528 values of a 224 x 224 x 3 attribution). fill: a
    number, or "black" / "white" / "mean": the min / max / mean of each x (Quantus'
    perturb_baseline, default "black"). targets: (N,) classes, or None for the predicted
    class. A constant A or D (e.g. an all-zero map) has no correlation: 1.0 when A = D in
    every run, else 0.0 (scipy returns NaN).

    Returns {"correlation": (N,), "mean": float}. Deviations from Quantus: score defaults
    to "softmax" (the library's default; Quantus' predict uses logits), fill defaults to 0.
    """
    who = "faithfulness_correlation"
    xs = np.asarray(check_batch(xs, "xs", who=who), np.float32)
    if xs.ndim < 3:
        raise ValueError(f"xs must be (N, length, channels) or (N, H, W, channels), got shape {xs.shape}")
    n_classes = num_outputs(f, xs.shape[1:])
    shape = tuple(getattr(saliency, "shape", np.shape(saliency)))
    per_value = shape == xs.shape
    maps = check_finite_maps(saliency, xs.shape if per_value else xs.shape[:-1],
                             like=f"the inputs' spatial shape {xs.shape[:-1]}, or the inputs' shape")
    n_features = int(np.prod(maps.shape[1:]))
    subset_size = default_subset_size(n_features) if subset_size is None else check_int(subset_size, "subset_size", 1)
    if subset_size > n_features:
        raise ValueError(f"subset_size={subset_size} exceeds the {n_features} "
                         f"{'values' if per_value else 'spatial positions'} of each input")
    n_runs = check_int(n_runs, "n_runs", 2)
    fill_of = _fill_value(fill)
    key = check_key(key)
    batch_size = check_int(batch_size, "batch_size", 1)
    s = score_transform(score)
    targets = (np.full(len(xs), PREDICTED, np.int32) if targets is None
               else check_targets(targets, len(xs), n_classes))

    def build():
        def one(x, a, t, i, key):
            logits = f(x)
            c = jnp.where(t < 0, jnp.argmax(logits), t)
            y = s(logits)[c]
            a_flat = a.ravel()
            value = fill_of(x)

            def run(r):
                chosen = jax.random.choice(jax.random.fold_in(jax.random.fold_in(key, i), r), n_features,
                                           (subset_size,), replace=False)
                mask = jnp.zeros(n_features, bool).at[chosen].set(True).reshape(a.shape)
                masked = jnp.where(mask if per_value else mask[..., None], value, x)
                out = f(masked)
                d = jnp.where(jnp.isfinite(out).all(), y - s(out)[c], jnp.nan)
                return a_flat @ mask.ravel().astype(a_flat.dtype), d

            sums, deltas = jax.vmap(run)(jnp.arange(n_runs))
            finite = jnp.isfinite(logits).all() & jnp.isfinite(deltas).all()
            return jnp.where(finite, pearson_row(sums, deltas), jnp.nan)

        return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, None)))

    tag = (who, per_value, n_features, subset_size, n_runs, fill if isinstance(fill, str) else float(fill), score)
    with precision_scope(precision):  # full float32: TF32 cannot move the scores
        values = run_in_batches(cached_runner(f, tag, build), (xs, maps, targets), min(batch_size, len(xs)),
                                args=(key,), with_index=True)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{who}: the model f returned NaN or inf scores for inputs {np.flatnonzero(bad)[:5].tolist()}"
                         f"{' ...' if bad.sum() > 5 else ''} (on x or its masked copies)")
    return {"correlation": values, "mean": float(values.mean())}
