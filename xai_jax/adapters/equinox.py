"""Equinox: layer access by wrapping a submodule with `eqx.tree_at`, no hooks in the model.

An Equinox model is called on ONE unbatched input, channels first: model(x), or
model(x, state) -> (scores, state) for a model with `eqx.nn.State` (BatchNorm; pass
`xai_jax.Model(model, state=state)`). The model runs in inference mode
(`eqx.nn.inference_mode`: dropout off, BatchNorm on its running statistics); the caller's
model is never changed. A layer is named by a `where` function, as in `eqx.tree_at`
(layer=lambda m: m.layers[3]), or by the name `list_layers` gives ("layers[3]").

Layers are listed in first-call order; layer=None picks the last `eqx.nn.Conv`
(Conv1d/2d/3d) in the module tree's order. Randomised layers are re-initialised
He-normal over their fan-in, biases 0, a 1-D weight (a norm's scale) 1 (Equinox keeps no
initialiser on its modules); a BatchNorm's running statistics live in the State and keep
their trained values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax

from xai_jax.adapters.base import Entry, fallback_init
from xai_jax.checks import error_summary


class _Captured(eqx.nn.StatefulLayer):
    """A submodule that reports (and may shift) its output; stateful exactly when the module is,
    so that eqx.nn.Sequential still passes it the state."""
    inner: eqx.Module
    hook: Callable = eqx.field(static=True)

    def is_stateful(self) -> bool:
        return isinstance(self.inner, eqx.nn.StatefulLayer) and self.inner.is_stateful()

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        if isinstance(out, tuple) and out and isinstance(out[-1], eqx.nn.State):
            return (self.hook(out[0]), *out[1:])
        return self.hook(out)


def _submodules(tree, prefix=()) -> list[tuple[tuple, eqx.Module]]:
    """(key path, module) of every Module below `tree`, depth first in field order."""
    out = []

    def is_module(n):
        return isinstance(n, eqx.Module) and n is not tree

    children = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_module)[0]
    for path, node in children:
        # a StateIndex is a Module too, but a key into the State, never called
        if isinstance(node, eqx.Module) and node is not tree and not isinstance(node, eqx.nn.StateIndex):
            full = prefix + tuple(path)
            out.append((full, node))
            out.extend(_submodules(node, full))
    return out


def _getter(path) -> Callable:
    def get(tree):
        for k in path:
            if isinstance(k, jax.tree_util.GetAttrKey):
                tree = getattr(tree, k.name)
            elif isinstance(k, jax.tree_util.SequenceKey):
                tree = tree[k.idx]
            elif isinstance(k, jax.tree_util.DictKey):
                tree = tree[k.key]
            else:
                raise TypeError(f"cannot follow the key {k!r} into an Equinox module")
        return tree
    return get


def _name(path) -> str:
    return jax.tree_util.keystr(tuple(path)).lstrip(".")


def _own_arrays(module: eqx.Module) -> list[str]:
    """Names of the module's fields that are inexact arrays (not inside submodules)."""
    return [k for k, v in vars(module).items() if eqx.is_inexact_array(v)]


def _is_prefix(a: tuple, b: tuple) -> bool:
    return len(a) < len(b) and tuple(b[: len(a)]) == tuple(a)


class EquinoxAdapter:
    kind = "Equinox"
    layer_form = "a where function such as lambda m: m.layers[3], or its name from list_layers ('layers[3]')"
    default_channel_axis = 0

    def __init__(self, model: eqx.Module, state: Any = None, call_kwargs: dict | None = None):
        self.model = eqx.nn.inference_mode(model, value=True)
        self.state = state
        self.call_kwargs = dict(call_kwargs or {})
        self._index()

    def _index(self) -> None:
        self.modules = _submodules(self.model)
        self._params, self._static = eqx.partition(self.model, eqx.is_inexact_array)

    # ------------------------------------------------------------------ calls
    def _apply(self, model, x):
        if self.state is None:
            return model(x, **self.call_kwargs)
        out = model(x, self.state, **self.call_kwargs)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(f"an Equinox model given a state must return (scores, state), got "
                             f"{type(out).__name__}")
        return out[0]

    def f(self, x: jax.Array) -> jax.Array:
        return self._apply(self.model, x)

    __call__ = f

    def input_channels(self) -> int | None:
        first = next((m for _, m in self.modules if isinstance(m, eqx.nn.Conv)), None)
        return None if first is None else first.in_channels

    def _call(self, x, hooks: dict[tuple, Callable]):
        paths = list(hooks)
        model = self.model
        if paths:
            model = eqx.tree_at(lambda m: [_getter(p)(m) for p in paths], self.model,
                                replace=[_Captured(_getter(p)(self.model), hooks[p]) for p in paths])
        return self._apply(model, x)

    def _input(self, x_shape: tuple[int, ...], dtype) -> jax.ShapeDtypeStruct:
        """x's shape, checked by tracing the model on it (a clear error if it cannot take it)."""
        x = jax.ShapeDtypeStruct(x_shape, dtype)
        try:
            jax.eval_shape(self.f, x)
        except Exception as e:
            stateful = any(isinstance(m, eqx.nn.StatefulLayer) for _, m in self.modules)
            hint = (" (the model has stateful layers such as BatchNorm: pass xai_jax.Model(model, state=state), "
                    "with state from eqx.nn.make_with_state)" if stateful and self.state is None else "")
            raise ValueError(f"the Equinox model cannot take x of shape {x_shape} (one unbatched input, channels "
                             f"first){hint}: {error_summary(e)}") from e
        return x

    def _entry(self, path, module, shape) -> Entry:
        conv = isinstance(module, eqx.nn.Conv)
        return Entry(_name(path), type(module).__name__, shape, path, conv, module.out_channels if conv else None)

    def _call_order(self, x) -> dict[tuple, int]:
        """First-call position of every module: the leaf modules (no submodules) are wrapped
        together for one trace; a container takes the position of its first-called leaf."""
        leaves = [p for p, _ in self.modules if not any(_is_prefix(p, q) for q, _ in self.modules)]
        order: dict[tuple, int] = {}

        def hook_for(path):
            def hook(o):
                order.setdefault(path, len(order))
                return o
            return hook

        jax.eval_shape(lambda v: self._call(v, {p: hook_for(p) for p in leaves}), x)
        position = {}
        for p, _ in self.modules:
            below = [order[q] for q in order if q == p or _is_prefix(p, q)]
            if below:
                position[p] = min(below)
        return position

    def entries(self, x_shape: tuple[int, ...], dtype) -> list[Entry]:
        """Modules that the forward pass calls, in first-call order (an inner module before
        its container, as for linen), with their output shapes."""
        x = self._input(x_shape, dtype)
        position = self._call_order(x)
        out = []
        for path, module in self.modules:
            shape = self._shape_of(path, x)
            if shape is not None:
                out.append((position.get(path, len(self.modules)), -len(path), self._entry(path, module, shape)))
        return [e for *_, e in sorted(out, key=lambda t: (t[0], t[1]))]

    def _shape_of(self, path, x) -> tuple[int, ...] | None:
        seen: list = []

        def hook(o):
            if hasattr(o, "shape") and not seen:
                seen.append(tuple(o.shape))
            return o

        jax.eval_shape(lambda v: self._call(v, {path: hook}), x)
        return seen[0] if seen else None

    def check_layer(self, layer) -> None:
        if isinstance(layer, str):
            names = [_name(p) for p, _ in self.modules]
            if layer not in names:
                raise ValueError(f"layer {layer!r} is not a submodule of the Equinox model; valid layers: {names}")
            return
        if not callable(layer) or isinstance(layer, eqx.Module):
            raise TypeError(f"layer must be a where function such as lambda m: m.layers[3], a layer name from "
                            f"list_layers such as 'layers[3]', or None, for an Equinox model; got "
                            f"{type(layer).__name__} {layer!r}")

    def resolve(self, layer: Callable | str | None, x_shape: tuple[int, ...], dtype) -> Entry:
        """The layer's entry; None: the last eqx.nn.Conv in tree order that the model calls."""
        x = self._input(x_shape, dtype)
        if layer is None:
            for path, module in reversed(self.modules):
                if isinstance(module, eqx.nn.Conv):
                    shape = self._shape_of(path, x)
                    if shape is not None:
                        return self._entry(path, module, shape)
            raise ValueError(f"layer=None found no eqx.nn.Conv that the model calls; pass layer= as a where "
                             f"function, one of the modules {[_name(p) for p, _ in self.modules]}")
        if isinstance(layer, str):
            path = next((p for p, _ in self.modules if _name(p) == layer), None)
            if path is None:
                raise ValueError(f"layer {layer!r} is not a submodule of the Equinox model; valid layers: "
                                 f"{[_name(p) for p, _ in self.modules]}")
            target = _getter(path)(self.model)
        else:
            try:
                target = layer(self.model)
            except Exception as e:
                raise ValueError(f"layer: the where function failed on the model: {type(e).__name__}: {e}") from e
            path = next((p for p, m in self.modules if m is target), None)
            if path is None:
                raise ValueError(f"layer: the where function must return a submodule of the model, got "
                                 f"{type(target).__name__}; submodules: {[_name(p) for p, _ in self.modules]}")
        shape = self._shape_of(path, x)
        if shape is None:
            raise ValueError(f"layer {_name(path)!r} ({type(target).__name__}) is never called by the model's "
                             f"forward pass, or returns no array")
        return self._entry(path, target, shape)

    def run(self, x: jax.Array, handles: Sequence[tuple], deltas: Sequence[jax.Array] | None = None):
        captured: dict[tuple, jax.Array] = {}

        def hook_for(i, path):
            def hook(out):
                if path in captured:
                    return out
                captured[path] = out
                return out if deltas is None else out + deltas[i]
            return hook

        logits = self._call(x, {p: hook_for(i, p) for i, p in enumerate(handles)})
        return logits, [captured[p] for p in handles]

    # ------------------------------------------------------------------ weights
    @property
    def params(self):
        return self._params

    def with_params(self, params) -> EquinoxAdapter:
        out = object.__new__(EquinoxAdapter)
        out.model = eqx.combine(params, self._static)
        out.state, out.call_kwargs, out.modules = self.state, self.call_kwargs, self.modules
        out._params, out._static = params, self._static
        return out

    def _owners(self) -> list[tuple[tuple, eqx.Module]]:
        return [(p, m) for p, m in self.modules if _own_arrays(m)]

    def param_layers(self, x_shape: tuple[int, ...], dtype) -> list[str]:
        """Names of the modules that own arrays directly (BatchNorm included), in first-call order."""
        x = self._input(x_shape, dtype)
        position = self._call_order(x)
        owners = [(position[p], -len(p), _name(p)) for p, _ in self._owners() if p in position]
        return [name for *_, name in sorted(owners)]

    def fresh(self, key: jax.Array, x_shape: tuple[int, ...], dtype):
        """Params with every owning module's arrays re-initialised (see the module docstring)."""
        model = self.model
        for i, (path, module) in enumerate(self._owners()):
            fields = _own_arrays(module)
            new = [fallback_init(jax.random.fold_in(jax.random.fold_in(key, i), j), name, getattr(module, name),
                                 "trailing") for j, name in enumerate(fields)]
            model = eqx.tree_at(lambda m, p=path, fs=fields: [getattr(_getter(p)(m), n) for n in fs], model,
                                replace=new)
        return eqx.filter(model, eqx.is_inexact_array)

    def reinit(self, names: Sequence[str], fresh, params=None):
        """params (default: the trained ones) with the layers `names` taken from `fresh`."""
        params = self._params if params is None else params
        by_name = {_name(p): p for p, _ in self._owners()}
        paths = [by_name[n] for n in names]
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        new = jax.tree_util.tree_leaves(fresh)
        leaves = [n if any(_is_prefix(p, tuple(k)) for p in paths) else v for (k, v), n in zip(flat, new)]
        return jax.tree_util.tree_unflatten(treedef, leaves)
