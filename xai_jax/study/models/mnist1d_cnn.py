"""1-D CNNs for MNIST-1D.

Preset "study" is the study's Keras model (../shared/seed/README.md): Conv1D(25, k5) ->
Conv1D(25, k3) -> Conv1D(25, k3), all SAME + ReLU, Flatten (40*25) -> Dense(10).
Layer names follow Keras ("conv1d", "conv1d_1", ...) so the study's weights map by name.
Preset "wide" is the stronger model: four SAME convolutions of 64 channels and the same
flatten head. Both return logits (the study's softmax is applied by the caller).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from xai_jax.study.models.layers import ConvReLU, check_preset, check_sizes
from xai_jax.study.models.validate import check_num_classes

PRESETS: dict[str, dict] = {
    "study": {"features": (25, 25, 25), "kernels": (5, 3, 3)},
    "wide": {"features": (64, 64, 64, 64), "kernels": (5, 5, 3, 3)},
}


class MNIST1DCNN(nn.Module):
    """x: (batch, length, channels) float32 -> logits (batch, num_classes).

    Checked on construction: features and kernels are equally long sequences of ints >= 1,
    num_classes an int >= 2 (a classifier; TypeError/ValueError naming the field).
    """

    features: Sequence[int] = PRESETS["study"]["features"]
    kernels: Sequence[int] = PRESETS["study"]["kernels"]
    num_classes: int = 10

    def __post_init__(self):
        check_sizes(self.features, "features")
        check_sizes(self.kernels, "kernels")
        if len(self.features) != len(self.kernels):
            raise ValueError(f"features and kernels must be equally long (one kernel size per convolution), "
                             f"got {len(self.features)} features and {len(self.kernels)} kernels")
        check_num_classes(self.num_classes)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 3:
            raise ValueError(f"MNIST1DCNN takes x of shape (batch, length, channels), got shape {x.shape}")
        for i, (f, k) in enumerate(zip(self.features, self.kernels, strict=True)):
            name = "conv1d" if i == 0 else f"conv1d_{i}"
            x = ConvReLU(f, (k,), padding="SAME", name=name)(x)
        x = x.reshape(x.shape[0], -1)  # row-major, as Keras Flatten (channels_last)
        return nn.Dense(self.num_classes, name="dense")(x)


def mnist1d_cnn(preset: str = "study", num_classes: int = 10) -> MNIST1DCNN:
    """The MNIST-1D CNN of a named preset ("study" or "wide") with num_classes (int >= 2) outputs."""
    check_preset(preset, PRESETS)
    return MNIST1DCNN(**PRESETS[preset], num_classes=num_classes)
