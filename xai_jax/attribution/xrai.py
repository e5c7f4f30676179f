"""XRAI (Kapishnikov et al., ICCV 2019, "XRAI: Better Attributions Through Regions"), as PAIR
saliency 0.2.1 computes it ("full" algorithm), for images.

1. A base attribution (any method shaped like x, e.g. integrated_gradients), reduced over
   channels by max.
2. Over-segmentation: Felzenszwalb's graph segmentation (scikit-image) at scales 50, 100,
   150, 250, 500 and 1200 (sigma 0.8, min_size 150) of the image min-max scaled to
   [-1, 1] and resized to 224 x 224, the labels resized back (nearest), every segment
   dilated by a disk of radius 5: overlapping regions of many sizes.
3. Greedy selection: repeatedly add the region whose not-yet-covered pixels have the
   highest mean attribution ("gain density"); regions adding fewer than min_pixel_diff new
   pixels are dropped; stop when the covered area exceeds area_threshold or no region is
   left. Each pixel gets the gain of the region that first covered it, uncovered pixels the
   mean attribution over them. Ranks: regions ordered by gain (1 = most important).

The segmentation runs on the host (NumPy / scikit-image), off the jitted path; the greedy
loop is one compiled lax.while_loop over the stacked region masks (two mat-vecs per added
region). So an xrai function takes concrete inputs: call it per image, not under jit/vmap.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.batching import program_cache
from xai_jax.checks import check_array, check_float, check_int, check_method, is_concrete
from xai_jax.method import Method, method_factory

FELZENSZWALB_SCALES = (50, 100, 150, 250, 500, 1200)
FELZENSZWALB_SIGMA = 0.8
FELZENSZWALB_MIN_SIZE = 150
SEGMENTATION_SHAPE = (224, 224)
MASK_BUCKET = 128  # the greedy loop is compiled per multiple of this many regions


def felzenszwalb_segments(image, *, resize: bool = True, dilation_radius: int = 5,
                          scales: tuple[float, ...] = FELZENSZWALB_SCALES, sigma: float = FELZENSZWALB_SIGMA,
                          min_size: int = FELZENSZWALB_MIN_SIZE) -> np.ndarray:
    """(M, H, W) bool region masks of an (H, W, C) image, channels last (module docstring, step 2).
    One scale with dilation_radius=0 gives a partition of the image (superpixels: the masks
    of xai_jax.superpixel_mask); XRAI's defaults give overlapping regions of many sizes."""
    try:
        from skimage import segmentation
        from skimage.morphology import dilation, disk
        from skimage.transform import resize as sk_resize
    except ImportError as e:
        raise ImportError('XRAI\'s Felzenszwalb regions need scikit-image: pip install "xai_jax[xrai]" (or pass '
                          'segments= your own masks)') from e

    im = np.asarray(check_array(image, "image"), np.float64)
    if im.ndim != 3 or im.shape[-1] > 4 or min(im.shape[:2]) < 2:
        raise ValueError(f"image must be (H, W, C) with C <= 4 channels last, got shape {im.shape}")
    if not np.isfinite(im).all():
        raise ValueError("image contains NaN or inf values")
    if not isinstance(resize, bool):
        raise TypeError(f"resize must be a bool, got {type(resize).__name__} {resize!r}")
    dilation_radius = check_int(dilation_radius, "dilation_radius", 0)
    lo, hi = im.min(), im.max()
    im = (im - lo) / (hi - lo) if hi > lo else np.zeros_like(im)
    im = im * 2.0 - 1.0
    shape = im.shape[:2]
    if resize:
        im = sk_resize(im, SEGMENTATION_SHAPE, order=3, mode="constant", preserve_range=True, anti_aliasing=True)
    masks = []
    if not isinstance(scales, (tuple, list)) or not scales:
        raise ValueError(f"scales must be a non-empty tuple of positive numbers, got {scales!r}")
    scales = tuple(check_float(v, "scales", low=0.0, low_open=True) for v in scales)
    sigma = check_float(sigma, "sigma", low=0.0)
    min_size = check_int(min_size, "min_size", 1)
    for scale in scales:
        seg = segmentation.felzenszwalb(im, scale=scale, sigma=sigma, min_size=min_size)
        if resize:
            seg = sk_resize(seg, shape, order=0, preserve_range=True, mode="constant", anti_aliasing=False).astype(int)
        masks.extend(seg == label for label in range(seg.min(), seg.max() + 1))
    if dilation_radius:
        footprint = disk(dilation_radius)
        masks = [dilation(m, footprint=footprint) for m in masks]
    return np.stack(masks).astype(bool)


@jax.jit
def _greedy(attr: jax.Array, masks: jax.Array, min_pixel_diff: jax.Array, area_threshold: jax.Array):
    """The greedy selection (module docstring, step 3) on attr (P,) and masks (M, P).
    Returns (heatmap (P,), step at which each pixel was covered (P,), -1 if never; gain of
    each step (M,); number of steps)."""
    m_f = masks.astype(attr.dtype)
    n_masks, n_pixels = masks.shape

    def cond(state):
        current, _, _, _, alive, step = state
        return (current.mean() <= area_threshold) & alive.any() & (step < n_masks)

    def body(state):
        current, out, covered_at, gains, alive, step = state
        free = (~current).astype(attr.dtype)
        hp = jax.lax.Precision.HIGHEST
        counts = jnp.dot(m_f, free, precision=hp)
        sums = jnp.dot(m_f, attr * free, precision=hp)
        alive = alive & (counts >= min_pixel_diff)
        gain = jnp.where(alive, sums / jnp.where(counts > 0, counts, 1.0), -jnp.inf)
        best = jnp.argmax(gain)  # the first of equal gains, as PAIR's strict ">" scan
        ok = alive.any()
        diff = masks[best] & ~current & ok
        out = jnp.where(diff, gain[best], out)
        covered_at = jnp.where(diff, step, covered_at)
        gains = gains.at[step].set(jnp.where(ok, gain[best], -jnp.inf))
        current = current | (masks[best] & ok)
        alive = alive.at[best].set(False)
        return current, out, covered_at, gains, alive, step + ok.astype(step.dtype)

    state = (jnp.zeros(n_pixels, bool), jnp.full(n_pixels, -jnp.inf, attr.dtype), jnp.full(n_pixels, -1),
             jnp.full(n_masks, -jnp.inf, attr.dtype), jnp.ones(n_masks, bool), jnp.asarray(0))
    current, out, covered_at, gains, _, steps = jax.lax.while_loop(cond, body, state)
    uncovered = out == -jnp.inf
    rest = jnp.where(uncovered, attr, 0.0).sum() / jnp.maximum(uncovered.sum(), 1)
    return jnp.where(uncovered, rest, out), covered_at, gains, steps


def xrai_regions(attr, masks, *, min_pixel_diff: int = 50, area_threshold: float = 1.0):
    """XRAI's greedy step on a 2-D attribution (H, W) and region masks (M, H, W) bool.
    Returns (heatmap (H, W) float, ranks (H, W) int: 1 for the region of highest gain,
    ..., and one past the last for pixels no region covered)."""
    min_pixel_diff = check_int(min_pixel_diff, "min_pixel_diff", 1)
    area_threshold = check_float(area_threshold, "area_threshold", low=0.0, high=1.0, low_open=True)
    attr = np.asarray(check_array(attr, "attr"), np.float64)
    masks = np.asarray(masks)
    if masks.dtype != bool:
        raise TypeError(f"masks must be a bool array (M, H, W), got dtype {masks.dtype}")
    if attr.ndim != 2 or masks.ndim != 3 or masks.shape[1:] != attr.shape:
        raise ValueError(f"xrai_regions takes attr (H, W) and masks (M, H, W) of the same H, W; got "
                         f"{attr.shape} and {masks.shape}")
    if len(masks) == 0:
        raise ValueError("xrai needs at least one region (masks has M = 0)")
    if not np.isfinite(attr).all() or np.abs(attr).max() > np.finfo(np.float32).max:
        raise ValueError("attr contains NaN or inf values, or values beyond float32's range")
    attr = attr.astype(np.float32)
    flat = masks.reshape(len(masks), -1)
    bucket = -(-len(flat) // MASK_BUCKET) * MASK_BUCKET  # padded with empty regions (never chosen): few compiles
    flat = np.concatenate([flat, np.zeros((bucket - len(flat), flat.shape[1]), bool)])
    heat, covered_at, gains, steps = _greedy(jnp.asarray(attr.ravel()), jnp.asarray(flat),
                                             jnp.asarray(min_pixel_diff, jnp.float32),
                                             jnp.asarray(area_threshold, jnp.float32))
    steps = int(steps)
    order = np.argsort(-np.asarray(gains)[:steps], kind="stable")  # PAIR: sorted by -gain, stable
    rank_of_step = np.empty(steps, int)
    rank_of_step[order] = np.arange(1, steps + 1)
    covered_at = np.asarray(covered_at)
    ranks = np.where(covered_at >= 0, rank_of_step[np.maximum(covered_at, 0)] if steps else 0, steps + 1)
    return np.asarray(heat).reshape(attr.shape), ranks.reshape(attr.shape)


@method_factory(output="spatial", signed=False)
def xrai(method: Callable, *, segments=None, min_pixel_diff: int = 50, area_threshold: float = 1.0,
         channel_axis: int = -1, return_ranks: bool = False) -> Callable:
    """Returns xrai_fn(x, target) -> heatmap (H, W) (NumPy), or (heatmap, ranks) with
    return_ranks=True. x: one image (H, W, C) (channel_axis gives C's axis), concrete.

    method: the base attribution (x, target) -> attributions shaped like x, e.g.
      integrated_gradients(f) (PAIR's default: IG averaged over black and white baselines).
    segments: None (Felzenszwalb regions, felzenszwalb_segments), a function image ->
      (M, H, W) bool masks, or fixed masks (M, H, W) bool.
    """
    method = check_method(method, "method", "xrai")
    if getattr(method, "keyed", False):
        raise TypeError("xrai takes an unkeyed method (x, target) -> attributions; wrap a keyed one with its key")
    if getattr(method, "returns_delta", False):
        raise TypeError("xrai takes attributions: build the method without return_delta=True")
    min_pixel_diff = check_int(min_pixel_diff, "min_pixel_diff", 1)
    area_threshold = check_float(area_threshold, "area_threshold", low=0.0, high=1.0, low_open=True)
    channel_axis = check_int(channel_axis, "channel_axis")
    if not isinstance(return_ranks, bool):
        raise TypeError(f"return_ranks must be a bool, got {type(return_ranks).__name__} {return_ranks!r}")

    def base(x, target):
        # the base attribution compiled once per input shape (not run op by op), and again when
        # the arrays the method captures change (program_cache; a bare jax.jit(method) would
        # keep JAX's trace of the first ones)
        cache = program_cache(method)
        if "xrai_base" not in cache:
            cache["xrai_base"] = jax.jit(lambda x, t: method(x, t))
        return cache["xrai_base"](x, target)

    fixed = None
    if segments is not None and not callable(segments):
        fixed = np.asarray(segments)
        if fixed.dtype != bool or fixed.ndim != 3 or len(fixed) == 0:
            raise ValueError(f"segments must be None, a function image -> masks, or (M, H, W) bool masks; got "
                             f"dtype {fixed.dtype}, shape {fixed.shape}")

    def xrai_fn(x, target):
        if not is_concrete(x, target):
            raise TypeError("xrai runs its segmentation on the host: call it on concrete inputs, outside jit/vmap")
        x = check_array(x, "x")
        if x.ndim != 3 or not -3 <= channel_axis < 3:
            raise ValueError(f"xrai is for images: x must be (H, W, C) (channel_axis={channel_axis}), got shape "
                             f"{tuple(x.shape)}")
        image = np.moveaxis(np.asarray(x), channel_axis, -1)
        if not np.isfinite(np.asarray(x)).all():
            raise ValueError(f"x contains NaN or inf values (shape {tuple(x.shape)})")
        out = base(x, target)
        if not hasattr(out, "shape") or tuple(out.shape) != tuple(x.shape):
            raise ValueError(f"xrai's method must return attributions shaped like x {tuple(x.shape)} (e.g. "
                             f"integrated_gradients), got {getattr(out, 'shape', type(out).__name__)}")
        attr = np.moveaxis(np.asarray(out), channel_axis, -1).max(-1)
        if not np.isfinite(attr).all():  # the jitted method's NaN guard: a bad target, or a model that overflows
            raise ValueError(f"the base attribution is NaN or inf for target {target!r}: is the target in range, "
                             f"and are the model's scores finite for this x?")
        masks = fixed if fixed is not None else np.asarray(
            segments(image) if segments is not None else felzenszwalb_segments(image))
        if masks.shape[1:] != attr.shape:
            raise ValueError(f"segments have shape {masks.shape}, expected (M, {attr.shape[0]}, {attr.shape[1]})")
        heat, ranks = xrai_regions(attr, masks, min_pixel_diff=min_pixel_diff, area_threshold=area_threshold)
        return (heat, ranks) if return_ranks else heat

    xrai_fn.__name__ = "xrai"
    return Method(xrai_fn, model=getattr(method, "model_fn", None), name="xrai", keyed=False,
                  precision=getattr(method, "precision", None), output="spatial", signed=False,
                  extras={"host": True})
