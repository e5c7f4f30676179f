"""Shared pieces of the attribution methods: scores, input checks, layer access.

Checks run where the values are known (xai_jax.checks). Shapes, ranks and dtypes are
static under jit and always checked. Values (NaN/inf in x, the target's range) are checked
when concrete: called eagerly, the methods raise; `xai_jax.attribute` checks the whole
batch before it runs anything. Inside user-jitted code a method returns NaN maps for a
non-finite x or an out-of-range target (see `explanation_method`).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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
from xai_jax.method import Method, predicted_class

ScoreFn = Callable[[jax.Array], jax.Array]
SCORES = ("logit", "softmax", "log_softmax")
OUTPUTS = ("logits", "probabilities")
PROBABILITY_TOLERANCE = 1e-4  # |sum - 1| of a row that reads as probabilities (float32 sums: ~1e-7)


@dataclasses.dataclass
class OutputsScope:
    """What the model's outputs are while a method or metric is built and run, and whether
    its scores apply softmax to them (see outputs_scope)."""

    outputs: str = "logits"
    softmax: bool = False
    checked: bool = True  # False when the caller declared outputs="logits" himself


_OUTPUTS_SCOPE: contextvars.ContextVar[OutputsScope | None] = contextvars.ContextVar("xai_jax_outputs", default=None)


def check_outputs(outputs: Any) -> str:
    if not isinstance(outputs, str) or outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {OUTPUTS} (what the model returns), got {outputs!r}")
    return outputs


@contextlib.contextmanager
def outputs_scope(outputs: str | None = None):
    """Within it, score_transform (and complement_log_odds, class_probabilities) take the
    model's outputs as `outputs`: "logits" (softmax gives probabilities) or "probabilities"
    (rows already non-negative and summing to 1: "softmax" is the outputs as they are,
    "log_softmax" their log). method_factory and the metrics open one for their outputs=
    option; the scope records whether a softmax of logits was asked for. outputs=None means
    "logits", checked: outputs that read as probabilities are an error; an explicit
    "logits" is trusted (the escape hatch for a logit model whose outputs look like that)."""
    scope = OutputsScope(check_outputs("logits" if outputs is None else outputs), checked=outputs is None)
    token = _OUTPUTS_SCOPE.set(scope)
    try:
        yield scope
    finally:
        _OUTPUTS_SCOPE.reset(token)


def current_outputs() -> str:
    scope = _OUTPUTS_SCOPE.get()
    return scope.outputs if scope is not None else "logits"


def current_scope() -> OutputsScope | None:
    return _OUTPUTS_SCOPE.get()


def looks_like_probabilities(z: jax.Array) -> jax.Array:
    """Whether a vector of class scores reads as probabilities: non-negative, summing to 1
    (within PROBABILITY_TOLERANCE), more than one class. jit-friendly (a bool array)."""
    return (z.shape[-1] > 1) & (z >= 0).all(-1) & (jnp.abs(z.sum(-1) - 1) <= PROBABILITY_TOLERANCE)


def probabilities_error(who: str, where: str = "") -> ValueError:
    return ValueError(
        f"{who}: the model's outputs{where} are non-negative and sum to 1, i.e. probabilities, and a softmax score "
        f"would apply softmax to them a second time. Declare them: outputs='probabilities' (e.g. "
        f"{who}(..., outputs='probabilities')), or pass score='logit' to use the outputs as they are")


def score_transform(score: str, outputs: str | None = None) -> Callable[[jax.Array], jax.Array]:
    """Maps the model's outputs to the differentiated scores: identity ("logit"), softmax or
    log-softmax of logits. outputs (default: the enclosing outputs_scope's, else "logits"):
    for "probabilities", "softmax" is the outputs as they are and "log_softmax" their log.
    A softmax of logits is recorded in the scope: the method then checks that the model's
    outputs for the clean x do not read as probabilities (explanation_method; the metrics
    check xs[0]), so that a softmax applied twice is never a silent result. Perturbed copies
    are not checked (a toy model's logits [1, 0] on a masked copy are legitimate)."""
    if not isinstance(score, str):
        raise TypeError(f"score must be one of {SCORES}, got {type(score).__name__} {score!r}")
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    outputs = check_outputs(current_outputs() if outputs is None else outputs)
    if score == "logit":
        return lambda z: z
    if outputs == "probabilities":
        return _nan_propagating(lambda z: z) if score == "softmax" else _nan_propagating(jnp.log)
    scope = _OUTPUTS_SCOPE.get()
    if scope is not None and scope.checked:
        scope.softmax = True
    return _nan_propagating(jax.nn.softmax if score == "softmax" else jax.nn.log_softmax)


def class_probabilities(z: jax.Array) -> jax.Array:
    """softmax(z) of logits; z itself for outputs declared as probabilities (outputs_scope)."""
    return z if current_outputs() == "probabilities" else jax.nn.softmax(z)


def _nan_propagating(normalise: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    """normalise(z), but all-NaN when a logit is NaN/inf: XLA:CPU's max ignores NaN, so a
    plain softmax can turn a NaN logit into finite probabilities (a silent wrong score)."""
    return lambda z: jnp.where(jnp.isfinite(z).all(), normalise(z), jnp.nan)


GENERIC_NAN_HINT = ("the model's scores or gradients are NaN/inf somewhere on the method's path (e.g. a model "
                    "that divides by zero, such as (x - mean) / std at a constant input)")

SATURATED = 1 - 1e-6  # a class probability at which float32 softmax scores stop moving


def warn_saturated(who: str, which: str, probability=None) -> None:
    """All-zero maps of a softmax score whose class probability saturates (>= SATURATED): its
    gradient vanishes, and perturbed copies all score ~1.0."""
    import warnings

    p = "" if probability is None else f" (the class probability is {float(probability):.9g} in float32)"
    warnings.warn(f"{who}: the maps of {which} are all zero with a softmax score{p}: the softmax saturates for "
                  f"confident inputs (its gradient vanishes, perturbed copies all score 1.0); pass score='logit' "
                  f"(or 'log_softmax') to explain them", stacklevel=4)


def output_size(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> int:
    """Number of class scores f returns for one unbatched x; clear error when f rejects x."""
    return num_outputs(f, tuple(x.shape), x.dtype)


def explanation_method(fn: Callable, f: Callable | None, *, keyed: bool = False, name: str | None = None,
                       reports_scores: bool = False, precision: str | None = None,
                       check_input: Callable | None = None, nan_hint: str | None = None) -> Callable:
    """Wraps fn(x, target[, key]) -> map(s) into a public method with the boundary checks.

    The returned Method (xai_jax.method) is called as method(x, target[, key]); it:
    - checks x (float array; finite when concrete), target (integer scalar; in
      [0, number of classes) when concrete) and key (a jax.random key);
    - under jit/vmap, where values cannot be checked, returns NaN maps when x holds a
      non-finite value, the target is out of range (JAX would otherwise clamp the index
      and silently explain another class) or the model's scores f(x) are not finite (a
      broken model, or an input that overflows it); called eagerly, it raises instead;
    - called eagerly, raises a ValueError when fn returns NaN or inf for a finite x with finite
      scores (never a silent NaN map: e.g. a model that is 0/0 somewhere on the method's path);
      nan_hint says what in this method can produce it. Under jit the map is returned as is
      (xai_jax.attribute reports non-finite maps after the batch);
    - runs check_input(x) (static checks of x's layout against the model) before f sees x;
    - carries `model` (the f it explains, or None) and `keyed`, which `xai_jax.attribute`
      reads to range-check targets and to pass keys; target=None explains f's predicted class;
    - traces fn and its checks under jax.default_matmul_precision(precision) (None: JAX's
      default, i.e. TF32-class speed on GPUs); the precision is fixed at trace time, so it
      holds under the caller's jit, vmap and grad. The method carries it as `precision`.
    """
    if f is not None:
        check_callable(f, "f")
    check_precision(precision)
    sizes: dict = {}
    scope = current_scope()  # built inside a factory: whether its scores apply softmax to logits
    softmax = bool(scope is not None and scope.softmax and f is not None)

    def method(x, target, *rest):
        with precision_scope(precision):
            return checked(x, target, *rest)

    def checked(x, target, *rest):
        x = check_x(x)
        if check_input is not None:  # the method's own layout checks, before f meets x
            check_input(x)
        n_classes = None
        if f is not None:
            sig = (tuple(x.shape), str(x.dtype))
            if sig not in sizes:
                sizes[sig] = num_outputs(f, sig[0], x.dtype)
            n_classes = sizes[sig]
        if target is None:  # the class the model predicts for x (ties: the lowest index)
            if f is None:
                raise TypeError(f"{method.__name__}: target=None means the predicted class, but this method carries "
                                f"no model to predict with; pass the target")
            target = predicted_class(f, x)
        target = check_target(target, n_classes)
        if keyed:
            if len(rest) != 1:
                raise TypeError(f"{method.__name__} takes (x, target, key): pass a jax.random key, "
                                f"e.g. jax.random.key(0)")
            rest = (check_key(rest[0]),)
        elif rest:
            raise TypeError(f"{method.__name__} takes (x, target); got {len(rest)} extra argument(s)")
        out = fn(x, target, *rest)
        logits = f(x) if f is not None and (softmax or not reports_scores) else None
        if reports_scores:  # fn returns (maps, whether the logits it computed are finite)
            out, scores_ok = out
        else:
            scores_ok = jnp.isfinite(logits).all() if f is not None else jnp.asarray(True)
        if is_concrete(scores_ok) and not bool(scores_ok):
            raise ValueError(f"the model returns NaN or inf scores for this x (shape {tuple(x.shape)}): "
                             f"{method.__name__} cannot explain it")
        if softmax:  # a softmax of outputs that already are probabilities: an error, NaN maps under jit
            probabilities = looks_like_probabilities(logits)
            if is_concrete(probabilities) and bool(probabilities):
                raise probabilities_error(method.__name__)
            scores_ok = scores_ok & ~probabilities
            if is_concrete(out, target) and bool(scores_ok) and all(not jnp.any(o) for o in jax.tree.leaves(out)):
                p = class_probabilities(logits)[target]
                if float(p) >= SATURATED:
                    warn_saturated(method.__name__, "this x", p)
        ok = jnp.isfinite(x).all() & scores_ok
        if n_classes is not None:
            ok = ok & (target >= 0) & (target < n_classes)
        leaves = jax.tree.leaves(out)
        if leaves and all(is_concrete(o) for o in leaves) and not all(bool(jnp.isfinite(o).all()) for o in leaves):
            raise ValueError(f"{method.__name__} returned NaN or inf values for a finite x (shape "
                             f"{tuple(x.shape)}) whose scores are finite: "
                             f"{nan_hint or GENERIC_NAN_HINT}")
        return jax.tree.map(lambda o: jnp.where(ok, o, jnp.asarray(jnp.nan, o.dtype)), out)

    name = name or getattr(fn, "__name__", "method")
    method.__name__ = method.__qualname__ = name
    method.__doc__ = fn.__doc__

    def raw(x, target, *rest):
        """fn without the boundary checks: (maps, whether the model's scores are finite) for a
        wrapper (SmoothGrad) that has checked x and resolved the target itself."""
        with precision_scope(precision):
            out = fn(x, target, *rest)
            if reports_scores:
                return out
            return out, (jnp.isfinite(f(x)).all() if f is not None else jnp.asarray(True))

    return Method(method, model=f, name=name, keyed=keyed, precision=precision, raw=raw)


def model_fn(model: Any, params: Any = None) -> Callable[[jax.Array], jax.Array]:
    """f(x) = class scores of one unbatched x, in inference mode, for a model in any form that
    xai_jax.adapters.adapt takes: model_fn(linen_module, variables_or_params),
    model_fn(xai_jax.Model(...)), model_fn(nnx_or_equinox_module)."""
    from xai_jax.adapters import adapt
    return adapt(model, params, who="model_fn").f


def as_model_function(f: Any, name: str = "f") -> Callable[[jax.Array], jax.Array]:
    """The function f(x) -> class scores of one unbatched x that a gradient or perturbation
    method differentiates: f itself, or, for a model in a framework form (xai_jax.Model, an
    NNX or Equinox module, an adapter), its adapter's inference-mode function."""
    from xai_jax.adapters import framework, is_adapter
    from xai_jax.adapters.base import Model
    if isinstance(f, Model) or is_adapter(f):
        return f
    if framework(f) is not None:
        if framework(f) in ("linen", "haiku"):
            raise TypeError(f"{name}: a {framework(f)} model needs its variables: pass xai_jax.Model(module, "
                            f"variables) or xai_jax.model_fn(module, variables)")
        from xai_jax.adapters import adapt
        return adapt(f, who=name)
    return check_callable(f, name)


def spatial_map(attribution: jax.Array, reduce: str = "sum", channel_axis: int | None = None) -> jax.Array:
    """Collapses the channel axis of an attribution shaped like x.

    reduce: "sum" (signed evidence), "abs_sum" (magnitude; the study's IG display) or "none".
    channel_axis: the axis summed over; None means the last one, and then a layout that looks
    channels-first (3-D or more, the last axis longer than 4 and an axis of 1 or 3 entries
    before the last two, e.g. (16, 1, 28, 28)) is an error asking for channel_axis.
    """
    check_array(attribution, "attribution")
    shape = tuple(attribution.shape)
    if channel_axis is None:
        if len(shape) >= 3 and shape[-1] > 4 and any(n in (1, 3) for n in shape[:-2]):
            raise ValueError(f"attribution of shape {shape} looks channels-first; pass channel_axis (e.g. "
                             f"channel_axis={len(shape) - 3} for (N, C, H, W)), or channel_axis=-1 if the "
                             "channels are last")
        channel_axis = -1
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)) \
            or not -len(shape) <= channel_axis < len(shape):
        raise ValueError(f"channel_axis={channel_axis!r} is out of range for attribution of shape {shape}")
    if reduce == "sum":
        return attribution.sum(channel_axis)
    if reduce == "abs_sum":
        return jnp.abs(attribution).sum(channel_axis)
    if reduce == "none":
        return attribution
    raise ValueError(f"reduce must be 'sum', 'abs_sum' or 'none', got {reduce!r}")


def channels_last(f: Callable, x: jax.Array, channel_axis: int) -> tuple[Callable, jax.Array]:
    """(f', x') with x' channels-last and f'(x') = f(x): for the methods that mask an input by
    a map of its spatial shape (RISE, occlusion), whatever the input's channel axis."""
    if not -x.ndim <= channel_axis < x.ndim:
        raise ValueError(f"channel_axis={channel_axis} is out of range for x of shape {tuple(x.shape)}")
    axis = channel_axis % x.ndim
    if axis == x.ndim - 1:
        return f, x
    return (lambda z: f(jnp.moveaxis(z, -1, axis))), jnp.moveaxis(x, axis, -1)


def upsample(maps: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
    """Resizes maps (..., *layer_spatial) to (..., *spatial) by (bi)linear interpolation."""
    lead = maps.shape[: maps.ndim - len(spatial)]
    if maps.shape[len(lead):] == tuple(spatial):
        return maps
    return jax.image.resize(maps, (*lead, *spatial), method="linear")


# Input elements one vmapped pass evaluates when chunk_size="auto" (the default of the methods
# and metrics that evaluate the model many times per input): 8 MiB of float32 inputs for
# gradients, 16 MiB for forwards. A small CNN's activations multiply that by ~10-140 (the
# study's VGG-7 at 224 x 224 x 3: ~85 MB per gradient, ~12 MB per forward), so a pass stays
# near 1 GB there (13 gradients or 27 forwards), while small inputs (MNIST-1D: 40 values)
# evaluate everything in one vmap as before.
PASS_ELEMENTS = {"gradient": 1 << 21, "forward": 1 << 22}


def check_chunk_size(chunk_size: Any, name: str = "chunk_size") -> int | str | None:
    """"auto", None (everything in one vmap) or a positive int."""
    if isinstance(chunk_size, str):
        if chunk_size != "auto":
            raise ValueError(f"{name} must be a positive int, None or 'auto', got {chunk_size!r}")
        return chunk_size
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"{name} must be a positive int, None or 'auto', got {chunk_size!r}")
    return chunk_size


def resolve_chunk(chunk_size: int | str | None, n: int, x_size: int, kind: str = "gradient") -> int | None:
    """The evaluations per pass for n evaluations of the model on inputs of x_size elements:
    None (all n in one vmap) or a chunk size < n. chunk_size="auto": as many as keep a pass
    within PASS_ELEMENTS[kind] input elements (at least 1)."""
    if chunk_size == "auto":
        chunk_size = max(1, PASS_ELEMENTS[kind] // max(1, x_size))
    return None if chunk_size is None or chunk_size >= n else int(chunk_size)


def pairwise_sum(values: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """sum_k weights_k values_k over the leading axis by pairwise (tree) summation: the float32
    rounding error grows as log2(n) eps instead of the n eps of a sequential reduction (XLA:CPU's
    reduce and dot run sequentially: IG with 100,000 steps lost 4e-4 of its completeness so).
    log2(n) passes, each adding neighbouring rows (zero rows pad n to a power of two)."""
    v = values if weights is None else weights.reshape(-1, *([1] * (values.ndim - 1))).astype(values.dtype) * values
    n = v.shape[0]
    if n == 0:
        return jnp.zeros(values.shape[1:], values.dtype)
    size = 1 << (n - 1).bit_length()  # the next power of two: zero rows pad it once
    if size != n:
        v = jnp.concatenate([v, jnp.zeros((size - n, *v.shape[1:]), v.dtype)])
    while v.shape[0] > 1:  # halves added: a reshape-and-sum over a middle axis of 2 miscompiled on XLA:CPU
        half = v.shape[0] // 2
        v = v[:half] + v[half:]
    return v[0]


def pairwise_mean(values: jax.Array) -> jax.Array:
    """values.mean(0) by pairwise_sum (rounding error log2(n) eps, not n eps)."""
    return pairwise_sum(values) / values.shape[0]


def compensated_add(state: tuple[jax.Array, jax.Array], value: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Kahan summation step for a running total inside lax.scan: state = (total, compensation),
    the compensation carrying the low-order bits each add rounds away, so the total's error
    does not grow with the number of adds. Start from (zeros, zeros)."""
    total, comp = state
    y = value - comp
    new = total + y
    return new, (new - total) - y


def minmax(v: jax.Array, axes: tuple[int, ...] | None = None, eps: float = 1e-12) -> jax.Array:
    """(v - min) / (max - min) over axes; a constant map becomes zeros (never NaN)."""
    lo = v.min(axis=axes, keepdims=True)
    hi = v.max(axis=axes, keepdims=True)
    span = hi - lo
    return jnp.where(span > eps, (v - lo) / jnp.where(span > eps, span, 1.0), 0.0)
