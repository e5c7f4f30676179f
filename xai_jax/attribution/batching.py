"""Run any method over many inputs in fixed-size, jitted, vmapped batches.

The last batch is padded to the batch size (with copies of the first input, discarded
afterwards) so that one compiled program serves every batch. With a mesh, each batch is
sharded along the mesh's "data" axis (see xai_jax.distributed).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.batches import program_cache, run_in_batches
from xai_jax.checks import check_array, check_batch, check_int, check_key, check_mesh, check_targets, num_outputs


def _batched(method: Callable, keyed: bool, mesh) -> Callable:
    cache = program_cache(method)
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


def validate_batch(xs, targets, num_classes: int | None = None, *,
                   who: str = "attribute") -> tuple[np.ndarray, np.ndarray]:
    """Checks a whole batch once: float, finite xs (N >= 1, ...); integer targets (N,) in
    [0, num_classes)."""
    xs = np.asarray(check_batch(xs, "xs", who=who))
    return xs, check_targets(targets, xs.shape[0], num_classes)


def method_num_classes(method: Callable, x_shape: tuple[int, ...], num_classes: int | None) -> int:
    """The class count to range-check targets against: from the f the method explains
    (methods built by xai_jax carry it as `method.model_fn`), from `method.num_classes`,
    or the num_classes argument; a user-written method without either needs the argument."""
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", 1)
    f = getattr(method, "model_fn", None)
    carried = num_outputs(f, x_shape) if f is not None else getattr(method, "num_classes", None)
    if f is None and carried is not None:
        carried = check_int(carried, "method.num_classes", 1)
    if carried is not None and num_classes is not None and carried != num_classes:
        raise ValueError(f"num_classes={num_classes} contradicts the method's model, which has {carried} classes")
    if carried is None and num_classes is None:
        raise TypeError(
            "num_classes is required: the method carries neither the model function it explains "
            "(methods built by xai_jax do, as method.model_fn) nor method.num_classes, so targets "
            "cannot be range-checked; pass attribute(..., num_classes=C)"
        )
    return int(carried if carried is not None else num_classes)


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
    xs: (N, ...) float, finite; targets: (N,) integer classes in [0, number of classes).
      N = 0 returns an empty array (0, *map shape).
    batch_size: inputs per compiled call; it bounds memory (a batch of IG costs
      batch_size * steps model evaluations, or batch_size * chunk_size when chunked).
    num_classes: needed only for a method xai_jax did not build (see method_num_classes).
    mesh: shard batches over devices. progress: tqdm bar; default on for > 4 batches.
    Raises ValueError if the method returns NaN/inf for any input (e.g. a callable
    baseline that yields NaN), naming the inputs.
    """
    if not callable(method):
        raise TypeError(f"method must be a function (x, target[, key]) -> map, got {type(method).__name__}")
    batch_size = check_int(batch_size, "batch_size", 1)
    keyed = getattr(method, "keyed", None)
    if key is not None:
        key = check_key(key)
        if keyed is False:
            raise TypeError("key= was given but this method takes no key (it is called as method(x, target))")
    elif keyed:
        raise TypeError("this method takes a key: pass attribute(..., key=jax.random.key(0))")
    if isinstance(xs, (list, tuple)):
        try:
            xs = np.asarray(xs)
        except ValueError as e:  # ragged
            raise TypeError(f"xs must be a batch (N, ...) of equally shaped inputs: {e}") from None
    check_array(xs, "xs")
    check_mesh(mesh)
    if np.ndim(xs) < 2:
        raise ValueError(f"xs must be a batch (N, ...) of inputs, got shape {tuple(np.shape(xs))}")
    n_classes = method_num_classes(method, tuple(xs.shape[1:]), num_classes)
    if xs.shape[0] == 0:
        check_targets(targets, 0, n_classes)
        probe = jax.random.key(0) if key is not None else None
        one = jax.eval_shape(lambda x: method(x, jnp.int32(0), *([probe] if key is not None else [])),
                             jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype))
        return jax.tree.map(lambda o: np.zeros((0, *o.shape), o.dtype), one)
    xs, targets = validate_batch(xs, targets, n_classes)
    n = xs.shape[0]
    if mesh is not None:
        devices = mesh.devices.size
        batch_size = -(-batch_size // devices) * devices
    bs = min(batch_size, n) if mesh is None else batch_size
    fn = _batched(method, key is not None, mesh)
    key = jax.random.key(0) if key is None else key
    show = -(-n // bs) > 4 if progress is None else progress
    out = run_in_batches(fn, (xs, targets), bs, args=(key,), with_index=True, progress=show, desc="attribute")
    for leaf in jax.tree.leaves(out):
        bad = ~np.isfinite(leaf.reshape(n, -1)).all(1)
        if bad.any():
            idx = np.flatnonzero(bad)
            raise ValueError(f"the method returned NaN or inf for inputs {idx[:5].tolist()}"
                             f"{' ...' if idx.size > 5 else ''} (finite inputs, valid targets): check its "
                             f"baseline and the model")
    return out
