"""Randomisation metrics: does the explanation depend on what the model learned?

- `mprt`: Model Parameter Randomisation Test (Adebayo et al., NeurIPS 2018, "Sanity Checks
  for Saliency Maps"), as Quantus 0.6 `MPRT` defines it.
- `smooth_mprt`, `efficient_mprt`: Hedström et al. 2023/2024, "Sanity Checks Revisited:
  An Exploration to Repair the Model Parameter Randomisation Test" (Quantus `SmoothMPRT`,
  `EfficientMPRT`).
- `random_logit`: Sixt et al., ICML 2020, "When Explanations Lie" (Quantus `RandomLogit`).
- `map_similarity`: the row similarities they share (Spearman, Pearson, SSIM).

Call: metric(model, xs, explanation, targets=None, *, key=None, ...), the one metric
signature (xai_jax.metrics): `model` in any form xai_jax.adapters.adapt takes (xai_jax.Model
for linen with batch_stats, NNX, Equinox with State, Haiku), `explanation` a Method, which
the metric rebinds to each randomised model (method.rebind). The former calls
mprt(make_method, module, params, xs, targets, key=...) and random_logit(method, f, xs,
targets, key=...) are kept as aliases (docs/migration.md).

Layers are the modules that own parameters (BatchNorm included, as Quantus), in the model's
first-call order (as list_layers gives it; never a dict's key order). A layer is
randomised by replacing its weights with re-initialised ones drawn from
fold_in(key, RANDOMISE_SALT) (so that they never coincide with a training initialisation
from the same key): linen and Haiku with the model's own init, NNX and Equinox He-normal
over the fan-in with zero biases (xai_jax.adapters). `randomised=` takes the re-initialised
weights explicitly (the adapter's params structure: linen's variables dict, ...), e.g. to
feed a peer library the same weights. Params are an argument of one jitted function, so
every randomised copy reuses one compiled program. Explanations are
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

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.adapters import Model, adapt, framework, is_adapter
from xai_jax.adapters.base import salted
from xai_jax.attribution.common import pairwise_mean, resolve_chunk
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
from xai_jax.method import Method
from xai_jax.metrics.result import MetricResult
from xai_jax.metrics.similarity import (  # noqa: F401  (map_similarity re-exported)
    SIMILARITIES,
    check_similarity,
    map_similarity,
    rank_rows,
    similarities,
    spearman_ranked,
)

ORDERS = ("top_down", "bottom_up", "independent")

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


def _model_outputs(adapter, shape: tuple[int, ...]) -> int:
    """The class count of the model on inputs of `shape`, traced once per (adapter, shape)."""
    tag = (id(adapter), tuple(shape))
    if tag not in _OUTPUTS or _OUTPUTS[tag][0] is not adapter:
        if len(_OUTPUTS) > 64:
            _OUTPUTS.clear()
        _OUTPUTS[tag] = (adapter, num_outputs(adapter.f, shape))
    return _OUTPUTS[tag][1]


def _adapted(model, who: str):
    """The adapter of `model`; a Model's adapter is kept on it, so repeated calls reuse compiled programs."""
    if isinstance(model, Model):
        return model.adapter
    return adapt(model, who=who)


def _legacy_form(args: tuple) -> bool:
    """mprt(make_method, linen_module, params, xs, ...): the call before the one metric signature."""
    return (len(args) >= 3 and not isinstance(args[0], (Method, Model)) and framework(args[0]) is None
            and not is_adapter(args[0]) and framework(args[1]) == "linen")


def _method_form(explanation, who: str) -> Method:
    if isinstance(explanation, Method):
        return explanation
    if callable(explanation):
        raise TypeError(f"{who} re-computes maps on randomised models, so explanation must be an xai_jax Method "
                        f"(e.g. xai_jax.saliency(model)), which it rebinds to each randomised model; got a plain "
                        f"callable {getattr(explanation, '__name__', type(explanation).__name__)}: build the method "
                        f"with an xai_jax factory, or pass make_method=params -> method through the former call "
                        f"{who}(make_method, module, params, xs, ...)")
    raise TypeError(f"{who} re-computes maps on randomised models: explanation must be an xai_jax Method, not "
                    f"precomputed maps (got {type(explanation).__name__})")


class _ModelMetric:
    """The checked arguments of a model-randomisation metric and its map runner."""

    def __init__(self, who, make, adapter, xs, targets, key, method_key, batch_size, reduce,
                 smooth: tuple[float, int] | None = None, randomised=None, cache_owner=None):
        if reduce is not None and not callable(reduce):
            raise TypeError(f"reduce must be a function maps -> maps or None, got {type(reduce).__name__}")
        self.who = who
        self.adapter = adapter
        self.xs = np.asarray(check_batch(xs, "xs", who=who), np.float32)
        self.key = check_key(jax.random.key(0) if key is None else key)
        self.keyed = method_key is not None
        self.method_key = check_key(method_key, "method_key") if self.keyed else jax.random.key(0)
        batch_size = None if batch_size is None else check_int(batch_size, "batch_size", 1)
        self.reduce = reduce
        self.params = adapter.params
        shape = self.xs.shape[1:]
        self.layers = adapter.param_layers(shape, jnp.float32)
        if not self.layers:
            raise ValueError(f"{who}: the model has no layers that own parameters to randomise")
        n_classes = _model_outputs(adapter, shape)
        if randomised is None:
            self.fresh = adapter.fresh(salted(self.key), shape, jnp.float32)
        else:
            given, want = jax.tree.structure(randomised), jax.tree.structure(self.params)
            if given != want:
                raise ValueError(f"randomised must have the structure of the model's weights ({want}), got {given}")
            self.fresh = randomised
        keyed, mkey = self.keyed, self.method_key

        def explain(p, x, t, k):
            method = make(p)
            return method(x, t, k) if keyed else method(x, t)

        if smooth is None:
            def one(p, x, t, i):
                return explain(p, x, t, jax.random.fold_in(mkey, i))
        else:
            magnitude, n_noisy = smooth
            noise_key = jax.random.fold_in(self.key, 1)

            def one(p, x, t, i):
                # Quantus: sigma = magnitude * (max - min of x); the last sample is x itself
                sigma = magnitude * (x.max() - x.min())
                keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(noise_key, i), s))(
                    jnp.arange(n_noisy))
                noise = jax.vmap(lambda k: jax.random.normal(k, x.shape, x.dtype))(keys) * sigma
                noise = noise.at[n_noisy - 1].set(0.0)
                mkeys = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(mkey, i), s))(jnp.arange(n_noisy))
                # bounded memory on images: the noisy copies in chunks (attribution.common.resolve_chunk)
                chunk = resolve_chunk("auto", n_noisy, x.size)
                explain_noisy = lambda ek: explain(p, x + ek[0], t, ek[1])  # noqa: E731
                maps = jax.vmap(explain_noisy)((noise, mkeys)) if chunk is None else \
                    jax.lax.map(explain_noisy, (noise, mkeys), batch_size=chunk)
                return pairwise_mean(maps)

        # params are an argument of one jitted function: every randomised copy reuses its program,
        # and repeated calls with the same method, model and settings reuse it too (cached)
        tag = (smooth, keyed, np.asarray(jax.random.key_data(self.key)).tobytes(),
               np.asarray(jax.random.key_data(mkey)).tobytes() if keyed else None)
        cache = program_cache(cache_owner if cache_owner is not None else make, make)
        if tag not in cache:
            cache[tag] = jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0)))
        self._run = cache[tag]
        self.batch_size = batch_size if batch_size is not None else self._auto_batch(cache, tag)
        self.targets = _resolve_targets(adapter.f, self.xs, targets, n_classes, self.batch_size)

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
        done: list[str] = []
        for name in names:
            done = [name] if order == "independent" else [*done, name]
            yield name, self.adapter.reinit(done, self.fresh)

    def all_randomised(self):
        return self.adapter.reinit(self.layers, self.fresh)


def _layerwise(metric: _ModelMetric, order: str, similarity: str, absolute: bool, normalise: str | None):
    finite: list = []  # every state is dispatched before anything is read back
    original = metric.rows(metric.params, normalise, absolute, finite)
    similarity = check_similarity(similarity, original.shape[1])
    if similarity == "spearman":  # the original's ranks once, not once per layer
        ranked = (jnp.asarray(original), rank_rows(jnp.asarray(original)))
        compare = functools.partial(spearman_ranked, *ranked)
    else:
        compare = functools.partial(similarities, np.asarray(original), kind=similarity,
                                    batch_size=metric.batch_size)
    layers, sims = [], {}
    for name, params in metric.randomised(order):
        sims[name] = compare(jnp.asarray(metric.rows(params, normalise, absolute, finite)))
        layers.append(name)
    metric.check(finite)
    sims = {name: np.asarray(v) for name, v in sims.items()}
    values = {"layers": layers, "similarity": sims, "mean": {name: float(s.mean()) for name, s in sims.items()},
              "batch_size": metric.batch_size, "targets": metric.targets}
    # lower similarity after randomisation is better: the explanation depends on the weights
    return MetricResult(metric.who, values, sims, higher_is_better=False)


# ----------------------------------------------------------------------------- MPRT family


def _signature_args(who: str, args: tuple, kwargs: dict) -> tuple:
    """(model, xs, explanation, targets) of metric(model, xs, explanation, targets=None, ...),
    given positionally or by keyword (taken out of kwargs)."""
    names = ("model", "xs", "explanation", "targets")
    if len(args) > 4:
        raise TypeError(f"{who}() takes (model, xs, explanation, targets=None) positionally, got {len(args)} "
                        f"positional arguments")
    given = dict(zip(names, args))
    for name in names:
        if name in kwargs:
            if name in given:
                raise TypeError(f"{who}() got multiple values for argument {name!r}")
            given[name] = kwargs.pop(name)
    missing = [n for n in names[:3] if n not in given]
    if missing:
        raise TypeError(f"{who}() missing required argument(s) {missing}: call {who}(model, xs, explanation, "
                        f"targets=None, *, key=...)")
    return given["model"], given["xs"], given["explanation"], given.get("targets")


def _setup(who: str, args: tuple, kwargs: dict, smooth=None):
    """(metric, options) for mprt(model, xs, explanation, targets=None, *, ...) or the former
    mprt(make_method, module, params, xs, targets=None, *, ...)."""
    if _legacy_form(args):
        make_method, module, params, *rest = args
        if len(rest) > 2:
            raise TypeError(f"{who}() takes (make_method, model, params, xs, targets=None) in its former form")
        xs = rest[0] if rest else kwargs.pop("xs")
        targets = rest[1] if len(rest) > 1 else kwargs.pop("targets", None)
        adapter = adapt(module, params, who=who)
        owner = make_method
        if not callable(make_method):
            raise TypeError(f"make_method must be a function params -> method, got {type(make_method).__name__}")
        if isinstance(params, dict) and "params" not in params:  # make_method takes the params collection
            def make(v, make_method=make_method):
                return make_method(v["params"])
        else:
            make = make_method
    else:
        model, xs, explanation, targets = _signature_args(who, args, kwargs)
        method = _method_form(explanation, who)
        adapter = _adapted(model, who)
        if adapter.kind in ("function", "Split"):
            _ = adapter.params  # raises the adapter's TypeError: nothing to randomise
        make, owner = (lambda p: method.rebind(adapter.with_params(p))), (method, adapter)
        owner = _owner(owner)
    common = {k: kwargs.pop(k) for k in ("key", "method_key", "batch_size", "reduce", "randomised") if k in kwargs}
    channel_axis, mesh = kwargs.pop("channel_axis", None), kwargs.pop("mesh", None)
    del mesh  # accepted everywhere; the randomisation metrics run on the default device
    if channel_axis is not None:
        check_int(channel_axis, "channel_axis")  # maps are computed by the method in the model's own layout
    metric = _ModelMetric(who, make, adapter, xs, targets, common.get("key"), common.get("method_key"),
                          common.get("batch_size"), common.get("reduce"), smooth=smooth,
                          randomised=common.get("randomised"), cache_owner=owner)
    return metric, kwargs


_OWNERS: dict = {}


def _owner(pair):
    """One cache owner per (method, adapter): compiled programs live on it (weakly held by neither)."""
    method, adapter = pair
    key = (id(method), id(adapter))
    hit = _OWNERS.get(key)
    if hit is None or hit[0] is not method or hit[1] is not adapter:
        if len(_OWNERS) > 32:
            _OWNERS.clear()

        class _Owner:  # a fresh object with a __dict__ for batching.program_cache
            pass

        hit = (method, adapter, _Owner())
        _OWNERS[key] = hit
    return hit[2]


def _unknown(who: str, kwargs: dict) -> None:
    if kwargs:
        raise TypeError(f"{who}() got unexpected keyword argument(s) {sorted(kwargs)}")


def mprt(*args, precision: str | None = "highest", order: str = "top_down", similarity: str = "spearman",
         absolute: bool = True, normalise: bool = True, **kwargs) -> MetricResult:
    """Model Parameter Randomisation Test (Adebayo et al. 2018), as Quantus 0.6 `MPRT`.

    mprt(model, xs, explanation, targets=None, *, key=None, batch_size=None,
         precision="highest", channel_axis=None, mesh=None, order="top_down",
         similarity="spearman", absolute=True, normalise=True, method_key=None,
         reduce=None, randomised=None)

    For each layer l (in randomisation order), with e(x) the map of the trained model and
    e_l(x) the map after randomising: similarity_l(x) = sim(post(e(x)), post(e_l(x))),
    post(a) = |a / max|a|| (abs and normalise as set). A method that depends on the learned
    weights loses similarity as layers are randomised (lower is better).

    model: any form xai_jax.adapters.adapt takes (xai_jax.Model(...) keeps the compiled
    programs between calls). explanation: a Method, rebound to every randomised model.
    order: "top_down" (cascading from the output layer, Quantus' default), "bottom_up" or
    "independent" (each layer alone). Layers and their re-initialisation: see the module
    docstring. key: None means jax.random.key(0). similarity: "spearman", "pearson" or
    "ssim" (see map_similarity). targets: (N,) classes, or None for the class the trained
    model predicts. method_key: for keyed methods; input i gets fold_in(method_key, i), the
    same for every layer. reduce: maps (N, ...) -> (N, ...) NumPy, e.g. a channel sum.
    randomised: the re-initialised weights to use (the model's weight structure).

    Returns a MetricResult: {"layers": [names in randomisation order], "similarity":
    {layer: (N,)}, "mean": {layer: float}, "batch_size": inputs per compiled call,
    "targets": (N,)}; .scores = the similarities per layer, higher_is_better False.
    Deviation from Quantus: maps are normalised one by one, and a constant map has a
    defined similarity (see map_similarity; Quantus/scipy return NaN).
    precision: jax.default_matmul_precision for every model evaluation (None: JAX's default).
    The former call mprt(make_method, linen_module, params, xs, targets, key=) still works.
    """
    with precision_scope(precision):
        check_choice(order, "order", ORDERS)
        absolute, normalise = _check_bool(absolute, "absolute"), _check_bool(normalise, "normalise")
        metric, rest = _setup("mprt", args, kwargs)
        _unknown("mprt", rest)
        return _layerwise(metric, order, similarity, absolute, "max" if normalise else None)


def smooth_mprt(*args, precision: str | None = "highest", noise_magnitude: float = 0.1, n_noisy: int = 50,
                order: str = "bottom_up", similarity: str = "spearman", absolute: bool = True,
                normalise: bool = True, **kwargs) -> MetricResult:
    """Smooth MPRT (Hedström et al. 2023, "Sanity Checks Revisited"), as Quantus `SmoothMPRT`.

    smooth_mprt(model, xs, explanation, targets=None, *, key=None, noise_magnitude=0.1,
                n_noisy=50, order="bottom_up", ...): the arguments and result of `mprt`.

    MPRT on denoised explanations: e~(x) = (1/K) sum_k e(x + eps_k), eps_k ~ N(0, sigma^2 I),
    sigma = noise_magnitude * (max(x) - min(x)), K = n_noisy, the last eps_K = 0 (Quantus
    keeps one noise-free copy). Maps are averaged first, then normalised by their average
    second moment, a / sqrt(mean(a^2)) (Binder et al. 2022), then |.|. Quantus' defaults:
    noise_magnitude 0.1, 50 samples, bottom-up cascading order.

    The noise of input i, sample k comes from fold_in(fold_in(fold_in(key, 1), i), k), the
    same for the trained and every randomised model (Quantus draws fresh noise each time;
    common noise removes that variance from the comparison). A batch evaluates
    batch_size * n_noisy explanations.
    """
    with precision_scope(precision):
        check_choice(order, "order", ORDERS)
        magnitude = check_float(noise_magnitude, "noise_magnitude", low=0.0)
        n_noisy = check_int(n_noisy, "n_noisy", 1)
        absolute, normalise = _check_bool(absolute, "absolute"), _check_bool(normalise, "normalise")
        metric, rest = _setup("smooth_mprt", args, kwargs, smooth=(magnitude, n_noisy))
        _unknown("smooth_mprt", rest)
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



def efficient_mprt(*args, precision: str | None = "highest", n_bins: int = 100, absolute: bool = False,
                   normalise: bool = False, **kwargs) -> MetricResult:
    """Efficient MPRT (Hedström et al. 2023, "Sanity Checks Revisited"), as Quantus `EfficientMPRT`.

    efficient_mprt(model, xs, explanation, targets=None, *, key=None, n_bins=100,
                   absolute=False, normalise=False, ...) (other arguments as `mprt`).

    The relative rise in explanation complexity from the trained to the fully randomised
    model (every layer re-initialised, see the module docstring):
        eMPRT(x) = (H(e_rand(x)) - H(e(x))) / H(e(x)),
    H = discrete entropy (nats) of the histogram of the map's values in n_bins equal-width
    bins over [min, max] (Quantus' `discrete_entropy`). Higher is better: a method that
    depends on the weights gets noisier, more complex maps.

    Returns a MetricResult {"score": (N,), "complexity_original": (N,),
    "complexity_randomised": (N,), "mean": float, "batch_size": int}. The ratio is undefined
    where H(e(x)) = 0 (a constant original map): such scores are NaN, "mean" averages the
    others, and a warning names the inputs (Quantus divides by zero).
    """
    with precision_scope(precision):
        n_bins = check_int(n_bins, "n_bins", 1)
        absolute, normalise = _check_bool(absolute, "absolute"), _check_bool(normalise, "normalise")
        metric, rest = _setup("efficient_mprt", args, kwargs)
        _unknown("efficient_mprt", rest)
        entropies = _entropy_program(n_bins)

        def complexity(p):
            flat = metric.rows(p, "second_moment" if normalise else None, absolute)
            return run_in_batches(entropies, (flat,), min(metric.batch_size, len(flat)))

        h_orig, h_rand = complexity(metric.params), complexity(metric.all_randomised())
        defined = h_orig > 0
        score = np.where(defined, (h_rand - h_orig) / np.where(defined, h_orig, 1.0), np.nan)
        if not defined.all():
            warnings.warn(f"efficient_mprt: the original maps of inputs {np.flatnonzero(~defined)[:5].tolist()} are "
                          f"constant (entropy 0), so their relative rise is undefined (NaN)", stacklevel=2)
        mean = float(score[defined].mean()) if defined.any() else float("nan")
        values = {"score": score, "complexity_original": h_orig, "complexity_randomised": h_rand, "mean": mean,
                  "batch_size": metric.batch_size, "targets": metric.targets}
        return MetricResult("efficient_mprt", values, score, higher_is_better=True)


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


def random_logit(*args, **kwargs) -> MetricResult:
    """Random Logit test (Sixt et al. 2020, "When Explanations Lie"), as Quantus `RandomLogit`.

    random_logit(model, xs, explanation, targets=None, *, key=None, num_classes=None,
                 similarity="spearman", absolute=False, normalise=True, method_key=None,
                 batch_size=None, reduce=None, precision="highest", channel_axis=None, mesh=None)

    model: any form xai_jax.adapters.adapt takes (it gives the predicted class and the class
    count); explanation: a Method (or a factory model -> method such as xai_jax.saliency).
    See `_random_logit` for the definition and result. The former call
    random_logit(method_or_factory, f, xs, targets, key=...) still works.
    """
    if len(args) >= 3 and not callable(args[2]) and callable(args[1]):  # the former (method, f, xs, ...)
        return _random_logit(*args, **kwargs)
    model, xs, explanation, targets = _signature_args("random_logit", args, kwargs)
    channel_axis = kwargs.pop("channel_axis", None)
    kwargs.pop("mesh", None)  # accepted everywhere; runs on the default device
    if channel_axis is not None:
        check_int(channel_axis, "channel_axis")
    adapter = _adapted(model, "random_logit")
    return _random_logit(explanation, adapter.f, xs, targets, **kwargs)


def _random_logit(
    method_or_factory: Callable,
    f: Callable[[jax.Array], jax.Array],
    xs,
    targets=None,
    *,
    key: jax.Array | None = None,
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

    Returns a MetricResult {"similarity": (N,), "off_targets": (N,) the drawn classes, "mean":
    float, "batch_size": inputs per compiled call, "targets": (N,)}; higher_is_better False.
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
        key = check_key(jax.random.key(0) if key is None else key)
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
        # the method object itself (not its id, which a later object may reuse) is part of the tag
        tag = ("random_logit", method_or_factory, keyed, num_classes,
               np.asarray(jax.random.key_data(key)).tobytes(), np.asarray(jax.random.key_data(mkey)).tobytes())
        cache = program_cache(f, method)
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
        sims = similarities(a, b, check_similarity(similarity, int(np.prod(a.shape[1:]))), batch_size)
        values = {"similarity": sims, "off_targets": off.astype(np.int32), "mean": float(sims.mean()),
                  "batch_size": batch_size, "targets": targets}
        return MetricResult("random_logit", values, sims, higher_is_better=False)
