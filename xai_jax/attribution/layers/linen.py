"""Layer access for flax.linen modules: `flax.linen.intercept_methods`, no hooks in the model.

The module is applied to batches, model.apply({"params": params}, x[None]); a layer is a
submodule path such as "block/conv". Layers are listed in call order, and a module called
several times is read at its first (outermost) call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from xai_jax.attribution.layers.entry import Entry, find_named, is_conv_class
from xai_jax.checks import error_summary


def _path(module: nn.Module) -> str:
    return "/".join(module.path)


class LinenLayers:
    kind = "flax.linen"
    layer_form = "a submodule path such as 'block/conv' (str)"

    def __init__(self, model: nn.Module, params: Any):
        self.model, self.params = model, params
        self.f = lambda x: model.apply({"params": params}, x[None])[0]

    def input_channels(self) -> int | None:
        return None  # linen infers a conv's input channels from the params; the shapes check it

    def entries(self, x_shape: tuple[int, ...], dtype) -> list[Entry]:
        found: list[Entry] = []
        depth: dict[str, int] = {}

        def interceptor(next_fun, args, kwargs, context):
            if context.method_name != "__call__" or not context.module.path:
                return next_fun(*args, **kwargs)
            key = _path(context.module)
            depth[key] = depth.get(key, 0) + 1
            out = next_fun(*args, **kwargs)
            depth[key] -= 1
            if depth[key] == 0 and hasattr(out, "shape") and key not in [e.name for e in found]:
                name = type(context.module).__name__
                channels = getattr(context.module, "features", None)
                found.append(Entry(key, name, tuple(out.shape[1:]), key, is_conv_class(name),
                                   channels if isinstance(channels, int) else None))
            return out

        def run(x):
            with nn.intercept_methods(interceptor):
                return self.model.apply({"params": self.params}, x[None])

        try:
            jax.eval_shape(run, jax.ShapeDtypeStruct(x_shape, dtype))
        except Exception as e:  # flax's own error, re-raised with what the caller passed
            raise ValueError(f"model.apply with these params cannot take x of shape {x_shape} (one unbatched "
                             f"input): {error_summary(e)}") from e
        return found

    def check_layer(self, layer) -> None:
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a layer path (str) such as 'block/conv', or None, for a flax.linen "
                            f"module; got {type(layer).__name__} {layer!r}")

    def resolve(self, layer: str | None, x_shape: tuple[int, ...], dtype) -> Entry:
        """The layer's entry; None: the last convolution (a module whose class name contains
        'Conv') in call order that outputs a feature map."""
        entries = self.entries(x_shape, dtype)
        if layer is None:
            convs = [e for e in entries if e.is_conv and len(e.shape) >= 2]
            if not convs:
                raise ValueError(f"layer=None found no convolution with spatial axes; name one of "
                                 f"{[e.name for e in entries]}")
            return convs[-1]
        return find_named(layer, entries, f"{type(self.model).__name__}")

    def run(self, x: jax.Array, handles: Sequence[str], deltas: Sequence[jax.Array] | None = None):
        """Logits of one unbatched x and the per-input outputs of the layers `handles`, with
        `deltas` (per input) added to those outputs when given."""
        captured: dict[str, jax.Array] = {}
        depth: dict[str, int] = {}
        index = {name: i for i, name in enumerate(handles)}

        def interceptor(next_fun, args, kwargs, context):
            if context.method_name != "__call__":
                return next_fun(*args, **kwargs)
            key = _path(context.module)
            depth[key] = depth.get(key, 0) + 1
            out = next_fun(*args, **kwargs)
            depth[key] -= 1
            # only the outermost call of the module, and only its first use
            if depth[key] == 0 and key in index and key not in captured:
                captured[key] = out[0]
                if deltas is not None:
                    out = out + deltas[index[key]][None]
            return out

        with nn.intercept_methods(interceptor):
            logits = self.model.apply({"params": self.params}, x[None])[0]
        return logits, [captured[name] for name in handles]
