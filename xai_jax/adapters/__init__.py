"""One adapter protocol for models of every framework (see xai_jax.adapters.base).

Everything that takes a `model` takes it in one of these forms:
- a plain function f(x) -> class scores of ONE unbatched x (gradient and perturbation
  methods; layer methods and randomisation metrics need one of the forms below);
- `xai_jax.Model(module, variables=None, state=None, call_kwargs=None)`: a flax.linen
  module with its variables (any collections: params, batch_stats, ...), a Flax NNX module,
  an Equinox module (with its `eqx.nn.State` if it has one), a Haiku transformed model with
  its params (and state);
- the short forms `method(linen_module, variables, ...)`, `method(nnx_module, ...)`,
  `method(eqx_module, ...)`, and `xai_jax.Split(features, head)` for any model split at a layer.

One file per framework: linen.py, nnx.py, equinox.py, haiku.py, split.py (Split and plain
functions). Frameworks are imported only when a model of theirs is passed.
"""

from __future__ import annotations

import sys
from typing import Any

from xai_jax.adapters.base import Entry, Model
from xai_jax.adapters.layer_model import LayerModel, ResolvedLayer, list_layers
from xai_jax.adapters.split import FunctionAdapter, Split, SplitAdapter

__all__ = ["Entry", "LayerModel", "Model", "ResolvedLayer", "Split", "adapt", "list_layers"]

_PROTOCOL = ("f", "entries", "resolve", "run", "param_layers", "with_params")


def _module_of(name: str, attr: str):
    mod = sys.modules.get(name)  # a framework's model exists only once the framework is imported
    return getattr(mod, attr, None) if mod is not None else None


def framework(obj: Any) -> str | None:
    """"linen", "nnx", "equinox", "haiku" or None, without importing any framework."""
    linen = _module_of("flax.linen", "Module")
    if linen is not None and isinstance(obj, linen):
        return "linen"
    nnx = _module_of("flax.nnx", "Module")
    if nnx is not None and isinstance(obj, nnx):
        return "nnx"
    eqx = _module_of("equinox", "Module")
    if eqx is not None and isinstance(obj, eqx):
        return "equinox"
    hk = sys.modules.get("haiku")
    if hk is not None and isinstance(obj, (hk.Transformed, hk.TransformedWithState)):
        return "haiku"
    return None


def is_adapter(obj: Any) -> bool:
    return all(hasattr(type(obj), name) for name in _PROTOCOL) and hasattr(obj, "kind")


def _kind_name(model: Any) -> str:
    return f"{type(model).__module__}.{type(model).__name__}"


def adapt(model: Any, params: Any = None, *, who: str = "this method", state: Any = None,
          call_kwargs: Any = None):
    """The adapter of a model passed in any documented form (module docstring)."""
    if isinstance(model, Model):
        if params is not None:
            raise TypeError(f"{who}: model is an xai_jax.Model, which holds its variables, so params must be None")
        return adapt(model.module, model.variables, who=who, state=model.state, call_kwargs=model.call_kwargs)
    if is_adapter(model):
        if params is not None:
            raise TypeError(f"{who}: params must be None for an adapted model")
        return model
    kind = framework(model)
    if kind == "linen":
        if params is None:
            raise TypeError(f"{who}: a flax.linen module needs its params (or its full variables dict): "
                            f"{who}(model, variables, ...) or xai_jax.Model(model, variables)")
        from xai_jax.adapters.linen import LinenAdapter
        return LinenAdapter(model, params, call_kwargs)
    if kind == "haiku":
        from xai_jax.adapters.haiku import HaikuAdapter
        return HaikuAdapter(model, params, state, call_kwargs)
    if params is not None and kind in ("nnx", "equinox", None):
        what = {"nnx": "an NNX module", "equinox": "an Equinox module"}.get(kind, "this model")
        hint = (f"; pass the layer by keyword: {who}(model, layer={params!r})" if isinstance(params, str) else "")
        raise TypeError(f"{who}: params is given only for flax.linen models (and Haiku's, through "
                        f"xai_jax.Model); model is {what} ({type(model).__name__}), which holds its own weights, so "
                        f"params must be None{hint}")
    if kind == "nnx":
        from xai_jax.adapters.nnx import NnxAdapter
        return NnxAdapter(model, call_kwargs)
    if kind == "equinox":
        from xai_jax.adapters.equinox import EquinoxAdapter
        return EquinoxAdapter(model, state, call_kwargs)
    if isinstance(model, Split):
        return SplitAdapter(model)
    if callable(model):
        return FunctionAdapter(model)
    raise TypeError(f"{who}: model must be a function x -> class scores, an xai_jax.Model(module, variables, ...), "
                    f"a flax.linen module with its variables, a Flax NNX module, an Equinox module or an "
                    f"xai_jax.Split(features, head); got {_kind_name(model)}")
