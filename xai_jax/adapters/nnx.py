"""Flax NNX: layer access by a subclass swap on a fresh copy of the module.

The module is called on batches, like linen: model(x[None])[0]. A layer is an attribute
path such as "blocks.2.conv" (list items by index). The model runs in inference mode: a
copy made with `nnx.view(deterministic=True, use_running_average=True)` (dropout off,
BatchNorm on its running statistics); the caller's module is never changed.

Capture: inside each traced call the module is rebuilt with `nnx.merge`, and the chosen
submodules of that fresh copy get a subclass whose __call__ reports (and may shift) the
output; no hooks in the user's classes. Layers are listed in first-call order; layer=None
picks the last `nnx.Conv` in `nnx.iter_modules` order (the module tree's order).
Randomised layers: every variable of a module that owns an `nnx.Param` (a BatchNorm's
statistics included) is re-initialised, He-normal over the fan-in for kernels, 0 for
biases and means, 1 for scales and variances (NNX modules keep no initialiser).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from xai_jax.adapters.base import Entry, fallback_init, find_named
from xai_jax.checks import error_summary

_HOOKED: dict[type, type] = {}
_ACTIVE: dict[int, object] = {}  # id(module copy) -> callback(out) -> out, only during a run


def _hooked_class(cls: type) -> type:
    if cls not in _HOOKED:
        def __call__(self, *args, **kwargs):  # noqa: N807
            out = cls.__call__(self, *args, **kwargs)
            hook = _ACTIVE.get(id(self))
            return out if hook is None else hook(out)

        _HOOKED[cls] = type(f"Captured{cls.__name__}", (cls,), {"__call__": __call__})
    return _HOOKED[cls]


def _name(path) -> str:
    return ".".join(str(p) for p in path)


def _key_value(k):
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return k


def _own_variables(module: nnx.Module) -> list[str]:
    return [k for k, v in vars(module).items() if isinstance(v, nnx.Variable)]


def _owns_params(module: nnx.Module) -> bool:
    return any(isinstance(v, nnx.Param) for v in vars(module).values())


class NnxAdapter:
    kind = "Flax NNX"
    layer_form = "an attribute path such as 'blocks.2.conv' (str)"
    default_channel_axis = -1

    def __init__(self, model: nnx.Module, call_kwargs: dict | None = None):
        view = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
        self.graphdef, self.state = nnx.split(view)
        self.call_kwargs = dict(call_kwargs or {})
        self.tree_order = [_name(p) for p, m in nnx.iter_modules(view) if p]
        self.paths = {_name(p): tuple(p) for p, m in nnx.iter_modules(view) if p}
        self.owners = [_name(p) for p, m in nnx.iter_modules(view) if p and _owns_params(m)]
        self.first_conv = next((m for p, m in nnx.iter_modules(view) if p and isinstance(m, nnx.Conv)), None)

    def f(self, x):
        return nnx.merge(self.graphdef, self.state)(x[None], **self.call_kwargs)[0]

    __call__ = f

    def input_channels(self) -> int | None:
        return None if self.first_conv is None else self.first_conv.in_features

    def _call(self, x, hooks: dict[str, object]):
        model = nnx.merge(self.graphdef, self.state)
        modules = {_name(p): m for p, m in nnx.iter_modules(model) if p}
        try:
            for name, hook in hooks.items():
                m = modules[name]
                object.__setattr__(m, "__class__", _hooked_class(type(m)))
                _ACTIVE[id(m)] = hook
            return model(x[None], **self.call_kwargs)[0]
        finally:
            for name in hooks:
                _ACTIVE.pop(id(modules[name]), None)

    def _trace(self, x_shape: tuple[int, ...], dtype) -> tuple[dict, list[str]]:
        found: dict[str, tuple] = {}
        started: list[str] = []

        def recorder(name):
            def hook(out):
                if name not in started:
                    started.append(name)
                if hasattr(out, "shape") and name not in found:
                    found[name] = (len(found), tuple(out.shape[1:]))
                return out
            return hook

        try:
            jax.eval_shape(lambda x: self._call(x, {n: recorder(n) for n in self.tree_order}),
                           jax.ShapeDtypeStruct(x_shape, dtype))
        except Exception as e:
            raise ValueError(f"the NNX module cannot take x of shape {x_shape} (called as model(x[None]) on one "
                             f"input): {error_summary(e)}") from e
        return found, started

    def entries(self, x_shape: tuple[int, ...], dtype) -> list[Entry]:
        found, _ = self._trace(x_shape, dtype)
        by_name = {_name(p): m for p, m in nnx.iter_modules(nnx.merge(self.graphdef, self.state)) if p}
        out = []  # in the order the calls return (an inner module before its parent), as for linen
        for name, (_, shape) in sorted(found.items(), key=lambda kv: kv[1][0]):
            m = by_name[name]
            channels = m.out_features if isinstance(m, nnx.Conv) else None
            out.append(Entry(name, type(m).__name__, shape, name, isinstance(m, nnx.Conv), channels))
        return out

    def check_layer(self, layer) -> None:
        if not isinstance(layer, str):
            raise TypeError(f"layer must be an attribute path (str) such as 'blocks.2.conv', or None, for an NNX "
                            f"module; got {type(layer).__name__} {layer!r}")

    def resolve(self, layer: str | None, x_shape: tuple[int, ...], dtype) -> Entry:
        """The layer's entry; None: the last nnx.Conv in nnx.iter_modules order that the model calls."""
        entries = self.entries(x_shape, dtype)
        if layer is None:
            order = {name: i for i, name in enumerate(self.tree_order)}
            convs = [e for e in entries if e.is_conv]
            if not convs:
                raise ValueError(f"layer=None found no nnx.Conv that the module calls; name one of "
                                 f"{[e.name for e in entries]}")
            return max(convs, key=lambda e: order[e.name])
        return find_named(layer, entries, "an NNX module")

    def run(self, x: jax.Array, handles: Sequence[str], deltas: Sequence[jax.Array] | None = None):
        captured: dict[str, jax.Array] = {}

        def hook_for(i, name):
            def hook(out):
                if name in captured:  # a module called twice is read at its first call
                    return out
                captured[name] = out[0]
                return out if deltas is None else out + deltas[i][None]
            return hook

        logits = self._call(x, {name: hook_for(i, name) for i, name in enumerate(handles)})
        return logits, [captured[name] for name in handles]

    # ------------------------------------------------------------------ weights
    @property
    def params(self):
        return self.state

    def with_params(self, state) -> NnxAdapter:
        out = object.__new__(NnxAdapter)
        out.__dict__.update(self.__dict__)
        out.state = state
        return out

    def param_layers(self, x_shape: tuple[int, ...], dtype) -> list[str]:
        """Attribute paths of the modules that own an nnx.Param (BatchNorm included), in first-call order."""
        _, started = self._trace(x_shape, dtype)
        return [name for name in started if name in self.owners]

    def fresh(self, key: jax.Array, x_shape: tuple[int, ...], dtype):
        """The state with every owning module's variables re-initialised (module docstring)."""
        model = nnx.merge(self.graphdef, jax.tree.map(lambda a: a, self.state))  # a copy: self.state stays
        modules = {_name(p): m for p, m in nnx.iter_modules(model) if p}
        for i, name in enumerate(self.owners):
            m = modules[name]
            for j, attr in enumerate(_own_variables(m)):
                var = getattr(m, attr)
                var[...] = fallback_init(jax.random.fold_in(jax.random.fold_in(key, i), j), attr, var[...],
                                         "leading")
        return nnx.split(model)[1]

    def reinit(self, names: Sequence[str], fresh, params=None):
        params = self.state if params is None else params
        prefixes = [self.paths[n] for n in names]
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        new = jax.tree_util.tree_leaves(fresh)

        def chosen(k):
            values = tuple(_key_value(e) for e in k)
            return any(values[: len(p)] == p for p in prefixes)

        leaves = [n if chosen(k) else v for (k, v), n in zip(flat, new)]
        return jax.tree_util.tree_unflatten(treedef, leaves)
