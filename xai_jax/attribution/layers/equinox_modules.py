"""Layer access for Equinox modules.

An Equinox model is called on ONE unbatched input, channels first: model(x) with x
(C, spatial...). A layer is named by a `where` function, as in `eqx.tree_at`:
layer=lambda m: m.layers[3]. The model runs in inference mode
(`eqx.nn.inference_mode`: dropout off, BatchNorm-style layers on their statistics).

Capture: the chosen submodule is replaced, with `eqx.tree_at`, by a wrapper that calls it
and reports (and may shift) its output; the caller's model is never changed. Layers are
listed in the module tree's order (dataclass fields, depth first); layer=None picks the
last `eqx.nn.Conv` (Conv1d/2d/3d) in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax

from xai_jax.attribution.layers.entry import Entry
from xai_jax.checks import error_summary


class _Captured(eqx.Module):
    inner: eqx.Module
    hook: Callable = eqx.field(static=True)

    def __call__(self, *args, **kwargs):
        return self.hook(self.inner(*args, **kwargs))


def _submodules(tree, prefix=()) -> list[tuple[tuple, eqx.Module]]:
    """(key path, module) of every Module below `tree`, depth first in field order."""
    out = []
    def is_module(n):
        return isinstance(n, eqx.Module) and n is not tree

    children = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_module)[0]
    for path, node in children:
        if isinstance(node, eqx.Module) and node is not tree:
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


class EquinoxLayers:
    kind = "Equinox"
    layer_form = "a where function such as lambda m: m.layers[3]"

    def __init__(self, model: eqx.Module):
        self.model = eqx.nn.inference_mode(model, value=True)
        self.modules = _submodules(self.model)

    def f(self, x):
        return self.model(x)

    def input_channels(self) -> int | None:
        first = next((m for _, m in self.modules if isinstance(m, eqx.nn.Conv)), None)
        return None if first is None else first.in_channels

    def _call(self, x, hooks: dict[tuple, Callable]):
        paths = list(hooks)
        model = eqx.tree_at(lambda m: [_getter(p)(m) for p in paths], self.model,
                            replace=[_Captured(_getter(p)(self.model), hooks[p]) for p in paths])
        return model(x)

    def _input(self, x_shape: tuple[int, ...], dtype) -> jax.ShapeDtypeStruct:
        """x's shape, checked by tracing the model on it (a clear error if it cannot take it)."""
        x = jax.ShapeDtypeStruct(x_shape, dtype)
        try:
            jax.eval_shape(self.model, x)
        except Exception as e:
            raise ValueError(f"the Equinox model cannot take x of shape {x_shape} (one unbatched input, channels "
                             f"first): {error_summary(e)}") from e
        return x

    def _entry(self, path, module, shape) -> Entry:
        conv = isinstance(module, eqx.nn.Conv)
        return Entry(_name(path), type(module).__name__, shape, path, conv, module.out_channels if conv else None)

    def entries(self, x_shape: tuple[int, ...], dtype) -> list[Entry]:
        """Modules that the forward pass calls, in tree order, with their output shapes
        (one shape trace per module: tree_at cannot wrap a module and its parent at once)."""
        x = self._input(x_shape, dtype)
        out = []
        for path, module in self.modules:
            shape = self._shape_of(path, x)
            if shape is not None:
                out.append(self._entry(path, module, shape))
        return out

    def _shape_of(self, path, x) -> tuple[int, ...] | None:
        seen: list = []

        def hook(o):
            if hasattr(o, "shape") and not seen:
                seen.append(tuple(o.shape))
            return o

        jax.eval_shape(lambda v: self._call(v, {path: hook}), x)
        return seen[0] if seen else None

    def check_layer(self, layer) -> None:
        if not callable(layer) or isinstance(layer, eqx.Module):
            raise TypeError(f"layer must be a where function such as lambda m: m.layers[3], or None, for an "
                            f"Equinox model; got {type(layer).__name__} {layer!r}")

    def resolve(self, layer: Callable | None, x_shape: tuple[int, ...], dtype) -> Entry:
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
