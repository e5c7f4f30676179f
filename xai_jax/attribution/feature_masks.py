"""Methods that use a CNN's own feature maps as input masks: Score-CAM and SISE.

- Score-CAM (Wang et al., CVPRW 2020): each channel A^k of a layer, upsampled to the input
  and min-max normalised, masks the input; its weight is the increase of confidence
  alpha_k = P_t(x * M_k) - P_t(baseline input); map = ReLU(sum_k alpha_k A^k), upsampled.
- SISE (Sattarzadeh et al., AAAI 2021, "Explaining CNNs through Attribution-Based Input
  Sampling and Block-Wise Feature Aggregation"), four phases:
    1. feature maps of several layers (default: the last convolution at each spatial
       resolution, i.e. every block end, for any CNN);
    2. selection: keep a map when the mean gradient of the target score over it exceeds
       `threshold` (0: positive gradients only);
    3. attribution-based input sampling: each kept map, upsampled and min-max normalised,
       masks the input; layer map V_l = sum_k P_t(x * M_k) M_k over kept maps;
    4. block-wise fusion, low to high: F <- (norm(F) + norm(V_l)) * [V_l > otsu(V_l)],
       i.e. the sum is gated by the higher layer's map binarised at its Otsu threshold.
  Maps that are not kept are still evaluated with weight 0, so shapes stay static under jit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from xai_jax.attribution.common import check_float, explanation_method, minmax, score_transform, upsample
from xai_jax.attribution.grad_cam import layer_access
from xai_jax.checks import check_optional_int
from xai_jax.method import method_factory
from xai_jax.method import relu_signed as _relu_signed


def masked_scores(f, x: jax.Array, masks: jax.Array, target, score_fn, chunk_size: int | None,
                  expand: Callable | None = None) -> jax.Array:
    """score_fn(f(x * m))[target] for each mask m (n, *spatial), vmapped in chunks; expand
    puts the channel axis into a mask (default: channels last)."""
    expand = expand or (lambda m, x: m[..., None])
    one = lambda m: score_fn(f(x * expand(m, x)))[target]  # noqa: E731
    if chunk_size is None or chunk_size >= masks.shape[0]:
        return jax.vmap(one)(masks)
    return jax.lax.map(one, masks, batch_size=chunk_size)


def _channel_masks(a: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
    """(layer spatial..., K) -> (K, *spatial) masks in [0, 1]."""
    maps = jnp.moveaxis(a, -1, 0)
    up = upsample(maps, spatial)
    return minmax(up, axes=tuple(range(1, up.ndim)))


@method_factory(output="spatial", signed=_relu_signed)
def score_cam(model: Any, params: Any = None, layer: Any = None, *, score: str = "softmax", baseline: float = 0.0,
              relu: bool = True, chunk_size: int | None = None, channel_axis: int | None = None,
              reshape: Callable | None = None, precision: str | None = None):
    """Returns cam(x, target) -> map with x's spatial shape (grad_cam's call shape: model,
    params, layer, channel_axis and reshape as there)."""
    s = score_transform(score)
    baseline = check_float(baseline, "baseline")
    chunk_size = check_optional_int(chunk_size, "chunk_size")
    if not isinstance(relu, bool):
        raise TypeError(f"relu must be a bool, got {type(relu).__name__} {relu!r}")
    lm, layer_for = layer_access(model, params, layer, channel_axis, reshape, "score_cam")
    f = lm.f

    def cam(x, target):
        _, (a,) = lm.run(x, [layer_for(x)])
        spatial = lm.spatial(x)
        masks = _channel_masks(a, spatial)
        # x * 0 + baseline (not a constant) keeps XLA from constant-folding a whole forward pass
        alpha = masked_scores(f, x, masks, target, s, chunk_size, lm.expand) - s(f(x * 0.0 + baseline))[target]
        m = (a * alpha).sum(-1)
        if relu:
            m = jax.nn.relu(m)
        return upsample(m, spatial)

    return explanation_method(cam, f, name="score_cam", precision=precision, check_input=lm.check_input)


def otsu_threshold(v: jax.Array, bins: int = 256) -> jax.Array:
    """Otsu's threshold (Otsu 1979) of the values of v in [0, 1]: maximises the between-class
    variance w0 w1 (mu0 - mu1)^2 of a `bins`-bin histogram."""
    hist = jnp.histogram(v.ravel(), bins=bins, range=(0.0, 1.0))[0].astype(jnp.float32)
    p = hist / jnp.maximum(hist.sum(), 1.0)
    centers = (jnp.arange(bins) + 0.5) / bins
    w0 = jnp.cumsum(p)
    m0 = jnp.cumsum(p * centers)
    total = m0[-1]
    w1 = 1.0 - w0
    between = jnp.where((w0 > 0) & (w1 > 0),
                        (total * w0 - m0) ** 2 / jnp.maximum(w0 * w1, 1e-12), 0.0)
    return (jnp.argmax(between) + 1.0) / bins


@method_factory(output="spatial", signed=False)
def sise(model: Any, params: Any = None, layers: Sequence[Any] | None = None, *, threshold: float = 0.0,
         score: str = "softmax", chunk_size: int | None = None, channel_axis: int | None = None,
         reshape: Callable | None = None, precision: str | None = None):
    """Returns sise_fn(x, target) -> map in [0, 1] with x's spatial shape.

    model, params: as for grad_cam. layers: a list of layers in the model's form (linen or
    NNX paths, Equinox where functions), low to high; None: the last convolution at each
    spatial resolution. A Split has one feature map, so SISE on it uses that one layer
    (phases 1-3 only; nothing to fuse). threshold: keep feature maps whose mean gradient
    exceeds it. channel_axis, reshape: as for grad_cam (reshape applies to every layer).
    """
    s = score_transform(score)
    threshold = check_float(threshold, "threshold")
    chunk_size = check_optional_int(chunk_size, "chunk_size")
    lm, layers_for = layer_access(model, params, layers, channel_axis, reshape, "sise", many=True)
    f = lm.f

    def sise_fn(x, target):
        resolved = layers_for(x)
        spatial = lm.spatial(x)

        def score_of(deltas):
            logits, grids = lm.run(x, resolved, deltas)
            return s(logits)[target], grids

        grads, acts = jax.grad(score_of, has_aux=True)([jnp.zeros(r.grid_shape, x.dtype) for r in resolved])
        fused = None
        for a, g in zip(acts, grads):
            keep = g.mean(tuple(range(g.ndim - 1))) > threshold  # (K,)
            masks = _channel_masks(a, spatial)
            scores = masked_scores(f, x, masks, target, s, chunk_size, lm.expand)
            v = minmax(jnp.tensordot(jnp.where(keep, scores, 0.0), masks, axes=1))
            if fused is None:
                fused = v
            else:
                gate = (v > otsu_threshold(v)).astype(v.dtype)
                fused = minmax((minmax(fused) + v) * gate)
        return fused

    return explanation_method(sise_fn, f, name="sise", precision=precision, check_input=lm.check_input)
