"""Haiku: layer access by `hk.intercept_methods`, no hooks in the model.

The model is an `hk.transform` or `hk.transform_with_state` result with its params (and
state), passed as `xai_jax.Model(transformed, variables=params, state=state)`; it is applied
to batches, transformed.apply(params, [state,] None, x[None], **call_kwargs). call_kwargs
defaults to inference mode (the first of train=False, training=False, is_training=False,
deterministic=True that the transformed function accepts). A layer is a module name such as
"cnn/~/conv2_d" (as in params). Layers are listed in first-call order. Randomised layers
are re-initialised with transformed.init (Haiku's own initialisers), the params and the
state the module owns (a BatchNorm's moving averages).

Haiku is an optional extra: `pip install --no-deps dm-haiku==0.0.17 jmp tabulate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp

from xai_jax.adapters.base import Entry, inference_kwargs, intercepted_entries, intercepted_run, resolve_in_call_order
from xai_jax.checks import error_summary


def _module_name(context) -> str:
    return context.module.module_name


def is_transformed(obj: Any) -> bool:
    return isinstance(obj, (hk.Transformed, hk.TransformedWithState))


class HaikuAdapter:
    kind = "Haiku"
    layer_form = "a module name such as 'conv2_d' (str), as the params name it"
    default_channel_axis = -1

    def __init__(self, transformed, params: Any, state: Any = None, call_kwargs: Mapping | None = None):
        if params is None:
            raise TypeError("a Haiku model needs its params: xai_jax.Model(transformed, variables=params, "
                            "state=state)")
        self.transformed = transformed
        self.with_state = isinstance(transformed, hk.TransformedWithState)
        if self.with_state and state is None:
            raise TypeError("a Haiku transform_with_state model needs its state: xai_jax.Model(transformed, "
                            "variables=params, state=state)")
        self.variables = {"params": params, "state": state if self.with_state else {}}
        self.call_kwargs = dict(inference_kwargs(transformed.apply) if call_kwargs is None else call_kwargs)

    def _apply(self, xb, variables=None):
        v = self.variables if variables is None else variables
        if self.with_state:
            return self.transformed.apply(v["params"], v["state"], None, xb, **self.call_kwargs)[0]
        return self.transformed.apply(v["params"], None, xb, **self.call_kwargs)

    def f(self, x):
        return self._apply(x[None])[0]

    __call__ = f

    def input_channels(self) -> int | None:
        return None

    def _trace(self, x_shape, dtype) -> tuple[list[Entry], list[str]]:
        out: list = []

        def run(x):
            out[:] = intercepted_entries(hk.intercept_methods, _module_name,
                                         lambda m: getattr(m, "output_channels", None), self._apply, x[None])
            return 0

        try:
            jax.eval_shape(run, jax.ShapeDtypeStruct(x_shape, dtype))
        except Exception as e:
            raise ValueError(f"the Haiku model cannot take x of shape {x_shape} (one unbatched input, applied as "
                             f"apply(params, state, None, x[None], **{self.call_kwargs})): {error_summary(e)}") from e
        return out[0], out[1]

    def entries(self, x_shape, dtype) -> list[Entry]:
        return self._trace(x_shape, dtype)[0]

    def check_layer(self, layer) -> None:
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a module name (str) such as 'conv2_d', or None, for a Haiku model; "
                            f"got {type(layer).__name__} {layer!r}")

    def resolve(self, layer, x_shape, dtype) -> Entry:
        return resolve_in_call_order(self.entries(x_shape, dtype), layer, "the Haiku model")

    def run(self, x, handles: Sequence[str], deltas=None):
        return intercepted_run(hk.intercept_methods, _module_name, self._apply, x, handles, deltas)

    # ------------------------------------------------------------------ weights
    @property
    def params(self):
        return self.variables

    def with_params(self, variables) -> HaikuAdapter:
        out = object.__new__(HaikuAdapter)
        out.__dict__.update(self.__dict__)
        out.variables = variables
        return out

    def param_layers(self, x_shape, dtype) -> list[str]:
        _, started = self._trace(x_shape, dtype)
        return [name for name in started if name in self.variables["params"]]

    def fresh(self, key, x_shape, dtype):
        x = jnp.zeros((1, *x_shape), dtype)
        try:  # the model's own defaults first: a BatchNorm creates its moving averages only in training mode
            out = self.transformed.init(key, x)
        except Exception:
            out = self.transformed.init(key, x, **self.call_kwargs)
        params, state = out if self.with_state else (out, {})
        return {"params": params, "state": state}

    def reinit(self, names: Sequence[str], fresh, params=None):
        v = self.variables if params is None else params
        out = {"params": dict(v["params"]), "state": dict(v["state"])}
        for name in names:
            for col in ("params", "state"):
                for k in list(out[col]):
                    if k == name or k.startswith(name + "/~/"):
                        out[col][k] = fresh[col][k]
        return out
