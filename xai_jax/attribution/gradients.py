"""Plain-gradient methods and SmoothGrad.

- saliency (Simonyan, Vedaldi & Zisserman 2014): dF/dx, signed (take |.| for display).
- gradient_x_input (Shrikumar et al. 2016): x * dF/dx.
- smoothgrad (Smilkov et al. 2017): mean over n_samples of method(x + eps_i, target),
  eps_i ~ N(0, (sigma * (max x - min x))^2), sigma a fraction of x's range as in the paper.
  It wraps any method with the (x, target) call shape, Integrated Gradients included, and
  takes an explicit jax.random key when called: sg(x, target, key).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from xai_jax.attribution.common import check_positive_int, check_target, check_x, output_size, score_transform

Method = Callable[[jax.Array, jax.Array], jax.Array]


def saliency(f: Callable[[jax.Array], jax.Array], *, score: str = "logit") -> Method:
    """Returns grad(x, target) -> dF_target/dx shaped like x."""
    s = score_transform(score)

    def method(x, target):
        x = check_x(x)
        target = check_target(target, output_size(f, x))
        return jax.grad(lambda z: s(f(z))[target])(x)

    return method


def gradient_x_input(f: Callable[[jax.Array], jax.Array], *, score: str = "logit") -> Method:
    """Returns gxi(x, target) -> x * dF_target/dx."""
    grad = saliency(f, score=score)
    return lambda x, target: x * grad(x, target)


def smoothgrad(
    method: Method | Callable[[jax.Array], jax.Array],
    *,
    n_samples: int = 32,
    sigma: float = 0.15,
    f: Callable[[jax.Array], jax.Array] | None = None,
    chunk_size: int | None = None,
) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """Returns sg(x, target, key) -> mean of method(x + noise, target) over n_samples.

    method: an attribution method (x, target) -> map, e.g. saliency(f) or
      integrated_gradients(f); if `f` is given instead, SmoothGrad of saliency(f).
    sigma: noise std as a fraction of (max x - min x); > 0.
    chunk_size: evaluate the noisy samples chunk_size at a time (bounded memory).
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if f is not None:
        method = saliency(f)
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, "chunk_size")

    def sg(x, target, key):
        x = check_x(x)
        if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)) and not (
            hasattr(key, "shape") and key.shape == (2,) and key.dtype == jnp.uint32
        ):
            raise TypeError(f"key must be a jax.random key, got {type(key).__name__}")
        std = sigma * (x.max() - x.min())
        noise = std * jax.random.normal(key, (n_samples, *x.shape), x.dtype)
        one = lambda eps: method(x + eps, target)  # noqa: E731
        if chunk_size is None or chunk_size >= n_samples:
            return jax.vmap(one)(noise).mean(0)
        return jax.lax.map(one, noise, batch_size=chunk_size).mean(0)

    return sg
