"""Moved to `xai_jax.adapters` (kept as an alias: see docs/migration.md)."""

from xai_jax.adapters import Entry, LayerModel, ResolvedLayer, Split, list_layers

__all__ = ["Entry", "LayerModel", "ResolvedLayer", "Split", "list_layers"]
