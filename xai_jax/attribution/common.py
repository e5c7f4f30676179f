"""Shared pieces of the attribution methods: scores, input checks, layer access.

Checks run where the values are known. Shapes, ranks and dtypes are static under jit and
are always checked. Values (NaN/inf in x, the target's range) can only be checked when
they are concrete: called eagerly, the methods check them; under jit/vmap the batching
helper `xai_jax.attribute` checks the whole batch before it traces anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ScoreFn = Callable[[jax.Array], jax.Array]
SCORES = ("logit", "softmax", "log_softmax")


def score_transform(score: str) -> Callable[[jax.Array], jax.Array]:
    """Maps class logits to the differentiated scores: identity, softmax or log-softmax."""
    if score == "logit":
        return lambda z: z
    if score == "softmax":
        return jax.nn.softmax
    if score == "log_softmax":
        return jax.nn.log_softmax
    raise ValueError(f"score must be one of {SCORES}, got {score!r}")


_TRACER = getattr(jax.core, "Tracer", None)
if _TRACER is None:  # moved in newer JAX releases
    from jax._src.core import Tracer as _TRACER  # noqa: N811


def is_concrete(*xs: Any) -> bool:
    """True when no argument is a tracer (so its values can be checked in Python)."""
    return not any(isinstance(x, _TRACER) for x in xs)


def check_x(x: Any, name: str = "x") -> jax.Array:
    """x must be a float array; when concrete, finite."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must have a float dtype, got {x.dtype}")
    if is_concrete(x) and not bool(np.isfinite(np.asarray(x)).all()):
        raise ValueError(f"{name} contains NaN or inf values (shape {tuple(x.shape)})")
    return jnp.asarray(x)


def check_target(target: Any, num_classes: int) -> jax.Array:
    """target must be an integer scalar; when concrete, in [0, num_classes)."""
    if isinstance(target, bool) or not (
        isinstance(target, (int, np.integer))
        or (hasattr(target, "dtype") and jnp.issubdtype(target.dtype, jnp.integer))
    ):
        raise TypeError(
            f"target must be an integer class index, got {type(target).__name__}"
            + (f" of dtype {target.dtype}" if hasattr(target, "dtype") else "")
        )
    if jnp.ndim(target) != 0:
        raise ValueError(f"target must be a scalar class index, got shape {jnp.shape(target)}")
    if is_concrete(target) and not 0 <= int(target) < num_classes:
        raise ValueError(f"target {int(target)} is out of range: the model has {num_classes} classes")
    return jnp.asarray(target, jnp.int32)


def output_size(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> int:
    """Number of class scores f returns for one unbatched x; clear error when f rejects x."""
    try:
        out = jax.eval_shape(f, jax.ShapeDtypeStruct(x.shape, x.dtype))
    except Exception as e:  # the model's own error, re-raised with what the caller passed
        raise ValueError(
            f"f cannot take x of shape {tuple(x.shape)} (one unbatched input is expected): "
            f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        ) from e
    if len(out.shape) != 1:
        raise ValueError(
            f"f must return a vector of class scores for one unbatched x; for x of shape "
            f"{tuple(x.shape)} it returned shape {tuple(out.shape)} (is x batched?)"
        )
    return out.shape[0]


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def model_fn(model: nn.Module, params: Any) -> Callable[[jax.Array], jax.Array]:
    """f(x) = logits of one unbatched x for a linen module applied to batches."""
    return lambda x: model.apply({"params": params}, x[None])[0]


def spatial_map(attribution: jax.Array, reduce: str = "sum") -> jax.Array:
    """Collapses the trailing channel axis of an attribution shaped like x (..., C).

    reduce: "sum" (signed evidence), "abs_sum" (magnitude; the study's IG display) or "none".
    """
    if reduce == "sum":
        return attribution.sum(-1)
    if reduce == "abs_sum":
        return jnp.abs(attribution).sum(-1)
    if reduce == "none":
        return attribution
    raise ValueError(f"reduce must be 'sum', 'abs_sum' or 'none', got {reduce!r}")


# ----------------------------------------------------------------------------- layers


def layer_method_prelude(model: nn.Module, params: Any, resolve: Callable[[jax.Array], Any]):
    """(f, prepare) for methods that read a model's layers: prepare(x, target) checks both
    and returns (x, target, resolve(x)), resolving the layers once per input shape."""
    f = model_fn(model, params)
    cache: dict = {}

    def prepare(x, target):
        x = check_x(x)
        target = check_target(target, output_size(f, x))
        key = (x.shape, str(x.dtype))
        if key not in cache:
            cache[key] = resolve(x)
        return x, target, cache[key]

    return f, prepare


def _path(module: nn.Module) -> str:
    return "/".join(module.path)


def list_layers(model: nn.Module, params: Any, x: jax.Array) -> list[tuple[str, str, tuple[int, ...]]]:
    """(path, module class, output shape) of every submodule call, in call order, for one x."""
    found: list[tuple[str, str, tuple[int, ...]]] = []
    depth: dict[str, int] = {}

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__" or not context.module.path:
            return next_fun(*args, **kwargs)
        key = _path(context.module)
        depth[key] = depth.get(key, 0) + 1
        out = next_fun(*args, **kwargs)
        depth[key] -= 1
        if depth[key] == 0 and hasattr(out, "shape") and key not in [f[0] for f in found]:
            found.append((key, type(context.module).__name__, tuple(out.shape)))
        return out

    def run(x):
        with nn.intercept_methods(interceptor):
            return model.apply({"params": params}, x[None])

    jax.eval_shape(run, jax.ShapeDtypeStruct(x.shape, x.dtype))
    return found


def _is_conv(module_class_name: str) -> bool:
    return "Conv" in module_class_name


def resolve_layer(
    model: nn.Module, params: Any, x: jax.Array, layer: str | None
) -> tuple[str, tuple[int, ...]]:
    """Validated (layer path, activation shape with batch axis). layer=None: the last conv."""
    layers = list_layers(model, params, x)
    if layer is None:
        convs = [entry for entry in layers if _is_conv(entry[1]) and len(entry[2]) >= 3]
        if not convs:
            raise ValueError(
                f"layer=None found no convolution with spatial axes; name one of "
                f"{[name for name, _, _ in layers]}"
            )
        name, _, shape = convs[-1]
    else:
        matches = [entry for entry in layers if entry[0] == layer]
        if not matches:
            raise ValueError(
                f"layer {layer!r} is not a submodule of {type(model).__name__}; valid layers: "
                f"{[name for name, _, _ in layers]}"
            )
        name, _, shape = matches[0]
    if len(shape) < 3:
        raise ValueError(
            f"layer {name!r} outputs shape {shape[1:]} per input, which has no spatial axes; "
            f"a CAM needs a feature map (spatial..., channels)"
        )
    return name, shape


def resolve_layers(
    model: nn.Module, params: Any, x: jax.Array, layers: Sequence[str] | None
) -> list[tuple[str, tuple[int, ...]]]:
    """Several layers; None: the last convolution at each spatial resolution (block ends)."""
    if layers is None:
        found = [e for e in list_layers(model, params, x) if _is_conv(e[1]) and len(e[2]) >= 3]
        ends: list[tuple[str, tuple[int, ...]]] = []
        for i, (name, _, shape) in enumerate(found):
            nxt = found[i + 1][2][1:-1] if i + 1 < len(found) else None
            if nxt != shape[1:-1]:
                ends.append((name, shape))
        if not ends:
            raise ValueError("layers=None found no convolution with spatial axes in the model")
        return ends
    if isinstance(layers, str) or len(layers) == 0:
        raise ValueError(f"layers must be a non-empty list of layer names, got {layers!r}")
    return [resolve_layer(model, params, x, name) for name in layers]


def apply_with_layers(
    model: nn.Module, params: Any, x: jax.Array, layers: Sequence[str], deltas: Sequence[jax.Array] | None = None
) -> tuple[jax.Array, list[jax.Array]]:
    """Logits of one unbatched x, the outputs of `layers` (batched, (1, ...)), optionally
    with `deltas` added to those outputs (so that d logits / d delta = d logits / d layer)."""
    captured: dict[str, jax.Array] = {}
    depth: dict[str, int] = {}
    index = {name: i for i, name in enumerate(layers)}

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        key = _path(context.module)
        depth[key] = depth.get(key, 0) + 1
        out = next_fun(*args, **kwargs)
        depth[key] -= 1
        # only the outermost call of the module, and only its first use
        if depth[key] == 0 and key in index and key not in captured:
            captured[key] = out
            if deltas is not None:
                out = out + deltas[index[key]]
        return out

    with nn.intercept_methods(interceptor):
        logits = model.apply({"params": params}, x[None])[0]
    return logits, [captured[name] for name in layers]


def upsample(maps: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
    """Resizes maps (..., *layer_spatial) to (..., *spatial) by (bi)linear interpolation."""
    lead = maps.shape[: maps.ndim - len(spatial)]
    if maps.shape[len(lead):] == tuple(spatial):
        return maps
    return jax.image.resize(maps, (*lead, *spatial), method="linear")


def minmax(v: jax.Array, axes: tuple[int, ...] | None = None, eps: float = 1e-12) -> jax.Array:
    """(v - min) / (max - min) over axes; a constant map becomes zeros (never NaN)."""
    lo = v.min(axis=axes, keepdims=True)
    hi = v.max(axis=axes, keepdims=True)
    span = hi - lo
    return jnp.where(span > eps, (v - lo) / jnp.where(span > eps, span, 1.0), 0.0)
