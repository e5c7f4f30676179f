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

from xai_jax.study.models.layers import ConvReLU, check_preset, check_sizes
from xai_jax.study.models.validate import check_num_classes

PRESETS: dict[str, tuple[tuple[int, ...], ...]] = {
    "study": ((32, 32), (64, 64)),
    "vgg7": ((32, 32), (64, 64), (128, 128)),
}


class VGG(nn.Module):
    """x: (batch, H, W, 3) float32 in [0, 1] -> logits (batch, num_classes).

    Checked on construction: blocks is a non-empty sequence of non-empty sequences of ints >= 1
    (channels per convolution), num_classes an int >= 2 (TypeError/ValueError naming the field).
    """

    blocks: Sequence[Sequence[int]] = PRESETS["study"]
    num_classes: int = 8

    def __post_init__(self):
        if isinstance(self.blocks, (str, bytes)) or not isinstance(self.blocks, Sequence) or not self.blocks:
            raise TypeError(f"blocks must be a non-empty sequence of blocks of channel counts, "
                            f"e.g. ((32, 32), (64, 64)), got {type(self.blocks).__name__} {self.blocks!r:.80}")
        for i, block in enumerate(self.blocks):
            check_sizes(block, f"blocks[{i}]")
        check_num_classes(self.num_classes)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"VGG takes x of shape (batch, H, W, channels), got shape {x.shape}")
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
    """The HMT CNN of a named preset ("study" or "vgg7") with num_classes (int >= 2) outputs."""
    check_preset(preset, PRESETS)
    return VGG(blocks=PRESETS[preset], num_classes=num_classes)
