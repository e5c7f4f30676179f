"""flax.linen: layer access by `flax.linen.intercept_methods`, no hooks in the model.

The module is applied to batches, model.apply(variables, x[None], mutable=False,
**call_kwargs); a layer is a submodule path such as "block/conv". `variables` may hold any
collections (params, batch_stats, ...); a dict without a top-level "params" key is taken as
the params alone. call_kwargs defaults to inference mode (the first of train=False,
training=False, is_training=False, deterministic=True that the module's __call__ accepts).
Layers are listed in first-call order, and a module called several times is read at its
first (outermost) call. Randomised layers are re-initialised with model.init (flax's own
initialisers), in every collection the layer owns (a BatchNorm's scale, bias and statistics).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xai_jax.adapters.base import Entry, inference_kwargs, intercepted_entries, intercepted_run, resolve_in_call_order
from xai_jax.checks import error_summary


def _path(module: nn.Module) -> str:
    return "/".join(module.path)


def _path_of(context) -> str:
    return _path(context.module)


def _layer_name(context) -> str | None:
    """A submodule's path; None for the top-level module (not a layer)."""
    return _path(context.module) if context.module.path else None


def as_variables(params: Any) -> dict:
    """A linen variables dict: `params` itself when it has a top-level "params" key, else {"params": params}."""
    if isinstance(params, Mapping) and "params" in params:
        return dict(params)
    return {"params": params}


def _owns_arrays(tree: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(tree, Mapping) or key not in tree:
            return False
        tree = tree[key]
    return isinstance(tree, Mapping) and any(not isinstance(v, Mapping) for v in tree.values())


def _replaced(tree: Any, path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    if not isinstance(tree, Mapping) or path[0] not in tree:
        return tree
    out = dict(tree)
    out[path[0]] = _replaced(tree[path[0]], path[1:], value)
    return out


def _subtree(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(tree, Mapping) or key not in tree:
            return None
        tree = tree[key]
    return tree


class LinenAdapter:
    kind = "flax.linen"
    layer_form = "a submodule path such as 'block/conv' (str)"
    default_channel_axis = -1

    def __init__(self, model: nn.Module, variables: Any, call_kwargs: Mapping | None = None):
        if variables is None:
            raise TypeError("a flax.linen module needs its variables: pass Model(module, variables) or "
                            "method(module, variables, ...)")
        self.model = model
        self.variables = as_variables(variables)
        self.call_kwargs = dict(inference_kwargs(model.__call__) if call_kwargs is None else call_kwargs)

    # ------------------------------------------------------------------ calls
    def _apply(self, xb: jax.Array, variables: Any = None):
        v = self.variables if variables is None else variables
        try:
            return self.model.apply(v, xb, mutable=False, **self.call_kwargs)
        except Exception as e:
            text = str(e)
            if any(w in text for w in ("mutable", "immutable", "batch_stats", "ScopeCollectionNotFound",
                                       "is empty")) or "Collection" in type(e).__name__:
                raise ValueError(
                    f"the flax.linen module {type(self.model).__name__} cannot run in inference mode with "
                    f"call_kwargs={self.call_kwargs} and the collections {sorted(v)}: {error_summary(e)}. A BatchNorm "
                    f"needs its batch_stats (pass the full variables dict) and its running averages (pass "
                    f"call_kwargs=, e.g. xai_jax.Model(module, variables, call_kwargs={{'train': False}}))") from e
            raise

    def f(self, x: jax.Array) -> jax.Array:
        return self._apply(x[None])[0]

    __call__ = f

    def input_channels(self) -> int | None:
        return None  # linen infers a conv's input channels from the params; the shapes check it

    # ------------------------------------------------------------------ layers
    def _trace(self, x_shape: tuple[int, ...], dtype) -> tuple[list[Entry], list[str]]:
        out: list = []

        def run(x):
            out[:] = intercepted_entries(nn.intercept_methods, _layer_name, lambda m: getattr(m, "features", None),
                                         self._apply, x[None])
            return 0

        try:
            jax.eval_shape(run, jax.ShapeDtypeStruct(x_shape, dtype))
        except ValueError:
            raise
        except Exception as e:  # flax's own error, re-raised with what the caller passed
            raise ValueError(f"model.apply with these variables cannot take x of shape {x_shape} (one unbatched "
                             f"input): {error_summary(e)}") from e
        return out[0], out[1]

    def entries(self, x_shape: tuple[int, ...], dtype) -> list[Entry]:
        return self._trace(x_shape, dtype)[0]

    def check_layer(self, layer) -> None:
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a layer path (str) such as 'block/conv', or None, for a flax.linen "
                            f"module; got {type(layer).__name__} {layer!r}")

    def resolve(self, layer: str | None, x_shape: tuple[int, ...], dtype) -> Entry:
        """The layer's entry; None: the last convolution (a module whose class name contains
        'Conv') in call order that outputs a feature map."""
        return resolve_in_call_order(self.entries(x_shape, dtype), layer, f"{type(self.model).__name__}")

    def run(self, x: jax.Array, handles: Sequence[str], deltas: Sequence[jax.Array] | None = None):
        """Logits of one unbatched x and the per-input outputs of the layers `handles`, with
        `deltas` (per input) added to those outputs when given."""
        return intercepted_run(nn.intercept_methods, _path_of, self._apply, x, handles, deltas)

    # ------------------------------------------------------------------ weights
    @property
    def params(self) -> dict:
        return self.variables

    def with_params(self, variables: Any) -> LinenAdapter:
        out = object.__new__(LinenAdapter)
        out.model, out.variables, out.call_kwargs = self.model, variables, self.call_kwargs
        return out

    def param_layers(self, x_shape: tuple[int, ...], dtype) -> list[str]:
        """Paths of the modules that own arrays in "params" directly (a BatchNorm included), in first-call order."""
        _, started = self._trace(x_shape, dtype)
        return [name for name in started if _owns_arrays(self.variables.get("params"), tuple(name.split("/")))]

    def fresh(self, key: jax.Array, x_shape: tuple[int, ...], dtype) -> dict:
        """model.init's variables (every collection) for inputs of x_shape."""
        return _init(self.model, key, jnp.zeros((1, *x_shape), dtype), tuple(sorted(self.call_kwargs.items())))

    def reinit(self, names: Sequence[str], fresh: Any, params: Any = None) -> dict:
        """params (default: the trained variables) with the layers `names` taken from `fresh`
        (a variables dict of this model, e.g. `fresh()`), in every collection they own."""
        out = dict(self.variables if params is None else params)
        for col, tree in out.items():
            for name in names:
                path = tuple(name.split("/"))
                new = _subtree(fresh.get(col), path)
                if new is not None and _subtree(tree, path) is not None:
                    tree = _replaced(tree, path, new)
            out[col] = tree
        return out


_INITS: dict = {}


def _init(model: nn.Module, key: jax.Array, x: jax.Array, kwargs: tuple) -> dict:
    """jit(model.init) compiled once per model and settings (eager flax init costs ~6 ms a call)."""
    tag = (model, kwargs)
    if tag not in _INITS:
        if len(_INITS) > 32:
            _INITS.clear()
        _INITS[tag] = jax.jit(lambda k, v: model.init(k, v, **dict(kwargs)))
    return dict(_INITS[tag](key, x))
