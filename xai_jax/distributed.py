"""Data parallelism with JAX's own distribution: a Mesh with a "data" axis.

- Attribution: `xai_jax.attribute(..., mesh=data_mesh())` runs each batch through
  `jax.shard_map`, every device explaining its slice of the batch with the same compiled
  method (no communication: explanations are per input). Batch sizes are rounded up to a
  multiple of the device count and the last batch is padded, so any N works.
- Training: `fit(..., mesh=data_mesh())` jits the step with the batch constrained to be
  sharded along "data" and the parameters / optimiser state replicated; XLA inserts the
  gradient all-reduce. The batch size must be a multiple of the device count. (The step
  lives in xai_jax.study.train.make_step; this module imports nothing from train.)
- Metrics: `sharded_vmap(fn, mesh)` turns a per-input function into a sharded batched one.

On one CPU, `XLA_FLAGS=--xla_force_host_platform_device_count=8` (set before importing
jax) simulates 8 devices; on GPU/TPU hosts, `data_mesh()` uses every local device.

Multi-host (several processes, JAX's own runtime): start every process with
`jax.distributed.initialize(...)` and pass `data_mesh(jax.devices())`, a mesh over every
process's devices. Each process passes its OWN shard of the inputs to `attribute`, the
metrics or `fit`; the shards are all-gathered (`gather_process_shards`: process 0's rows
first), every process feeds its devices their part of each global batch, and every process
gets the global result (NumPy, or with attribute(..., to_numpy=False) a global jax.Array).
On CPUs, set jax.config.update("jax_cpu_collectives_implementation", "gloo") first.
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


# ----------------------------------------------------------------------------- multi-process


def spans_processes(mesh) -> bool:
    """True when the mesh holds devices of more than one process (a multi-host job started
    with jax.distributed.initialize)."""
    return mesh is not None and len({d.process_index for d in mesh.devices.flat}) > 1


def gather_process_shards(*arrays):
    """Each process's own shard (n_p, ...) of every array -> the global arrays, identical on
    every process: process 0's rows first, then process 1's, ... Shards may differ in length
    (they are padded for the all-gather and trimmed after). Single process: unchanged."""
    if jax.process_count() == 1:
        return arrays if len(arrays) != 1 else arrays[0]
    from jax.experimental import multihost_utils

    arrays = tuple(np.asarray(a) for a in arrays)
    counts = np.asarray(multihost_utils.process_allgather(np.array([len(arrays[0])], np.int64))).ravel()
    longest = int(counts.max())
    out = []
    for a in arrays:
        if len(a) != counts[jax.process_index()]:
            raise ValueError(f"every array of a process must have the same length, got {len(a)} and "
                             f"{int(counts[jax.process_index()])}")
        padded = np.concatenate([a, np.repeat(a[:1], longest - len(a), axis=0)]) if len(a) < longest else a
        every = np.asarray(multihost_utils.process_allgather(padded, tiled=False))  # (processes, longest, ...)
        out.append(np.concatenate([every[p, : counts[p]] for p in range(len(counts))]))
    return tuple(out) if len(out) != 1 else out[0]


def to_host(x) -> np.ndarray:
    """A (possibly multi-process) jax.Array as one NumPy array on every process."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
