"""Input checks for the public boundary: one place, one wording.

Every check raises TypeError (wrong kind of thing) or ValueError (right kind, bad value)
with a message that names the argument, says what was received and what was expected.
Shapes, ranks and dtypes are static under jit and always checked. Values (NaN, the range
of a target) can only be checked when concrete; traced values are left to the NaN guard
of the methods (see xai_jax.attribution.common.explanation_method).

This module sits below every other one (data, models, train, attribution, metrics).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_TRACER = getattr(jax.core, "Tracer", None)
if _TRACER is None:  # moved in newer JAX releases
    from jax._src.core import Tracer as _TRACER  # noqa: N811


def error_summary(e: BaseException) -> str:
    """'ErrorType: first line of the message' (at most 300 characters), for errors re-raised
    with what the caller passed."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"


def is_concrete(*xs: Any) -> bool:
    """True when no argument is a tracer (so its values can be checked in Python)."""
    return not any(isinstance(x, _TRACER) for x in xs)


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """A Python/NumPy int (bools rejected) >= minimum."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    return check_int(value, name, minimum)


def check_optional_int(value: Any, name: str, minimum: int = 1) -> int | None:
    return None if value is None else check_int(value, name, minimum)


def check_float(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number (bools and strings rejected) in the given interval."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        if hasattr(value, "shape") and np.ndim(value) == 0 and is_concrete(value):
            value = float(np.asarray(value))
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if abs(value) > FLOAT32_MAX:  # it meets float32 inputs, where it would become inf
        raise ValueError(f"{name} must fit in float32 (|{name}| <= {FLOAT32_MAX:.4g}), got {value:g}")
    lo_bad = low is not None and (value <= low if low_open else value < low)
    hi_bad = high is not None and (value >= high if high_open else value > high)
    if lo_bad or hi_bad:
        if high is None:
            want = f"be {'>' if low_open else '>='} {low:g}"
        elif low is None:
            want = f"be {'<' if high_open else '<='} {high:g}"
        else:
            want = f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must {want}, got {value:g}")
    return value


def check_choice(value: Any, name: str, choices: tuple) -> Any:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_array(x: Any, name: str = "x", *, float_only: bool = True) -> Any:
    """An array (NumPy, JAX or tracer) of a float (or, if allowed, integer) dtype."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if float_only and not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must have a float dtype, got {x.dtype}")
    return x


HALF_FLOATS = (jnp.bfloat16, jnp.float16)


def check_x(x: Any, name: str = "x") -> jax.Array:
    """One unbatched input: a float array; when concrete, finite. Half-precision inputs
    (bfloat16, float16) are computed in float32: a model's float32 weights would otherwise
    meet them in mixed-dtype gradients (found by the property tests: ablation_cam crashed in
    JAX's transpose rules), and their maps come back float32."""
    check_array(x, name)
    if is_concrete(x) and not bool(np.isfinite(np.asarray(x, np.float32)).all()):
        raise ValueError(f"{name} contains NaN or inf values (shape {tuple(x.shape)})")
    x = jnp.asarray(x)
    return x.astype(jnp.float32) if x.dtype in HALF_FLOATS else x


def check_target(target: Any, num_classes: int | None, name: str = "target") -> jax.Array:
    """An integer scalar class index; when concrete (and num_classes known), in [0, num_classes)."""
    if isinstance(target, (bool, np.bool_)) or not (
        _is_int(target) or (hasattr(target, "dtype") and jnp.issubdtype(target.dtype, jnp.integer))
    ):
        raise TypeError(
            f"{name} must be an integer class index, got {type(target).__name__}"
            + (f" of dtype {target.dtype}" if hasattr(target, "dtype") else f" {target!r}")
        )
    if jnp.ndim(target) != 0:
        raise ValueError(f"{name} must be a scalar class index, got shape {jnp.shape(target)}")
    if num_classes is not None and is_concrete(target) and not 0 <= int(target) < num_classes:
        raise ValueError(f"{name} {int(target)} is out of range: the model has {num_classes} classes "
                         f"(expected a class in [0, {num_classes}))")
    return jnp.asarray(target, jnp.int32)


def check_key(key: Any, name: str = "key") -> jax.Array:
    """A jax.random key: a typed key (jax.random.key) or a legacy uint32 (2,) key."""
    typed = hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    legacy = hasattr(key, "dtype") and key.dtype == jnp.uint32 and tuple(key.shape) == (2,)
    if not (typed or legacy):
        got = type(key).__name__ + (f" of dtype {key.dtype}, shape {tuple(key.shape)}" if hasattr(key, "dtype")
                                    else f" {key!r}")
        raise TypeError(f"{name} must be a jax.random key (e.g. jax.random.key(0)), got {got}")
    if typed and jnp.ndim(key) != 0:
        raise ValueError(f"{name} must be a single jax.random key, got a key array of shape {tuple(key.shape)}")
    return key


def check_batch(xs: Any, name: str = "xs", *, who: str = "this function") -> np.ndarray | jax.Array:
    """A batch (N, ...) of float inputs with N >= 1, all finite. NumPy in, NumPy out; a
    jax.Array stays on its device (the finiteness test runs there)."""
    if isinstance(xs, (list, tuple)):
        xs = np.asarray(xs)
    check_array(xs, name)
    if xs.ndim < 2:
        raise ValueError(f"{name} must be a batch (N, ...) of inputs, got shape {tuple(xs.shape)}")
    if xs.shape[0] == 0:
        raise ValueError(f"{who} needs at least one input; {name} has shape {tuple(xs.shape)}")
    flat = xs.reshape(xs.shape[0], -1)
    bad = ~(jnp.isfinite(flat).all(1) if isinstance(xs, jax.Array) else np.isfinite(flat).all(1))
    if bool(bad.any()):
        idx = np.flatnonzero(np.asarray(bad))
        raise ValueError(f"{name} contains NaN or inf values (inputs {idx[:5].tolist()}"
                         f"{' ...' if idx.size > 5 else ''} of {xs.shape[0]})")
    return xs


def check_targets(targets: Any, n: int, num_classes: int | None, name: str = "targets") -> np.ndarray:
    """Integer class indices (n,) in [0, num_classes); negatives are rejected."""
    if targets is None:
        raise TypeError(f"{name} must be integer class indices (n,), got None")
    targets = np.asarray(targets)
    if targets.dtype == bool or not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"{name} must be integer class indices, got dtype {targets.dtype}")
    if targets.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the inputs, got {targets.shape}")
    if targets.size and targets.min() < 0:
        raise ValueError(f"{name} must be class indices >= 0, got {int(targets.min())} "
                         f"(metrics that take targets=None use it for the predicted class)")
    if num_classes is not None and targets.size and targets.max() >= num_classes:
        raise ValueError(f"{name} must lie in [0, {num_classes}) (the model has {num_classes} classes), "
                         f"got {int(targets.max())}")
    return targets.astype(np.int32)


def check_finite_maps(maps: Any, shape: tuple[int, ...], name: str = "saliency",
                      like: str = "the inputs' spatial shape") -> np.ndarray:
    """Saliency maps of a given shape, all finite; returned as float32 NumPy."""
    if not hasattr(maps, "shape"):
        maps = np.asarray(maps)
    if maps.dtype == object or not (np.issubdtype(maps.dtype, np.floating) or np.issubdtype(maps.dtype, np.integer)):
        raise TypeError(f"{name} must be a numeric array, got dtype {maps.dtype}")
    if tuple(maps.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} ({like}), got {tuple(maps.shape)}")
    maps = np.asarray(maps, np.float32)
    bad = ~np.isfinite(maps.reshape(maps.shape[0], -1)).all(1) if maps.ndim else ~np.isfinite(maps)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise ValueError(f"{name} contains NaN or inf values (maps {idx[:5].tolist()}{' ...' if idx.size > 5 else ''})")
    return maps


def num_outputs(f: Any, x_shape: tuple[int, ...], dtype=jnp.float32, name: str = "f") -> int:
    """Number of class scores f returns for one unbatched input of x_shape (jax.eval_shape);
    a clear error when f rejects such an input or returns something other than a vector."""
    if not callable(f):
        raise TypeError(f"{name} must be a function x -> class scores, got {type(f).__name__}")
    try:
        out = jax.eval_shape(f, jax.ShapeDtypeStruct(tuple(x_shape), dtype))
    except Exception as e:  # the model's own error, re-raised with what the caller passed
        hint = model_state_hint(e)
        if hint is not None:  # not a shape problem: the model's variables or mode
            raise ValueError(f"{name} fails on one unbatched input of shape {tuple(x_shape)}: {hint} "
                             f"({error_summary(_root_error(e))})") from e
        raise ValueError(
            f"{name} cannot take x of shape {tuple(x_shape)} (one unbatched input is expected): "
            f"{error_summary(e)}"
        ) from e
    if not hasattr(out, "shape") or len(out.shape) != 1:
        raise ValueError(
            f"{name} must return a vector of class scores for one unbatched x; for x of shape "
            f"{tuple(x_shape)} it returned {getattr(out, 'shape', type(out).__name__)} (is x batched?)"
        )
    return int(out.shape[0])


def _root_error(e: BaseException) -> BaseException:
    while e.__cause__ is not None:
        e = e.__cause__
    return e


def model_state_hint(e: BaseException) -> str | None:
    """What to do when a model fails for its variables or its mode rather than for x's shape
    (flax's errors, anywhere in e's chain of causes); None for other errors."""
    chain = []
    while e is not None:
        chain.append(e)
        e = e.__cause__
    text = " ".join(f"{type(c).__name__}: {c}" for c in chain)
    if "ScopeCollectionNotFound" in text or "from collection" in text:
        return ("the model reads a variable collection that its variables lack (e.g. a BatchNorm's batch_stats): "
                "pass the full variables dict model.init returns, xai_jax.Model(module, variables), not only params")
    if any(w in text for w in ("TraceContextError", "Cannot mutate", "ModifyScopeVariableError", "is immutable",
                               "mutable=")):
        return ("the model updates its own state when called (a BatchNorm in training mode updates its statistics, "
                "Dropout draws keys): explain it in inference mode, an NNX module after module.eval() (or pass the "
                "module itself: xai_jax calls NNX modules in inference mode), a linen module with call_kwargs such "
                "as xai_jax.Model(module, variables, call_kwargs={'train': False})")
    return None


def check_mesh(mesh: Any, name: str = "mesh") -> Any:
    """None, or a jax.sharding.Mesh with a "data" axis (xai_jax.distributed.data_mesh makes one)."""
    if mesh is None:
        return None
    from jax.sharding import Mesh

    if not isinstance(mesh, Mesh):
        raise TypeError(f"{name} must be a jax.sharding.Mesh (e.g. xai_jax.distributed.data_mesh()), "
                        f"got {type(mesh).__name__}")
    if "data" not in mesh.axis_names:
        raise ValueError(f"{name} must have a 'data' axis to shard inputs along, got axes {mesh.axis_names}")
    return mesh


def check_callable(f: Any, name: str = "f", what: str = "a function x -> class scores") -> Any:
    """A callable; a flax Module passed where a function is expected gets a pointed hint."""
    try:
        import flax.linen as nn

        if isinstance(f, nn.Module):
            raise TypeError(f"{name} must be {what}, got the flax module {type(f).__name__}; "
                            f"pass xai_jax.model_fn(model, params)")
    except ImportError:  # pragma: no cover
        pass
    if not callable(f):
        raise TypeError(f"{name} must be {what}, got {type(f).__name__}")
    return f


def check_method(method: Any, name: str = "method", who: str = "this function") -> Any:
    """An attribution method (x, target[, key]) -> map: a Method, or a callable that takes two
    positional arguments. A model (a flax/NNX/Equinox/Haiku module, an xai_jax.Model or
    adapter, or a function of one argument f(x)) passed where a method is expected is a
    TypeError at once, with the fix, instead of a framework error at call time."""
    from xai_jax.method import Method
    if isinstance(method, Method):
        return method
    from xai_jax.adapters import framework, is_adapter
    from xai_jax.adapters.base import Model
    kind = framework(method)
    if kind is not None or isinstance(method, Model) or is_adapter(method):
        what = f"a {kind} module {type(method).__name__}" if kind else f"the model {type(method).__name__}"
        raise TypeError(f"{who}: {name} must be an attribution method (x, target) -> map, got {what}: build the method "
                        f"first, e.g. {who}(xai_jax.saliency(model, ...)) (or f=model for SmoothGrad of saliency)")
    if not callable(method):
        raise TypeError(f"{who}: {name} must be an attribution method (x, target) -> map, got {type(method).__name__}")
    try:
        params = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):  # no signature (a builtin): trusted
        return method
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind == p.VAR_POSITIONAL for p in params):
        raise TypeError(f"{who}: {name} must be an attribution method (x, target) -> map, got a function of "
                        f"{len(positional)} positional argument(s) ({getattr(method, '__name__', '?')}, a model "
                        f"f(x)?): pass {who}(xai_jax.saliency(f)) or the method you mean to wrap")
    return method


PRECISIONS = ("default", "high", "highest")


def check_precision(precision, name: str = "precision") -> str | None:
    """None (JAX's default) or one of PRECISIONS, for jax.default_matmul_precision."""
    if precision is not None:
        check_choice(precision, name, PRECISIONS)
    return precision


def precision_scope(precision: str | None):
    """jax.default_matmul_precision(precision), or no change for None (JAX's default).

    The precision is fixed when an operation is traced (lax.dot_general and
    conv_general_dilated read the setting at bind time), so a method traced inside this
    scope keeps it under the caller's jit, vmap and grad."""
    check_precision(precision)
    return jax.default_matmul_precision(precision) if precision else contextlib.nullcontext()


def at_precision(fn):
    """Decorator: runs fn(..., precision=p) entirely under precision_scope(p), its shape
    probes of the model included (p defaults to the signature's default)."""
    default = inspect.signature(fn).parameters["precision"].default

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with precision_scope(kwargs.get("precision", default)):
            return fn(*args, **kwargs)

    return wrapper
