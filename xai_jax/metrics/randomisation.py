"""Randomisation metrics: does the explanation depend on what the model learned?

- `mprt`: Model Parameter Randomisation Test (Adebayo et al., NeurIPS 2018, "Sanity Checks
  for Saliency Maps"), as Quantus 0.6 `MPRT` defines it.
- `smooth_mprt`, `efficient_mprt`: Hedström et al. 2023/2024, "Sanity Checks Revisited:
  An Exploration to Repair the Model Parameter Randomisation Test" (Quantus `SmoothMPRT`,
  `EfficientMPRT`).
- `random_logit`: Sixt et al., ICML 2020, "When Explanations Lie" (Quantus `RandomLogit`).
- `map_similarity`: the row similarities they share (Spearman, Pearson, SSIM).

Layers are the top-level entries of the flax params (call order); a layer is randomised by
replacing its params with those of `model.init(key, ...)`. Params are an argument of one
jitted function, so every randomised copy reuses one compiled program. Explanations are
computed in fixed-size padded batches (xai_jax.batching.run_in_batches); input i of a keyed
method gets jax.random.fold_in(method_key, i), so results never depend on batch_size.
batch_size (inputs per compiled call) defaults to None: as many as fit the memory budget of
xai_jax.batching.inputs_per_call (XLA's memory analysis of the map program, probed once per
program and input shape; 32 MiB per call on CPUs). On the 2-core development CPU that took
MPRT on 1,000 MNIST-1D inputs from batches of 100 (Quantus' default) to one call of 1,000.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.common import model_fn
from xai_jax.batching import batch_for, inputs_per_call, program_cache, run_in_batches
from xai_jax.checks import (
    check_batch,
    check_choice,
    check_float,
    check_int,
    check_key,
    check_targets,
    num_outputs,
    precision_scope,
)

SIMILARITIES = ("spearman", "pearson", "ssim")
ORDERS = ("top_down", "bottom_up", "independent")
SSIM_WINDOW = 7  # skimage's default win_size, which Quantus' ssim uses

# ----------------------------------------------------------------------------- similarity


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
_RANKS = jax.jit(jax.vmap(average_ranks))


@jax.jit
def _spearman_ranked(a: jax.Array, ranks_a: jax.Array, b: jax.Array) -> jax.Array:
    return jax.vmap(lambda x, r, y: _degenerate(x, y, pearson_row(r, average_ranks(y))))(a, ranks_a, b)


_BATCHED = {kind: jax.jit(jax.vmap(fn)) for kind, fn in _ROW_FNS.items()}


def _check_similarity(kind: Any, size: int) -> str:
    check_choice(kind, "similarity", SIMILARITIES)
    if kind == "ssim" and size < SSIM_WINDOW:
        raise ValueError(f"similarity='ssim' needs maps of at least {SSIM_WINDOW} values (its window), "
                         f"got {size}")
    return kind


SIMILARITY_VALUES_PER_CALL = 1 << 22  # map values per jitted similarity call (rows are cheap: few large calls)


def _similarities(a: np.ndarray, b: np.ndarray, kind: str, batch_size: int) -> np.ndarray:
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
    kind = _check_similarity(kind, int(np.prod(a.shape[1:])))
    return _similarities(a, b, kind, check_int(batch_size, "batch_size", 1))


# ----------------------------------------------------------------------------- shared pieces


def _normalised(maps: np.ndarray, how: str | None) -> np.ndarray:
    """Per-map normalisation: "max" divides by max|a| (Quantus normalise_by_max), "second_moment"
    by sqrt(mean(a^2)) (normalise_by_average_second_moment_estimate); all-zero maps unchanged."""
    if how is None:
        return maps
    flat = maps.reshape(len(maps), -1)
    scale = np.abs(flat).max(1) if how == "max" else np.sqrt((flat**2).mean(1))
    scale = np.where(scale > 0, scale, 1.0).reshape((-1,) + (1,) * (maps.ndim - 1))
    return maps / scale


@functools.partial(jax.jit, static_argnames=("how", "absolute"))
def _prepared_rows(maps: jax.Array, how: str | None, absolute: bool) -> tuple[jax.Array, jax.Array]:
    """_normalised, then |.| if absolute, on the device: (N, D) float32 rows and (N,) whether
    each map is finite."""
    flat = maps.reshape(maps.shape[0], -1).astype(jnp.float32)
    finite = jnp.isfinite(flat).all(1)
    if how is not None:
        scale = jnp.abs(flat).max(1) if how == "max" else jnp.sqrt((flat**2).mean(1))
        flat = flat / jnp.where(scale > 0, scale, 1.0)[:, None]
    return (jnp.abs(flat) if absolute else flat), finite


def _bad_maps_error(who: str, bad: np.ndarray) -> ValueError:
    return ValueError(f"{who}: the method returned NaN or inf maps for inputs {np.flatnonzero(bad)[:5].tolist()}"
                      f"{' ...' if bad.sum() > 5 else ''}")


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _batch_of_logits(f: Callable, xs: np.ndarray, batch_size: int) -> np.ndarray:
    run = program_cache(f).setdefault(("logits",), jax.jit(jax.vmap(f)))
    return run_in_batches(run, (xs,), min(batch_size, len(xs)))


@functools.lru_cache(maxsize=16)
def _entropy_program(n_bins: int) -> Callable:
    return jax.jit(jax.vmap(lambda v: histogram_entropy_row(v, n_bins)))


def _resolve_targets(f: Callable, xs: np.ndarray, targets, n_classes: int, batch_size: int) -> np.ndarray:
    """Checked targets, or (None) the class f predicts for each input."""
    if targets is not None:
        return check_targets(targets, xs.shape[0], n_classes)
    logits = _batch_of_logits(f, xs, batch_size)
    bad = ~np.isfinite(logits).all(1)
    if bad.any():
        raise ValueError(f"targets=None needs the predicted class, but f returned NaN or inf logits for inputs "
                         f"{np.flatnonzero(bad)[:5].tolist()}")
    return logits.argmax(1).astype(np.int32)


def _checked_maps(out, reduce, n: int, who: str) -> np.ndarray:
    out = np.asarray(reduce(out) if reduce is not None else out, np.float32)
    if out.ndim < 1 or out.shape[0] != n:
        raise ValueError(f"{who}: reduce must keep the leading batch axis ({n} maps), got shape {out.shape}")
    bad = ~np.isfinite(out.reshape(n, -1)).all(1)
    if bad.any():
        raise _bad_maps_error(who, bad)
    return out




_OUTPUTS: dict = {}


def _model_outputs(model: nn.Module, params, shape: tuple[int, ...]) -> int:
    """The class count of model on inputs of `shape`, traced once per (model, shape, params
    structure) instead of on every call."""
    tag = (model, tuple(shape), jax.tree.structure(params),
           tuple(tuple(np.shape(v)) for v in jax.tree.leaves(params)))
    if tag not in _OUTPUTS:
        if len(_OUTPUTS) > 64:
            _OUTPUTS.clear()
        _OUTPUTS[tag] = num_outputs(model_fn(model, params), shape)
    return _OUTPUTS[tag]


@functools.lru_cache(maxsize=16)
def _jitted_init(model: nn.Module) -> Callable:
    """jit(model.init), compiled once per model (eager flax init costs ~6 ms per call here)."""
    return jax.jit(model.init)


class _ModelMetric:
    """The checked arguments of a model-randomisation metric and its map runner."""

    def __init__(self, who, make_method, model, params, xs, targets, key, method_key, batch_size, reduce,
                 smooth: tuple[float, int] | None = None):
        if not callable(make_method):
            raise TypeError(f"make_method must be a function params -> method, got {type(make_method).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a flax.linen Module, got {type(model).__name__}")
        if not hasattr(params, "keys") or len(params) == 0:
            raise TypeError(f"params must be the model's (non-empty) params dict, got {type(params).__name__}")
        if reduce is not None and not callable(reduce):
            raise TypeError(f"reduce must be a function maps -> maps or None, got {type(reduce).__name__}")
        self.who = who
        self.xs = np.asarray(check_batch(xs, "xs", who=who), np.float32)
        self.key = check_key(key)
        self.keyed = method_key is not None
        self.method_key = check_key(method_key, "method_key") if self.keyed else jax.random.key(0)
        batch_size = None if batch_size is None else check_int(batch_size, "batch_size", 1)
        self.reduce = reduce
        self.params = params
        self.layers = list(params.keys())  # flax keeps call order
        n_classes = _model_outputs(model, params, self.xs.shape[1:])
        self.fresh = _jitted_init(model)(self.key, jnp.zeros((1, *self.xs.shape[1:]), jnp.float32))["params"]
        missing = [layer for layer in self.layers if layer not in self.fresh]
        if missing:
            raise ValueError(f"params has layers {missing} that model.init does not create; pass the params of "
                             f"this model")
        keyed, mkey = self.keyed, self.method_key

        def explain(p, x, t, k):
            method = make_method(p)
            return method(x, t, k) if keyed else method(x, t)

        if smooth is None:
            def one(p, x, t, i):
                return explain(p, x, t, jax.random.fold_in(mkey, i))
        else:
            magnitude, n_noisy = smooth
            noise_key = jax.random.fold_in(self.key, 1)  # the init consumed `key` itself

            def one(p, x, t, i):
                # Quantus: sigma = magnitude * (max - min of x); the last sample is x itself
                sigma = magnitude * (x.max() - x.min())
                keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(noise_key, i), s))(
                    jnp.arange(n_noisy))
                noise = jax.vmap(lambda k: jax.random.normal(k, x.shape, x.dtype))(keys) * sigma
                noise = noise.at[n_noisy - 1].set(0.0)
                mkeys = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(mkey, i), s))(jnp.arange(n_noisy))
                maps = jax.vmap(lambda e, k: explain(p, x + e, t, k))(noise, mkeys)
                return maps.mean(0)

        # params are an argument of one jitted function: every randomised copy reuses its program,
        # and repeated calls with the same make_method and settings reuse it too (cached)
        tag = (smooth, keyed, np.asarray(jax.random.key_data(self.key)).tobytes(),
               np.asarray(jax.random.key_data(mkey)).tobytes() if keyed else None)
        cache = program_cache(make_method)
        if tag not in cache:
            cache[tag] = jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0)))
        self._run = cache[tag]
        self.batch_size = batch_size if batch_size is not None else self._auto_batch(cache, tag)
        self.targets = _resolve_targets(model_fn(model, params), self.xs, targets, n_classes, self.batch_size)

    def _auto_batch(self, cache: dict, tag) -> int:
        """Inputs per call: as many as fit the memory budget (batching.inputs_per_call, from
        XLA's memory analysis of the map program; params not counted), probed once per program,
        input shape and params shapes."""
        probe = ("inputs_per_call", tag, self.xs.shape[1:], jax.tree.structure(self.params),
                 tuple(tuple(np.shape(v)) for v in jax.tree.leaves(self.params)))
        if probe not in cache:
            rows = (jax.ShapeDtypeStruct(self.xs.shape[1:], jnp.float32), jax.ShapeDtypeStruct((), jnp.int32),
                    jax.ShapeDtypeStruct((), jnp.int32))
            cache[probe] = inputs_per_call(self._run, rows, before=(self.params,))
        return batch_for(len(self.xs), cache[probe])

    def _outputs(self, params, to_numpy: bool):
        return run_in_batches(lambda x, t, i: self._run(params, x, t, i), (self.xs, self.targets),
                              min(self.batch_size, len(self.xs)), with_index=True, to_numpy=to_numpy)

    def maps(self, params) -> np.ndarray:
        return _checked_maps(self._outputs(params, True), self.reduce, len(self.xs), self.who)

    def rows(self, params, how: str | None, absolute: bool, checked: list | None = None):
        """The maps of params as (N, D) float32 rows, normalised (how: see _normalised) and
        |.| if absolute. Without `reduce` they never leave the device: whether each map is
        finite is read back here, or (checked: a list) appended to `checked` for one later
        `check` (so that several calls dispatch without waiting). With `reduce`, the host
        path of `maps`."""
        if self.reduce is not None:
            maps = _normalised(self.maps(params), how)
            maps = np.abs(maps) if absolute else maps
            return np.ascontiguousarray(maps.reshape(len(maps), -1), np.float32)
        flat, finite = _prepared_rows(self._outputs(params, False), how, absolute)
        if checked is None:
            self.check([finite])
        else:
            checked.append(finite)
        return flat

    def check(self, finite: list) -> None:
        """Raise for the first list entry (N,) with a non-finite map."""
        for flags in finite:
            bad = ~np.asarray(flags)
            if bad.any():
                raise _bad_maps_error(self.who, bad)

    def randomised(self, order: str):
        """(layer, params) in randomisation order: cascading top-down / bottom-up, or each layer alone."""
        names = list(reversed(self.layers)) if order == "top_down" else list(self.layers)
        current = dict(self.params)
        for name in names:
            if order == "independent":
                current = dict(self.params)
            current[name] = self.fresh[name]
            yield name, dict(current)


def _layerwise(metric: _ModelMetric, order: str, similarity: str, absolute: bool, normalise: str | None):
    finite: list = []  # every state is dispatched before anything is read back
    original = metric.rows(metric.params, normalise, absolute, finite)
    similarity = _check_similarity(similarity, original.shape[1])
    if similarity == "spearman":  # the original's ranks once, not once per layer
        ranked = (jnp.asarray(original), _RANKS(jnp.asarray(original)))
        compare = functools.partial(_spearman_ranked, *ranked)
    else:
        compare = functools.partial(_similarities, np.asarray(original), kind=similarity,
                                    batch_size=metric.batch_size)
    layers, sims = [], {}
    for name, params in metric.randomised(order):
        sims[name] = compare(jnp.asarray(metric.rows(params, normalise, absolute, finite)))
        layers.append(name)
    metric.check(finite)
    sims = {name: np.asarray(v) for name, v in sims.items()}
    return {"layers": layers, "similarity": sims, "mean": {name: float(s.mean()) for name, s in sims.items()},
            "batch_size": metric.batch_size}


# ----------------------------------------------------------------------------- MPRT family


def mprt(
    make_method: Callable[[Any], Callable],
    model: nn.Module,
    params: Any,
    xs,
    targets=None,
    *,
    key: jax.Array,
    order: str = "top_down",
    similarity: str = "spearman",
    absolute: bool = True,
    normalise: bool = True,
    method_key: jax.Array | None = None,
    batch_size: int | None = None,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
    precision: str | None = "highest",
) -> dict[str, Any]:
    """Model Parameter Randomisation Test (Adebayo et al. 2018), as Quantus 0.6 `MPRT`.

    For each layer l (in randomisation order), with e(x) the map of the trained model and
    e_l(x) the map after randomising: similarity_l(x) = sim(post(e(x)), post(e_l(x))),
    post(a) = |a / max|a|| (abs and normalise as set). A method that depends on the learned
    weights loses similarity as layers are randomised.

    make_method: params -> method (x, target[, key]) -> map. order: "top_down" (cascading
    from the output layer, Quantus' default for MPRT), "bottom_up" (cascading from the
    input) or "independent" (each layer alone, the others trained). Randomised params come
    from model.init(key, ...) (flax's initialisers). similarity: "spearman", "pearson" or
    "ssim" (see map_similarity). targets: (N,) classes, or None for the class the trained
    model predicts. method_key: for keyed methods; input i gets fold_in(method_key, i), the
    same for every layer. reduce: maps (N, ...) -> (N, ...) NumPy, e.g. a channel sum.

    Returns {"layers": [names in randomisation order], "similarity": {layer: (N,)},
    "mean": {layer: float}, "batch_size": inputs per compiled call}. batch_size: None
    (default) for as many as fit the memory budget (see the module docstring).
    Deviation from Quantus: maps are normalised one by one (Quantus
    divides a whole batch by its largest value, so a score depends on the other inputs;
    only SSIM sees the difference, the correlations are scale invariant), and a constant map
    has a defined similarity (see map_similarity; Quantus/scipy return NaN).
    precision: jax.default_matmul_precision for every model evaluation (None: JAX's default;
    "highest", the default, keeps TF32 out on GPUs).
    """
    with precision_scope(precision):
        check_choice(order, "order", ORDERS)
        absolute, normalise = _check_bool(absolute, "absolute"), _check_bool(normalise, "normalise")
        metric = _ModelMetric("mprt", make_method, model, params, xs, targets, key, method_key, batch_size, reduce)
        return _layerwise(metric, order, similarity, absolute, "max" if normalise else None)


def smooth_mprt(
    make_method: Callable[[Any], Callable],
    model: nn.Module,
    params: Any,
    xs,
    targets=None,
    *,
    key: jax.Array,
    noise_magnitude: float = 0.1,
    n_noisy: int = 50,
    order: str = "bottom_up",
    similarity: str = "spearman",
    absolute: bool = True,
    normalise: bool = True,
    method_key: jax.Array | None = None,
    batch_size: int | None = None,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
    precision: str | None = "highest",
) -> dict[str, Any]:
    """Smooth MPRT (Hedström et al. 2023, "Sanity Checks Revisited"), as Quantus `SmoothMPRT`.

    MPRT on denoised explanations: e~(x) = (1/K) sum_k e(x + eps_k), eps_k ~ N(0, sigma^2 I),
    sigma = noise_magnitude * (max(x) - min(x)), K = n_noisy, the last eps_K = 0 (Quantus
    keeps one noise-free copy). Maps are averaged first, then normalised by their average
    second moment, a / sqrt(mean(a^2)) (Binder et al. 2022), then |.|. Quantus' defaults:
    noise_magnitude 0.1, 50 samples, bottom-up cascading order.

    The noise of input i, sample k comes from fold_in(fold_in(fold_in(key, 1), i), k), the
    same for the trained and every randomised model (Quantus draws fresh noise from
    NumPy's global state each time; common noise removes that variance from the
    comparison). A batch evaluates batch_size * n_noisy explanations. Returns what `mprt`
    returns; its other arguments and deviations are those of `mprt`.
    precision: jax.default_matmul_precision for every model evaluation (None: JAX's default;
    "highest", the default, keeps TF32 out on GPUs).
    """
    with precision_scope(precision):
        check_choice(order, "order", ORDERS)
        magnitude = check_float(noise_magnitude, "noise_magnitude", low=0.0)
        n_noisy = check_int(n_noisy, "n_noisy", 1)
        absolute, normalise = _check_bool(absolute, "absolute"), _check_bool(normalise, "normalise")
        metric = _ModelMetric("smooth_mprt", make_method, model, params, xs, targets, key, method_key, batch_size,
                              reduce, smooth=(magnitude, n_noisy))
        return _layerwise(metric, order, similarity, absolute, "second_moment" if normalise else None)


def histogram_entropy_row(v: jax.Array, n_bins: int) -> jax.Array:
    """scipy.stats.entropy(np.histogram(v, bins=n_bins)[0]): Shannon entropy (nats) of the
    counts in n_bins equal-width bins over [min v, max v] (numpy's binning, last bin closed;
    a constant v falls in one bin: entropy 0)."""
    v = v.ravel()
    lo, hi = v.min(), v.max()
    same = hi == lo
    lo, hi = jnp.where(same, lo - 0.5, lo), jnp.where(same, hi + 0.5, hi)
    edges = jnp.linspace(lo, hi, n_bins + 1)
    idx = jnp.floor((v - lo) / (hi - lo) * n_bins).astype(jnp.int32)
    idx = jnp.clip(idx, 0, n_bins - 1)
    # numpy's correction for rounding at the edges
    idx = idx - (v < edges[idx]).astype(jnp.int32)
    idx = idx + ((v >= edges[idx + 1]) & (idx != n_bins - 1)).astype(jnp.int32)
    counts = jnp.zeros(n_bins, jnp.float32).at[idx].add(1.0)
    p = counts / counts.sum()
    return -jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0).sum()


def efficient_mprt(
    make_method: Callable[[Any], Callable],
    model: nn.Module,
    params: Any,
    xs,
    targets=None,
    *,
    key: jax.Array,
    n_bins: int = 100,
    absolute: bool = False,
    normalise: bool = False,
    method_key: jax.Array | None = None,
    batch_size: int | None = None,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
    precision: str | None = "highest",
) -> dict[str, Any]:
    """Efficient MPRT (Hedström et al. 2023, "Sanity Checks Revisited"), as Quantus `EfficientMPRT`.

    The relative rise in explanation complexity from the trained to the fully randomised
    model (every layer re-initialised from model.init(key, ...)):
        eMPRT(x) = (H(e_rand(x)) - H(e(x))) / H(e(x)),
    H = discrete entropy (nats) of the histogram of the map's values in n_bins equal-width
    bins over [min, max] (Quantus' `discrete_entropy`, default 100 bins; its optional
    bin-count rules are not provided). Higher is better: a method that depends on the
    weights gets noisier, more complex maps. absolute / normalise (by the average second
    moment) as Quantus' flags, both off by default as there.

    Returns {"score": (N,), "complexity_original": (N,), "complexity_randomised": (N,),
    "mean": float, "batch_size": inputs per compiled call}. The ratio is undefined where
    H(e(x)) = 0 (a constant original map): such scores are NaN, "mean" averages the others,
    and a warning names the inputs (Quantus divides by zero).
    precision: jax.default_matmul_precision for every model evaluation (None: JAX's default;
    "highest", the default, keeps TF32 out on GPUs).
    """
    with precision_scope(precision):
        n_bins = check_int(n_bins, "n_bins", 1)
        absolute, normalise = _check_bool(absolute, "absolute"), _check_bool(normalise, "normalise")
        metric = _ModelMetric("efficient_mprt", make_method, model, params, xs, targets, key, method_key, batch_size,
                              reduce)

        entropies = _entropy_program(n_bins)

        def complexity(p):
            flat = metric.rows(p, "second_moment" if normalise else None, absolute)
            return run_in_batches(entropies, (flat,), min(metric.batch_size, len(flat)))

        h_orig, h_rand = complexity(params), complexity(dict(metric.fresh))
        defined = h_orig > 0
        score = np.where(defined, (h_rand - h_orig) / np.where(defined, h_orig, 1.0), np.nan)
        if not defined.all():
            warnings.warn(f"efficient_mprt: the original maps of inputs {np.flatnonzero(~defined)[:5].tolist()} are "
                          f"constant (entropy 0), so their relative rise is undefined (NaN)", stacklevel=2)
        mean = float(score[defined].mean()) if defined.any() else float("nan")
        return {"score": score, "complexity_original": h_orig, "complexity_randomised": h_rand, "mean": mean,
                "batch_size": metric.batch_size}


# ----------------------------------------------------------------------------- random logit


def _as_method(method_or_factory: Callable, f: Callable) -> Callable:
    """A method (x, target[, key]) as given, or factory(f) when the argument takes exactly
    one required positional parameter (a factory f -> method, e.g. xai_jax.saliency)."""
    if not callable(method_or_factory):
        raise TypeError(f"method must be a method (x, target) -> map or a factory f -> method, "
                        f"got {type(method_or_factory).__name__}")
    if getattr(method_or_factory, "model_fn", None) is not None:
        return method_or_factory
    try:
        params = inspect.signature(method_or_factory).parameters.values()
    except (TypeError, ValueError):
        return method_or_factory
    required = [p for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required) == 1:
        method = method_or_factory(f)
        if not callable(method):
            raise TypeError(f"the factory returned {type(method).__name__}, not a method (x, target) -> map")
        return method
    return method_or_factory


def random_logit(
    method_or_factory: Callable,
    f: Callable[[jax.Array], jax.Array],
    xs,
    targets=None,
    *,
    key: jax.Array,
    num_classes: int | None = None,
    similarity: str = "spearman",
    absolute: bool = False,
    normalise: bool = True,
    method_key: jax.Array | None = None,
    batch_size: int | None = None,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
    precision: str | None = "highest",
) -> dict[str, Any]:
    """Random Logit test (Sixt et al. 2020, "When Explanations Lie"), as Quantus `RandomLogit`.

    score(x) = sim(post(e(x, y)), post(e(x, y'))), y' drawn uniformly from the classes
    {0, ..., num_classes - 1} without y: y' = r + (r >= y), r ~ U{0, ..., num_classes - 2}
    from fold_in(key, i) for input i. post(a) = a / max|a| (normalise), then |.| if
    absolute (Quantus: normalise on, abs off). Lower is better: a class-sensitive
    explanation changes with the class; a class-blind one scores 1.

    method_or_factory: a method (x, target[, key]) -> map, or a factory f -> method (one
    required positional parameter, e.g. xai_jax.saliency). num_classes: classes to draw
    from, 2 <= num_classes <= the classes of f (default: all of f's). targets: (N,) in
    [0, num_classes), or None for f's predicted class. method_key: keyed methods get
    fold_in(method_key, i) for both explanations of input i. similarity: see
    map_similarity; Quantus' default is "ssim", this library's "spearman".

    Returns {"similarity": (N,), "off_targets": (N,) the drawn classes, "mean": float,
    "batch_size": inputs per compiled call (None given: as many as fit the memory budget)}.
    Deviations: per-map normalisation and constant maps as in `mprt`.
    precision: jax.default_matmul_precision for every model evaluation (None: JAX's default;
    "highest", the default, keeps TF32 out on GPUs).
    """
    with precision_scope(precision):
        xs = np.asarray(check_batch(xs, "xs", who="random_logit"), np.float32)
        n_out = num_outputs(f, xs.shape[1:])
        if num_classes is None:
            num_classes = n_out
        num_classes = check_int(num_classes, "num_classes", 2)
        if num_classes > n_out:
            raise ValueError(f"num_classes={num_classes} exceeds the {n_out} classes of f")
        key = check_key(key)
        keyed = method_key is not None
        mkey = check_key(method_key, "method_key") if keyed else jax.random.key(0)
        batch_size = None if batch_size is None else check_int(batch_size, "batch_size", 1)
        absolute, normalise = _check_bool(absolute, "absolute"), _check_bool(normalise, "normalise")
        if reduce is not None and not callable(reduce):
            raise TypeError(f"reduce must be a function maps -> maps or None, got {type(reduce).__name__}")
        method = _as_method(method_or_factory, f)

        def one(x, t, i):
            k = jax.random.fold_in(mkey, i)
            explain = (lambda c: method(x, c, k)) if keyed else (lambda c: method(x, c))
            r = jax.random.randint(jax.random.fold_in(key, i), (), 0, num_classes - 1)
            off = r + (r >= t)
            return explain(t), explain(off), off

        # cached on f: the closure's constants (the method's source, classes, keys) are the tag
        tag = ("random_logit", id(method_or_factory), keyed, num_classes,
               np.asarray(jax.random.key_data(key)).tobytes(), np.asarray(jax.random.key_data(mkey)).tobytes())
        cache = program_cache(f)
        if tag not in cache:
            cache[tag] = jax.jit(jax.vmap(one))
        run = cache[tag]
        if batch_size is None:  # as many inputs per call as fit the memory budget, probed once per shape
            probe = ("inputs_per_call", tag, xs.shape[1:])
            if probe not in cache:
                cache[probe] = inputs_per_call(run, (jax.ShapeDtypeStruct(xs.shape[1:], jnp.float32),
                                                     jax.ShapeDtypeStruct((), jnp.int32),
                                                     jax.ShapeDtypeStruct((), jnp.int32)))
            batch_size = batch_for(len(xs), cache[probe])
        targets = _resolve_targets(f, xs, targets, n_out, batch_size)
        if targets.max() >= num_classes:
            raise ValueError(f"targets must lie in [0, num_classes={num_classes}) (the classes the off-target is "
                             f"drawn from), got {int(targets.max())}")
        original, other, off = run_in_batches(run, (xs, targets), min(batch_size, len(xs)), with_index=True)
        n = len(xs)

        def prepared(maps):
            maps = _normalised(_checked_maps(maps, reduce, n, "random_logit"), "max" if normalise else None)
            return np.abs(maps) if absolute else maps

        a, b = prepared(original), prepared(other)
        sims = _similarities(a, b, _check_similarity(similarity, int(np.prod(a.shape[1:]))), batch_size)
        return {"similarity": sims, "off_targets": off.astype(np.int32), "mean": float(sims.mean()),
                "batch_size": batch_size}
