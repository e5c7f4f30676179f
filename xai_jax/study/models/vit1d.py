"""A small Vision Transformer for 1-D signals (Dosovitskiy et al., ICLR 2021, on patches of
a signal instead of an image), to show CAMs on token grids.

x (batch, length, channels) is cut into length / patch non-overlapping patches, each
embedded by one Dense; a learned class token and position embeddings are added; `depth`
pre-norm blocks x + MHA(norm1(x)), x + MLP(norm2(x)) follow; the head reads the class
token after a final LayerNorm.

The CAM layer for a ViT is, as in pytorch-grad-cam's ViT example, the last block's
`norm1` (its tokens still feed the class token through attention; the block's output
does not, since the head reads only the class token):
    xai_jax.grad_cam(model, params, layer=f"block_{depth - 1}/norm1", reshape=patch_grid)
with patch_grid dropping the class token: (1 + T, D) -> (T, D), a 1-D grid of T patches.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from xai_jax.study.models.validate import check_num_classes


def patch_grid(tokens: jax.Array) -> jax.Array:
    """ViT tokens (1 + T, D) of one input -> the (T, D) grid of its patches (class token dropped)."""
    return tokens[1:]


class Block(nn.Module):
    dim: int
    heads: int
    mlp_dim: int

    def setup(self):
        self.norm1 = nn.LayerNorm()
        self.attn = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.dim)
        self.norm2 = nn.LayerNorm()
        self.mlp_in = nn.Dense(self.mlp_dim)
        self.mlp_out = nn.Dense(self.dim)

    def attend(self, x: jax.Array, normed: jax.Array) -> jax.Array:
        """The block given its input x and norm1(x) (split so that tests can reach norm1)."""
        x = x + self.attn(normed, normed)
        return x + self.mlp_out(nn.gelu(self.mlp_in(self.norm2(x))))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.attend(x, self.norm1(x))


class ViT1D(nn.Module):
    """x: (batch, length, channels) float32 -> logits (batch, num_classes); length (fixed,
    for the position embeddings) must be a multiple of patch."""

    length: int = 40
    patch: int = 4
    dim: int = 32
    depth: int = 2
    heads: int = 4
    mlp_dim: int = 64
    num_classes: int = 10

    def __post_init__(self):
        check_num_classes(self.num_classes)
        for name in ("length", "patch", "dim", "depth", "heads", "mlp_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ViT1D.{name} must be an int >= 1, got {value!r}")
        if self.length % self.patch:
            raise ValueError(f"ViT1D.length ({self.length}) must be a multiple of patch ({self.patch})")
        if self.dim % self.heads:
            raise ValueError(f"ViT1D.dim ({self.dim}) must be a multiple of heads ({self.heads})")
        super().__post_init__()

    def setup(self):
        self.embed = nn.Dense(self.dim)
        self.cls = self.param("cls", nn.initializers.zeros, (1, 1, self.dim))
        self.pos = self.param("pos", nn.initializers.normal(0.02), (1, 1 + self.length // self.patch, self.dim))
        self.blocks = [Block(self.dim, self.heads, self.mlp_dim, name=f"block_{i}") for i in range(self.depth)]
        self.norm = nn.LayerNorm()
        self.head = nn.Dense(self.num_classes)

    def tokens(self, x: jax.Array) -> jax.Array:
        """(batch, length, C) -> the first block's input (batch, 1 + length / patch, dim)."""
        if x.ndim != 3 or x.shape[1] != self.length:
            raise ValueError(f"ViT1D takes x of shape (batch, {self.length}, channels), got shape {x.shape}")
        b, length, c = x.shape
        t = self.embed(x.reshape(b, length // self.patch, self.patch * c))
        return jnp.concatenate([jnp.broadcast_to(self.cls, (b, 1, self.dim)), t], axis=1) + self.pos

    def classify(self, tokens: jax.Array) -> jax.Array:
        return self.head(self.norm(tokens)[:, 0])

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.tokens(x)
        for block in self.blocks:
            h = block(h)
        return self.classify(h)
