"""Model-truth metrics: the study's drop/increase rates and deletion/insertion AUC.

Saliency maps have the input's spatial shape (N, *spatial); an attribution shaped like x
is collapsed over channels first (xai_jax.spatial_map). All masked inputs of a batch are
evaluated in one vmapped, jitted call per batch of inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.batching import validate_batch
from xai_jax.attribution.common import score_transform
from xai_jax.batches import run_in_batches


def _check_maps(xs: np.ndarray, maps) -> np.ndarray:
    maps = np.asarray(maps, np.float32)
    if maps.shape != xs.shape[:-1]:
        raise ValueError(f"saliency must have the inputs' spatial shape {xs.shape[:-1]}, got {maps.shape}")
    if not np.isfinite(maps).all():
        raise ValueError("saliency contains NaN or inf values")
    return maps


def _runner(one: Callable, mesh, n_args: int) -> Callable:
    """jit(vmap(one)), or sharded over the mesh's "data" axis when a mesh is given."""
    if mesh is None:
        return jax.jit(jax.vmap(one))
    from xai_jax.distributed import sharded_vmap

    return sharded_vmap(one, mesh, n_args)


def _in_batches(fn: Callable, arrays: tuple[np.ndarray, ...], batch_size: int, mesh=None) -> list[np.ndarray]:
    """Runs a batched fn over the leading axis of `arrays` in fixed-size padded batches."""
    bs = min(batch_size, arrays[0].shape[0])
    if mesh is not None:
        bs = -(-bs // mesh.devices.size) * mesh.devices.size
    return list(run_in_batches(fn, arrays, bs))


def top_k_mask(saliency: jax.Array, k: float) -> jax.Array:
    """1 at the round(k * size) positions of highest saliency (ties broken by position)."""
    flat = saliency.ravel()
    n_keep = int(round(k * flat.size))
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
    "increase_rate".
    """
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must lie in (0, 1], got {k!r}")
    xs = np.asarray(xs, np.float32)
    maps = _check_maps(xs, saliency)
    s = score_transform(score)
    if targets is None:
        targets = np.full(xs.shape[0], -1, np.int32)
    xs, targets = validate_batch(xs, targets)

    def one(x, m, t):
        probs = s(f(x))
        c = jnp.where(t < 0, jnp.argmax(probs), t)
        keep = top_k_mask(m, k)[..., None]
        masked = jnp.where(keep, x, fill)
        y, o = probs[c], s(f(masked))[c]
        return jax.nn.relu((y - o) / y), (o > y).astype(jnp.float32)

    drop, inc = _in_batches(_runner(one, mesh, 3), (xs, maps, targets), batch_size, mesh)
    return {"drop": drop, "increase": inc, "drop_rate": float(drop.mean()), "increase_rate": float(inc.mean())}


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of x (*spatial, C) over its spatial axes (edge-padded)."""
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
    xs = np.asarray(xs, np.float32)
    maps = _check_maps(xs, saliency)
    if not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive int, got {step!r}")
    n_pos = int(np.prod(xs.shape[1:-1]))
    if step > n_pos:
        raise ValueError(f"step {step} exceeds the {n_pos} spatial positions")
    n_steps = -(-n_pos // step)
    counts = np.minimum(np.arange(n_steps + 1) * step, n_pos)
    fractions = counts / n_pos
    s = score_transform(score)
    if targets is None:
        targets = np.full(xs.shape[0], -1, np.int32)
    xs, targets = validate_batch(xs, targets)

    def one(x, m, t):
        c = jnp.where(t < 0, jnp.argmax(f(x)), t)
        rank = jnp.argsort(jnp.argsort(-m.ravel(), stable=True)).reshape(m.shape)
        blurred = gaussian_blur(x, blur_sigma)

        def at(count):
            chosen = (rank < count)[..., None]
            deleted = jnp.where(chosen, baseline, x)
            inserted = jnp.where(chosen, x, blurred)
            return s(f(deleted))[c], s(f(inserted))[c]

        return jax.vmap(at)(jnp.asarray(counts))

    deletion, insertion = _in_batches(_runner(one, mesh, 3), (xs, maps, targets), batch_size, mesh)
    auc = lambda curves: np.trapezoid(curves, fractions, axis=1)  # noqa: E731
    d_auc, i_auc = auc(deletion), auc(insertion)
    return {"fractions": fractions, "deletion_curve": deletion, "insertion_curve": insertion,
            "deletion_auc": d_auc, "insertion_auc": i_auc,
            "deletion_auc_mean": float(d_auc.mean()), "insertion_auc_mean": float(i_auc.mean())}
