"""LayerModel: a model read at one layer, in one layout (the layer methods' view of an adapter).

`LayerModel(model, params, channel_axis=, reshape=)` takes the model as the user has it
(see xai_jax.adapters.adapt) and reads it at a layer with the adapter's capture mechanism,
so the maps are the same whichever framework holds the weights.

Layouts. `channel_axis` is the channel axis of the input and of the layer's output: -1 by
default, 0 for Equinox models (channels first, as its layers are). The methods see the
layer as a grid (spatial..., K), and maps have the input's spatial shape (the input's
shape without its channel axis). `reshape` maps a layer's output to such a grid when it
is not one, e.g. ViT tokens (1 + h*w, D) -> (h, w, D) after dropping the class token. It
must only rearrange values (select, reshape, transpose): it is applied to the gradients
too, through its linear transpose. A wrong layout is caught where the model tells: the
input's channel count against the first convolution's, the layer's against its own
output channels, and the grid's rank against the input's spatial rank.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.adapters.base import Entry
from xai_jax.checks import check_int


def _check_rearranges(to_grid: Callable, entry: Entry) -> None:
    """reshape must pick values of the layer's output (select, reshape, transpose, repeat):
    on distinct values it returns only those values, and zeros on zeros. Affine maps,
    scalings and mixtures (a + 1, 2 a, cumsum) are refused: the gradients would be wrong."""
    size = int(np.prod(entry.shape))
    if size >= 2**24:  # distinct float32 integers; skip the check on huge layers
        return
    with jax.ensure_compile_time_eval():
        distinct = jnp.arange(1, size + 1, dtype=jnp.float32).reshape(entry.shape)
        picked = np.asarray(to_grid(distinct))
        zeros = np.asarray(to_grid(jnp.zeros(entry.shape, jnp.float32)))
    valid = (np.all(zeros == 0) and np.all(picked == np.round(picked)) and np.all(picked >= 1)
             and np.all(picked <= size))
    if not valid:
        raise ValueError(f"reshape must only rearrange the values of layer {entry.name!r}'s output (select, reshape, "
                         f"transpose), since it is applied to the gradients too; it changes them (e.g. adds, "
                         f"scales or mixes values)")


class ResolvedLayer(NamedTuple):
    entry: Entry
    grid_shape: tuple[int, ...]             # (spatial..., K)
    to_grid: Callable[[jax.Array], jax.Array]
    from_grid: Callable[[jax.Array], jax.Array]  # the linear transpose of to_grid (for deltas)


class LayerModel:
    """A model with layer access, in one layout. f(x): class scores of one unbatched x."""

    def __init__(self, model: Any, params: Any = None, *, channel_axis: int | None = None,
                 reshape: Callable | None = None, who: str = "this method"):
        from xai_jax.adapters import adapt
        self.adapter = adapt(model, params, who=who)
        if self.adapter.kind == "function":
            raise TypeError(f"{who} reads a layer, so model must be an xai_jax.Model(module, variables, ...), a "
                            f"flax.linen module with its variables, a Flax NNX module, an Equinox module, a Haiku "
                            f"model (through xai_jax.Model) or an xai_jax.Split(features, head); got a plain "
                            f"function {type(model).__module__}.{type(model).__name__}")
        self.who = who
        if channel_axis is None:
            channel_axis = self.adapter.default_channel_axis
        self.channel_axis = check_int(channel_axis, "channel_axis")
        if reshape is not None and not callable(reshape):
            raise TypeError(f"reshape must be a function layer output -> (spatial..., channels) grid, or None; "
                            f"got {type(reshape).__name__} {reshape!r}")
        self.reshape = reshape
        self.f = self.adapter.f
        self._checked_inputs: set = set()

    @property
    def kind(self) -> str:
        return self.adapter.kind

    # ------------------------------------------------------------------ the input's layout
    def _axis(self, ndim: int, name: str = "x") -> int:
        if not -ndim <= self.channel_axis < ndim:
            raise ValueError(f"channel_axis={self.channel_axis} is out of range for {name} of rank {ndim}")
        return self.channel_axis % ndim

    def check_input(self, x: jax.Array) -> None:
        """x's rank and channel count against the layout (static; once per shape)."""
        key = (tuple(x.shape), str(x.dtype))
        if key in self._checked_inputs:
            return
        if x.ndim < 2:
            raise ValueError(f"x must have a channel axis and at least one spatial axis, got shape {tuple(x.shape)}")
        axis = self._axis(x.ndim)
        expected = self.adapter.input_channels()
        if expected is not None and x.shape[axis] != expected:
            batched = " or is x batched (this method takes one unbatched input)" if x.ndim >= 3 else ""
            raise ValueError(
                f"channel_axis={self.channel_axis} reads {x.shape[axis]} channels from x of shape {tuple(x.shape)}, "
                f"but the model's first convolution takes {expected} input channels: is the layout "
                f"{'channels-first (channel_axis=0)' if axis != 0 else 'channels-last (channel_axis=-1)'}{batched}?")
        self._checked_inputs.add(key)

    def spatial(self, x: jax.Array) -> tuple[int, ...]:
        axis = self._axis(x.ndim)
        return tuple(s for i, s in enumerate(x.shape) if i != axis)

    def expand(self, mask: jax.Array, x: jax.Array) -> jax.Array:
        """A map with x's spatial shape (leading axes allowed) broadcastable against x."""
        return jnp.expand_dims(mask, mask.ndim - (x.ndim - 1) + self._axis(x.ndim))

    # ------------------------------------------------------------------ layers
    def entries(self, x: jax.Array) -> list[Entry]:
        self.check_input(x)
        return self.adapter.entries(tuple(x.shape), x.dtype)

    def resolve(self, x: jax.Array, layer: Any) -> ResolvedLayer:
        """The layer as a grid, checked against x's layout. layer=None: the framework's default."""
        self.check_input(x)
        if layer is not None:
            self.adapter.check_layer(layer)
        entry = self.adapter.resolve(layer, tuple(x.shape), x.dtype)
        return self.as_grid(entry, x)

    def as_grid(self, entry: Entry, x: jax.Array) -> ResolvedLayer:
        spatial_rank = x.ndim - 1
        native = jax.ShapeDtypeStruct(entry.shape, x.dtype)
        if self.reshape is not None:
            try:
                grid = jax.eval_shape(self.reshape, native)
            except Exception as e:
                raise ValueError(f"reshape failed on layer {entry.name!r}'s output of shape {entry.shape}: "
                                 f"{type(e).__name__}: {e}") from e
            if not hasattr(grid, "shape") or len(grid.shape) != spatial_rank + 1:
                raise ValueError(f"reshape must map layer {entry.name!r}'s output {entry.shape} to a grid (spatial..., "
                                 f"channels) with as many spatial axes as x ({spatial_rank}); got "
                                 f"{getattr(grid, 'shape', type(grid).__name__)}")
            to_grid = self.reshape
            try:
                transpose = jax.linear_transpose(to_grid, native)
                jax.eval_shape(transpose, grid)  # the transpose is traced, and linearity checked, only when called
            except Exception as e:
                raise ValueError(f"reshape must only rearrange values (select, reshape, transpose), since it is "
                                 f"applied to gradients too; its linear transpose failed: {type(e).__name__}: "
                                 f"{e}") from e
            _check_rearranges(to_grid, entry)
        else:
            if len(entry.shape) != spatial_rank + 1:
                raise ValueError(
                    f"layer {entry.name!r} outputs shape {entry.shape} per input, which is not a feature map "
                    f"(spatial..., channels) with as many spatial axes as x of shape {tuple(x.shape)}; name a "
                    f"convolution, or pass reshape= to turn its output into a grid")
            axis = self.channel_axis % len(entry.shape) if -len(entry.shape) <= self.channel_axis < len(entry.shape) \
                else None
            if axis is None:
                raise ValueError(f"channel_axis={self.channel_axis} is out of range for layer {entry.name!r}'s "
                                 f"output of shape {entry.shape}")
            if entry.out_channels is not None and entry.shape[axis] != entry.out_channels:
                raise ValueError(
                    f"channel_axis={self.channel_axis} reads {entry.shape[axis]} channels from layer {entry.name!r}'s "
                    f"output of shape {entry.shape}, but that {entry.module_class} has {entry.out_channels} output "
                    f"channels: the layout does not match the model")

            def to_grid(a, axis=axis):
                return jnp.moveaxis(a, axis, -1)

            transpose = jax.linear_transpose(to_grid, native)
            grid = jax.eval_shape(to_grid, native)
        return ResolvedLayer(entry, tuple(grid.shape), to_grid, lambda d: transpose(d)[0])

    def run(self, x: jax.Array, layers: list[ResolvedLayer], grid_deltas: list[jax.Array] | None = None):
        """(logits, [grids]) for one unbatched x, with grid_deltas added to the layers' outputs
        (so that the gradient with respect to a delta is the gradient with respect to the grid)."""
        native = None if grid_deltas is None else [r.from_grid(d) for r, d in zip(layers, grid_deltas)]
        logits, acts = self.adapter.run(x, [r.entry.handle for r in layers], native)
        return logits, [r.to_grid(a) for r, a in zip(layers, acts)]


def list_layers(model: Any, params: Any = None, x: jax.Array | None = None, *,
                channel_axis: int | None = None) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, module class, output shape for one input) of every layer the model calls on x,
    in first-call order (an inner module before its container). The name is what `layer=`
    takes: a path for linen ("block/conv") and NNX ("blocks.2.conv"), a module name for
    Haiku ("conv2_d"), the path a where function would follow for Equinox ("layers[3]").
    model: as everywhere (xai_jax.adapters.adapt). x: one unbatched input."""
    from xai_jax.checks import check_array
    if x is None:
        raise TypeError("list_layers needs x, one unbatched input: list_layers(model, x=x), or "
                        "list_layers(module, variables, x) for linen")
    lm = LayerModel(model, params, channel_axis=channel_axis, who="list_layers")
    x = check_array(x, "x")
    return [(e.name, e.module_class, e.shape) for e in lm.entries(jnp.asarray(x))]
