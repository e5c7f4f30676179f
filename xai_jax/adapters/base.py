"""What every framework adapter shares: the `Model` bundle, layer entries, inference-mode
keyword arguments, and the fallback re-initialiser.

The adapter protocol (one class per framework, in this package):

    kind, layer_form                      the framework's name; how `layer=` names a layer
    default_channel_axis                  -1 (channels last), 0 for Equinox
    f(x) / __call__(x)                    class scores of ONE unbatched x, in inference mode
    input_channels()                      the first convolution's input channels, or None
    entries(x_shape, dtype)               [Entry] every layer the forward pass calls, in first-call order
    check_layer(layer) / resolve(layer, x_shape, dtype)
    run(x, handles, deltas=None)          (logits, [layer outputs]) with optional deltas added
    params                                the weights MPRT randomises (a pytree)
    with_params(params)                   the same model with other weights (traceable under jit)
    param_layers(x_shape, dtype)          names of the layers that own weights, first-call order
    reinit(names, key, x_shape, dtype)    params with those layers re-initialised
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Entry(NamedTuple):
    name: str                   # how the user names it: "block/conv", "blocks.2.conv", "layers[3]"
    module_class: str           # the module's class name
    shape: tuple[int, ...]      # its output for one unbatched input, in the model's own layout
    handle: Any                 # what the adapter's run() takes to capture it
    is_conv: bool               # a convolution (what layer=None picks)
    out_channels: int | None    # the conv's output channels when the module says so


def is_conv_class(name: str) -> bool:
    return "Conv" in name


def find_named(layer: str, entries: list[Entry], owner: str) -> Entry:
    found = next((e for e in entries if e.name == layer), None)
    if found is None:
        raise ValueError(f"layer {layer!r} is not a submodule of {owner} that the forward pass calls; valid "
                         f"layers: {[e.name for e in entries]}")
    return found


def resolve_in_call_order(entries: list[Entry], layer: str | None, owner: str) -> Entry:
    """The entry named `layer`; None: the last convolution in call order that outputs a feature map."""
    if layer is None:
        convs = [e for e in entries if e.is_conv and len(e.shape) >= 2]
        if not convs:
            raise ValueError(f"layer=None found no convolution with spatial axes; name one of "
                             f"{[e.name for e in entries]}")
        return convs[-1]
    return find_named(layer, entries, owner)


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A framework model bundled with its weights: the one way to pass a model everywhere
    a `model` is taken (methods, metrics, `list_layers`, `explain`/`evaluate`).

    module: a flax.linen Module, a Flax NNX Module, an Equinox Module, a Haiku
      `hk.transform`/`hk.transform_with_state` result, or an `xai_jax.Split`.
    variables: linen: the variables dict ({"params": ..., "batch_stats": ...}) or just the
      params; Haiku: the params. NNX and Equinox modules hold their own weights (None).
    state: Equinox: the `eqx.nn.State` of a stateful model (BatchNorm), called as
      model(x, state); Haiku: the state of a `transform_with_state` model.
    call_kwargs: keyword arguments of every call. None: inference mode, the first of
      train=False, training=False, is_training=False, deterministic=True that the model's
      call accepts (linen and Haiku; NNX and Equinox switch to inference by their own
      `view`/`inference_mode`). The user's model object is never changed.

    A Model is also a function: Model(...)(x) gives the class scores of ONE unbatched x.
    """

    module: Any
    variables: Any = None
    state: Any = None
    call_kwargs: Mapping[str, Any] | None = None

    def __post_init__(self):
        if self.call_kwargs is not None and not isinstance(self.call_kwargs, Mapping):
            raise TypeError(f"call_kwargs must be a dict of keyword arguments or None, got "
                            f"{type(self.call_kwargs).__name__} {self.call_kwargs!r}")

    @property
    def adapter(self):
        cached = self.__dict__.get("_adapter")
        if cached is None:
            from xai_jax.adapters import adapt
            cached = adapt(self)
            object.__setattr__(self, "_adapter", cached)
        return cached

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.adapter.f(x)


INFERENCE_FLAGS = (("train", False), ("training", False), ("is_training", False), ("deterministic", True))


def inference_kwargs(call: Callable) -> dict[str, Any]:
    """The first of train=False, training=False, is_training=False, deterministic=True that
    `call` accepts as a keyword ({} when none does)."""
    try:
        params = inspect.signature(call).parameters
    except (TypeError, ValueError):
        return {}
    for name, value in INFERENCE_FLAGS:
        p = params.get(name)
        if p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            return {name: value}
    return {}


def he_normal(key: jax.Array, shape: tuple[int, ...], dtype, fan_in: int) -> jax.Array:
    """He-normal (Kaiming, fan-in): N(0, 2 / fan_in)."""
    return jax.random.normal(key, shape, dtype) * jnp.sqrt(2.0 / max(fan_in, 1)).astype(dtype)


ONES = ("scale", "var", "variance", "weight_bn")   # BatchNorm-style leaves re-initialised to 1


def fallback_init(key: jax.Array, name: str, value: jax.Array, fan_in_axes: str) -> jax.Array:
    """The re-initialiser for frameworks without one of their own (Equinox; NNX leaves whose
    module keeps no initialiser): arrays of rank >= 2 He-normal over their fan-in
    (fan_in_axes "leading": all axes but the last, as linen/NNX/Haiku kernels (..., in, out);
    "trailing": all but the first, as Equinox (out, in, ...)); a BatchNorm scale or variance 1;
    other vectors (biases, offsets, running means) 0."""
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.inexact):
        return value
    if value.ndim >= 2:
        fan_in = math.prod(value.shape[:-1]) if fan_in_axes == "leading" else math.prod(value.shape[1:])
        return he_normal(key, value.shape, value.dtype, fan_in)
    if name.lower() in ONES:
        return jnp.ones_like(value)
    return jnp.zeros_like(value)


def salted(key: jax.Array) -> jax.Array:
    """The key randomisation draws from: fold_in(key, RANDOMISE_SALT), so that randomised
    weights never coincide with a training initialisation drawn from the same key."""
    return jax.random.fold_in(key, RANDOMISE_SALT)


RANDOMISE_SALT = 0x5EED_0F_5A  # any constant that a training script would not fold in


def intercepted_entries(intercept: Callable, module_name: Callable, channels_of: Callable, call: Callable,
                        x: jax.Array) -> tuple[list[Entry], list[str]]:
    """The layers of a model whose framework intercepts module calls (linen's and Haiku's
    `intercept_methods(interceptor)`, interceptor(next, args, kwargs, context)): (entries in
    return order, module names in first-call order), for call(x) traced by the caller.
    module_name(context) names the module (None: not a layer); channels_of(module) its output
    channels or None. A module called several times is read at its first, outermost call."""
    found: list[Entry] = []
    started: list[str] = []
    depth: dict[str, int] = {}

    def interceptor(next_fun, args, kwargs, context):
        key = module_name(context) if context.method_name == "__call__" else None
        if key is None:
            return next_fun(*args, **kwargs)
        if key not in started:
            started.append(key)
        depth[key] = depth.get(key, 0) + 1
        out = next_fun(*args, **kwargs)
        depth[key] -= 1
        if depth[key] == 0 and hasattr(out, "shape") and key not in [e.name for e in found]:
            name = type(context.module).__name__
            channels = channels_of(context.module)
            found.append(Entry(key, name, tuple(out.shape[1:]), key, is_conv_class(name),
                               channels if isinstance(channels, int) else None))
        return out

    with intercept(interceptor):
        call(x)
    return found, started


def intercepted_run(intercept: Callable, module_name: Callable, call: Callable, x: jax.Array, handles,
                    deltas=None):
    """(call(x[None])[0], [the per-input outputs of the layers `handles`]) with `deltas` (per
    input) added to those outputs when given; the framework intercepts module calls as in
    intercepted_entries."""
    captured: dict[str, jax.Array] = {}
    depth: dict[str, int] = {}
    index = {name: i for i, name in enumerate(handles)}

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        key = module_name(context)
        depth[key] = depth.get(key, 0) + 1
        out = next_fun(*args, **kwargs)
        depth[key] -= 1
        # only the outermost call of the module, and only its first use
        if depth[key] == 0 and key in index and key not in captured:
            captured[key] = out[0]
            if deltas is not None:
                out = out + deltas[index[key]][None]
        return out

    with intercept(interceptor):
        logits = call(x[None])[0]
    return logits, [captured[name] for name in handles]
