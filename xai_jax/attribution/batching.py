"""Run any method over many inputs in fixed-size, jitted, vmapped batches.

The last batch is padded to the batch size (with copies of the first input, discarded
afterwards) so that one compiled program serves every batch. With a mesh, each batch is
sharded along the mesh's "data" axis (see xai_jax.distributed).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import jax
import numpy as np

from xai_jax.batches import run_in_batches

_COMPILED: weakref.WeakKeyDictionary[Callable, dict] = weakref.WeakKeyDictionary()


def _batched(method: Callable, keyed: bool, mesh) -> Callable:
    cache = _COMPILED.setdefault(method, {})
    tag = (keyed, id(mesh) if mesh is not None else None)
    if tag not in cache:
        if keyed:
            fn = jax.vmap(lambda x, t, i, key: method(x, t, jax.random.fold_in(key, i)),
                          in_axes=(0, 0, 0, None))
        else:
            fn = jax.vmap(lambda x, t, i, key: method(x, t), in_axes=(0, 0, 0, None))
        if mesh is None:
            cache[tag] = jax.jit(fn)
        else:
            from xai_jax.distributed import shard_map_batched

            cache[tag] = shard_map_batched(fn, mesh)
    return cache[tag]


def validate_batch(xs, targets, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Checks a whole batch once: float, finite xs (N, ...); integer targets (N,) in range."""
    xs = np.asarray(xs)
    if not np.issubdtype(xs.dtype, np.floating):
        raise TypeError(f"xs must have a float dtype, got {xs.dtype}")
    if xs.ndim < 2:
        raise ValueError(f"xs must be a batch (N, ...) of inputs, got shape {xs.shape}")
    bad = ~np.isfinite(xs.reshape(xs.shape[0], -1)).all(1)
    if bad.any():
        raise ValueError(f"xs contains NaN or inf values (inputs {np.flatnonzero(bad)[:5].tolist()} ...)")
    targets = np.asarray(targets)
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if targets.shape != (xs.shape[0],):
        raise ValueError(f"targets must have shape ({xs.shape[0]},) to match xs, got {targets.shape}")
    if num_classes is not None and targets.size and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"targets must lie in [0, {num_classes}), got [{targets.min()}, {targets.max()}]")
    return xs, targets.astype(np.int32)


def attribute(
    method: Callable,
    xs,
    targets,
    *,
    batch_size: int = 64,
    key: jax.Array | None = None,
    num_classes: int | None = None,
    mesh=None,
    progress: bool | None = None,
) -> np.ndarray:
    """Returns np.stack([method(x, t) for x, t in zip(xs, targets)]) computed in batches.

    method: (x, target) -> map, or (x, target, key) -> map when `key` is given; input i
      then gets jax.random.fold_in(key, i), so results do not depend on batch_size.
    batch_size: inputs per compiled call; it bounds memory (a batch of IG costs
      batch_size * steps model evaluations, or batch_size * chunk_size when chunked).
    num_classes: if given, targets are range-checked. mesh: shard batches over devices.
    progress: tqdm bar; default on when there are more than 4 batches.
    """
    xs, targets = validate_batch(xs, targets, num_classes)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n = xs.shape[0]
    if mesh is not None:
        devices = mesh.devices.size
        batch_size = -(-batch_size // devices) * devices
    bs = min(batch_size, n) if mesh is None else batch_size
    fn = _batched(method, key is not None, mesh)
    key = jax.random.key(0) if key is None else key
    show = -(-n // bs) > 4 if progress is None else progress
    return run_in_batches(fn, (xs, targets), bs, args=(key,), with_index=True, progress=show, desc="attribute")
