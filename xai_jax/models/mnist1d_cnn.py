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

from xai_jax.models.layers import ConvReLU

PRESETS: dict[str, dict] = {
    "study": {"features": (25, 25, 25), "kernels": (5, 3, 3)},
    "wide": {"features": (64, 64, 64, 64), "kernels": (5, 5, 3, 3)},
}


class MNIST1DCNN(nn.Module):
    """x: (batch, length, channels) float32 -> logits (batch, num_classes)."""

    features: Sequence[int] = PRESETS["study"]["features"]
    kernels: Sequence[int] = PRESETS["study"]["kernels"]
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, (f, k) in enumerate(zip(self.features, self.kernels, strict=True)):
            name = "conv1d" if i == 0 else f"conv1d_{i}"
            x = ConvReLU(f, (k,), padding="SAME", name=name)(x)
        x = x.reshape(x.shape[0], -1)  # row-major, as Keras Flatten (channels_last)
        return nn.Dense(self.num_classes, name="dense")(x)


def mnist1d_cnn(preset: str = "study", num_classes: int = 10) -> MNIST1DCNN:
    """The MNIST-1D CNN of a named preset ("study" or "wide")."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    return MNIST1DCNN(**PRESETS[preset], num_classes=num_classes)
