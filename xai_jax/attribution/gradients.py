"""Plain-gradient methods and SmoothGrad.

- saliency (Simonyan, Vedaldi & Zisserman 2014): dF/dx, signed (take |.| for display).
- gradient_x_input (Shrikumar et al. 2016): x * dF/dx.
- expected_gradients (Erion et al. 2021; GradientSHAP in Captum and shap): IG averaged over
  baselines drawn from a reference set, by Monte Carlo over (baseline, alpha) pairs.
- smoothgrad (Smilkov et al. 2017): mean over n_samples of method(x + eps_i, target),
  eps_i ~ N(0, (sigma * (max x - min x))^2), sigma a fraction of x's range as in the paper.
  It wraps any method with the (x, target) call shape, Integrated Gradients included, and
  takes an explicit jax.random key when called: sg(x, target, key). Captum's NoiseTunnel
  variants are options (nt_type, Captum's names), with m_i = method(x + eps_i, target):
      "smoothgrad"     (1/N) sum_i m_i
      "smoothgrad_sq"  (1/N) sum_i m_i^2                      (SmoothGrad², Hooker et al. 2019)
      "vargrad"        (1/N) sum_i m_i^2 - ((1/N) sum_i m_i)^2  (VarGrad, Adebayo et al. 2018)
  VarGrad is the population variance (ddof 0), as Captum computes it.
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
    pairwise_mean,
    resolve_chunk,
    score_transform,
)
from xai_jax.checks import check_method, is_concrete
from xai_jax.method import inner_output as _inner_output
from xai_jax.method import method_factory

Method = Callable[[jax.Array, jax.Array], jax.Array]


@method_factory()
def saliency(f: Callable[[jax.Array], jax.Array], *, score: str = "logit", precision: str | None = None) -> Method:
    """Returns grad(x, target) -> dF_target/dx shaped like x."""
    f = as_model_function(f)
    s = score_transform(score)

    def saliency_map(x, target):
        g, logits = jax.grad(lambda z: (s(out := f(z))[target], out), has_aux=True)(x)
        return g, jnp.isfinite(logits).all()

    return explanation_method(saliency_map, f, name="saliency", reports_scores=True, precision=precision)


@method_factory()
def gradient_x_input(f: Callable[[jax.Array], jax.Array], *, score: str = "logit",
                     precision: str | None = None) -> Method:
    """Returns gxi(x, target) -> x * dF_target/dx."""
    f = as_model_function(f)
    s = score_transform(score)

    def gxi(x, target):
        g, logits = jax.grad(lambda z: (s(out := f(z))[target], out), has_aux=True)(x)
        return x * g, jnp.isfinite(logits).all()

    return explanation_method(gxi, f, name="gradient_x_input", reports_scores=True,
                              precision=precision)


NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


def _smoothgrad_signed(settings: dict) -> bool:
    """SmoothGrad keeps the wrapped method's sign; SmoothGrad² and VarGrad are >= 0."""
    inner = settings.get("method")
    return settings.get("nt_type", "smoothgrad") == "smoothgrad" and getattr(inner, "signed", True)


@method_factory(output=_inner_output, signed=_smoothgrad_signed)
def smoothgrad(
    method: Method | None = None,
    *,
    n_samples: int = 32,
    sigma: float = 0.15,
    nt_type: str = "smoothgrad",
    f: Callable[[jax.Array], jax.Array] | None = None,
    chunk_size: int | str | None = "auto",
    precision: str | None = None,
) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """Returns sg(x, target, key) -> the mean of method(x + noise, target) over n_samples
    (nt_type="smoothgrad"), of its square ("smoothgrad_sq") or its variance ("vargrad").

    method: an attribution method (x, target) -> map, e.g. saliency(f) or
      integrated_gradients(f); if `f` is given instead, SmoothGrad of saliency(f).
    sigma: noise std as a fraction of (max x - min x); finite, > 0.
    nt_type: "smoothgrad", "smoothgrad_sq" or "vargrad" (Captum's NoiseTunnel names; the
      formulas are in the module docstring).
    chunk_size: evaluate the noisy samples chunk_size at a time (bounded memory); None: all
      in one vmap; "auto" (default): as integrated_gradients' (attribution.common.resolve_chunk).
    A NaN in x gives a NaN map (the noise scale is NaN too), never a finite one.
    """
    if not isinstance(nt_type, str) or nt_type not in NT_TYPES:
        raise ValueError(f"nt_type must be one of {NT_TYPES}, got {nt_type!r}")
    n_samples = check_positive_int(n_samples, "n_samples")
    sigma = check_float(sigma, "sigma", low=0.0, low_open=True)
    chunk_size = check_chunk_size(chunk_size)
    if f is not None:
        if method is not None:
            raise TypeError("smoothgrad takes either a method or f=, not both")
        method = saliency(f)
    if method is None:
        raise TypeError("smoothgrad needs a method to average, e.g. smoothgrad(xai_jax.saliency(f)), or f=")
    method = check_method(method, "method", "smoothgrad")
    if getattr(method, "keyed", False):
        raise TypeError("smoothgrad wraps an unkeyed method (x, target) -> map; this method takes a key")
    if getattr(method, "returns_delta", False):
        raise TypeError("smoothgrad averages maps: wrap integrated_gradients without return_delta=True")

    # a Method built by xai_jax is run unchecked on the noisy copies: sg has checked x and
    # resolved the target once (targets=None: the class predicted for the clean x)
    inner = getattr(method, "raw", None) or (lambda z, t: (method(z, t), True))

    def sg(x, target, key):
        std = sigma * (x.max() - x.min())
        noise = std * jax.random.normal(key, (n_samples, *x.shape), x.dtype)
        one = lambda eps: inner(x + eps, target)[0]  # noqa: E731
        chunk = resolve_chunk(chunk_size, n_samples, x.size)
        maps = jax.vmap(one)(noise) if chunk is None else jax.lax.map(one, noise, batch_size=chunk)
        if nt_type == "smoothgrad":
            return pairwise_mean(maps)
        if nt_type == "smoothgrad_sq":
            return pairwise_mean(maps**2)
        # the centred form (mean of squared deviations) avoids E[m^2] - E[m]^2's cancellation
        return pairwise_mean((maps - pairwise_mean(maps)) ** 2)

    return explanation_method(sg, getattr(method, "model_fn", None), keyed=True, name=nt_type,
                              precision=precision)


@method_factory()
def expected_gradients(
    f: Callable[[jax.Array], jax.Array],
    *,
    baselines,
    n_samples: int = 64,
    score: str = "logit",
    chunk_size: int | str | None = "auto",
    precision: str | None = None,
) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """Expected Gradients (Erion et al. 2021, "Improving performance of deep learning models
    with axiomatic attribution priors and expected gradients", Nature Machine Intelligence;
    Captum and shap call it GradientSHAP): IG with the baseline drawn from a reference set,
    the path integral estimated by Monte Carlo. Returns eg(x, target, key):

        EG(x) = (1/K) sum_k (x - b_k) * dF/dx (b_k + a_k (x - b_k)),
        b_k ~ uniform over the rows of `baselines`, a_k ~ U(0, 1), K = n_samples,

    whose expectation is E_b[IG(x; b)], so sum EG -> F(x) - E_b F(b) (completeness in
    expectation). On a linear model F = w . x it is exactly w * (x - mean_k b_k).
    baselines: (M, *x.shape) finite reference inputs (M >= 1), e.g. training samples.
    Draws come from `key` (attribute() gives input i fold_in(key, i)); chunk_size bounds
    memory as in smoothgrad (default "auto"). (Captum's GradientShap also adds Gaussian noise to x, stdevs=0
    by default: the same estimator.)
    """
    f = as_model_function(f)
    n_samples = check_positive_int(n_samples, "n_samples")
    chunk_size = check_chunk_size(chunk_size)
    s = score_transform(score)
    refs = np.asarray(baselines) if not isinstance(baselines, jax.Array) else baselines
    numeric = jnp.issubdtype(refs.dtype, jnp.floating) or jnp.issubdtype(refs.dtype, jnp.integer)
    if refs.dtype == object or refs.dtype == bool or not numeric:
        raise TypeError(f"baselines must be a numeric array (M, *x.shape), got dtype {refs.dtype}")
    if refs.ndim < 2 or refs.shape[0] < 1:
        raise ValueError(f"baselines must be a batch (M >= 1, *x.shape) of reference inputs, got shape {refs.shape}")
    if is_concrete(refs) and not bool(np.isfinite(np.asarray(refs)).all()):  # NumPy or a concrete jax.Array
        bad = np.flatnonzero(~np.isfinite(np.asarray(refs).reshape(refs.shape[0], -1)).all(1))
        raise ValueError(f"baselines contains NaN or inf values (rows {bad[:5].tolist()}"
                         f"{' ...' if bad.size > 5 else ''} of {refs.shape[0]}); every reference input must be finite")
    refs = jnp.asarray(refs, jnp.float32)

    def eg(x, target, key):
        if refs.shape[1:] != x.shape:
            raise ValueError(f"baselines rows have shape {tuple(refs.shape[1:])}, expected x's shape {tuple(x.shape)}")
        k_pick, k_alpha = jax.random.split(key)
        picks = jax.random.randint(k_pick, (n_samples,), 0, refs.shape[0])
        alphas = jax.random.uniform(k_alpha, (n_samples,), x.dtype)

        def one(pa):
            b = refs[pa[0]].astype(x.dtype)
            g = jax.grad(lambda z: s(f(z))[target])(b + pa[1] * (x - b))
            return (x - b) * g

        pairs = (picks, alphas)
        chunk = resolve_chunk(chunk_size, n_samples, x.size)
        if chunk is None:
            return pairwise_mean(jax.vmap(one)(pairs))
        return pairwise_mean(jax.lax.map(one, pairs, batch_size=chunk))

    return explanation_method(eg, f, keyed=True, name="expected_gradients", precision=precision,
                              nan_hint="the model's scores or gradients are NaN/inf at a reference input drawn from "
                                       "`baselines` or on the path from it to x (e.g. a model that standardises "
                                       "its input is 0/0 at a constant reference)")
