"""Data augmentation in JAX: (key, batch) -> batch, jittable, deterministic per key."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_circular_shift(key: jax.Array, x: jax.Array, max_shift: int | None = None) -> jax.Array:
    """Rolls each signal of x (N, length, C) by its own random shift in [-max_shift, max_shift]."""
    length = x.shape[1]
    max_shift = length // 2 if max_shift is None else max_shift
    shifts = jax.random.randint(key, (x.shape[0],), -max_shift, max_shift + 1)
    return jax.vmap(lambda s, v: jnp.roll(v, s, axis=0))(shifts, x)


def histology_augment(key: jax.Array, x: jax.Array, jitter: float = 0.05) -> jax.Array:
    """Flips, 90-degree rotations and small colour jitter for tiles x (N, H, W, 3) in [0, 1].

    Histology has no canonical orientation, so the 8 dihedral transforms are label-preserving;
    colour jitter scales brightness and shifts each channel by up to `jitter`.
    """
    if x.shape[1] != x.shape[2]:
        raise ValueError(f"x must hold square tiles for 90-degree rotations, got {x.shape}")
    k_flip, k_rot, k_scale, k_shift = jax.random.split(key, 4)
    n = x.shape[0]

    def one(v, flip, rot):
        v = jnp.where(flip, v[:, ::-1], v)
        return jax.lax.switch(rot, [lambda a, k=k: jnp.rot90(a, k) for k in range(4)], v)

    x = jax.vmap(one)(x, jax.random.bernoulli(k_flip, 0.5, (n,)),
                      jax.random.randint(k_rot, (n,), 0, 4))
    scale = 1.0 + jax.random.uniform(k_scale, (n, 1, 1, 1), minval=-jitter, maxval=jitter)
    shift = jax.random.uniform(k_shift, (n, 1, 1, 3), minval=-jitter, maxval=jitter)
    return jnp.clip(x * scale + shift, 0.0, 1.0)
