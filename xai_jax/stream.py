"""Sources of batches, fixed-size shards and the on-disk format of streamed runs.

A *source* is what `explain`/`evaluate` take besides an in-memory array: a re-iterable
collection of batches, so that any data size fits in constant memory:

- a list or tuple of batches;
- a tensorflow-datasets / tf.data dataset (iterated with `as_numpy_iterator()`);
- a zero-argument callable that returns a fresh iterator over batches.

Each batch is an array (N_b, ...), an `(x, y)` pair, or a dict with "image" and "label"
(also "x"/"y", "input"/"target"). A one-pass iterator or generator is refused (a run must be
able to read its data again to resume). The batches are re-cut into shards of exactly
`shard_size` inputs (the last one shorter), whatever the source's batch sizes, so shard k
always holds inputs [k * shard_size, (k + 1) * shard_size).

On disk (a directory):

    run.json          the run's settings (written first; a resumed run must match them)
    shard-000000.npz  one file per shard: the arrays of inputs [start, stop); written to a
                      temporary name and renamed, so a killed run leaves whole shards only
    index.json        written last: the shards, their rows and the total count

The .npz files are written deterministically (fixed zip timestamps, sorted members), so a
resumed run gives bitwise the same files as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

SHARD = "shard-{:06d}.npz"
LABEL_KEYS = (("image", "label"), ("x", "y"), ("input", "target"), ("inputs", "targets"))


def is_source(xs: Any) -> bool:
    """Whether xs is a source of batches (not one in-memory array)."""
    if isinstance(xs, np.ndarray) or hasattr(xs, "__jax_array__") or type(xs).__module__.startswith("jax"):
        return False
    return isinstance(xs, (list, tuple)) or callable(xs) or hasattr(xs, "as_numpy_iterator") or \
        isinstance(xs, Iterator) or hasattr(xs, "__iter__")


def _split(batch: Any, who: str, i: int) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(batch, Mapping):
        for kx, ky in LABEL_KEYS:
            if kx in batch:
                return np.asarray(batch[kx]), (np.asarray(batch[ky]) if ky in batch else None)
        raise ValueError(f"{who}: batch {i} is a dict with keys {sorted(batch)}; expected 'image' (and 'label'), "
                         f"'x' (and 'y') or 'input' (and 'target')")
    if isinstance(batch, tuple):
        if len(batch) != 2:
            raise ValueError(f"{who}: batch {i} is a tuple of {len(batch)} items; expected an array or an (x, y) pair")
        return np.asarray(batch[0]), np.asarray(batch[1])
    return np.asarray(batch), None


def batches(source: Any, who: str = "xs") -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(x, y or None) per batch of a source (see the module docstring)."""
    if isinstance(source, Iterator):
        raise TypeError(f"{who} is a one-pass iterator ({type(source).__name__}); pass a list of batches, a dataset, "
                        f"or a zero-argument callable that returns a fresh iterator (a run must be able to re-read "
                        f"its data to resume)")
    if hasattr(source, "as_numpy_iterator"):
        it: Iterable = source.as_numpy_iterator()
    elif callable(source):
        it = source()
        if not hasattr(it, "__iter__"):
            raise TypeError(f"{who}: the callable returned {type(it).__name__}, not an iterator over batches")
    elif isinstance(source, (list, tuple)):
        it = source
    else:
        raise TypeError(f"{who} must be an array (N, ...), a list of batches, a dataset or a zero-argument "
                        f"callable returning an iterator; got {type(source).__name__}")
    shape = None
    for i, batch in enumerate(it):
        x, y = _split(batch, who, i)
        if x.ndim < 2:
            raise ValueError(f"{who}: batch {i} has shape {x.shape}; expected (batch, ...) inputs")
        if shape is None:
            shape = x.shape[1:]
        elif x.shape[1:] != shape:
            raise ValueError(f"{who}: batch {i} holds inputs of shape {x.shape[1:]}, batch 0 of {shape}")
        if y is not None and (y.ndim != 1 or len(y) != len(x)):
            raise ValueError(f"{who}: batch {i} has labels of shape {y.shape} for {len(x)} inputs; expected "
                             f"({len(x)},)")
        yield x, y


def shards(source: Any, shard_size: int, who: str = "xs") -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """(k, x, y) with exactly shard_size inputs per shard (the last may be shorter)."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray | None] = []
    held = 0
    k = 0
    for x, y in batches(source, who):
        xs.append(x)
        ys.append(y)
        held += len(x)
        while held >= shard_size:
            cx = np.concatenate(xs)
            cy = None if any(v is None for v in ys) else np.concatenate(ys)
            yield k, cx[:shard_size], None if cy is None else cy[:shard_size]
            k += 1
            xs, ys = [cx[shard_size:]], [None if cy is None else cy[shard_size:]]
            held -= shard_size
    if held:
        cy = None if any(v is None for v in ys) else np.concatenate(ys)
        yield k, np.concatenate(xs), cy


def fingerprint(x: np.ndarray) -> str:
    """sha1 of an array's dtype, shape and bytes (a shard's inputs, checked on resume)."""
    h = hashlib.sha1(f"{x.dtype}{x.shape}".encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """np.savez, but byte-for-byte deterministic (fixed timestamps, sorted names) and atomic
    (written under a temporary name, then renamed)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as fh:
                a = np.asarray(arrays[name])
                np.lib.format.write_array(fh, a if a.flags.c_contiguous else a.copy(), allow_pickle=False)
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with sorted keys, written atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def start_run(directory: str | os.PathLike, settings: Mapping[str, Any], resume: bool, who: str) -> Path:
    """Creates the run directory or checks that an existing run has the same settings."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    run = d / "run.json"
    settings = json.loads(json.dumps(settings, sort_keys=True))
    if run.exists():
        old = json.loads(run.read_text())
        if not resume:
            raise FileExistsError(f"{who}: {d} already holds a run; pass resume=True to continue it or choose an "
                                  f"empty directory")
        differ = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if differ:
            detail = "; ".join(f"{k}: {old.get(k)!r} before, {settings.get(k)!r} now" for k in differ)
            raise ValueError(f"{who}: {d} holds a run with other settings ({detail}): choose another directory "
                             f"or delete it")
    else:
        write_json(run, settings)
    for partial in d.glob("*.partial"):  # a killed writer's leftovers
        partial.unlink()
    return d


def done_shards(d: Path) -> set[int]:
    return {int(p.name[6:12]) for p in d.glob("shard-*.npz")}


def load_shard(d: Path, k: int) -> dict[str, np.ndarray]:
    with np.load(d / SHARD.format(k)) as z:
        return {name: z[name] for name in z.files}


def process_info() -> tuple[int, int]:
    """(this process's index, process count) under jax.distributed (else (0, 1))."""
    import jax
    return jax.process_index(), jax.process_count()


def barrier(name: str) -> None:
    """Waits for every process (a no-op for one process)."""
    import jax
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def finish_run(d: Path, extra: Mapping[str, Any], who: str) -> dict[str, Any]:
    """After every process wrote its shards: the index (process 0 writes it)."""
    barrier(f"{who}: shards written")
    ks = sorted(done_shards(d))
    if ks != list(range(len(ks))):
        missing = sorted(set(range(max(ks) + 1)) - set(ks)) if ks else []
        raise RuntimeError(f"{who}: shards {missing[:5]} are missing in {d}")
    rows = []
    for k in ks:
        with np.load(d / SHARD.format(k)) as z:
            rows.append(int(z["index"].shape[0]))
    starts = np.concatenate([[0], np.cumsum(rows)]).astype(int).tolist()
    index = {"format": "xai_jax/1", **extra, "n": starts[-1],
             "shards": [{"file": SHARD.format(k), "start": starts[i], "stop": starts[i + 1]} for i, k in enumerate(ks)]}
    if process_info()[0] == 0:
        write_json(d / "index.json", index)
    barrier(f"{who}: index written")
    return index


Opener = Callable[[], Iterator]
