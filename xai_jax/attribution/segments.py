"""Feature masks: which elements of an input move together in the perturbation methods
(feature ablation and permutation, Shapley values, KernelSHAP, LIME; xai_jax.attribution.shapley).

A feature mask is an integer array of labels 0 .. n_features - 1, shaped like x or like x
without its channel axis (then every channel of a position shares its label): the elements
with label i form feature i, which is perturbed as one. A method takes `feature_mask=`:

    None                            every element of x is its own feature (Captum's default)
    patch_mask((40,), 4)            a fixed array: 10 contiguous 1-D segments of 4 samples
    patch_mask((28, 28), (7, 7))    16 image patches of 7 x 7 pixels, raster order
    patches(4)                      a function x -> labels: patches of x's own spatial shape
    superpixels(32, scale=100)      per-input Felzenszwalb superpixels (scikit-image, on the host)
    your own function x -> labels   traceable, with n_features= (or a .n_features attribute)

A function is called on each input (under jit and vmap too); the number of features must
be static: it is read from a concrete mask (max label + 1), from the function's
`n_features`, or from the method's `n_features=` argument. Labels outside
[0, n_features) are never perturbed (and their attribution is 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.checks import check_int, check_positive_int, is_concrete


def patch_mask(shape: tuple[int, ...], size: int | tuple[int, ...]) -> np.ndarray:
    """int32 labels of `shape` (the spatial shape: (L,) or (H, W)) for a grid of patches of
    `size` (one int, or one per axis), numbered in raster order; the last patch of an axis
    is truncated when size does not divide it. patch_mask((40,), 4): 10 contiguous segments."""
    if not isinstance(shape, (tuple, list)) or not shape:
        raise TypeError(f"shape must be a non-empty tuple of spatial sizes, got {shape!r}")
    shape = tuple(check_positive_int(s, "shape") for s in shape)
    sizes = (size,) * len(shape) if not isinstance(size, (tuple, list)) else tuple(size)
    if len(sizes) != len(shape):
        raise ValueError(f"size must be one int or one per spatial axis ({len(shape)}), got {size!r}")
    sizes = tuple(check_positive_int(s, "size") for s in sizes)
    counts = [-(-d // s) for d, s in zip(shape, sizes)]
    grids = np.meshgrid(*[np.arange(d) // s for d, s in zip(shape, sizes)], indexing="ij")
    return np.ravel_multi_index(tuple(grids), counts).astype(np.int32)


def patches(size: int | tuple[int, ...], *, channel_axis: int = -1) -> Callable[[jax.Array], np.ndarray]:
    """A feature mask function x -> patch_mask(x's spatial shape, size), for inputs of any size."""
    check_int(channel_axis, "channel_axis")
    patch_mask((1,) * (len(size) if isinstance(size, (tuple, list)) else 1), size)  # checks size now

    def mask(x):
        axis = channel_axis % x.ndim
        return patch_mask(tuple(s for i, s in enumerate(x.shape) if i != axis), size)

    mask.__name__ = f"patches({size})"
    return mask


def superpixel_mask(image, *, scale: float = 100.0, sigma: float = 0.8, min_size: int = 20) -> np.ndarray:
    """int32 (H, W) labels of Felzenszwalb & Huttenlocher's (2004) graph segmentation of an
    (H, W, C) image, channels last, at one scale (xai_jax.felzenszwalb_segments with
    dilation_radius=0, no resizing: a partition), numbered 0 .. K-1 in raster order of first
    appearance. Needs scikit-image. Larger scale / min_size: fewer, larger superpixels."""
    from xai_jax.attribution.xrai import felzenszwalb_segments
    masks = felzenszwalb_segments(image, resize=False, dilation_radius=0, scales=(scale,), sigma=sigma,
                                  min_size=min_size)
    return np.argmax(masks, axis=0).astype(np.int32)


def superpixels(n_features: int, *, scale: float = 100.0, sigma: float = 0.8,
                min_size: int = 20) -> Callable[[jax.Array], jax.Array]:
    """A feature mask function x -> superpixel_mask(x) for (H, W, C) images, run on the host
    through jax.pure_callback (so under jit and vmap too, one image at a time). The count is
    static: an image with more than n_features superpixels has those numbered
    n_features - 1 and above merged into one feature (choose scale / min_size so that this is
    rare); one with fewer leaves labels unused (attribution 0)."""
    n_features = check_positive_int(n_features, "n_features")
    superpixel_mask(np.zeros((4, 4, 1), np.float32), scale=scale, sigma=sigma, min_size=min_size)  # checks now

    def host(image):
        labels = superpixel_mask(np.asarray(image), scale=scale, sigma=sigma, min_size=min_size)
        return np.minimum(labels, n_features - 1).astype(np.int32)

    def mask(x):
        if x.ndim != 3:
            raise ValueError(f"superpixels segments (H, W, C) images, channels last; got x of shape {tuple(x.shape)}")
        return jax.pure_callback(host, jax.ShapeDtypeStruct(x.shape[:2], jnp.int32), x, vmap_method="sequential")

    mask.n_features = n_features
    mask.__name__ = f"superpixels({n_features})"
    return mask


class FeatureMask:
    """A feature_mask argument, resolved per input: labels(x) -> (int32 labels shaped like x, n)."""

    def __init__(self, feature_mask: Any, n_features: int | None, channel_axis: int, who: str):
        self.who = who
        self.channel_axis = check_int(channel_axis, "channel_axis")
        self.n_features = None if n_features is None else check_positive_int(n_features, "n_features")
        self.fn = None
        self.array = None
        if feature_mask is None or callable(feature_mask):
            self.fn = feature_mask
            if self.n_features is None and getattr(feature_mask, "n_features", None) is not None:
                self.n_features = check_positive_int(feature_mask.n_features, "feature_mask.n_features")
        elif hasattr(feature_mask, "shape") and hasattr(feature_mask, "dtype"):
            self.array = self._checked(feature_mask, "feature_mask")
        else:
            raise TypeError(f"{who}: feature_mask must be None, an integer array of labels, or a function x -> labels; "
                            f"got {type(feature_mask).__name__}")

    def _checked(self, labels, name: str):
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise TypeError(f"{self.who}: {name} must hold integer labels 0 .. n_features - 1, got dtype "
                            f"{labels.dtype}")
        if is_concrete(labels):
            values = np.asarray(labels)
            if values.size and values.min() < 0:
                raise ValueError(f"{self.who}: {name} must hold labels >= 0, got a minimum of {values.min()}")
            if self.n_features is not None and values.size and values.max() >= self.n_features:
                raise ValueError(f"{self.who}: {name} holds label {values.max()}, but n_features={self.n_features}")
            return values.astype(np.int32)
        return labels.astype(jnp.int32)

    def labels(self, x: jax.Array) -> tuple[jax.Array, int]:
        if self.fn is None and self.array is None:
            return jnp.arange(x.size, dtype=jnp.int32).reshape(x.shape), x.size
        labels = self.array if self.array is not None else self._checked(self.fn(x), "feature_mask(x)")
        axis = self.channel_axis % x.ndim if -x.ndim <= self.channel_axis < x.ndim else None
        if axis is None:
            raise ValueError(f"channel_axis={self.channel_axis} is out of range for x of shape {tuple(x.shape)}")
        spatial = tuple(s for i, s in enumerate(x.shape) if i != axis)
        if tuple(labels.shape) not in (spatial, tuple(x.shape)):
            raise ValueError(f"{self.who}: the feature mask has shape {tuple(labels.shape)}, expected x's shape "
                             f"{tuple(x.shape)} or its spatial shape {spatial}")
        n = self.n_features
        if n is None:
            if not isinstance(labels, np.ndarray):
                raise ValueError(f"{self.who}: the feature mask function returns traced labels, so the number of "
                                 f"features is unknown; pass n_features=")
            n = int(labels.max()) + 1 if labels.size else 1
        xp = np if isinstance(labels, np.ndarray) else jnp
        if tuple(labels.shape) == spatial and spatial != tuple(x.shape):
            labels = xp.broadcast_to(xp.expand_dims(labels, axis), x.shape)
        return jnp.asarray(labels, jnp.int32), n
