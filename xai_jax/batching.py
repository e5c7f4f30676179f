"""Batching: the one loop every batched runner of the library shares, and `attribute`.

`run_in_batches` runs a compiled function over the leading axis of its inputs in
fixed-size batches, the last one padded (with copies of input 0, dropped afterwards), so
that one compiled program serves every batch. Inputs may be NumPy arrays or `jax.Array`s:

- a `jax.Array` (also one already sharded) stays on its device: batches are sliced there;
- NumPy inputs are prefetched: the next batch is put on the device (asynchronously) before
  the current one is dispatched, so the copy overlaps the computation (double buffering);
- results come back as one NumPy pytree (`to_numpy=True`), or stay on the device as one
  trimmed (N, ...) `jax.Array` per leaf (`to_numpy=False`).

`attribute` builds on it: any method over many inputs, with the validation fused into the
compiled call (one finiteness / range check per batch, reported once as a clear error).

This module sits below models, train, attribution and metrics, so every layer can use it;
it imports xai_jax.distributed only when a mesh is given.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from xai_jax.checks import check_array, check_int, check_key, check_mesh, check_method, check_targets, num_outputs
from xai_jax.distributed import gather_process_shards, spans_processes, to_host


class Programs:
    """The compiled programs cached on one owner, as seen by one caller: `tag in programs`,
    `programs[tag]`, `programs[tag] = program`, `programs.setdefault(tag, program)` and
    `programs.get(tag)` act as on a dict, except that an entry stored when the owner (or the
    `depends` of program_cache) reached other arrays or values counts as absent, and is
    replaced when stored again (see xai_jax.captured)."""

    __slots__ = ("store", "stamp")

    def __init__(self, store: dict, stamp):
        self.store, self.stamp = store, stamp

    def __contains__(self, tag) -> bool:
        entry = self.store.get(tag)
        return entry is not None and entry[0] == self.stamp

    def __getitem__(self, tag):
        if tag not in self:
            raise KeyError(tag)
        return self.store[tag][1]

    def get(self, tag, default=None):
        return self[tag] if tag in self else default

    def __setitem__(self, tag, program) -> None:
        if self.stamp is not None:  # entries compiled from the owner's former state are dropped
            stale = [t for t, (stamp, _) in self.store.items() if stamp is not None and stamp[0] != self.stamp[0]]
            for t in stale:
                del self.store[t]
        self.store[tag] = (self.stamp, program)

    def setdefault(self, tag, program):
        if tag not in self:
            self[tag] = program
        return self[tag]


def program_cache(owner, *depends, track: bool = True) -> Programs:
    """The compiled programs kept on `owner` (a function, Method or callable object) itself, so
    that they live exactly as long as it does. (A module-level weak dict keyed on the owner
    would never free it: each program's closure refers back to the owner.) An owner that takes
    no attributes gets a fresh store: no caching, nothing kept.

    track: a program is used only while the owner and `depends` (other callables the program
    closes over) reach the same arrays and Python values as when it was compiled: a function
    whose captured params were replaced (`P["p"] = new` for `lambda z: model.apply({"params":
    P["p"]}, z)`) is compiled again (xai_jax.captured.fingerprint, about 0.1-0.3 ms a call;
    what it cannot see is listed there and in docs/errors.md). track=False for owners that
    are themselves programs of this cache."""
    from xai_jax.attribution.common import current_outputs
    from xai_jax.captured import PROGRAMS_ATTRIBUTE, fingerprint
    # programs traced under outputs="probabilities" (attribution.common.outputs_scope) differ too
    stamp = (fingerprint(owner), fingerprint(*depends, current_outputs())) if track else None
    if inspect.ismethod(owner):  # a bound method shares its function's __dict__ with every instance:
        try:                      # keep the programs on the instance it is bound to
            store = vars(owner.__self__).setdefault(f"{PROGRAMS_ATTRIBUTE}_{owner.__func__.__name__}", {})
        except TypeError:
            store = {}
    else:
        try:
            store = vars(owner).setdefault(PROGRAMS_ATTRIBUTE, {})
        except TypeError:  # no __dict__
            store = {}
    return Programs(store, stamp)


# Backends whose compiled calls take NumPy batches directly (no explicit device_put, no
# prefetch): on XLA:CPU jit's own argument path costs about 1/10 of a jax.device_put (measured:
# 40 batches of 4 arrays, 1.2 ms against 13 ms), and there is no transfer to overlap.
HOST_FEED_PLATFORMS = ("cpu",)


@functools.partial(jax.jit, static_argnums=2)
def _rows_from(a: jax.Array, lo, size: int) -> jax.Array:
    """a[lo:lo + size] of a jax.Array, as one compiled call (lo traced: one program per size)."""
    return jax.lax.dynamic_slice_in_dim(a, lo, size)


def _take(a, idx: np.ndarray, sharding, host_feed: bool):
    """Rows idx of a, for the device: sliced there for a jax.Array (a padded last batch by a
    gather), put there (async) for NumPy, or (host_feed: a CPU backend, no sharding) left as
    NumPy for the compiled call to take in directly, which costs ~1/10 of a device_put."""
    if isinstance(a, jax.Array):
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        if lo == 0 and hi == a.shape[0]:  # the whole array is the batch
            rows = a
        elif hi <= a.shape[0]:  # a full batch: a contiguous slice
            rows = _rows_from(a, np.int32(lo), hi - lo)
        else:  # the padded last batch
            rows = jnp.take(a, jnp.asarray(np.where(idx < a.shape[0], idx, 0)), axis=0)
        return rows if sharding is None else jax.device_put(rows, sharding)
    a = np.asarray(a)
    lo, hi = int(idx[0]), int(idx[-1]) + 1
    rows = a[lo:hi] if hi <= len(a) else a[np.where(idx < len(a), idx, 0)]
    if host_feed:
        return rows
    return jax.device_put(rows, sharding) if sharding is not None else jax.device_put(rows)


def _batches(arrays, n: int, batch_size: int, with_index: bool, sharding, first_index: int = 0):
    """Device batches, one ahead of the consumer: batch k + 1 is transferred while batch k runs
    (on a CPU backend NumPy batches go to the compiled call as they are: nothing to overlap)."""
    host_feed = sharding is None and jax.devices()[0].platform in HOST_FEED_PLATFORMS

    def put(lo):
        idx = np.arange(lo, lo + batch_size)
        batch = [_take(a, idx, sharding, host_feed) for a in arrays]
        if with_index:
            index = (idx + first_index).astype(np.int32)
            batch.append(index if host_feed else jax.device_put(index, sharding) if sharding is not None
                         else jax.device_put(index))
        return batch

    starts = range(0, n, batch_size)
    pending = put(starts[0])
    for lo in starts[1:]:
        ready, pending = pending, put(lo)
        yield ready
    yield pending


def run_in_batches(fn: Callable, arrays, batch_size: int, *, args: tuple = (), with_index: bool = False,
                   progress: bool = False, desc: str = "batches", to_numpy: bool = True, sharding=None,
                   first_index: int = 0, status: str | None = None, timing: dict | None = None):
    """fn(*batch, *args) over the leading axis of `arrays` in fixed-size batches (see the module
    docstring). with_index appends each row's global index (int32), counted from first_index.
    Returns the concatenated outputs, trimmed to N rows: a NumPy pytree (to_numpy=True) or a
    pytree of jax.Arrays.
    sharding: where each batch is placed (e.g. a NamedSharding over a mesh's "data" axis). A
    sharding over several processes takes GLOBAL arrays, the same on every process (see
    xai_jax.distributed.gather_process_shards); each process places its devices' rows, and
    NumPy results are all-gathered, so every process returns the whole result.
    status: a line shown (with progress) while the first batch runs, e.g. "compiling IG for
    (64, 40, 1)": that batch then runs before the bar starts, so the bar's ETA excludes it.
    timing: a dict that receives "first_s" (the first batch, compile included), "rest_s" and
    "rest_rows" (the other batches and their rows)."""
    n = len(arrays[0])
    if n == 0 or batch_size < 1:
        raise ValueError(f"run_in_batches needs at least one input and batch_size >= 1, got {n} and {batch_size}")
    if _PLAN is not None:
        return _plan_only(fn, arrays, n, batch_size, args, with_index, sharding, to_numpy)
    outs = []
    total = -(-n // batch_size)
    batches = _batches(arrays, n, batch_size, with_index, sharding, first_index)
    t0 = time.perf_counter()
    if status is not None or timing is not None:
        if progress and status:
            tqdm.write(f"{status} ...", file=sys.stderr)
        outs.append(jax.block_until_ready(fn(*next(batches), *args)))
    t1 = time.perf_counter()
    for batch in tqdm(batches, total=total, initial=len(outs), disable=not progress, desc=desc, unit="batch"):
        outs.append(fn(*batch, *args))
    if timing is not None:
        jax.block_until_ready(outs[-1])
        timing.update(first_s=t1 - t0, rest_s=time.perf_counter() - t1,
                      rest_rows=max(0, n - batch_size))
    if to_numpy:
        return jax.tree.map(lambda *parts: np.concatenate([to_host(p) for p in parts])[:n], *outs)
    if len(outs) == 1:
        return jax.tree.map(lambda p: p[:n] if p.shape[0] != n else p, outs[0])
    return jax.tree.map(lambda *parts: _concat_trim(parts, n), *outs)


_PLAN: list | None = None  # set by compile_only()


@contextlib.contextmanager
def compile_only():
    """Within the block, run_in_batches compiles each program for its batch shape and records
    XLA's memory analysis instead of running it; its results are zeros of the program's output
    shapes. Yields the list of records (name, memory_analysis). For memory checks of whole
    metrics (tests: one 224 x 224 x 3 input, every metric) without their run time: what a
    metric computes on the host from those zeros is meaningless, and may raise."""
    global _PLAN
    previous, _PLAN = _PLAN, []
    try:
        yield _PLAN
    finally:
        _PLAN = previous


def _plan_only(fn, arrays, n, batch_size, args, with_index, sharding, to_numpy):
    batch = next(_batches(arrays, n, batch_size, with_index, sharding))
    lowered = (fn if hasattr(fn, "lower") else jax.jit(fn)).lower(*batch, *args)
    _PLAN.append((getattr(fn, "__name__", type(fn).__name__), lowered.compile().memory_analysis()))
    zeros = np.zeros if to_numpy else jnp.zeros
    return jax.tree.map(lambda o: zeros((n, *o.shape[1:]), o.dtype), lowered.out_info)


@jax.jit
def _concat(parts):
    return jnp.concatenate(parts)


def _concat_trim(parts, n: int) -> jax.Array:
    out = _concat(list(parts))
    return out if out.shape[0] == n else out[:n]


# ----------------------------------------------------------------------------- attribute

X_NOT_FINITE, TARGET_OUT_OF_RANGE, MAP_NOT_FINITE = 1, 2, 4  # row codes of attribute's fused check


def _batched(method: Callable, keyed: bool, mesh, n_classes: int) -> Callable:
    """jit(vmap(method)) returning (maps, row codes): the fused validation of `attribute`."""
    cache = program_cache(method)
    tag = ("attribute", keyed, id(mesh) if mesh is not None else None, n_classes)
    if tag not in cache:
        def one(x, t, i, key):
            out = method(x, t, jax.random.fold_in(key, i)) if keyed else method(x, t)
            code = jnp.where(jnp.isfinite(x).all(), 0, X_NOT_FINITE)
            code = code + jnp.where((t >= 0) & (t < n_classes), 0, TARGET_OUT_OF_RANGE)
            finite = jnp.stack([jnp.isfinite(o).all() for o in jax.tree.leaves(out)]).all()
            code = code + jnp.where(finite, 0, MAP_NOT_FINITE)
            return out, code.astype(jnp.int8)

        fn = jax.vmap(one, in_axes=(0, 0, 0, None))
        if mesh is None:
            cache[tag] = jax.jit(fn)
        else:
            from xai_jax.distributed import shard_map_batched

            cache[tag] = shard_map_batched(fn, mesh)
    return cache[tag]


def method_num_classes(method: Callable, x_shape: tuple[int, ...], num_classes: int | None,
                       who: str = "attribute") -> int:
    """The class count to range-check targets against: from the f the method explains
    (methods built by xai_jax carry it as `method.model_fn`), from `method.num_classes`,
    or the num_classes argument; a user-written method without either needs the argument
    (the error names `who`, the function whose argument it is)."""
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
            f"cannot be range-checked; pass {who}(..., num_classes=C) (or wrap the method: "
            f"xai_jax.Method.wrap(fn, model=f))"
        )
    return int(carried if carried is not None else num_classes)


DEFAULT_BATCH = 64  # inputs per call where XLA reports no memory figures
# Bytes of XLA buffers per call on CPUs (or 1/8 of the RAM, if less). Measured on the 2-core
# development CPU: gradients of the study CNN cost 8.0 us per input in calls of 1,000-1,500
# inputs (24-36 MiB) and 13.8 us in calls of 2,000 (48 MiB); `attribute` with saliency / IG
# on MNIST-1D ran 1.4x / 1.5x faster at 32 MiB than at the former 1 GiB, and VGG saliency at
# 64 px 1.6x faster. glibc serves allocations above 32 MiB (its largest dynamic mmap
# threshold) with fresh pages on every call, which is the likely cause of the cliff.
CPU_BATCH_BUDGET = 32 << 20
ACCELERATOR_BATCH_FRACTION = 0.25  # of the device memory JAX may use, per call


def _memory_budget(device) -> int | None:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"] * ACCELERATOR_BATCH_FRACTION)
    if device.platform == "cpu":
        try:
            ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            ram = 8 * CPU_BATCH_BUDGET
        return int(min(CPU_BATCH_BUDGET, ram // 8))
    return None


PROBE_BATCH = 8  # inputs in the batch compiled for XLA's memory analysis


def inputs_per_call(fn: Callable, example_rows, args: tuple = (), before: tuple = ()) -> int | None:
    """How many inputs fit one call of fn(*before, *rows, *args) in the memory budget (a
    quarter of an accelerator's memory; on CPUs CPU_BATCH_BUDGET = 32 MiB or an eighth of the
    RAM), from XLA's own memory analysis of fn compiled for a probe batch of PROBE_BATCH
    inputs: per-input bytes = its temporary + argument + output buffers, less the bytes of
    `before` (e.g. a model's parameters, which do not grow with the batch), / PROBE_BATCH.
    None when XLA gives no figures."""
    try:
        specs = [jax.ShapeDtypeStruct((PROBE_BATCH, *r.shape), r.dtype) for r in example_rows]
        analysis = fn.lower(*before, *specs, *args).compile().memory_analysis()
        fixed = sum(np.dtype(leaf.dtype).itemsize * int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(before))
        per_input = (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
                     + analysis.output_size_in_bytes - fixed) / PROBE_BATCH
        budget = _memory_budget(jax.devices()[0])
    except Exception:  # a backend or a wrapped fn without memory figures
        return None
    if budget is None or per_input <= 0:
        return None
    return max(1, int(budget // per_input))


BATCH_SHAPES = 16  # batch sizes at most one capacity gives: their grain is capacity // BATCH_SHAPES


def batch_for(n: int, capacity: int | None, multiple: int = 1) -> int:
    """Inputs per call for n inputs and a capacity (DEFAULT_BATCH when None): all n in one call
    when they fit; otherwise the fewest calls, ceil(n / capacity), of equal size rounded up to
    a multiple of capacity // BATCH_SHAPES (at most the capacity). The last call then pads few
    inputs (1,000 inputs at a capacity of 957: 2 calls of 531, not 957 + a padded 957), and
    one capacity gives at most BATCH_SHAPES batch shapes, so compiles stay few. Finally
    rounded up to `multiple` (the device count of a mesh)."""
    cap = DEFAULT_BATCH if capacity is None else max(1, int(capacity))
    if n <= cap:
        size = max(1, n)
    else:
        calls = -(-n // cap)
        grain = max(1, cap // BATCH_SHAPES)
        even = -(-n // calls)  # ceil(n / calls)
        size = min(cap, -(-even // grain) * grain)
    return -(-size // multiple) * multiple


def auto_batch_size(fn: Callable, example_rows, n: int, args: tuple = (), multiple: int = 1) -> int:
    """The batch size `attribute` uses by default: batch_for(n, inputs_per_call(...)), with
    DEFAULT_BATCH as the capacity when XLA gives no figures; rounded up to `multiple` (the
    device count of a mesh)."""
    return batch_for(n, inputs_per_call(fn, example_rows, args), multiple)


def _check_target_meta(targets, n: int):
    """dtype and shape of targets (no values read: they may live on a device)."""
    if targets is None:
        raise TypeError("targets must be integer class indices (n,), got None")
    if not isinstance(targets, jax.Array):
        targets = np.asarray(targets)
    if targets.dtype == bool or not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if tuple(targets.shape) != (n,):
        raise ValueError(f"targets must have shape ({n},) to match the inputs, got {tuple(targets.shape)}")
    if isinstance(targets, np.ndarray) and targets.size and (targets.max() > np.iinfo(np.int32).max
                                                            or targets.min() < np.iinfo(np.int32).min):
        # int32 would wrap 2**32 + 3 to 3 and explain another class
        raise ValueError(f"targets must be class indices, got {int(targets.max())} (beyond int32: no model has "
                         f"that many classes)")
    return targets.astype(jnp.int32) if isinstance(targets, jax.Array) else targets.astype(np.int32)


def _rows(codes: np.ndarray, flag: int) -> np.ndarray:
    return np.flatnonzero(codes & flag)


def _listed(idx: np.ndarray, n: int) -> str:
    return f"{idx[:5].tolist()}{' ...' if idx.size > 5 else ''} of {n}"


def _raise_for(codes: np.ndarray, targets, n_classes: int, n: int, diagnose: Callable | None = None) -> None:
    """The first problem the fused check found, as the error the host-side checks give.
    diagnose(i): input i's method call made eagerly, whose own error (the model's scores are
    NaN, its outputs are probabilities, ...) says more than "NaN maps" (only on this path)."""
    bad = _rows(codes, X_NOT_FINITE)
    if bad.size:
        raise ValueError(f"xs contains NaN or inf values (inputs {_listed(bad, n)})")
    bad = _rows(codes, TARGET_OUT_OF_RANGE)
    if bad.size:
        values = np.asarray(targets)[bad]
        if values.min() < 0:
            raise ValueError(f"targets must be class indices >= 0, got {int(values.min())} (inputs {_listed(bad, n)})")
        raise ValueError(f"targets must lie in [0, {n_classes}) (the model has {n_classes} classes), got "
                         f"{int(values.max())} (inputs {_listed(bad, n)})")
    bad = _rows(codes, MAP_NOT_FINITE)
    if bad.size and diagnose is not None:
        try:
            diagnose(int(bad[0]))
        except (ValueError, TypeError) as e:  # the eager call's own error, naming the inputs
            raise type(e)(f"{e} (inputs {_listed(bad, n)})") from None
    if bad.size:
        raise ValueError(f"the method returned NaN or inf for inputs {_listed(bad, n)} (finite inputs, valid "
                         f"targets): check its baseline and the model")


def attribute(
    method: Callable,
    xs,
    targets=None,
    *,
    batch_size: int | None = None,
    key: jax.Array | None = None,
    num_classes: int | None = None,
    mesh=None,
    progress: bool | None = None,
    to_numpy: bool = True,
    desc: str = "attribute",
    first_index: int = 0,
    timing: dict | None = None,
):
    """Returns np.stack([method(x, t) for x, t in zip(xs, targets)]) computed in batches.

    method: (x, target) -> map, or (x, target, key) -> map when `key` is given; input i
      then gets jax.random.fold_in(key, i), so results do not depend on batch_size.
    xs: (N, ...) float, finite: NumPy (prefetched to the device batch by batch) or a
      jax.Array (kept on its device, also when sharded). targets: (N,) integer classes in
      [0, number of classes), NumPy or jax.Array, or None for the class the method's model
      predicts for each input (ties: the lowest index), resolved once here on the clean
      inputs. N = 0 returns an empty array.
    batch_size: inputs per compiled call; it bounds memory (a batch of IG costs
      batch_size * steps model evaluations, or batch_size * chunk_size when chunked).
      None (default): as many as fit a memory budget, from XLA's memory analysis of the
      method compiled once for a probe batch (see inputs_per_call): few large calls, so that
      the per-call dispatch does not dominate small models. With a mesh: 64 per call.
    num_classes: needed only for a method xai_jax did not build (see method_num_classes).
    mesh: shard batches over the devices of its "data" axis. With a mesh over several
      processes (multi-host), each process passes its own shard of xs and targets and gets
      the global result (process 0's inputs first); see xai_jax.distributed.
    progress: tqdm bar; default on for > 4 batches.
    to_numpy: True returns NumPy; False returns one (N, ...) jax.Array (a pytree of them
      for methods that return several, e.g. IG with return_delta), left on the device.
    desc: the progress bar's label (e.g. the method's name). When the program for this batch
      shape is not compiled yet, the bar first shows "compiling <desc> for (B, ...) ..." and
      starts after the first batch, so that its ETA excludes the compilation.
    first_index: the global index of xs[0] (a keyed method's input i gets fold_in(key, i)):
      lets a stream explained in pieces give the same maps as one call.
    timing: a dict that receives the first batch's seconds (compile included) and the rest's.
    Programs are cached on `method` and compiled again when the arrays it captures change
    (program_cache; a NumPy array changed in place is not seen: see docs/errors.md).
    Validation is fused into the compiled call: per input, whether x is finite, the target
    in range and the map finite. After the last batch the codes are read once, and the
    first problem raises a ValueError naming the inputs: non-finite xs, targets out of
    range, or maps the method returned as NaN/inf (e.g. a callable baseline yielding NaN).
    """
    method = check_method(method, "method", "attribute")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    if not isinstance(to_numpy, (bool, np.bool_)):
        raise TypeError(f"to_numpy must be True or False, got {type(to_numpy).__name__} {to_numpy!r}")
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
    n = xs.shape[0]
    if n == 0:
        if targets is not None:
            check_targets(targets, 0, n_classes)
        probe = jax.random.key(0) if key is not None else None
        one = jax.eval_shape(lambda x: method(x, jnp.int32(0), *([probe] if key is not None else [])),
                             jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype))
        empty = np.zeros if to_numpy else jnp.zeros
        return jax.tree.map(lambda o: empty((0, *o.shape), o.dtype), one)
    if targets is None:
        f = getattr(method, "model_fn", None)
        if f is None:
            raise TypeError("targets=None means the predicted class, but the method carries no model to predict "
                            "with (a user-written method): pass the targets")
        from xai_jax.metrics.signature import predicted_targets
        targets = predicted_targets(f, np.asarray(xs) if not isinstance(xs, jax.Array) else xs)
    targets = _check_target_meta(targets, n)
    if spans_processes(mesh) and not (isinstance(xs, jax.Array) and not xs.is_fully_addressable):
        # each process passed its own shard: the global inputs, process 0's rows first
        xs, targets = gather_process_shards(np.asarray(xs), np.asarray(targets))
        n = xs.shape[0]
    sharding = None
    devices = 1
    keyed_call = key is not None
    fn = _batched(method, keyed_call, mesh, n_classes)
    key = jax.random.key(0) if key is None else key
    if mesh is not None:
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        devices = mesh.devices.size
        sharding = NamedSharding(mesh, P("data"))
    if batch_size is None:
        capacity = None
        if mesh is None:  # the probe is compiled once per (method, input shape), whatever N is
            cache = program_cache(fn, track=False)  # fn: a program of _batched's cache
            tag = ("inputs_per_call", tuple(xs.shape[1:]), str(xs.dtype))
            if tag not in cache:
                rows = (jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype), jax.ShapeDtypeStruct((), jnp.int32),
                        jax.ShapeDtypeStruct((), jnp.int32))
                cache[tag] = inputs_per_call(fn, rows, (key,))
            capacity = cache[tag]
        batch_size = batch_for(n, capacity, devices)
    elif mesh is not None:
        batch_size = -(-batch_size // devices) * devices
    bs = min(batch_size, n) if mesh is None else batch_size
    show = -(-n // bs) > 4 if progress is None else progress
    first_index = check_int(first_index, "first_index", 0)
    compiled = program_cache(fn).setdefault("compiled_shapes", set())
    shape = (bs, *xs.shape[1:])
    status = None if (shape, str(xs.dtype)) in compiled else f"compiling {desc} for {shape}"
    out, codes = run_in_batches(fn, (xs, targets), bs, args=(key,), with_index=True, progress=show,
                                desc=desc, to_numpy=bool(to_numpy), sharding=sharding,
                                first_index=first_index, status=status, timing=timing)
    compiled.add((shape, str(xs.dtype)))
    codes = to_host(codes)  # the one read-back of the check
    if codes.any():
        def diagnose(i):
            t = np.asarray(to_host(targets[i:i + 1]))[0]
            x = to_host(xs[i:i + 1])[0]
            return method(x, t, jax.random.fold_in(key, first_index + i)) if keyed_call else method(x, t)

        _raise_for(codes, targets, n_classes, n, diagnose)
    f = getattr(method, "model_fn", None)
    if getattr(method, "extras", {}).get("softmax_scores") and isinstance(out, np.ndarray) and f is not None:
        zero = np.flatnonzero(~out.reshape(n, -1).any(1))
        if zero.size:  # (rare) all-zero maps: warn for those whose softmax score saturates
            from xai_jax.attribution.common import SATURATED, warn_saturated
            rows = np.asarray(to_host(xs[zero[0]:zero[-1] + 1]))[zero - zero[0]]
            p = np.asarray(jax.vmap(lambda x, t: jax.nn.softmax(f(x))[t])(rows, np.asarray(to_host(targets))[zero]))
            zero = zero[p >= SATURATED]
            if zero.size:
                warn_saturated(getattr(method, "name", "method"), f"inputs {_listed(zero, n)}")
    return out
