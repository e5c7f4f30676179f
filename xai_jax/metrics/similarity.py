"""Similarity of explanation maps, row by row: Spearman, Pearson, SSIM (the randomisation
metrics' comparisons; Quantus' similarity_func). One implementation each, in JAX."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.batching import run_in_batches
from xai_jax.checks import check_choice, check_int

SIMILARITIES = ("spearman", "pearson", "ssim")
SSIM_WINDOW = 7  # skimage's default win_size, which Quantus' ssim uses



def _degenerate(a: jax.Array, b: jax.Array, value: jax.Array) -> jax.Array:
    """value, unless a row is constant: then 1 if the rows are identical, else 0."""
    constant = (a.max() == a.min()) | (b.max() == b.min())
    return jnp.where(constant, jnp.where(jnp.all(a == b), 1.0, 0.0), value)


def _scaled(v: jax.Array) -> jax.Array:
    """v / max|v| (rows of tiny or huge values would otherwise under/overflow when squared)."""
    m = jnp.abs(v).max()
    return v / jnp.where(m > 0, m, 1.0)


def pearson_row(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pearson correlation of two flat vectors (see map_similarity for constant rows)."""
    ac, bc = _scaled(a), _scaled(b)
    ac, bc = ac - ac.mean(), bc - bc.mean()
    den = jnp.sqrt((ac**2).sum() * (bc**2).sum())
    r = jnp.clip((ac * bc).sum() / jnp.where(den > 0, den, 1.0), -1.0, 1.0)
    return _degenerate(a, b, jnp.where(den > 0, r, 0.0))


PAIRWISE_RANKS_UP_TO = 128  # values per map: O(D^2) comparisons beat sort + search below this (CPU: 3x at D=40)


def average_ranks(v: jax.Array) -> jax.Array:
    """1-based ranks, ties sharing their average rank (scipy.stats.rankdata 'average')."""
    if v.size <= PAIRWISE_RANKS_UP_TO:
        below = (v[None, :] < v[:, None]).astype(jnp.int32).sum(1)  # int32 counts: 1.3x faster than bool sums
        at_or_below = (v[None, :] <= v[:, None]).astype(jnp.int32).sum(1)
        return (below + at_or_below + 1).astype(jnp.float32) / 2
    s = jnp.sort(v)
    lo = jnp.searchsorted(s, v, side="left")
    hi = jnp.searchsorted(s, v, side="right")
    return (lo + hi + 1).astype(jnp.float32) / 2


def spearman_row(a: jax.Array, b: jax.Array) -> jax.Array:
    """Spearman rank correlation: Pearson of the average ranks."""
    return _degenerate(a, b, pearson_row(average_ranks(a), average_ranks(b)))


def ssim_row(a: jax.Array, b: jax.Array) -> jax.Array:
    """SSIM of two flat vectors as skimage.metrics.structural_similarity computes it with
    Quantus' arguments: uniform window of 7, K1 = 0.01, K2 = 0.03, sample covariance,
    data_range = max - min over both rows, mean over the windows that fit (skimage crops
    the padded border). Two identical constant rows (data_range 0): 1."""
    w = SSIM_WINDOW
    box = jnp.ones(w, jnp.float32) / w
    mean = lambda v: jnp.convolve(v, box, mode="valid")  # noqa: E731
    ux, uy = mean(a), mean(b)
    cov = w / (w - 1)
    vx = cov * (mean(a * a) - ux * ux)
    vy = cov * (mean(b * b) - uy * uy)
    vxy = cov * (mean(a * b) - ux * uy)
    r = jnp.maximum(a.max(), b.max()) - jnp.minimum(a.min(), b.min())
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return jnp.where(r > 0, s.mean(), 1.0)


_ROW_FNS = {"spearman": spearman_row, "pearson": pearson_row, "ssim": ssim_row}
rank_rows = jax.jit(jax.vmap(average_ranks))


@jax.jit
def spearman_ranked(a: jax.Array, ranks_a: jax.Array, b: jax.Array) -> jax.Array:
    return jax.vmap(lambda x, r, y: _degenerate(x, y, pearson_row(r, average_ranks(y))))(a, ranks_a, b)


_BATCHED = {kind: jax.jit(jax.vmap(fn)) for kind, fn in _ROW_FNS.items()}


def check_similarity(kind: Any, size: int) -> str:
    check_choice(kind, "similarity", SIMILARITIES)
    if kind == "ssim" and size < SSIM_WINDOW:
        raise ValueError(f"similarity='ssim' needs maps of at least {SSIM_WINDOW} values (its window), "
                         f"got {size}")
    return kind


SIMILARITY_VALUES_PER_CALL = 1 << 22  # map values per jitted similarity call (rows are cheap: few large calls)


def similarities(a: np.ndarray, b: np.ndarray, kind: str, batch_size: int) -> np.ndarray:
    """Checked-elsewhere rows (N, D) x (N, D) -> (N,) in fixed-size jitted batches of at least
    batch_size rows (more when the rows are small: up to SIMILARITY_VALUES_PER_CALL values)."""
    a = np.ascontiguousarray(a.reshape(len(a), -1), np.float32)
    b = np.ascontiguousarray(b.reshape(len(b), -1), np.float32)
    rows = max(batch_size, SIMILARITY_VALUES_PER_CALL // max(a.shape[1], 1))
    return run_in_batches(_BATCHED[kind], (a, b), min(rows, len(a)))


def map_similarity(a, b, kind: str = "spearman", *, batch_size: int = 1000) -> np.ndarray:
    """Similarity of each pair of maps, rows of a (N, ...) and b (N, ...) flattened: (N,).

    kind: "spearman" (Pearson of average ranks, as scipy.stats.spearmanr), "pearson", or
    "ssim" (1-D SSIM of the flattened maps with a window of 7, as Quantus' `ssim` applies
    skimage to batched rows; maps need >= 7 values).
    A correlation is undefined when a row is constant (scipy returns NaN); here it is 1.0
    when the two rows are identical (the explanation did not change) and 0.0 otherwise (no
    rank relation to measure). Maps must be finite and equally shaped.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim < 1 or len(a) == 0:
        raise ValueError(f"a and b must be non-empty batches of the same shape, got {a.shape} and {b.shape}")
    for name, v in (("a", a), ("b", b)):
        if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)) or v.dtype == bool:
            raise TypeError(f"{name} must be a numeric array, got dtype {v.dtype}")
        bad = ~np.isfinite(v.reshape(len(v), -1)).all(1)
        if bad.any():
            raise ValueError(f"{name} contains NaN or inf values (rows {np.flatnonzero(bad)[:5].tolist()})")
    kind = check_similarity(kind, int(np.prod(a.shape[1:])))
    return similarities(a, b, kind, check_int(batch_size, "batch_size", 1))


