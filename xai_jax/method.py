"""The method contract: `Method`, the one type every method factory returns.

A Method is called on ONE unbatched input:

    method(x, target)          unkeyed methods (saliency, IG, Grad-CAM, ...)
    method(x, target, key)     keyed methods (SmoothGrad, RISE, Expected Gradients)

and composes with jax.jit / jax.vmap like any function. target=None explains the class the
model predicts for x (ties: the lowest index). Its fields say what it is:

    model          the function f(x) -> class scores it explains (None for a user wrapper)
    name           e.g. "integrated_gradients"
    keyed          whether it takes a jax.random key
    precision      the jax.default_matmul_precision its maps are traced under (None: JAX's default)
    returns_delta  whether it returns (maps, completeness delta) (IG with return_delta=True)
    num_classes    the class count when it cannot be read from `model`
    output         "input" (maps shaped like x), "spatial" (x's shape without its channel axis)
                   or "layer" (shaped like a layer's output: xai_jax.layer_integrated_gradients & co.)
    signed         whether maps can be negative

`method.rebind(model)` gives the same method, with the same options, on another model (in any
form xai_jax.adapters.adapt takes); the randomisation metrics use it. A plain user callable
is not a Method: wrap it with `Method.wrap(fn, model=f)` (or pass num_classes=) where a
Method is required.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

OUTPUTS = ("input", "spatial", "layer")
_NO_KEY = object()


@dataclasses.dataclass(frozen=True, eq=False)
class Method:
    fn: Callable
    model: Callable | None = None
    name: str = "method"
    keyed: bool = False
    precision: str | None = None
    returns_delta: bool = False
    num_classes: int | None = None
    output: str = "input"
    signed: bool = True
    rebinder: Callable[[Any], Method] | None = dataclasses.field(default=None, repr=False)
    raw: Callable | None = dataclasses.field(default=None, repr=False)   # unchecked (x, t[, key]) -> (out, ok)
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        if not callable(self.fn):
            raise TypeError(f"Method.fn must be callable, got {type(self.fn).__name__}")
        if self.output not in OUTPUTS:
            raise ValueError(f"Method.output must be one of {OUTPUTS}, got {self.output!r}")

    def __call__(self, x, target=None, key=_NO_KEY):
        if key is _NO_KEY:
            return self.fn(x, target)  # a keyed method says that it takes a key
        return self.fn(x, target, key)  # the method checks the key (None included) itself

    # the names the methods carried before the contract (kept: see docs/migration.md)
    @property
    def model_fn(self) -> Callable | None:
        return self.model

    @property
    def __name__(self) -> str:  # noqa: A003 (functions' name, so that a Method reads like one)
        return self.name

    def __getattr__(self, item):
        extras = self.__dict__.get("extras") or {}
        if item in extras:
            return extras[item]
        raise AttributeError(f"Method {self.__dict__.get('name', '?')!r} has no attribute {item!r}")

    def rebind(self, model: Any) -> Method:
        """The same method with the same options on `model` (any form xai_jax.adapters.adapt takes)."""
        if self.rebinder is None:
            raise TypeError(f"method {self.name!r} cannot be rebound to another model: it was not built by an "
                            f"xai_jax method factory; pass a method such as xai_jax.saliency(model)")
        return self.rebinder(model)

    def replace(self, **changes) -> Method:
        return dataclasses.replace(self, **changes)

    @staticmethod
    def wrap(fn: Callable, *, model: Callable | None = None, keyed: bool | None = None,
             num_classes: int | None = None, name: str | None = None, output: str = "input",
             signed: bool = True) -> Method:
        """A user-written callable (x, target[, key]) -> map as a Method. keyed: read from its
        signature when None (a third positional parameter means a key)."""
        if isinstance(fn, Method):
            return fn
        if not callable(fn):
            raise TypeError(f"method must be a function (x, target[, key]) -> map, got {type(fn).__name__}")
        if keyed is None:
            keyed = getattr(fn, "keyed", None)
        if keyed is None:
            try:
                ps = [p for p in inspect.signature(fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
                keyed = len(ps) >= 3 and ps[2].default is inspect.Parameter.empty
            except (TypeError, ValueError):
                keyed = False
        return Method(fn, model=model if model is not None else getattr(fn, "model_fn", None),
                      name=name or getattr(fn, "__name__", "method"), keyed=bool(keyed),
                      precision=getattr(fn, "precision", None), returns_delta=getattr(fn, "returns_delta", False),
                      num_classes=num_classes if num_classes is not None else getattr(fn, "num_classes", None),
                      output=output, signed=signed)


def predicted_class(f: Callable, x: jax.Array) -> jax.Array:
    """argmax f(x), the lowest index on ties (jnp.argmax's rule), as an int32 scalar."""
    return jnp.argmax(f(x)).astype(jnp.int32)


def method_factory(*, output: str | Callable[[dict], str] = "input",
                   signed: bool | Callable[[dict], bool] = True) -> Callable:
    """Decorates a public factory factory(model_or_method, ...) -> Method so that its Method
    knows its output kind and sign and can be rebound: rebind(model) calls the factory again
    with the same arguments on `model` (a wrapped Method argument is rebound in turn).

    A factory with a `score` parameter also takes outputs=None (default), "logits" or
    "probabilities": what the model returns. With "probabilities" a softmax score is the
    model's outputs as they are (no second softmax), log_softmax their log. With None
    (logits), a softmax score of outputs that read as probabilities (non-negative, summing
    to 1) for the clean x is a ValueError eagerly and NaN maps under jit; an explicit
    "logits" skips that check. The Method carries it as method.outputs."""
    def deco(factory: Callable) -> Callable:
        sig = inspect.signature(factory)
        first = next(iter(sig.parameters))
        takes_outputs = "score" in sig.parameters and "outputs" not in sig.parameters

        @functools.wraps(factory)
        def build(*args, **kwargs):
            from xai_jax.attribution.common import outputs_scope
            outputs = kwargs.pop("outputs", None) if takes_outputs else None
            with outputs_scope(outputs) as scope:
                method = factory(*args, **kwargs)
            if not isinstance(method, Method):
                return method
            bound = sig.bind_partial(*args, **kwargs)
            arguments = dict(bound.arguments)
            if outputs is not None:
                arguments["outputs"] = outputs
            settings = {**{k: p.default for k, p in sig.parameters.items() if p.default is not p.empty}, **arguments}

            def rebinder(model, arguments=arguments):
                new = dict(arguments)
                wrapped = new.get(first)
                if isinstance(wrapped, Method):
                    new[first] = wrapped.rebind(model)
                elif first == "method" and wrapped is None and "f" in new:
                    new["f"] = model
                else:
                    new[first] = model
                if "params" in sig.parameters:
                    new["params"] = None
                return build(**new)

            args = {k: v for k, v in settings.items() if k not in (first, "params")}
            return dataclasses.replace(
                method, rebinder=rebinder,
                output=output(settings) if callable(output) else output,
                signed=signed(settings) if callable(signed) else signed,
                extras={**method.extras, "factory_args": args, "outputs": scope.outputs,
                        "softmax_scores": scope.softmax})

        return build
    return deco


def relu_signed(settings: dict) -> bool:
    """The CAMs' sign: maps are non-negative unless relu=False."""
    return not settings.get("relu", True)


def inner_output(settings: dict) -> str:
    """A wrapper's output kind: that of the Method it wraps."""
    inner = settings.get("method")
    return inner.output if isinstance(inner, Method) else "input"
