"""Shared pieces of the attribution methods: scores, input checks, layer access.

Checks run where the values are known (xai_jax.checks). Shapes, ranks and dtypes are
static under jit and always checked. Values (NaN/inf in x, the target's range) are checked
when concrete: called eagerly, the methods raise; `xai_jax.attribute` checks the whole
batch before it runs anything. Inside user-jitted code a method returns NaN maps for a
non-finite x or an out-of-range target (see `explanation_method`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xai_jax.checks import (  # noqa: F401  (re-exported for the method modules)
    check_array,
    check_callable,
    check_float,
    check_key,
    check_positive_int,
    check_precision,
    check_target,
    check_x,
    is_concrete,
    num_outputs,
    precision_scope,
)

ScoreFn = Callable[[jax.Array], jax.Array]
SCORES = ("logit", "softmax", "log_softmax")


def score_transform(score: str) -> Callable[[jax.Array], jax.Array]:
    """Maps class logits to the differentiated scores: identity, softmax or log-softmax."""
    if not isinstance(score, str):
        raise TypeError(f"score must be one of {SCORES}, got {type(score).__name__} {score!r}")
    if score == "logit":
        return lambda z: z
    if score == "softmax":
        return _nan_propagating(jax.nn.softmax)
    if score == "log_softmax":
        return _nan_propagating(jax.nn.log_softmax)
    raise ValueError(f"score must be one of {SCORES}, got {score!r}")


def _nan_propagating(normalise: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    """normalise(z), but all-NaN when a logit is NaN/inf: XLA:CPU's max ignores NaN, so a
    plain softmax can turn a NaN logit into finite probabilities (a silent wrong score)."""
    return lambda z: jnp.where(jnp.isfinite(z).all(), normalise(z), jnp.nan)


def output_size(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> int:
    """Number of class scores f returns for one unbatched x; clear error when f rejects x."""
    return num_outputs(f, tuple(x.shape), x.dtype)


def explanation_method(fn: Callable, f: Callable | None, *, keyed: bool = False, name: str | None = None,
                       reports_scores: bool = False, precision: str | None = None) -> Callable:
    """Wraps fn(x, target[, key]) -> map(s) into a public method with the boundary checks.

    The returned method(x, target[, key]):
    - checks x (float array; finite when concrete), target (integer scalar; in
      [0, number of classes) when concrete) and key (a jax.random key);
    - under jit/vmap, where values cannot be checked, returns NaN maps when x holds a
      non-finite value, the target is out of range (JAX would otherwise clamp the index
      and silently explain another class) or the model's scores f(x) are not finite (a
      broken model, or an input that overflows it); called eagerly, it raises instead;
    - carries `model_fn` (the f it explains, or None) and `keyed`, which
      `xai_jax.attribute` reads to range-check targets and to pass keys;
    - traces fn and its checks under jax.default_matmul_precision(precision) (None: JAX's
      default, i.e. TF32-class speed on GPUs); the precision is fixed at trace time, so it
      holds under the caller's jit, vmap and grad. The method carries it as `precision`.
    """
    if f is not None:
        check_callable(f, "f")
    check_precision(precision)
    sizes: dict = {}

    def method(x, target, *rest):
        with precision_scope(precision):
            return checked(x, target, *rest)

    def checked(x, target, *rest):
        x = check_x(x)
        n_classes = None
        if f is not None:
            sig = (tuple(x.shape), str(x.dtype))
            if sig not in sizes:
                sizes[sig] = num_outputs(f, sig[0], x.dtype)
            n_classes = sizes[sig]
        target = check_target(target, n_classes)
        if keyed:
            if len(rest) != 1:
                raise TypeError(f"{method.__name__} takes (x, target, key): pass a jax.random key, "
                                f"e.g. jax.random.key(0)")
            rest = (check_key(rest[0]),)
        elif rest:
            raise TypeError(f"{method.__name__} takes (x, target); got {len(rest)} extra argument(s)")
        out = fn(x, target, *rest)
        if reports_scores:  # fn returns (maps, whether the logits it computed are finite)
            out, scores_ok = out
        else:
            scores_ok = jnp.isfinite(f(x)).all() if f is not None else jnp.asarray(True)
        if is_concrete(scores_ok) and not bool(scores_ok):
            raise ValueError(f"the model returns NaN or inf scores for this x (shape {tuple(x.shape)}): "
                             f"{method.__name__} cannot explain it")
        ok = jnp.isfinite(x).all() & scores_ok
        if n_classes is not None:
            ok = ok & (target >= 0) & (target < n_classes)
        return jax.tree.map(lambda o: jnp.where(ok, o, jnp.asarray(jnp.nan, o.dtype)), out)

    method.__name__ = name or getattr(fn, "__name__", "method")
    method.__qualname__ = method.__name__
    method.__doc__ = fn.__doc__
    method.model_fn = f
    method.keyed = keyed
    method.precision = precision
    return method


def model_fn(model: nn.Module, params: Any) -> Callable[[jax.Array], jax.Array]:
    """f(x) = logits of one unbatched x for a linen module applied to batches."""
    if not hasattr(model, "apply"):
        raise TypeError(f"model must be a flax.linen Module, got {type(model).__name__}")
    return lambda x: model.apply({"params": params}, x[None])[0]


def spatial_map(attribution: jax.Array, reduce: str = "sum") -> jax.Array:
    """Collapses the trailing channel axis of an attribution shaped like x (..., C).

    reduce: "sum" (signed evidence), "abs_sum" (magnitude; the study's IG display) or "none".
    """
    check_array(attribution, "attribution")
    if reduce == "sum":
        return attribution.sum(-1)
    if reduce == "abs_sum":
        return jnp.abs(attribution).sum(-1)
    if reduce == "none":
        return attribution
    raise ValueError(f"reduce must be 'sum', 'abs_sum' or 'none', got {reduce!r}")


# ----------------------------------------------------------------------------- layers


def layer_method_prelude(model: nn.Module, params: Any, resolve: Callable[[jax.Array], Any]):
    """(f, layers_for) for methods that read a model's layers: layers_for(x) resolves (and
    checks) the layers once per input shape."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a flax.linen Module, got {type(model).__name__}")
    f = model_fn(model, params)
    cache: dict = {}

    def layers_for(x):
        key = (x.shape, str(x.dtype))
        if key not in cache:
            cache[key] = resolve(x)
        return cache[key]

    return f, layers_for


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

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a flax.linen Module, got {type(model).__name__}")
    check_array(x, "x")
    try:
        jax.eval_shape(run, jax.ShapeDtypeStruct(x.shape, x.dtype))
    except Exception as e:  # flax's own error, re-raised with what the caller passed
        raise ValueError(f"model.apply with these params cannot take x of shape {tuple(x.shape)} (one unbatched "
                         f"input): {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}") from e
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
