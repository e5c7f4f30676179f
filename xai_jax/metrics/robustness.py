"""Robustness metrics, as Captum 0.9 defines them.

- `infidelity`: Yeh et al., NeurIPS 2019, "On the (In)fidelity and Sensitivity of
  Explanations" (captum.metrics.infidelity), with `gaussian_perturbation` as a documented
  perturbation (Captum has no default).
- `max_sensitivity`: same paper (captum.metrics.sensitivity_max).

Every sample's randomness comes from the key: sample s of input i uses
fold_in(fold_in(key, i), s), so results depend neither on batch_size nor on the order in
which batches run. All samples of a batch of inputs are evaluated in one jitted, vmapped call.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.common import score_transform
from xai_jax.batching import method_num_classes, program_cache, run_in_batches
from xai_jax.checks import (
    at_precision,
    check_batch,
    check_finite_maps,
    check_float,
    check_int,
    check_key,
    check_targets,
    error_summary,
    num_outputs,
    precision_scope,
)
from xai_jax.metrics.layout import with_channel_axis
from xai_jax.metrics.shared import PREDICTED, check_scores


def cached_runner(owner: Callable, tag: tuple, build: Callable[[], Callable], depends: tuple = ()) -> Callable:
    """build(), cached on the owner per tag (xai_jax.batching.program_cache) so that scoring
    many maps of one model compiles once. The runner closes over every callable named by id()
    in tag, so those ids stay unique while the entry lives; those callables are `depends`:
    the runner is compiled again when they or the owner reach other arrays than before."""
    cache = program_cache(owner, *depends)
    if tag not in cache:
        cache[tag] = build()
    return cache[tag]


def sample_key(key: jax.Array, i, s) -> jax.Array:
    """The key of perturbation sample s of input i."""
    return jax.random.fold_in(jax.random.fold_in(key, i), s)


def _check_scores(values: np.ndarray, who: str) -> None:
    check_scores(values, who, "the model or method returned", "x or its perturbed copies")


def gaussian_perturbation(sigma: float) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """perturb_fn(key, x) -> I ~ N(0, sigma^2 I), shaped like x: the perturbed input is x - I.

    The perturbation of Captum's infidelity tutorial (noise from a normal of std 0.003 there,
    returned as (noise, inputs - noise)). Use it with attributions that do not multiply by
    the input (saliency, or IG with multiply_by_inputs=False, in Captum's terms)."""
    sigma = check_float(sigma, "sigma", low=0.0, low_open=True)

    def perturb(key: jax.Array, x: jax.Array) -> jax.Array:
        return sigma * jax.random.normal(key, x.shape, x.dtype)

    return perturb


def _perturbation_kind(perturb_fn: Callable, x_shape: tuple[int, ...]) -> bool:
    """True when perturb_fn returns (I, perturbed x), False when it returns I alone."""
    if not callable(perturb_fn):
        raise TypeError(f"perturb_fn must be a function (key, x) -> I or (I, perturbed x), "
                        f"got {type(perturb_fn).__name__}")
    spec = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    try:
        out = jax.eval_shape(perturb_fn, jax.random.key(0), spec)
    except Exception as e:
        raise ValueError(f"perturb_fn cannot be called as perturb_fn(key, x) with x of shape {x_shape}: "
                         f"{error_summary(e)}") from e
    pair = isinstance(out, (tuple, list))
    leaves = list(out) if pair else [out]
    if (pair and len(leaves) != 2) or any(getattr(o, "shape", None) != x_shape for o in leaves):
        got = [getattr(o, "shape", type(o).__name__) for o in leaves]
        raise ValueError(f"perturb_fn must return I shaped like x {x_shape}, or a pair (I, perturbed x) of such "
                         f"arrays; got {got if pair else got[0]}")
    return pair


@functools.partial(with_channel_axis, input_shaped=("attributions", "perturb_fn"))
@at_precision
def infidelity(
    f: Callable[[jax.Array], jax.Array],
    xs,
    attributions,
    targets=None,
    *,
    perturb_fn: Callable[[jax.Array, jax.Array], Any],
    key: jax.Array,
    n_perturb_samples: int = 10,
    normalize: bool = False,
    score: str = "logit",
    method_key: jax.Array | None = None,
    batch_size: int = 100,
    precision: str | None = "highest",
) -> dict[str, np.ndarray | float]:
    """Explanation infidelity (Yeh et al. 2019), as captum.metrics.infidelity.

        INFD(a, f, x) = E_I[(I^T a - (f(x) - f(x - I)))^2],
    the mean over n_perturb_samples perturbations I = perturb_fn(key_s, x) of input x, f
    the `score` of the target class. perturb_fn returns I (then the perturbed input is
    x - I) or a pair (I, perturbed x), as Captum's perturb_func does (e.g. a binary mask I
    with perturbed x = x - I * (x - baseline) for attributions that multiply by the input).
    normalize=True scales the attribution by Captum's
        beta = E[I^T a (f(x) - f(x - I))] / E[(I^T a)^2]   (beta = the numerator where E[(I^T a)^2] = 0),
    which makes the score invariant to a constant scaling of a.

    attributions: (N, *x.shape) shaped like the inputs, (N, *spatial) maps (shared by the
    channels: I^T a sums I * a over every value), or a method (x, target[, key]) -> map
    evaluated inside the jitted call (method_key: input i gets fold_in(method_key, i)).
    targets: (N,) classes, or None for f's predicted class. key: sample s of input i uses
    fold_in(fold_in(key, i), s). Lower is better; 0 for the exact gradient of a linear f
    with I = Gaussian noise.
    Returns {"infidelity": (N,), "mean": float}.
    """
    xs = np.asarray(check_batch(xs, "xs", who="infidelity"), np.float32)
    n_classes = num_outputs(f, xs.shape[1:])
    n_samples = check_int(n_perturb_samples, "n_perturb_samples", 1)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be True or False, got {type(normalize).__name__} {normalize!r}")
    key = check_key(key)
    keyed = method_key is not None
    mkey = check_key(method_key, "method_key") if keyed else jax.random.key(0)
    batch_size = check_int(batch_size, "batch_size", 1)
    s = score_transform(score)
    pair = _perturbation_kind(perturb_fn, tuple(xs.shape[1:]))
    targets = (np.full(len(xs), PREDICTED, np.int32) if targets is None
               else check_targets(targets, len(xs), n_classes))
    if callable(attributions) and getattr(attributions, "returns_delta", False):
        raise TypeError("attributions: a method built with return_delta=True returns (maps, delta); build it "
                        "without return_delta for infidelity")
    if callable(attributions):
        method, arrays = attributions, ()
    else:
        method = None
        shape = tuple(getattr(attributions, "shape", np.shape(attributions)))
        want = xs.shape if shape == xs.shape else xs.shape[:-1]
        arrays = (check_finite_maps(attributions, want, "attributions",
                                    like=f"the inputs {xs.shape} or their spatial shape {xs.shape[:-1]}"),)

    def build():
        def one(x, t, *rest):  # rest: ([attributions,] index, key, method key)
            *given, i, key, mkey = rest
            logits = f(x)
            c = jnp.where(t < 0, jnp.argmax(logits), t)
            if method is None:
                a = given[0]
            else:
                a = method(x, c, jax.random.fold_in(mkey, i)) if keyed else method(x, c)
            a = jnp.broadcast_to(a[..., None] if a.shape != x.shape else a, x.shape)
            fx = s(logits)[c]

            def sample(k):
                out = perturb_fn(k, x)
                pert, x_pert = out if pair else (out, x - out)
                x_pert = jnp.asarray(x_pert, x.dtype)
                return (pert * a).sum(), fx - s(f(x_pert))[c]

            dot, diff = jax.vmap(sample)(jax.vmap(lambda j: sample_key(key, i, j))(jnp.arange(n_samples)))
            if normalize:  # Captum: beta from the same samples, safe_div's default denominator 1
                den = (dot**2).sum()
                beta = (dot * diff).sum() / jnp.where(den != 0, den, 1.0)
                dot = beta * dot
            return ((dot - diff) ** 2).mean()

        axes = (0, 0) + (0,) * len(arrays) + (0, None, None)
        return jax.jit(jax.vmap(one, in_axes=axes))

    tag = ("infidelity", id(perturb_fn), id(method), bool(arrays), n_samples, bool(normalize), score, keyed, pair)
    run = cached_runner(f, tag, build, depends=(perturb_fn, method))
    with precision_scope(precision):  # full float32: TF32 cannot move the scores
        values = run_in_batches(run, (xs, targets, *arrays), min(batch_size, len(xs)), args=(key, mkey),
                                with_index=True)
    _check_scores(values, "infidelity")
    return {"infidelity": values, "mean": float(values.mean())}


def _norm(norm: Any) -> Callable[[jax.Array], jax.Array]:
    """A vector norm of the flattened difference, as torch.norm(p=norm_ord) on flat rows."""
    if norm == "fro":
        return lambda v: jnp.sqrt((v**2).sum())
    if isinstance(norm, (bool, np.bool_)) or not isinstance(norm, (int, float, np.integer, np.floating)):
        raise TypeError(f"norm must be 'fro' or a number p > 0 (math.inf for the max norm), got {norm!r}")
    p = float(norm)
    if math.isinf(p) and p > 0:
        return lambda v: jnp.abs(v).max()
    p = check_float(p, "norm", low=0.0, low_open=True)
    return lambda v: (jnp.abs(v) ** p).sum() ** (1.0 / p)


@at_precision
def max_sensitivity(
    method: Callable,
    xs,
    targets=None,
    *,
    key: jax.Array,
    radius: float = 0.02,
    n_perturb_samples: int = 10,
    norm: str | float = "fro",
    num_classes: int | None = None,
    method_key: jax.Array | None = None,
    batch_size: int = 100,
    precision: str | None = "highest",
) -> dict[str, np.ndarray | float]:
    """Max-sensitivity (Yeh et al. 2019), as captum.metrics.sensitivity_max with its default
    perturbation:

        SENS_max(x) = max_s ||e(x + d_s) - e(x)|| / ||e(x)||,   d_s ~ U[-radius, radius]^dim(x),

    for the same target, over n_perturb_samples draws (d_s from fold_in(fold_in(key, i), s)).
    Captum divides by the norm of the original explanation (by 1 where that norm is 0), and
    so do we. norm: "fro" (the 2-norm of the flattened difference, Captum's default), a
    number p > 0 (p-norm) or math.inf (max norm).

    method: (x, target[, key]) -> map; a keyed method gets fold_in(method_key, i) for input i,
    the same key for x and its perturbed copies. targets: (N,) classes, or None for the
    class the method's model predicts (methods built by xai_jax carry it as
    method.model_fn). num_classes: for a method that carries no model (see
    xai_jax.attribute). Lower is better; a constant explanation scores 0.
    Returns {"sensitivity": (N,), "mean": float}.
    """
    if not callable(method):
        raise TypeError(f"method must be a function (x, target[, key]) -> map, got {type(method).__name__}")
    xs = np.asarray(check_batch(xs, "xs", who="max_sensitivity"), np.float32)
    n_classes = method_num_classes(method, tuple(xs.shape[1:]), num_classes, who="max_sensitivity")
    radius = check_float(radius, "radius", low=0.0)
    n_samples = check_int(n_perturb_samples, "n_perturb_samples", 1)
    vec_norm = _norm(norm)
    key = check_key(key)
    keyed = method_key is not None
    mkey = check_key(method_key, "method_key") if keyed else jax.random.key(0)
    batch_size = check_int(batch_size, "batch_size", 1)
    if targets is None:
        f = getattr(method, "model_fn", None)
        if f is None:
            raise TypeError("targets=None needs the method's model (method.model_fn) to predict the class; "
                            "pass targets")
        with precision_scope(precision):
            logits = run_in_batches(jax.jit(jax.vmap(f)), (xs,), min(batch_size, len(xs)))
        _check_scores(logits, "max_sensitivity")
        targets = logits.argmax(1).astype(np.int32)
    else:
        targets = check_targets(targets, len(xs), n_classes)

    def build():
        def one(x, t, i, key, mkey):
            k = jax.random.fold_in(mkey, i)
            explain = (lambda v: method(v, t, k)) if keyed else (lambda v: method(v, t))
            e = explain(x)

            def sample(j):
                d = jax.random.uniform(sample_key(key, i, j), x.shape, x.dtype, -radius, radius)
                return vec_norm((explain(x + d) - e).ravel())

            base = vec_norm(e.ravel())
            return jax.vmap(sample)(jnp.arange(n_samples)).max() / jnp.where(base == 0, 1.0, base)

        return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None)))

    run = cached_runner(method, ("max_sensitivity", radius, n_samples, str(norm), keyed), build)
    with precision_scope(precision):  # full float32: TF32 cannot move the scores
        values = run_in_batches(run, (xs, targets), min(batch_size, len(xs)), args=(key, mkey), with_index=True)
    _check_scores(values, "max_sensitivity")
    return {"sensitivity": values, "mean": float(values.mean())}
