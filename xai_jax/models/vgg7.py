"""VGG-style 2-D CNNs for HMT histology tiles.

Preset "study" is the study's own "VGG-7" (../shared/seed/README.md): Conv2D 32, 32
(3x3 SAME ReLU) -> MaxPool 2 -> Conv2D 64, 64 -> MaxPool 2 -> global average pooling ->
Dense(8). Layer names follow Keras ("conv2d", "conv2d_1", ...) so its weights load.
Preset "vgg7" has seven weight layers (Simonyan & Zisserman 2015 style): three blocks of
two 3x3 convolutions (32, 64, 128) each followed by 2x2 max pooling, then GAP and Dense.
Inputs are RGB scaled to [0, 1]; outputs are logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from xai_jax.models.layers import ConvReLU

PRESETS: dict[str, tuple[tuple[int, ...], ...]] = {
    "study": ((32, 32), (64, 64)),
    "vgg7": ((32, 32), (64, 64), (128, 128)),
}


class VGG(nn.Module):
    """x: (batch, H, W, 3) float32 in [0, 1] -> logits (batch, num_classes)."""

    blocks: Sequence[Sequence[int]] = PRESETS["study"]
    num_classes: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        i = 0
        for block in self.blocks:
            for f in block:
                name = "conv2d" if i == 0 else f"conv2d_{i}"
                x = ConvReLU(f, (3, 3), padding="SAME", name=name)(x)
                i += 1
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.num_classes, name="dense")(x)


def vgg7(preset: str = "study", num_classes: int = 8) -> VGG:
    """The HMT CNN of a named preset ("study" or "vgg7")."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    return VGG(blocks=PRESETS[preset], num_classes=num_classes)
