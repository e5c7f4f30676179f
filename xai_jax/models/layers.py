"""Shared building blocks for the bundled models."""

from __future__ import annotations

import flax.linen as nn
import jax


class ConvReLU(nn.Conv):
    """A convolution whose output is ReLU(conv(x)), like a Keras Conv layer with activation="relu".

    Subclassing nn.Conv keeps it a convolution for layer auto-selection (Grad-CAM picks the
    last nn.Conv), and makes the module's output the post-activation feature map, which is
    what the study's Keras Grad-CAM differentiated.
    """

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        return nn.relu(super().__call__(inputs))
