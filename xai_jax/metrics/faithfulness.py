"""Model-truth metrics: the study's drop/increase rates and deletion/insertion AUC.

Saliency maps have the input's spatial shape (N, *spatial); an attribution shaped like x
is collapsed over channels first (xai_jax.spatial_map). All masked inputs of a batch are
evaluated in one vmapped, jitted call per batch of inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from xai_jax.attribution.common import PASS_ELEMENTS, class_probabilities, current_outputs, score_transform
from xai_jax.batching import program_cache, run_in_batches
from xai_jax.checks import (
    at_precision,
    check_array,
    check_choice,
    check_float,
    check_int,
    check_key,
    check_precision,
    is_concrete,
    precision_scope,
)
from xai_jax.metrics.layout import with_channel_axis
from xai_jax.metrics.shared import check_scores as _check_scores
from xai_jax.metrics.shared import prepare as _prepare
from xai_jax.metrics.ties import (
    ambiguous_topk,
    has_ties,
    index_ranks,
    tie_broken_ranks,
    topk_keep_masks,
)


def _keep_count(k: float, n_pos: int) -> int:
    """round(k * n_pos) positions, at least one (a clear error names k otherwise)."""
    k = check_float(k, "k", low=0.0, high=1.0, low_open=True)
    n_keep = int(round(k * n_pos))
    if n_keep < 1:
        raise ValueError(f"k={k:g} keeps round(k * {n_pos}) = 0 of the {n_pos} spatial positions; "
                         f"use k >= {1.0 / n_pos:.4g}")
    return n_keep




def _runner(f: Callable, settings: tuple, make_one: Callable[[], Callable], mesh, n_args: int) -> Callable:
    """jit(vmap(one)), or sharded over the mesh's "data" axis, cached per (f, settings) so
    that measuring many methods' maps with one model compiles once."""
    cache = program_cache(f)
    tag = (*settings, id(mesh) if mesh is not None else None)
    if tag not in cache:
        one = make_one()
        if mesh is None:
            cache[tag] = jax.jit(jax.vmap(one))
        else:
            from xai_jax.distributed import sharded_vmap

            cache[tag] = sharded_vmap(one, mesh, n_args)
    return cache[tag]


def _in_batches(fn: Callable, arrays: tuple[np.ndarray, ...], batch_size: int, mesh=None,
                of: int | None = None) -> list[np.ndarray]:
    """Runs a batched fn over the leading axis of `arrays` in fixed-size padded batches of
    min(batch_size, of) rows (of: the size of the whole set `arrays` was taken from, so that
    every subset of it runs through the same compiled shape)."""
    bs = min(batch_size, of if of is not None else arrays[0].shape[0])
    sharding = None
    if mesh is not None:
        bs = -(-bs // mesh.devices.size) * mesh.devices.size
        sharding = NamedSharding(mesh, P("data"))
    return list(run_in_batches(fn, arrays, bs, sharding=sharding))


def _split_run(run_plain: Callable, run_tied: Callable, tied: np.ndarray, arrays: tuple, batch_size: int,
               tie_draws: int, mesh, precision: str | None) -> list[np.ndarray]:
    """Runs the inputs without ties through run_plain and those with ties through run_tied
    (which averages over tie_draws orders, so its batches hold batch_size / tie_draws inputs
    to bound memory), at the requested matmul precision; results in input order."""
    n = len(arrays[0])
    parts: list[tuple[np.ndarray, list[np.ndarray]]] = []
    with precision_scope(precision):
        for fn, sel, bs in ((run_plain, ~tied, batch_size), (run_tied, tied, max(1, batch_size // tie_draws))):
            idx = np.flatnonzero(sel)
            if idx.size:
                parts.append((idx, _in_batches(fn, tuple(a[idx] for a in arrays), bs, mesh, of=n)))
    outs = []
    for j in range(len(parts[0][1])):
        first = parts[0][1][j]
        full = np.empty((n, *first.shape[1:]), first.dtype)
        for idx, res in parts:
            full[idx] = res[j]
        outs.append(full)
    return outs


def _key_data(key, n: int) -> np.ndarray:
    """(n, ...) raw key data of `key` (default jax.random.key(0)) for per-input fold_in."""
    key = jax.random.key(0) if key is None else check_key(key)
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    data = np.asarray(jax.random.key_data(key))
    return np.broadcast_to(data, (n, *data.shape)).copy()


def _input_key(key_data: jax.Array, index: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.wrap_key_data(key_data), index)


def top_k_mask(saliency: jax.Array, k: float) -> jax.Array:
    """1 at the round(k * size) positions of highest saliency, ties broken by position (the
    study's convention; drop_increase's default resolves ties without that bias)."""
    check_array(saliency, "saliency", float_only=False)
    if saliency.size == 0:
        raise ValueError("saliency is empty: top_k_mask needs at least one position")
    if is_concrete(saliency) and not np.isfinite(np.asarray(saliency)).all():
        raise ValueError("saliency contains NaN or inf values")
    flat = saliency.ravel()
    n_keep = _keep_count(k, flat.size)
    order = jnp.argsort(-flat, stable=True)
    keep = jnp.zeros(flat.size, bool).at[order[:n_keep]].set(True)
    return keep.reshape(saliency.shape)


def complement_log_odds(logits: jax.Array, c: jax.Array) -> jax.Array:
    """d = logsumexp(other logits) - logit_c, so that p_c = sigmoid(-d), log p_c = -softplus(d)
    and log(1 - p_c) = -softplus(-d). Exact in float32 where the softmax saturates: p_c
    rounds to 1.0 once d < -16.6, while d itself keeps its full precision. For outputs
    declared as probabilities (outputs_scope): d = log(sum of the other p) - log p_c."""
    if current_outputs() == "probabilities":
        return jnp.log(jnp.where(jnp.arange(logits.shape[-1]) == c, 0.0, logits).sum()) - jnp.log(logits[c])
    others = jnp.where(jnp.arange(logits.shape[-1]) == c, -jnp.inf, logits)
    return jax.nn.logsumexp(others) - logits[c]


CONVENTIONS = ("precise", "study")


@with_channel_axis
@at_precision
def drop_increase(
    f: Callable[[jax.Array], jax.Array],
    xs,
    saliency,
    *,
    k: float = 0.3,
    fill: float = 0.0,
    convention: str = "precise",
    score: str = "softmax",
    targets=None,
    tie_draws: int = 64,
    key: jax.Array | None = None,
    precision: str | None = "highest",
    batch_size: int = 250,
    mesh=None,
) -> dict[str, np.ndarray | float]:
    """The study's drop / increase rates (Sattarzadeh et al. 2021, after Chattopadhay et al.
    2018's "average drop" and "increase in confidence").

    Keep the top-k share of spatial positions by saliency, set the rest to `fill`; with Y the
    class probability on x and O on the masked x: drop = ReLU((Y - O) / Y), increase = O > Y.

    convention="precise" (default): computed from the logits through the complement log-odds
      d = logsumexp(other logits) - logit_c (see complement_log_odds): increase = d_O < d_Y,
      drop = ReLU(-expm1(softplus(d_Y) - softplus(d_O))). Exact where the float32 softmax
      saturates to 1.0 (there O > Y would be impossible). Ties at the top-k cut (positions of
      exactly equal saliency, more than the cut keeps) are resolved by the expectation over
      uniformly random tie orders (xai_jax.metrics.ties): exact over all C(g, r) subsets when
      C(g, r) <= tie_draws, else tie_draws keyed draws (key, default jax.random.key(0));
      inputs whose top-k set is unambiguous use one forward. targets=None: argmax of the logits.
    convention="study": the study's float32 `score` (softmax) comparison with ties broken by
      index (lowest first); targets=None: argmax of the float32 scores.
    precision: matmul precision the model runs at ("highest" by default, so that TF32 on
      GPUs cannot flip an exact comparison); None: JAX's default.
    Returns per-input "drop", "increase", their means "drop_rate", "increase_rate", the share
    of inputs whose class probability saturates to 1.0 in float32 ("saturated_share") and of
    inputs with ties at the cut ("tie_share"). Non-finite xs, maps or model scores are rejected.
    """
    xs, maps, targets = _prepare(f, xs, saliency, targets, batch_size, "drop_increase", mesh)
    n_pos = int(np.prod(maps.shape[1:]))
    n_keep = _keep_count(k, n_pos)
    fill = check_float(fill, "fill")
    check_choice(convention, "convention", CONVENTIONS)
    s = score_transform(score)
    if convention == "precise" and score != "softmax":
        raise ValueError(f"score={score!r} applies to convention='study' only: the precise convention measures the "
                         f"class probability (softmax) through the logits' complement log-odds; pass "
                         f"convention='study' to compare float32 {score} scores")
    tie_draws = check_int(tie_draws, "tie_draws", 1)
    check_precision(precision)
    keys = _key_data(key, len(xs))
    index = np.arange(len(xs), dtype=np.int32)

    # x and its masked copies go through f in ONE vmapped batch: the same program computes both,
    # so an unchanged input cannot differ from itself by a rounding (which would be an "increase")
    def study_one(x, m, t, kd, i):
        both = jax.vmap(f)(jnp.stack([x, jnp.where(top_k_mask(m, k)[..., None], x, fill)]))
        logits, masked_logits = both[0], both[1]
        probs = s(logits)
        c = jnp.where(t < 0, jnp.argmax(probs), t)
        y, o = probs[c], s(masked_logits)[c]
        drop = jnp.where(y > 0, jax.nn.relu((y - o) / jnp.where(y > 0, y, 1.0)), 0.0)  # Y = 0: nothing to drop
        # checked on the logits: XLA:CPU's max ignores NaN, so softmax can hide a NaN logit
        finite = jnp.isfinite(logits).all() & jnp.isfinite(masked_logits).all()
        saturated = class_probabilities(logits)[c] == 1.0
        return jnp.where(finite, drop, jnp.nan), (o > y).astype(jnp.float32), saturated

    def precise_one(draws):
        def one(x, m, t, kd, i):
            if draws == 1:
                masks, weights = top_k_mask(m, k)[None], jnp.ones(1)
            else:
                masks, weights = topk_keep_masks(m, n_keep, _input_key(kd, i), draws)
            masked = jnp.where(masks[..., None], x, fill)
            all_logits = jax.vmap(f)(jnp.concatenate([x[None], masked]))
            logits, masked_logits = all_logits[0], all_logits[1:]
            c = jnp.where(t < 0, jnp.argmax(logits), t)
            d_y = complement_log_odds(logits, c)
            d_o = jax.vmap(complement_log_odds, in_axes=(0, None))(masked_logits, c)
            drop = jax.nn.relu(-jnp.expm1(jax.nn.softplus(d_y) - jax.nn.softplus(d_o)))
            inc = (d_o < d_y).astype(jnp.float32)
            finite = jnp.isfinite(logits).all() & jnp.isfinite(masked_logits).all()
            saturated = class_probabilities(logits)[c] == 1.0
            return jnp.where(finite, weights @ drop, jnp.nan), weights @ inc, saturated
        return one

    arrays = (xs, maps, targets, keys, index)
    if convention == "study":
        run = _runner(f, ("drop_increase_study", k, fill, score), lambda: study_one, mesh, 5)
        drop, inc, sat = _split_run(run, run, np.zeros(len(xs), bool), arrays, batch_size, 1, mesh, precision)
        tied = ambiguous_topk(maps, n_keep)  # reported: here such ties are broken by index
    else:
        tied = ambiguous_topk(maps, n_keep) if tie_draws > 1 else np.zeros(len(xs), bool)
        plain = _runner(f, ("drop_increase", k, fill, 1), lambda: precise_one(1), mesh, 5)
        with_ties = _runner(f, ("drop_increase", k, fill, tie_draws), lambda: precise_one(tie_draws), mesh, 5)
        drop, inc, sat = _split_run(plain, with_ties, tied, arrays, batch_size, tie_draws, mesh, precision)
    _check_scores(drop, "drop_increase")
    return {"drop": drop, "increase": inc, "drop_rate": float(drop.mean()), "increase_rate": float(inc.mean()),
            "saturated_share": float(np.mean(sat)), "tie_share": float(tied.mean()), "convention": convention}


def rise_blur_kernel(taps: int = 11, sigma: float = 5.0) -> np.ndarray:
    """The 1-D factor of RISE's insertion blur kernel (Petsiuk et al. 2018, reference code
    `gkern(11, 5)`): scipy's gaussian_filter of a Dirac on a `taps` grid, reflect mode, so the
    Gaussian's tails fold back into the grid; it sums to 1. RISE's 2-D kernel is the outer
    product of this factor with itself (a Gaussian filter of a Dirac is separable)."""
    from scipy.ndimage import gaussian_filter1d

    dirac = np.zeros(taps)
    dirac[taps // 2] = 1.0
    return gaussian_filter1d(dirac, sigma, mode="reflect").astype(np.float32)


BLURS = ("rise", "gaussian")


def gaussian_blur(x: jax.Array, sigma: float, kind: str = "gaussian", taps: int = 11) -> jax.Array:
    """Separable blur of x (*spatial, C) over its spatial axes.

    kind="gaussian": a Gaussian of std sigma over 2 * ceil(3 sigma) + 1 taps, edge-padded.
    kind="rise": RISE's reference kernel (rise_blur_kernel(taps, sigma): 11 taps, tails folded
      back by reflection), zero-padded as its conv2d(padding=taps // 2) is; for 1-D signals
      the same 11-tap construction along the length.
    """
    check_array(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must be one input (*spatial, channels), got shape {tuple(x.shape)}")
    sigma = check_float(sigma, "sigma", low=0.0, low_open=True)
    check_choice(kind, "kind", BLURS)
    if kind == "rise":
        taps = check_int(taps, "taps", 1)
        if taps % 2 == 0:
            raise ValueError(f"taps must be odd (a kernel centred on each position), got {taps}")
        kernel = jnp.asarray(rise_blur_kernel(taps, sigma))
        radius, mode = taps // 2, "constant"
    else:
        radius = max(1, int(np.ceil(3 * sigma)))
        t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
        kernel = jnp.exp(-0.5 * (t / sigma) ** 2)
        kernel = kernel / kernel.sum()
        mode = "edge"
    for axis in range(x.ndim - 1):
        padded = jnp.pad(x, [(radius, radius) if a == axis else (0, 0) for a in range(x.ndim)], mode=mode)
        moved = jnp.moveaxis(padded, axis, -1)
        conv = jax.vmap(lambda v: jnp.convolve(v, kernel, mode="valid"))(moved.reshape(-1, moved.shape[-1]))
        x = jnp.moveaxis(conv.reshape(*moved.shape[:-1], -1), -1, axis)
    return x


DEFAULT_CURVE_POINTS = 100  # deletion_insertion's n_points (issue 20: 100 points per curve, not one per position)


def curve_counts(n_pos: int, n_points: int | None, step: int | None) -> np.ndarray:
    """Positions removed at each point of a deletion/insertion curve (0 first, n_pos last):
    n_points + 1 evenly spaced counts (default DEFAULT_CURVE_POINTS; every count when n_pos is
    smaller), or 0, step, 2 step, ..., n_pos."""
    if step is not None and n_points is not None:
        raise ValueError(f"pass n_points or step, not both (got n_points={n_points}, step={step})")
    if step is not None:
        step = check_int(step, "step", 1)
        if step > n_pos:
            raise ValueError(f"step {step} exceeds the {n_pos} spatial positions")
        return np.minimum(np.arange(-(-n_pos // step) + 1) * step, n_pos)
    n_points = DEFAULT_CURVE_POINTS if n_points is None else check_int(n_points, "n_points", 1)
    if n_points >= n_pos:
        return np.arange(n_pos + 1)
    return np.unique(np.round(np.arange(n_points + 1) * (n_pos / n_points)).astype(np.int64))


@with_channel_axis
@at_precision
def deletion_insertion(
    f: Callable[[jax.Array], jax.Array],
    xs,
    saliency,
    *,
    n_points: int | None = None,
    step: int | None = None,
    baseline: float = 0.0,
    blur: str = "rise",
    blur_sigma: float = 5.0,
    score: str = "softmax",
    targets=None,
    tie_draws: int = 64,
    key: jax.Array | None = None,
    precision: str | None = "highest",
    batch_size: int = 50,
    mesh=None,
) -> dict[str, np.ndarray | float]:
    """Deletion and insertion curves and AUCs (Petsiuk, Das & Saenko 2018, RISE).

    Positions are visited in decreasing saliency. Deletion sets them to `baseline` starting
    from x; insertion copies them from x into a blurred x. The class probability is recorded
    at each point of the curve; AUC is the trapezoid area over the removed/inserted fraction
    in [0, 1].
    n_points: the curve has n_points + 1 points (default 100): round(i * n_pos / n_points)
      positions removed/inserted, i = 0..n_points (every position, when the input has fewer
      than n_points). step (instead of n_points): `step` positions at a time, 0, step,
      2 step, ..., n_pos (step=1: every position, RISE's curve; ceil(n_pos / step) + 1 points).
    blur: "rise" (default: RISE's reference kernel, 11 taps of sigma = blur_sigma with the
      tails folded back, zero padding; the metric is defined by that code, so its AUCs are
      comparable with published ones) or "gaussian" (sigma over 2 ceil(3 sigma) + 1 taps, edge
      padding; this library's earlier default). See gaussian_blur.
    Ties (positions of exactly equal saliency) are visited in uniformly random order: the
    curves of an input with ties are the mean over tie_draws keyed orders (key, default
    jax.random.key(0)); inputs without ties use one order. precision: as drop_increase.
    Memory: the curve points of the inputs in a batch are evaluated in passes of at most
    PASS_ELEMENTS["forward"] (2**22) input elements (attribution.common; lax.map; a pass of
    one 224 x 224 x 3 image: 13 points, 27 forwards), so peak memory does not grow with the input's
    size, the number of points or tie_draws (a pass holds at least one point per input).
    Returns per-input curves (N, points), AUCs (N,), their means, "fractions" and "tie_share".
    """
    xs, maps, targets = _prepare(f, xs, saliency, targets, batch_size, "deletion_insertion", mesh)
    baseline = check_float(baseline, "baseline")
    blur_sigma = check_float(blur_sigma, "blur_sigma", low=0.0, low_open=True)
    check_choice(blur, "blur", BLURS)
    tie_draws = check_int(tie_draws, "tie_draws", 1)
    check_precision(precision)
    n_pos = int(np.prod(xs.shape[1:-1]))
    counts = curve_counts(n_pos, n_points, step)
    fractions = counts / n_pos
    s = score_transform(score)
    size = int(np.prod(xs.shape[1:]))

    def score_of(v, c):  # NaN when any logit is not finite (softmax could hide it)
        logits = f(v)
        return jnp.where(jnp.isfinite(logits).all(), s(logits)[c], jnp.nan)

    def passes(draws, rows):
        # (draw, point) jobs of one input, evaluated `per_pass` at a time: each job is two
        # forwards (deletion, insertion), and the batch's `rows` inputs run side by side
        return max(1, min(draws * len(counts), PASS_ELEMENTS["forward"] // (2 * rows * size)))

    def make_one(draws, per_pass):

        def one(x, m, t, kd, i):
            c = jnp.where(t < 0, jnp.argmax(f(x)), t)
            ranks = index_ranks(m)[None] if draws == 1 else tie_broken_ranks(m, _input_key(kd, i), draws)
            blurred = gaussian_blur(x, blur_sigma, blur)

            def at(job):
                draw, count = job
                chosen = (ranks[draw] < count)[..., None]
                return score_of(jnp.where(chosen, baseline, x), c), score_of(jnp.where(chosen, x, blurred), c)

            grid = (jnp.repeat(jnp.arange(draws), len(counts)), jnp.tile(jnp.asarray(counts), draws))
            deletion, insertion = jax.vmap(at)(grid) if per_pass >= len(grid[0]) else \
                jax.lax.map(at, grid, batch_size=per_pass)
            return (deletion.reshape(draws, -1).mean(0), insertion.reshape(draws, -1).mean(0))
        return one

    tied = has_ties(maps) if tie_draws > 1 else np.zeros(len(xs), bool)
    settings = ("deletion_insertion", tuple(counts), baseline, blur, blur_sigma, score, n_pos)
    rows_plain = min(batch_size, len(xs))  # the rows _split_run puts in one batch of each kind
    rows_tied = min(max(1, batch_size // tie_draws), len(xs))
    per_plain, per_tied = passes(1, rows_plain), passes(tie_draws, rows_tied)
    plain = _runner(f, (*settings, 1, per_plain), lambda: make_one(1, per_plain), mesh, 5)
    with_ties = _runner(f, (*settings, tie_draws, per_tied), lambda: make_one(tie_draws, per_tied), mesh, 5)
    arrays = (xs, maps, targets, _key_data(key, len(xs)), np.arange(len(xs), dtype=np.int32))
    deletion, insertion = _split_run(plain, with_ties, tied, arrays, batch_size, tie_draws, mesh, precision)
    _check_scores(np.concatenate([deletion, insertion], 1), "deletion_insertion")
    auc = lambda curves: np.trapezoid(curves, fractions, axis=1)  # noqa: E731
    d_auc, i_auc = auc(deletion), auc(insertion)
    return {"fractions": fractions, "deletion_curve": deletion, "insertion_curve": insertion,
            "deletion_auc": d_auc, "insertion_auc": i_auc,
            "deletion_auc_mean": float(d_auc.mean()), "insertion_auc_mean": float(i_auc.mean()),
            "tie_share": float(tied.mean())}
