"""Ties in saliency orderings, resolved without positional bias.

A metric that keeps the top-k positions of a map, or visits positions in decreasing
saliency, must decide between positions of EXACTLY equal saliency (float equality; e.g. the
zeros of a ReLU-ed Grad-CAM map). Breaking ties by index (lowest first, a stable argsort)
favours one end of the input. Here a metric is the expectation over uniformly random tie
orders:

- Top-k (`topk_keep_masks`): positions above the cut value are kept; of the g positions
  tied at the cut, r are kept. The expectation over the C(g, r) subsets is computed exactly
  (every subset, equal weights) when C(g, r) <= draws, else estimated from `draws` keyed
  uniform subsets.
- Orderings (`tie_broken_ranks`): each draw ranks positions by decreasing saliency with ties
  in a uniformly random order (keyed); curves are averaged over draws. (Exact enumeration
  of all orders is never cheap: a tie group of 6 has 720.)

Only inputs whose result depends on the tie order need draws: `ambiguous_topk` and
`has_ties` find them on the host, so the metric runs one order for every other input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln


def kth_largest(flat: np.ndarray, k: int) -> np.ndarray:
    """(N,) the k-th largest value of each row of flat (N, n)."""
    return -np.partition(-flat, k - 1, axis=1)[:, k - 1]


def ambiguous_topk(maps: np.ndarray, n_keep: int) -> np.ndarray:
    """(N,) True where the top-n_keep set depends on the tie order: more positions tie at
    the cut value than the cut keeps."""
    flat = maps.reshape(len(maps), -1)
    cut = kth_largest(flat, n_keep)[:, None]
    above = (flat > cut).sum(1)
    tied = (flat == cut).sum(1)
    return tied > n_keep - above


def has_ties(maps: np.ndarray) -> np.ndarray:
    """(N,) True where two positions of a map have exactly the same value."""
    flat = np.sort(maps.reshape(len(maps), -1), axis=1)
    return (np.diff(flat, axis=1) == 0).any(1)


def _binom(a: jax.Array, b: jax.Array) -> jax.Array:
    """C(a, b) as float32 (exact for the small values it is used with); 0 outside 0 <= b <= a."""
    ok = (b >= 0) & (b <= a)
    a_, b_ = jnp.maximum(a, 0).astype(jnp.float32), jnp.clip(b, 0, jnp.maximum(a, 0)).astype(jnp.float32)
    return jnp.where(ok, jnp.round(jnp.exp(gammaln(a_ + 1) - gammaln(b_ + 1) - gammaln(a_ - b_ + 1))), 0.0)


def _unrank_subset(j: jax.Array, g: jax.Array, r: jax.Array, slots: int) -> jax.Array:
    """(slots,) bool: the j-th (lexicographic) r-subset of {0..g-1}; requires g <= slots."""

    def body(s, carry):
        j, need, chosen = carry
        c_incl = _binom(g - s - 1, need - 1)  # subsets of the rest that include s
        active = (s < g) & (need > 0)
        take = active & (j < c_incl)
        j = jnp.where(active & ~take, j - c_incl, j)
        return j, need - take.astype(need.dtype), chosen.at[s].set(take)

    _, _, chosen = jax.lax.fori_loop(0, slots, body, (j.astype(jnp.float32), r, jnp.zeros(slots, bool)))
    return chosen


def topk_keep_masks(m: jax.Array, n_keep: int, key: jax.Array, draws: int) -> tuple[jax.Array, jax.Array]:
    """(masks (draws, *m.shape) bool, weights (draws,)): keep-sets of the n_keep highest
    positions of m whose weighted sum is the expectation over uniformly random tie orders.

    Exact (every one of the C(g, r) subsets of the tied group once, weight 1 / C(g, r)) when
    C(g, r) <= draws; otherwise `draws` keyed uniform subsets, weight 1 / draws each.
    """
    flat = m.ravel()
    n = flat.size
    cut = jnp.sort(flat)[n - n_keep]
    above = flat > cut
    tied = flat == cut
    g = tied.sum().astype(jnp.int32)
    r = (n_keep - above.sum()).astype(jnp.int32)
    log_count = gammaln(g + 1.0) - gammaln(r + 1.0) - gammaln(g - r + 1.0)
    exact = log_count <= np.log(draws) + 1e-4
    count = jnp.where(exact, jnp.round(jnp.exp(log_count)), float(draws))
    # tied positions in index order: slot s of the enumeration is position tied_pos[s]
    tied_pos = jnp.argsort(jnp.where(tied, jnp.arange(n), n + jnp.arange(n)))
    slots = min(n, draws)  # exact enumeration needs g <= C(g, r) <= draws

    def one(d):
        prio = jax.random.uniform(jax.random.fold_in(key, d), (n,))
        rank = jnp.argsort(jnp.argsort(jnp.where(tied, prio, 2.0)))
        random_keep = above | (tied & (rank < r))
        chosen = _unrank_subset(jnp.minimum(d, count - 1), g, r, slots)
        exact_keep = above | jnp.zeros(n, bool).at[tied_pos[:slots]].set(chosen & (jnp.arange(slots) < g))
        keep = jnp.where(r >= g, above | tied, jnp.where(exact, exact_keep, random_keep))  # r == g: no choice
        weight = jnp.where(d < count, 1.0 / count, 0.0)
        return keep.reshape(m.shape), weight

    return jax.vmap(one)(jnp.arange(draws))


def tie_broken_ranks(m: jax.Array, key: jax.Array, draws: int) -> jax.Array:
    """(draws, *m.shape) int32: rank of each position in decreasing saliency (0 = highest),
    ties in a uniformly random order per draw (keyed)."""
    flat = m.ravel()
    n = flat.size

    def one(d):
        perm = jax.random.permutation(jax.random.fold_in(key, d), n)
        order = perm[jnp.argsort(-flat[perm], stable=True)]  # random order within equal values
        return jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32)).reshape(m.shape)

    return jax.vmap(one)(jnp.arange(draws))


PAIRWISE_INDEX_RANKS_UP_TO = 128  # values per map: O(D^2) counts beat XLA:CPU's sort below this (2.4x at D=40)


def index_ranks(m: jax.Array) -> jax.Array:
    """Rank of each position in decreasing saliency, ties by index (the study's convention):
    rank_i = #{j: m_j > m_i} + #{j < i: m_j == m_i} (-0.0 == 0.0, as in sorting)."""
    flat = m.ravel()
    if flat.size <= PAIRWISE_INDEX_RANKS_UP_TO:
        idx = jnp.arange(flat.size)
        above = (flat[None, :] > flat[:, None]).astype(jnp.int32).sum(1)
        tied_before = ((flat[None, :] == flat[:, None]) & (idx[None, :] < idx[:, None])).astype(jnp.int32).sum(1)
        return (above + tied_before).astype(jnp.int32).reshape(m.shape)
    order = jnp.argsort(-flat, stable=True)
    return jnp.zeros(flat.size, jnp.int32).at[order].set(jnp.arange(flat.size, dtype=jnp.int32)).reshape(m.shape)
