"""Perturbation methods: RISE and occlusion, for 1-D (L, C) and 2-D (H, W, C) inputs.

- RISE (Petsiuk, Das & Saenko, BMVC 2018): N binary grids of `grid` cells per axis, each
  cell kept with probability p, upsampled (bi)linearly with reflected borders to
  (grid + 1) * cell pixels (cell = ceil(size / grid)) and cropped at a random shift in
  [0, cell) per axis, as the authors' code does (rise_masks); saliency = sum_i P_t(x * M_i) M_i / (N p), with
  P_t the target's softmax probability. Masks come from the key, chunk by chunk, and the
  N forward passes run as vmapped chunks inside a lax.scan (never a Python loop).
- Occlusion (Zeiler & Fergus, ECCV 2014): slide a window over the spatial axes with a
  stride, replace it by a baseline value, and credit each position with the mean drop of
  the target score over the windows that cover it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.common import (
    as_model_function,
    channels_last,
    check_chunk_size,
    check_float,
    check_positive_int,
    compensated_add,
    explanation_method,
    pairwise_sum,
    resolve_chunk,
    score_transform,
)
from xai_jax.checks import check_int
from xai_jax.method import method_factory


def _spatial(x: jax.Array) -> tuple[int, ...]:
    if x.ndim not in (2, 3):
        raise ValueError(f"x must be (length, channels) or (H, W, channels), got shape {tuple(x.shape)}")
    return tuple(x.shape[:-1])


def upsample_matrix(size: int, cell: int) -> np.ndarray:
    """(U, size) matrix, U = (size + 1) * cell, of the linear upsampling that RISE's reference
    code does with skimage.transform.resize(order=1, mode="reflect", anti_aliasing=False):
    output pixel u samples the input at q = (u + 1/2) size / U - 1/2 (pixel centres), linear
    between floor(q) and floor(q) + 1, an index beyond the edges mirrored about the edge
    pixel (skimage's "reflect", scipy's "mirror": -1 -> 1, size -> size - 2). float32."""
    out = (size + 1) * cell
    q = (np.arange(out) + 0.5) * size / out - 0.5
    low = np.floor(q).astype(np.int64)
    frac = q - low

    def mirror(i):
        if size == 1:
            return np.zeros_like(i)
        period = 2 * (size - 1)
        i = np.abs(i) % period
        return np.where(i > size - 1, period - i, i)

    m = np.zeros((out, size))
    rows = np.arange(out)
    np.add.at(m, (rows, mirror(low)), 1.0 - frac)
    np.add.at(m, (rows, mirror(low + 1)), frac)
    return m.astype(np.float32)


def rise_cells(spatial: tuple[int, ...], grid: int) -> tuple[int, ...]:
    """RISE's cell size per axis: ceil(size / grid) pixels."""
    return tuple(math.ceil(d / grid) for d in spatial)


def masks_from_cells(cells: jax.Array, shifts: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
    """RISE masks (n, *spatial) from binary cells (n, grid[, grid]) and shifts (n, ndim) in
    [0, cell): each grid upsampled linearly to (grid + 1) * cell per axis (upsample_matrix)
    and cropped to `spatial` at its shift, as Petsiuk et al.'s generate_masks does."""
    grid = cells.shape[1]
    cell = rise_cells(spatial, grid)
    mats = [jnp.asarray(upsample_matrix(grid, c)) for c in cell]

    def one(g, shift):
        rows = [jax.lax.dynamic_slice_in_dim(m, shift[i], d) for i, (m, d) in enumerate(zip(mats, spatial))]
        if len(spatial) == 1:
            return rows[0] @ g
        return rows[0] @ g @ rows[1].T

    return jax.vmap(one)(cells, shifts)


def rise_masks(key: jax.Array, n: int, spatial: tuple[int, ...], grid: int, p: float) -> jax.Array:
    """n RISE masks (n, *spatial) in [0, 1] (Petsiuk et al.'s reference generate_masks): `grid`
    binary cells per spatial axis, each 1 with probability p, upsampled linearly with
    reflected borders to (grid + 1) * cell pixels per axis, cell = ceil(size / grid), and
    cropped at a shift drawn uniformly from [0, cell) per axis. Draws: k_cells, k_shift =
    jax.random.split(key); cells = bernoulli(k_cells, p, (n, grid[, grid])); shifts =
    randint(k_shift, (n, ndim), 0, cell)."""
    k_cells, k_shift = jax.random.split(key)
    cells = jax.random.bernoulli(k_cells, p, (n, *([grid] * len(spatial)))).astype(jnp.float32)
    shifts = jax.random.randint(k_shift, (n, len(spatial)), 0, jnp.asarray(rise_cells(spatial, grid)))
    return masks_from_cells(cells, shifts, spatial)


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
    grid 8 (5-sample cells) suffice (xai_jax.study.suite.method_suite). chunk_size: masks drawn
    at a time (a key's masks depend on it); their forwards run in passes of at most
    PASS_ELEMENTS["forward"] input elements (attribution.common: all at once for small inputs,
    27 at 224 x 224 x 3). fill: value where a mask is 0 (x * M + fill * (1 - M)). channel_axis: x's
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

        # the chunk's masks are drawn together (a key's masks depend on chunk_size); their forwards
        # run in passes of PASS_ELEMENTS["forward"] input elements (27 at 224 x 224 x 3)
        per_pass = resolve_chunk("auto", chunk_size, x.size, "forward")
        masked_score = lambda m: s(g(x * m[..., None] + fill * (1 - m[..., None])))[target]  # noqa: E731

        def body(state, i):
            masks = rise_masks(jax.random.fold_in(key, i), chunk_size, spatial, grid, p)
            valid = (i * chunk_size + jnp.arange(chunk_size)) < n_masks
            scores = jax.vmap(masked_score)(masks) if per_pass is None else \
                jax.lax.map(masked_score, masks, batch_size=per_pass)
            return compensated_add(state, pairwise_sum(masks, jnp.where(valid, scores, 0.0))), None

        zeros = jnp.zeros(spatial, x.dtype)
        (total, _), _ = jax.lax.scan(body, (zeros, zeros), jnp.arange(n_chunks))
        return total / (n_masks * p)

    return explanation_method(rise_fn, f, keyed=True, name="rise", precision=precision)


def _window_sums(v, axis: int, size: int, window: int, stride: int):
    """out[..., p, ...] = sum of v[..., k, ...] over the windows k (along `axis`, starting at
    k * stride, `window` long) that cover position p < size: at most ceil(window / stride)
    of them, the last one k = min(p // stride, n - 1) and those before it. O(size) memory per
    slice (the map of a window grid is separable over the axes). NumPy in, NumPy out."""
    xp = np if isinstance(v, np.ndarray) else jnp
    n = v.shape[axis]
    pos = np.arange(size)
    last = np.minimum(pos // stride, n - 1)
    shape = [size if i == axis else 1 for i in range(v.ndim)]
    out = 0
    for j in range(-(-window // stride)):
        k = last - j
        valid = ((k >= 0) & (k * stride + window > pos)).reshape(shape)
        out = out + xp.where(valid, xp.take(v, np.clip(k, 0, n - 1), axis=axis), 0)
    return out


@method_factory(output="spatial")
def occlusion(
    f: Callable[[jax.Array], jax.Array],
    *,
    window: int | tuple[int, ...],
    stride: int | tuple[int, ...] | None = None,
    baseline: float = 0.0,
    score: str = "logit",
    chunk_size: int | str | None = "auto",
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
    channel_axis: x's channel axis (-1; 0 for channels-first models). chunk_size: windows per
    vmapped pass (None: all; "auto", the default: all when n_windows * x.size <=
    PASS_ELEMENTS["forward"] (2**22), else 2**22 // x.size). Memory is O(chunk_size * x.size):
    the map is summed window by window, with no (windows x positions) buffer.
    """
    f = as_model_function(f)
    s = score_transform(score)
    baseline = check_float(baseline, "baseline")
    chunk_size = check_chunk_size(chunk_size)

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
        counts = [-(-(d - w) // t) + 1 for d, w, t in zip(spatial, win, st)]  # windows per axis
        starts = np.stack(np.meshgrid(*[np.arange(c) * t for c, t in zip(counts, st)], indexing="ij"),
                          -1).reshape(-1, len(spatial)).astype(np.int32)  # (n_windows, ndim)
        base = s(g(x))[target]

        def drop(start):
            cover = jnp.ones(spatial, bool)  # built from the start: no (n_windows, *spatial) buffer
            for a, (d, w) in enumerate(zip(spatial, win)):
                pos = jnp.arange(d).reshape([d if i == a else 1 for i in range(len(spatial))])
                cover = cover & (pos >= start[a]) & (pos < start[a] + w)
            return base - s(g(jnp.where(cover[..., None], baseline, x)))[target]

        starts_j = jnp.asarray(starts)
        chunk = resolve_chunk(chunk_size, len(starts), x.size, "forward")
        drops = jax.vmap(drop)(starts_j) if chunk is None else jax.lax.map(drop, starts_j, batch_size=chunk)
        total, count = drops.reshape(counts), np.ones(counts)
        for a, (d, w, t) in enumerate(zip(spatial, win, st)):
            total = _window_sums(total, a, d, w, t)
            count = _window_sums(count, a, d, w, t)
        return jnp.where(count > 0, total / np.maximum(count, 1), 0.0)

    return explanation_method(occ, f, name="occlusion", precision=precision)
