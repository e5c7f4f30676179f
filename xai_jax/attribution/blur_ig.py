"""Blur Integrated Gradients (Xu, Venugopalan & Sundararajan, CVPR 2020, "Attribution in
Scale and Space"), as PAIR saliency 0.2.1 computes it.

The path runs from x blurred at max_sigma back to x: with sigma_i = i * max_sigma / steps,

    BlurIG(x) = - sum_{i < steps} (sigma_{i+1} - sigma_i) * dB/dsigma(x, sigma_i) * grad F(B(x, sigma_i)),
    dB/dsigma(x, sigma) ~ (B(x, sigma + grad_step) - B(x, sigma)) / grad_step,

B(x, sigma) a Gaussian blur of the spatial axes only: scipy.ndimage.gaussian_filter with
sigma [sigma, sigma, 0] on images, [sigma, 0] on signals (PAIR blurs images only; ours also
blurs 1-D signals along their length), mode "constant" (zeros outside), truncated at
4 sigma as scipy does. Each blur is a (length x length) matrix per spatial axis, built in
the compiled call from sigma; the steps are vmapped (chunk_size at a time).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.common import (
    as_model_function,
    check_chunk_size,
    check_float,
    check_positive_int,
    explanation_method,
    pairwise_sum,
    resolve_chunk,
    score_transform,
)
from xai_jax.attribution.loop_convs import loop_friendly
from xai_jax.checks import check_int
from xai_jax.method import method_factory

Method = Callable[[jax.Array, jax.Array], jax.Array]
MIN_SIGMA = 0.125  # below it, scipy's kernel (radius int(4 sigma + 0.5)) is the identity


def _kernel_parts(n: int, sigma: jax.Array, max_radius: int, truncate: float, dtype):
    """Offsets j - i (n, n), the unnormalised taps over [-max_radius, max_radius] and at the
    offsets, the in-radius masks of both, and the normaliser (scipy's kernel sum)."""
    sigma = jnp.asarray(sigma, dtype)
    radius = jnp.floor(truncate * sigma + 0.5)
    safe = jnp.where(sigma > 0, sigma, 1.0)
    taps = jnp.arange(-max_radius, max_radius + 1, dtype=dtype)
    offsets = (jnp.arange(n)[None, :] - jnp.arange(n)[:, None]).astype(dtype)  # j - i
    tap_in, off_in = jnp.abs(taps) <= radius, jnp.abs(offsets) <= radius
    norm = jnp.where(tap_in, jnp.exp(-0.5 * (taps / safe) ** 2), 0.0).sum()
    return taps, offsets, tap_in, off_in, norm, safe


def blur_matrix(n: int, sigma: jax.Array, max_radius: int, truncate: float = 4.0, dtype=jnp.float32) -> jax.Array:
    """(n, n) matrix M with M @ v = scipy.ndimage.gaussian_filter1d(v, sigma, mode="constant",
    truncate=truncate) for a traced sigma >= 0 (radius int(truncate * sigma + 0.5) <=
    max_radius, the kernel normalised over its full radius as scipy does); the identity at 0."""
    _, offsets, _, off_in, norm, safe = _kernel_parts(n, sigma, max_radius, truncate, dtype)
    m = jnp.where(off_in, jnp.exp(-0.5 * (offsets / safe) ** 2), 0.0) / norm
    return jnp.where(jnp.asarray(sigma) > 0, m, jnp.eye(n, dtype=dtype))


def blur_difference(n: int, sigma: jax.Array, h: float, max_radius: int, truncate: float = 4.0,
                    dtype=jnp.float32) -> jax.Array:
    """(blur_matrix(sigma + h) - blur_matrix(sigma)) / h without the cancellation of
    subtracting two nearly equal matrices: with a = t^2 / 2 (1/sigma^2 - 1/(sigma+h)^2) and
    the normalisers' ratio r = N(sigma+h) / N(sigma) (r - 1 summed tap by tap), the entries
    both kernels cover are (k / N) (expm1(a) - (r - 1)) / r. So float32 keeps ~7 digits of
    the finite difference (a plain difference at h = 0.01 loses 2 to 4 of them)."""
    s1 = jnp.asarray(sigma, dtype)
    s2 = s1 + h
    taps, offsets, in1_t, in1_o, n1, safe1 = _kernel_parts(n, s1, max_radius, truncate, dtype)
    _, _, in2_t, in2_o, n2, safe2 = _kernel_parts(n, s2, max_radius, truncate, dtype)
    k1_t, k2_t = jnp.exp(-0.5 * (taps / safe1) ** 2), jnp.exp(-0.5 * (taps / safe2) ** 2)
    growth = h * (2.0 * safe1 + h) / (safe1**2 * safe2**2)  # 1/sigma^2 - 1/(sigma+h)^2, no cancellation
    a_t = jnp.where(taps == 0, 0.0, 0.5 * taps**2 * growth)  # 0 * inf when a tiny sigma's square underflows
    both_t = in1_t & in2_t
    excess = (jnp.where(both_t, k1_t * jnp.expm1(a_t), 0.0).sum() + jnp.where(in2_t & ~in1_t, k2_t, 0.0).sum()
              - jnp.where(in1_t & ~in2_t, k1_t, 0.0).sum())
    r_minus_1 = excess / n1
    k1, k2 = jnp.exp(-0.5 * (offsets / safe1) ** 2), jnp.exp(-0.5 * (offsets / safe2) ** 2)
    a = jnp.where(offsets == 0, 0.0, 0.5 * offsets**2 * growth)
    both = (k1 / n1) * (jnp.expm1(a) - r_minus_1) / (1.0 + r_minus_1)
    d = jnp.where(in1_o & in2_o, both, jnp.where(in2_o, k2 / n2, 0.0) - jnp.where(in1_o, k1 / n1, 0.0))
    # sigma = 0: the first blur is the identity (radius 0 kernels are the identity too)
    d0 = (blur_matrix(n, s2, max_radius, truncate, dtype) - jnp.eye(n, dtype=dtype))
    return jnp.where(s1 > 0, d, d0) / h


def _blur(x: jax.Array, mats: list[jax.Array], channel_axis: int) -> jax.Array:
    """Applies one matrix per spatial axis of x (the channel axis is left alone)."""
    spatial_axes = [a for a in range(x.ndim) if a != channel_axis]
    for axis, m in zip(spatial_axes, mats):
        x = jnp.moveaxis(jnp.tensordot(m, x, axes=([1], [axis])), 0, axis)
    return x


def _blur_derivative(x, m, d, h, channel_axis):
    """(B(sigma + h) - B(sigma)) / h for a separable blur, B = M_1 (x) M_2 ... one matrix per
    spatial axis and M' = M + h D: the expansion of the product over the axes, so that no
    two nearly equal blurs are subtracted (1-D: D x; 2-D: D X M^T + M X D^T + h D X D^T)."""
    if len(m) == 1:
        return _blur(x, d, channel_axis)
    return (_blur(x, [d[0], m[1]], channel_axis) + _blur(x, [m[0], d[1]], channel_axis)
            + h * _blur(x, d, channel_axis))


@method_factory()
def blur_ig(f: Callable[[jax.Array], jax.Array], *, max_sigma: float = 50.0, steps: int = 100,
            grad_step: float = 0.01, score: str = "logit", channel_axis: int = -1,
            chunk_size: int | str | None = "auto", precision: str | None = None) -> Method:
    """Returns blur_ig_fn(x, target) -> attributions shaped like x (jit- and vmap-compatible).

    x: (length, C) or (H, W, C) (channel_axis: where C is). max_sigma: the blur at the
    path's start, in pixels; >= MIN_SIGMA = 0.125 (a smaller Gaussian, truncated at 4 sigma,
    is the identity, so the path would start at x: a ValueError); steps: gradients along
    the path; grad_step > 0: the finite difference in sigma for dB/dsigma. chunk_size:
    steps per vmapped pass (None: all; "auto", the default: as integrated_gradients').
    """
    f = as_model_function(f)
    max_sigma = check_float(max_sigma, "max_sigma", low=0.0, low_open=True)
    if max_sigma < MIN_SIGMA:
        raise ValueError(f"max_sigma={max_sigma:g} blurs nothing: a Gaussian of sigma < {MIN_SIGMA} pixels, truncated "
                         f"at 4 sigma as scipy does, has radius 0 (the identity), so the path would start at x itself; "
                         f"use max_sigma >= {MIN_SIGMA} (pixels; PAIR's default is 50)")
    steps = check_positive_int(steps, "steps")
    grad_step = check_float(grad_step, "grad_step", low=0.0, low_open=True)
    channel_axis = check_int(channel_axis, "channel_axis")
    chunk_size = check_chunk_size(chunk_size)
    s = score_transform(score)

    max_radius = int(4.0 * (max_sigma + grad_step) + 0.5)
    looped = loop_friendly(f)
    sigmas = np.arange(steps + 1) * max_sigma / steps  # float64 on the host, as PAIR's
    dsigma = np.diff(sigmas)

    def blur_ig_fn(x, target):
        if x.ndim not in (2, 3) or not -x.ndim <= channel_axis < x.ndim:
            raise ValueError(f"blur_ig takes x of shape (length, C) or (H, W, C) with channel_axis={channel_axis}, "
                             f"got shape {tuple(x.shape)}")
        axis = channel_axis % x.ndim
        spatial = [d for i, d in enumerate(x.shape) if i != axis]
        chunk = resolve_chunk(chunk_size, steps, x.size)
        model = f if chunk is None else looped  # lax.map: XLA:CPU's loop penalty
        grad_fn = jax.grad(lambda z: s(model(z))[target])

        def one(step):
            sigma, width = step
            m = [blur_matrix(n, sigma, max_radius, dtype=x.dtype) for n in spatial]
            d = [blur_difference(n, sigma, grad_step, max_radius, dtype=x.dtype) for n in spatial]
            x_i = _blur(x, m, axis)
            return width * _blur_derivative(x, m, d, grad_step, axis) * grad_fn(x_i)

        path = (jnp.asarray(sigmas[:-1], x.dtype), jnp.asarray(dsigma, x.dtype))
        terms = jax.vmap(one)(path) if chunk is None else jax.lax.map(one, path, batch_size=chunk)
        return -pairwise_sum(terms)  # rounding that does not grow with steps

    return explanation_method(blur_ig_fn, f, name="blur_ig", precision=precision)
