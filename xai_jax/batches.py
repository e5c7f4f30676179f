"""Fixed-size padded batches: the one loop every batched runner of the library shares.

It sits below models/train and attribution so that every layer can use it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm


def run_in_batches(fn: Callable, arrays, batch_size: int, *, args: tuple = (), with_index: bool = False,
                   progress: bool = False, desc: str = "batches"):
    """fn over the leading axis of `arrays` in fixed-size batches, the last one padded with
    copies of input 0 (dropped afterwards), so one compiled program serves every batch.
    with_index appends each row's global index; results are concatenated NumPy pytrees."""
    n = len(arrays[0])
    if n == 0 or batch_size < 1:
        raise ValueError(f"run_in_batches needs at least one input and batch_size >= 1, got {n} and {batch_size}")
    outs = []
    for lo in tqdm(range(0, n, batch_size), disable=not progress, desc=desc, unit="batch"):
        idx = np.arange(lo, lo + batch_size)
        take = np.where(idx < n, idx, 0)
        batch = [jnp.asarray(a[take]) for a in arrays] + ([jnp.asarray(idx)] if with_index else [])
        outs.append(fn(*batch, *args))
    return jax.tree.map(lambda *parts: np.concatenate([np.asarray(p) for p in parts])[:n], *outs)


def program_cache(owner) -> dict:
    """The dict of compiled programs kept on `owner` (a function or callable object) itself, so
    that they live exactly as long as it does. (A module-level weak dict keyed on the owner
    would never free it: each program's closure refers back to the owner.) An owner that takes
    no attributes gets a fresh dict: no caching, nothing kept."""
    try:
        return vars(owner).setdefault("_xai_jax_programs", {})
    except TypeError:  # no __dict__
        return {}
