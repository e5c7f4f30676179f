"""Shared building blocks for the bundled models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from xai_jax.checks import check_int


def check_preset(preset: Any, presets: dict) -> str:
    """A preset name: a str (TypeError otherwise) among presets (ValueError otherwise)."""
    if not isinstance(preset, str):
        raise TypeError(f"preset must be a str, one of {sorted(presets)}, got {type(preset).__name__} {preset!r:.80}")
    if preset not in presets:
        raise ValueError(f"preset must be one of {sorted(presets)}, got {preset!r}")
    return preset


def check_sizes(sizes: Any, name: str) -> tuple[int, ...]:
    """A non-empty sequence of ints >= 1 (channel counts or kernel sizes)."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
        raise TypeError(f"{name} must be a non-empty sequence of ints >= 1, got {type(sizes).__name__} {sizes!r:.80}")
    return tuple(check_int(v, f"{name}[{i}]", 1) for i, v in enumerate(sizes))


class ConvReLU(nn.Conv):
    """A convolution whose output is ReLU(conv(x)), like a Keras Conv layer with activation="relu".

    Subclassing nn.Conv keeps it a convolution for layer auto-selection (Grad-CAM picks the
    last nn.Conv), and makes the module's output the post-activation feature map, which is
    what the study's Keras Grad-CAM differentiated.
    """

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        return nn.relu(super().__call__(inputs))
