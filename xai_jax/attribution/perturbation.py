"""Perturbation methods: RISE and occlusion, for 1-D (L, C) and 2-D (H, W, C) inputs.

- RISE (Petsiuk, Das & Saenko, BMVC 2018): N binary grids of `grid` cells per axis, each
  cell kept with probability p, upsampled (bi)linearly to (grid + 1) * cell pixels and
  cropped at a random shift in [0, cell); saliency = sum_i P_t(x * M_i) M_i / (N p), with
  P_t the target's softmax probability. Masks come from the key, chunk by chunk, and the
  N forward passes run as vmapped chunks inside a lax.scan (never a Python loop).
- Occlusion (Zeiler & Fergus, ECCV 2014): slide a window over the spatial axes with a
  stride, replace it by a baseline value, and credit each position with the mean drop of
  the target score over the windows that cover it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.common import (
    as_model_function,
    channels_last,
    check_float,
    check_positive_int,
    explanation_method,
    score_transform,
)
from xai_jax.checks import check_int, check_optional_int
from xai_jax.method import method_factory


def _spatial(x: jax.Array) -> tuple[int, ...]:
    if x.ndim not in (2, 3):
        raise ValueError(f"x must be (length, channels) or (H, W, channels), got shape {tuple(x.shape)}")
    return tuple(x.shape[:-1])


def rise_masks(key: jax.Array, n: int, spatial: tuple[int, ...], grid: int, p: float) -> jax.Array:
    """n RISE masks (n, *spatial) in [0, 1]."""
    cells = tuple(math.ceil(s / grid) for s in spatial)
    k_grid, k_shift = jax.random.split(key)
    grids = jax.random.bernoulli(k_grid, p, (n, *([grid + 1] * len(spatial)))).astype(jnp.float32)
    big = tuple((grid + 1) * c for c in cells)
    shifts = jax.random.randint(k_shift, (n, len(spatial)), 0, jnp.asarray(cells))

    def one(g, shift):
        up = jax.image.resize(g, big, method="linear")
        return jax.lax.dynamic_slice(up, tuple(shift), spatial)

    return jax.vmap(one)(grids, shifts)


@method_factory(output="spatial", signed=False)
def rise(
    f: Callable[[jax.Array], jax.Array],
    *,
    n_masks: int = 8000,
    grid: int = 7,
    p: float = 0.5,
    chunk_size: int = 250,
    score: str = "softmax",
    fill: float = 0.0,
    channel_axis: int = -1,
    precision: str | None = None,
) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """Returns rise_fn(x, target, key) -> saliency with x's spatial shape.

    n_masks: N; grid: cells per spatial axis. The defaults are the study's for images
    (8,000 masks, 7x7 cells, p = 0.5); for 40-sample MNIST-1D signals 2,000 masks with
    grid 8 (5-sample cells) suffice (xai_jax.study.suite.method_suite). chunk_size: masks per vmapped
    forward batch. fill: value where a mask is 0 (x * M + fill * (1 - M)). channel_axis: x's
    channel axis (-1; 0 for channels-first models such as Equinox's).
    """
    f = as_model_function(f)
    n_masks = check_positive_int(n_masks, "n_masks")
    grid = check_positive_int(grid, "grid")
    chunk_size = min(check_positive_int(chunk_size, "chunk_size"), n_masks)
    p = check_float(p, "p", low=0.0, high=1.0, low_open=True)
    fill = check_float(fill, "fill")
    s = score_transform(score)
    n_chunks = -(-n_masks // chunk_size)

    channel_axis = check_int(channel_axis, "channel_axis")

    def rise_fn(x, target, key):
        g, x = channels_last(f, x, channel_axis)
        spatial = _spatial(x)
        if grid > min(spatial):
            raise ValueError(f"grid {grid} exceeds the input's spatial size {spatial}")

        def body(total, i):
            masks = rise_masks(jax.random.fold_in(key, i), chunk_size, spatial, grid, p)
            valid = (i * chunk_size + jnp.arange(chunk_size)) < n_masks
            scores = jax.vmap(lambda m: s(g(x * m[..., None] + fill * (1 - m[..., None])))[target])(masks)
            return total + jnp.tensordot(jnp.where(valid, scores, 0.0), masks, axes=1), None

        total, _ = jax.lax.scan(body, jnp.zeros(spatial, x.dtype), jnp.arange(n_chunks))
        return total / (n_masks * p)

    return explanation_method(rise_fn, f, keyed=True, name="rise", precision=precision)


@method_factory(output="spatial")
def occlusion(
    f: Callable[[jax.Array], jax.Array],
    *,
    window: int | tuple[int, ...],
    stride: int | tuple[int, ...] | None = None,
    baseline: float = 0.0,
    score: str = "logit",
    chunk_size: int | None = None,
    channel_axis: int = -1,
    precision: str | None = None,
    allow_gaps: bool = False,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Returns occ(x, target) -> map with x's spatial shape: mean score drop of the windows
    covering each position (Zeiler & Fergus 2014).

    window, stride: positive ints, or one positive int per spatial axis (stride defaults
    to window). baseline: the finite value a window is replaced by. Windows start at 0,
    stride, 2 stride, ... along each axis, ceil((size - window) / stride) + 1 of them, the last
    one truncated at the input's edge when the stride does not divide size - window: every
    position is covered, as in Captum's `Occlusion`. A stride larger than the window would
    leave positions no window covers (their map 0): a ValueError, unless allow_gaps=True.
    channel_axis: x's channel axis (-1; 0 for channels-first models).
    """
    f = as_model_function(f)
    s = score_transform(score)
    baseline = check_float(baseline, "baseline")
    chunk_size = check_optional_int(chunk_size, "chunk_size")

    def sizes(v, name):
        if isinstance(v, (tuple, list)):
            if not v:
                raise ValueError(f"{name} must be a positive int or a non-empty tuple of them, got {v!r}")
            return tuple(check_positive_int(a, name) for a in v)
        return check_positive_int(v, name)

    window = sizes(window, "window")
    stride = sizes(stride, "stride") if stride is not None else window

    def per_axis(v, name, ndim):
        v = (v,) * ndim if isinstance(v, int) else v
        if len(v) != ndim:
            raise ValueError(f"{name} must have {ndim} entries for this input, got {v}")
        return v

    channel_axis = check_int(channel_axis, "channel_axis")
    if not isinstance(allow_gaps, bool):
        raise TypeError(f"allow_gaps must be True or False, got {type(allow_gaps).__name__} {allow_gaps!r}")

    def occ(x, target):
        g, x = channels_last(f, x, channel_axis)
        spatial = _spatial(x)
        win = per_axis(window, "window", len(spatial))
        if any(w > d for w, d in zip(win, spatial)):
            raise ValueError(f"window {win} is larger than the input's spatial size {spatial}")
        st = per_axis(stride, "stride", len(spatial))
        if not allow_gaps and any(t > w for t, w in zip(st, win)):
            raise ValueError(f"stride {st} is larger than window {win}: positions between the windows would be "
                             f"covered by none and read 0; use stride <= window, or allow_gaps=True")
        starts = np.array(list(itertools.product(*[np.arange(-(-(d - w) // t) + 1) * t
                                                   for d, w, t in zip(spatial, win, st)])))
        grids = np.meshgrid(*[np.arange(d) for d in spatial], indexing="ij")
        covers = np.stack([
            np.all([(g >= a) & (g < a + w) for g, a, w in zip(grids, start, win)], axis=0) for start in starts
        ]).astype(np.float32)  # (n_windows, *spatial), static
        base = s(g(x))[target]

        def drop(cover):
            xo = jnp.where(cover[..., None] > 0, baseline, x)
            return base - s(g(xo))[target]

        covers_j = jnp.asarray(covers)
        drops = jax.lax.map(drop, covers_j, batch_size=chunk_size) if chunk_size else jax.vmap(drop)(covers_j)
        count = covers.sum(0)
        total = jnp.tensordot(drops, covers_j, axes=1)
        return jnp.where(count > 0, total / np.maximum(count, 1), 0.0)

    return explanation_method(occ, f, name="occlusion", precision=precision)
