"""Any model as two functions: `Split(features, head)`.

features(x) -> A, the feature map of ONE unbatched input (spatial..., C) in the default
channels-last layout; head(A) -> class scores. Nothing is captured: the layer is the split
itself, so layer= must be None, and SISE, which fuses several layers, uses this one map.
A Split is also callable as f(x) = head(features(x)), so the gradient methods take it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax

from xai_jax.adapters.base import Entry
from xai_jax.checks import check_callable, error_summary


class Split:
    """A model split at one layer: features(x) -> feature map, head(feature map) -> scores."""

    def __init__(self, features: Callable[[jax.Array], jax.Array], head: Callable[[jax.Array], jax.Array]):
        self.features = check_callable(features, "features", "a function x -> feature map")
        self.head = check_callable(head, "head", "a function feature map -> class scores")

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))

    def __repr__(self) -> str:
        return f"Split(features={self.features!r}, head={self.head!r})"


class SplitAdapter:
    kind = "Split"
    layer_form = "None (the split is the layer)"
    default_channel_axis = -1

    def __init__(self, model: Split):
        self.model = model

    def f(self, x: jax.Array) -> jax.Array:
        return self.model(x)

    __call__ = f

    def input_channels(self) -> int | None:
        return None

    def entries(self, x_shape: tuple[int, ...], dtype) -> list[Entry]:
        try:
            a = jax.eval_shape(self.model.features, jax.ShapeDtypeStruct(x_shape, dtype))
        except Exception as e:
            raise ValueError(f"Split.features cannot take x of shape {x_shape} (one unbatched input): "
                             f"{error_summary(e)}") from e
        if not hasattr(a, "shape"):
            raise ValueError(f"Split.features must return one array (the feature map), got {type(a).__name__}")
        return [Entry("features", "Split", tuple(a.shape), "features", True, None)]

    def check_layer(self, layer) -> None:
        raise TypeError(f"layer must be None for a Split model (the split is the layer), got "
                        f"{type(layer).__name__} {layer!r}")

    def resolve(self, layer, x_shape: tuple[int, ...], dtype) -> Entry:
        return self.entries(x_shape, dtype)[0]

    def run(self, x: jax.Array, handles: Sequence[str], deltas: Sequence[jax.Array] | None = None):
        a = self.model.features(x)
        logits = self.model.head(a if deltas is None else a + deltas[0])
        return logits, [a for _ in handles]

    # ------------------------------------------------------------------ weights
    @property
    def params(self):
        raise TypeError("a Split holds no weights that xai_jax can randomise: pass the model as "
                        "xai_jax.Model(module, variables) (linen, NNX, Equinox or Haiku)")

    def with_params(self, params):
        return self.params

    def param_layers(self, x_shape, dtype):
        return self.params


class FunctionAdapter:
    """A plain function f(x) -> class scores of one unbatched x: gradient and perturbation
    methods need nothing more; layer methods and randomisation metrics need a framework model."""

    kind = "function"
    layer_form = "(none: a plain function has no layers)"
    default_channel_axis = -1

    def __init__(self, f: Callable[[jax.Array], jax.Array]):
        self.model = check_callable(f, "model", "a function x -> class scores")

    def f(self, x: jax.Array) -> jax.Array:
        return self.model(x)

    __call__ = f

    def _no_layers(self, *args, **kwargs):
        raise TypeError("this needs a model's layers, but the model is a plain function: pass "
                        "xai_jax.Model(module, variables) (flax.linen, NNX, Equinox or Haiku) or "
                        "xai_jax.Split(features, head)")

    input_channels = lambda self: None  # noqa: E731
    entries = resolve = run = check_layer = _no_layers

    @property
    def params(self):
        raise TypeError("a plain function holds no weights that xai_jax can randomise: pass "
                        "xai_jax.Model(module, variables) (flax.linen, NNX, Equinox or Haiku) and a Method built "
                        "from it")

    with_params = param_layers = fresh = reinit = _no_layers
