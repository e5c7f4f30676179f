"""The one metric signature, applied to every metric family's implementation.

Every model-evaluating metric is

    metric(model, xs, explanation, targets=None, *, key=None, batch_size=None,
           precision="highest", channel_axis=None, mesh=None, **options) -> MetricResult

- model: a function f(x) -> class scores of one unbatched x, or any form xai_jax.adapters.adapt
  takes (xai_jax.Model(...) for linen with batch_stats, NNX, Equinox with State, Haiku).
- xs: (N, ...) inputs. explanation: the maps (N, ...) or a Method, whose maps the metric
  computes first with xai_jax.attribute (metrics that must recompute maps, the MPRT family,
  random logit, max-sensitivity, take a Method and say so).
  Maps of the input's shape given to a metric that masks by a spatial map (drop/increase,
  deletion/insertion, pixel flipping, region perturbation, ROAD, faithfulness correlation)
  are reduced to the spatial shape by summing over the channel axis (`spatial_maps`).
- targets: (N,) classes, or None for the class the model predicts for each clean input
  (ties: the lowest index), resolved once here and passed on (perturbed or noisy copies and
  randomised models receive the resolved class).
- key: None means jax.random.key(0) for every keyed metric (results are reproducible by
  default); batch_size: inputs per compiled call, None for as many as fit the memory budget
  (`auto_batch_size`: XLA's memory analysis of the model's forward pass, divided by the model
  evaluations one input costs the metric, which each metric states); precision governs the
  metric's own model calls (a Method's maps follow the Method's precision); channel_axis:
  None means the adapter's layout (-1; 0 for Equinox); mesh: accepted everywhere, a no-op
  where a metric does no sharded model work.
- outputs: None (logits, checked), "logits" or "probabilities", what the model returns. A
  metric whose score is a softmax (score="softmax", the default of most) checks xs[0]'s
  outputs: outputs that read as probabilities (non-negative, summing to 1) are a ValueError
  naming outputs="probabilities" (with it, the softmax score is the outputs as they are);
  an explicit outputs="logits" skips the check.
- The ground-truth metrics take (explanation, support); sparseness and complexity take
  (explanation); all return a MetricResult (xai_jax.metrics.result).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from xai_jax.attribution.common import check_outputs, looks_like_probabilities, outputs_scope, probabilities_error
from xai_jax.checks import check_int, precision_scope
from xai_jax.method import Method
from xai_jax.metrics.result import MetricResult


def resolve_model(model: Any, who: str) -> tuple[Callable, int]:
    """(f, default channel axis) for a model in any documented form."""
    from xai_jax.adapters import adapt, framework, is_adapter
    from xai_jax.adapters.base import Model
    if isinstance(model, Model):
        adapter = model.adapter
        return model, adapter.default_channel_axis
    if is_adapter(model) or framework(model) is not None:
        adapter = adapt(model, who=who)
        return adapter, adapter.default_channel_axis
    if not callable(model):
        raise TypeError(f"{who}: model must be a function x -> class scores or an xai_jax.Model(module, variables, "
                        f"...); got {type(model).__name__}")
    return model, -1


def predicted_targets(f: Callable, xs, batch_size: int = 256) -> np.ndarray:
    """argmax f(x) per input (ties: the lowest index), in compiled batches."""
    from xai_jax.batching import program_cache, run_in_batches
    from xai_jax.checks import check_batch
    xs = check_batch(xs, "xs")
    run = program_cache(f).setdefault(("predicted",), jax.jit(jax.vmap(lambda x: f(x).argmax())))
    out = np.asarray(run_in_batches(run, (np.asarray(xs),), min(batch_size, len(xs))))
    return out.astype(np.int32)


def forward_capacity(f: Callable, x_shape: tuple[int, ...], dtype=np.float32) -> int | None:
    """Model evaluations per call that fit the memory budget (xai_jax.batching.inputs_per_call
    of jit(vmap(f))), probed once per model and input shape; None without XLA figures."""
    from xai_jax.batching import inputs_per_call, program_cache
    cache = program_cache(f)
    tag = ("forward_capacity", tuple(x_shape), str(np.dtype(dtype)))
    if tag not in cache:
        cache[tag] = inputs_per_call(jax.jit(jax.vmap(f)), (jax.ShapeDtypeStruct(tuple(x_shape), dtype),))
    return cache[tag]


def auto_batch_size(f: Callable, x_shape: tuple[int, ...], evaluations: int, n: int) -> int | None:
    """Inputs per call when each input costs `evaluations` model evaluations: the forward
    capacity / evaluations, at least 1 and at most n; None when XLA gives no figures."""
    capacity = forward_capacity(f, x_shape)
    if capacity is None:
        return None
    return int(min(max(1, capacity // max(1, int(evaluations))), max(1, n)))


def spatial_maps(maps: np.ndarray, xs_shape: tuple[int, ...], channel_axis: int) -> np.ndarray:
    """Maps shaped like the inputs (N, *x.shape) summed over the channel axis -> (N, *spatial);
    maps already of the spatial shape are returned as they are."""
    maps = np.asarray(maps)
    if maps.shape == tuple(xs_shape) and len(xs_shape) >= 3:
        return maps.sum(axis=1 + channel_axis % (len(xs_shape) - 1))
    return maps


def _maps_of(method: Method, xs, targets, key, channel_axis: int, who: str) -> np.ndarray:
    from xai_jax.batching import attribute
    if method.returns_delta:
        raise TypeError(f"{who}: the method returns (maps, delta); build it without return_delta=True")
    return np.asarray(attribute(method, xs, targets, key=jax.random.fold_in(key, 7) if method.keyed else None,
                                progress=False))


def check_not_probabilities(f: Callable | None, xs, who: str) -> None:
    """ValueError when f's outputs for xs[0] read as probabilities (a model not declared with
    outputs="probabilities" under a softmax score). One compiled call of f, cached on f."""
    if f is None or np.ndim(xs) < 2 or np.shape(xs)[0] == 0:
        return
    from xai_jax.batching import program_cache
    x0 = xs[0]
    if not np.isfinite(np.asarray(x0)).all():
        return  # the metric's own checks name the non-finite input
    cache = program_cache(f)
    tag = ("outputs_probe", tuple(np.shape(x0)), str(x0.dtype))
    if tag not in cache:
        cache[tag] = jax.jit(lambda x: looks_like_probabilities(f(x)))
    try:
        probabilities = bool(cache[tag](x0))
    except Exception:  # f cannot take x0: the metric's own checks say why
        return
    if probabilities:
        raise probabilities_error(who, " for xs[0]")


def unified(impl: Callable, *, name: str, scores: str | Callable[[Mapping], Any],
            higher_is_better: bool | Callable[[dict], Any], explanation: str = "maps",
            explanation_arg: str = "saliency", spatial: bool = True, keyed: bool = False,
            accepts: tuple[str, ...] = (), renames: Mapping[str, str] | None = None,
            evaluations: Callable[[dict, int], int] | None = None) -> Callable:
    """The public metric(model, xs, explanation, targets=None, *, ...) over impl(f, xs, maps, ...).

    explanation: "maps" (impl takes maps; a Method is run first), "method" (impl takes the
    Method itself, e.g. max-sensitivity). spatial: maps are reduced to the spatial shape.
    keyed: impl takes key= (None -> jax.random.key(0)). accepts: which of batch_size,
    precision, channel_axis, mesh impl takes itself. renames: option aliases -> impl names
    (e.g. normalise -> normalize). evaluations(options, spatial size): the model evaluations
    one input costs the metric, for batch_size=None (see auto_batch_size)."""
    renames = dict(renames or {})
    try:
        default_score = inspect.signature(impl).parameters["score"].default
    except (KeyError, TypeError, ValueError):
        default_score = None

    @functools.wraps(impl)
    def metric(model, xs, explanation_value=None, targets=None, *, key=None, batch_size=None,
               precision="highest", channel_axis=None, mesh=None, **options):
        if (explanation == "method" and explanation_value is not None and not callable(explanation_value)
                and callable(model) and targets is None):
            # the former call metric(method, xs, targets, ...): the method first, then its model
            model, explanation_value, targets = getattr(model, "model_fn", None), model, explanation_value
        if model is None:
            f, default_axis = None, -1
        else:
            f, default_axis = resolve_model(model, name)
        axis = default_axis if channel_axis is None else check_int(channel_axis, "channel_axis")
        if explanation_value is None and explanation_arg in options:
            explanation_value = options.pop(explanation_arg)
        if explanation_value is None:
            raise TypeError(f"{name}() missing its explanation: {name}(model, xs, explanation, targets=None, ...)")
        for alias, real in renames.items():
            if alias in options:
                options[real] = options.pop(alias)
        outputs = options.pop("outputs", None)
        if outputs is not None:
            check_outputs(outputs)
        key = jax.random.key(0) if key is None else key
        xs_arr = xs if hasattr(xs, "shape") else np.asarray(xs)
        if outputs is None and options.get("score", default_score) in ("softmax", "log_softmax"):
            with precision_scope(precision):  # a model call of the metric's own
                check_not_probabilities(f, xs_arr, name)
        if targets is None and f is not None and np.ndim(xs_arr) >= 2 and np.shape(xs_arr)[0] > 0 and np.isfinite(
                np.asarray(xs_arr)).all():
            with precision_scope(precision):  # a model call of the metric's own
                targets = predicted_targets(f, xs_arr)
        if explanation == "maps":
            if isinstance(explanation_value, Method) or (callable(explanation_value)
                                                         and not hasattr(explanation_value, "shape")):
                method = Method.wrap(explanation_value)
                if targets is None:
                    raise ValueError(f"{name}: targets=None needs finite inputs to predict the classes")
                explanation_value = _maps_of(method, xs_arr, targets, key, axis, name)
            if spatial and hasattr(explanation_value, "shape"):
                explanation_value = spatial_maps(explanation_value, tuple(np.shape(xs_arr)), axis)
        elif not callable(explanation_value):
            raise TypeError(f"{name} re-computes maps on perturbed inputs, so explanation must be a Method (e.g. "
                            f"xai_jax.saliency(model)), not precomputed maps (got {type(explanation_value).__name__})")
        kwargs = dict(options)
        if keyed:
            kwargs["key"] = key
        if (batch_size is None and evaluations is not None and "batch_size" in accepts and f is not None
                and mesh is None and np.ndim(xs_arr) >= 2 and np.shape(xs_arr)[0] > 0):
            # (with a mesh every process must make the same calls: the metric's own default there)
            x_shape = tuple(np.shape(xs_arr)[1:])
            spatial_size = int(np.prod(x_shape)) // max(1, x_shape[axis])
            with precision_scope(precision):
                batch_size = auto_batch_size(f, x_shape, evaluations(options, spatial_size), np.shape(xs_arr)[0])
        if batch_size is not None and "batch_size" in accepts:
            kwargs["batch_size"] = batch_size
        if "precision" in accepts:
            kwargs["precision"] = precision
        if channel_axis is not None or axis != -1:
            if "channel_axis" in accepts:
                kwargs["channel_axis"] = axis
        if mesh is not None and "mesh" in accepts:
            kwargs["mesh"] = mesh
        with precision_scope(precision), outputs_scope(outputs):  # the metric's own model calls
            values = impl(f, xs, explanation_value, targets=targets, **kwargs)
        per_input = scores(values) if callable(scores) else values[scores]
        settings = {**options, "channel_axis": axis}
        better = higher_is_better(settings) if callable(higher_is_better) else higher_is_better
        values = dict(values)
        values.setdefault("targets", None if targets is None else np.asarray(targets))
        if kwargs.get("batch_size") is not None:
            values.setdefault("batch_size", kwargs["batch_size"])
        return MetricResult(name, values, per_input, better)

    metric.__signature_doc__ = (f"{name}(model, xs, explanation, targets=None, *, key=None, batch_size=None, "
                                f"precision='highest', channel_axis=None, mesh=None, **options)")
    return metric


def ground_truth(impl: Callable, *, name: str, higher_is_better: bool = True) -> Callable:
    """metric(explanation, support, **options) -> MetricResult over impl(maps, support) -> (N,)."""
    @functools.wraps(impl)
    def metric(explanation, support=None, *, mesh=None, **options):
        del mesh  # accepted everywhere: no model work here
        values = np.asarray(impl(explanation, support, **options) if support is not None
                            else impl(explanation, **options))
        return MetricResult(name, {name: values, "mean": float(np.nanmean(values)) if values.size else float("nan")},
                            values, higher_is_better)
    return metric
