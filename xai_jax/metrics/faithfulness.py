"""Model-truth metrics: the study's drop/increase rates and deletion/insertion AUC.

Saliency maps have the input's spatial shape (N, *spatial); an attribution shaped like x
is collapsed over channels first (xai_jax.spatial_map). All masked inputs of a batch are
evaluated in one vmapped, jitted call per batch of inputs.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.common import score_transform
from xai_jax.batches import run_in_batches
from xai_jax.checks import (
    check_batch,
    check_finite_maps,
    check_float,
    check_int,
    check_targets,
    num_outputs,
)

PREDICTED = -1  # internal marker for "the predicted class" (targets=None); never accepted from callers


def _prepare(f, xs, saliency, targets, batch_size, who: str):
    """Checked (xs, maps, targets) for a model-truth metric: float finite xs (N >= 1, ...),
    finite maps of the inputs' spatial shape, targets in [0, classes of f) or None."""
    xs = np.asarray(check_batch(xs, "xs", who=who), np.float32)
    if xs.ndim < 3:
        raise ValueError(f"xs must be (N, length, channels) or (N, H, W, channels), got shape {xs.shape}")
    check_int(batch_size, "batch_size", 1)
    maps = check_finite_maps(saliency, xs.shape[:-1])
    n_classes = num_outputs(f, xs.shape[1:])
    if targets is None:
        targets = np.full(xs.shape[0], PREDICTED, np.int32)
    else:
        targets = check_targets(targets, xs.shape[0], n_classes)
    return xs, maps, targets


def _check_scores(values: np.ndarray, who: str) -> None:
    """The model's scores on the (masked) inputs must be finite: NaN would pass silently as
    'no increase' or poison an AUC."""
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(1)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise ValueError(f"{who}: the model f returned NaN or inf scores for inputs {idx[:5].tolist()}"
                         f"{' ...' if idx.size > 5 else ''} (on x or its masked copies)")


def _keep_count(k: float, n_pos: int) -> int:
    """round(k * n_pos) positions, at least one (a clear error names k otherwise)."""
    k = check_float(k, "k", low=0.0, high=1.0, low_open=True)
    n_keep = int(round(k * n_pos))
    if n_keep < 1:
        raise ValueError(f"k={k:g} keeps round(k * {n_pos}) = 0 of the {n_pos} spatial positions; "
                         f"use k >= {1.0 / n_pos:.4g}")
    return n_keep


_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _runner(f: Callable, settings: tuple, make_one: Callable[[], Callable], mesh, n_args: int) -> Callable:
    """jit(vmap(one)), or sharded over the mesh's "data" axis, cached per (f, settings) so
    that measuring many methods' maps with one model compiles once."""
    try:
        cache = _RUNNERS.setdefault(f, {})
    except TypeError:  # f cannot be weakly referenced: no cache
        cache = {}
    tag = (*settings, id(mesh) if mesh is not None else None)
    if tag not in cache:
        one = make_one()
        if mesh is None:
            cache[tag] = jax.jit(jax.vmap(one))
        else:
            from xai_jax.distributed import sharded_vmap

            cache[tag] = sharded_vmap(one, mesh, n_args)
    return cache[tag]


def _in_batches(fn: Callable, arrays: tuple[np.ndarray, ...], batch_size: int, mesh=None) -> list[np.ndarray]:
    """Runs a batched fn over the leading axis of `arrays` in fixed-size padded batches."""
    bs = min(batch_size, arrays[0].shape[0])
    if mesh is not None:
        bs = -(-bs // mesh.devices.size) * mesh.devices.size
    return list(run_in_batches(fn, arrays, bs))


def top_k_mask(saliency: jax.Array, k: float) -> jax.Array:
    """1 at the round(k * size) positions of highest saliency (ties broken by position)."""
    flat = saliency.ravel()
    n_keep = _keep_count(k, flat.size)
    order = jnp.argsort(-flat, stable=True)
    keep = jnp.zeros(flat.size, bool).at[order[:n_keep]].set(True)
    return keep.reshape(saliency.shape)


def drop_increase(
    f: Callable[[jax.Array], jax.Array],
    xs,
    saliency,
    *,
    k: float = 0.3,
    fill: float = 0.0,
    score: str = "softmax",
    targets=None,
    batch_size: int = 250,
    mesh=None,
) -> dict[str, np.ndarray | float]:
    """The study's drop / increase rates.

    Keep the top-k share of spatial positions by saliency, set the rest to `fill`; with
    Y = score of the class on x and O on the masked x: drop% = ReLU((Y - O) / Y),
    increase = O > Y. targets: the class per input (default: the predicted class).
    Returns per-input "drop" and "increase" arrays and their means "drop_rate",
    "increase_rate". Targets must be classes in [0, C) (None: the predicted class); k
    must keep at least one position; non-finite xs or maps are rejected.
    """
    xs, maps, targets = _prepare(f, xs, saliency, targets, batch_size, "drop_increase")
    _keep_count(k, int(np.prod(maps.shape[1:])))
    fill = check_float(fill, "fill")
    s = score_transform(score)

    def one(x, m, t):
        logits = f(x)
        probs = s(logits)
        c = jnp.where(t < 0, jnp.argmax(probs), t)
        keep = top_k_mask(m, k)[..., None]
        masked_logits = f(jnp.where(keep, x, fill))
        y, o = probs[c], s(masked_logits)[c]
        drop = jnp.where(y > 0, jax.nn.relu((y - o) / jnp.where(y > 0, y, 1.0)), 0.0)  # Y = 0: nothing to drop
        # checked on the logits: XLA:CPU's max ignores NaN, so softmax can hide a NaN logit
        finite = jnp.isfinite(logits).all() & jnp.isfinite(masked_logits).all()
        return jnp.where(finite, drop, jnp.nan), (o > y).astype(jnp.float32)

    run = _runner(f, ("drop_increase", k, fill, score), lambda: one, mesh, 3)
    drop, inc = _in_batches(run, (xs, maps, targets), batch_size, mesh)
    _check_scores(drop, "drop_increase")
    return {"drop": drop, "increase": inc, "drop_rate": float(drop.mean()), "increase_rate": float(inc.mean())}


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of x (*spatial, C) over its spatial axes (edge-padded)."""
    sigma = check_float(sigma, "sigma", low=0.0, low_open=True)
    radius = max(1, int(3 * sigma))
    t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    kernel = jnp.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    for axis in range(x.ndim - 1):
        padded = jnp.pad(x, [(radius, radius) if a == axis else (0, 0) for a in range(x.ndim)], mode="edge")
        moved = jnp.moveaxis(padded, axis, -1)
        conv = jax.vmap(lambda v: jnp.convolve(v, kernel, mode="valid"))(moved.reshape(-1, moved.shape[-1]))
        x = jnp.moveaxis(conv.reshape(*moved.shape[:-1], -1), -1, axis)
    return x


def deletion_insertion(
    f: Callable[[jax.Array], jax.Array],
    xs,
    saliency,
    *,
    step: int = 1,
    baseline: float = 0.0,
    blur_sigma: float = 5.0,
    score: str = "softmax",
    targets=None,
    batch_size: int = 50,
    mesh=None,
) -> dict[str, np.ndarray | float]:
    """Deletion and insertion curves and AUCs (Petsiuk et al. 2018, RISE).

    Positions are visited in decreasing saliency, `step` at a time. Deletion sets them to
    `baseline` starting from x; insertion copies them from x into a blurred x
    (Gaussian, blur_sigma). The class probability is recorded before the first and after
    every step; AUC is the trapezoid area over the removed/inserted fraction in [0, 1].
    Returns per-input curves (N, steps + 1), AUCs (N,) and their means.
    """
    xs, maps, targets = _prepare(f, xs, saliency, targets, batch_size, "deletion_insertion")
    step = check_int(step, "step", 1)
    baseline = check_float(baseline, "baseline")
    blur_sigma = check_float(blur_sigma, "blur_sigma", low=0.0, low_open=True)
    n_pos = int(np.prod(xs.shape[1:-1]))
    if step > n_pos:
        raise ValueError(f"step {step} exceeds the {n_pos} spatial positions")
    n_steps = -(-n_pos // step)
    counts = np.minimum(np.arange(n_steps + 1) * step, n_pos)
    fractions = counts / n_pos
    s = score_transform(score)

    def score_of(v, c):  # NaN when any logit is not finite (softmax could hide it)
        logits = f(v)
        return jnp.where(jnp.isfinite(logits).all(), s(logits)[c], jnp.nan)

    def one(x, m, t):
        c = jnp.where(t < 0, jnp.argmax(f(x)), t)
        rank = jnp.argsort(jnp.argsort(-m.ravel(), stable=True)).reshape(m.shape)
        blurred = gaussian_blur(x, blur_sigma)

        def at(count):
            chosen = (rank < count)[..., None]
            deleted = jnp.where(chosen, baseline, x)
            inserted = jnp.where(chosen, x, blurred)
            return score_of(deleted, c), score_of(inserted, c)

        return jax.vmap(at)(jnp.asarray(counts))

    run = _runner(f, ("deletion_insertion", step, baseline, blur_sigma, score, n_pos), lambda: one, mesh, 3)
    deletion, insertion = _in_batches(run, (xs, maps, targets), batch_size, mesh)
    _check_scores(np.concatenate([deletion, insertion], 1), "deletion_insertion")
    auc = lambda curves: np.trapezoid(curves, fractions, axis=1)  # noqa: E731
    d_auc, i_auc = auc(deletion), auc(insertion)
    return {"fractions": fractions, "deletion_curve": deletion, "insertion_curve": insertion,
            "deletion_auc": d_auc, "insertion_auc": i_auc,
            "deletion_auc_mean": float(d_auc.mean()), "insertion_auc_mean": float(i_auc.mean())}
