"""Data parallelism with JAX's own distribution: a Mesh with a "data" axis.

- Attribution: `xai_jax.attribute(..., mesh=data_mesh())` runs each batch through
  `jax.shard_map`, every device explaining its slice of the batch with the same compiled
  method (no communication: explanations are per input). Batch sizes are rounded up to a
  multiple of the device count and the last batch is padded, so any N works.
- Training: `fit(..., mesh=data_mesh())` jits the step with the batch constrained to be
  sharded along "data" and the parameters / optimiser state replicated; XLA inserts the
  gradient all-reduce. The batch size must be a multiple of the device count. (The step
  lives in xai_jax.train.make_step; this module imports nothing from train.)
- Metrics: `sharded_vmap(fn, mesh)` turns a per-input function into a sharded batched one.

On one CPU, `XLA_FLAGS=--xla_force_host_platform_device_count=8` (set before importing
jax) simulates 8 devices; on GPU/TPU hosts, `data_mesh()` uses every local device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P


def data_mesh(devices: Sequence | int | None = None) -> Mesh:
    """A 1-D mesh with axis "data" over `devices`: None (all local devices), a count of local
    devices (an int >= 1, NumPy ints too; bools rejected), or a non-empty sequence of distinct
    jax devices. TypeError/ValueError naming `devices` otherwise."""
    local = jax.local_devices()
    if devices is None:
        return Mesh(np.asarray(local), ("data",))
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, (bool, np.bool_)):
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices must be between 1 and the {len(local)} local devices, got {devices}")
        return Mesh(np.asarray(local[: int(devices)]), ("data",))
    if isinstance(devices, np.ndarray):
        devices = devices.ravel().tolist()
    if not isinstance(devices, (list, tuple)):
        raise TypeError(f"devices must be None, a device count (int >= 1) or a sequence of jax devices "
                        f"(e.g. jax.devices()), got {type(devices).__name__} {devices!r:.80}")
    if not devices:
        raise ValueError("devices must hold at least one jax device, got an empty sequence")
    for i, d in enumerate(devices):
        if not isinstance(d, jax.Device):
            raise TypeError(f"devices must be jax devices (e.g. jax.devices()), got {type(d).__name__} "
                            f"{d!r:.80} at index {i}")
    if len(set(devices)) != len(devices):
        raise ValueError(f"devices must be distinct, got {list(devices)}")
    return Mesh(np.asarray(list(devices)), ("data",))


def shard_map_batched(fn: Callable, mesh: Mesh) -> Callable:
    """jit(shard_map(fn)) for fn(x, t, i, key) batched over the leading axis of x, t, i."""
    sharded = jax.shard_map(fn, mesh=mesh, in_specs=(P("data"), P("data"), P("data"), P()),
                            out_specs=P("data"), check_vma=False)
    return jax.jit(sharded)


def sharded_vmap(fn: Callable, mesh: Mesh, n_args: int) -> Callable:
    """jit(shard_map(vmap(fn))) for a per-input fn of n_args batched arguments."""
    return jax.jit(jax.shard_map(jax.vmap(fn), mesh=mesh, in_specs=(P("data"),) * n_args,
                                 out_specs=P("data"), check_vma=False))
