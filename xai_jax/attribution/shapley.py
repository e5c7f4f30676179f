"""The perturbation and game-theoretic family: a feature's credit from the model's scores on
copies of x with some features replaced.

Features are groups of x's elements given by a feature mask (xai_jax.attribution.segments:
every element, 1-D segments, image patches, superpixels or your own labels). A coalition
z in {0, 1}^n keeps feature i where z_i = 1 and replaces it by the baseline b elsewhere:

    x_z = x * z[labels] + b * (1 - z[labels]),      v(z) = F(x_z)_target   (F's logit by default)

Every method returns one value per feature, written to all of its elements (maps shaped
like x, as Captum returns them), and evaluates its coalitions as one vmapped batch, or
`chunk_size` at a time through lax.map (bounded memory); coalitions are drawn inside the
method from its key, so a whole batch of inputs compiles to one program.

- feature_ablation (Captum's FeatureAblation; Zeiler & Fergus 2014 with features for windows):
      phi_i = v(1) - v(1 - e_i)                                          n + 1 evaluations
- feature_permutation (permutation importance, Breiman 2001; Fisher, Rudin & Dominici 2019):
      phi_i = v(x) - mean_s F(x with feature i taken from reference row r_{i,s})_target,
  r_{i,s} drawn uniformly from `references` (n * n_samples evaluations); and
  feature_permutation_batch, Captum's FeaturePermutation: feature i permuted across a batch.
- shapley_sampling (Castro, Gomez & Tejada 2009; Strumbelj & Kononenko 2010): for S random
  orders pi of the features, the marginal contribution of each feature when added after its
  predecessors: phi_i = (1/S) sum_s [v(P_s,i + e_i) - v(P_s,i)]        S (n - 1) + 2 evaluations
- shapley_values: the exact Shapley values (Shapley 1953) over all 2^n coalitions,
      phi_i = sum_{S not containing i} |S|! (n - |S| - 1)! / n! [v(S + i) - v(S)]
  (n <= 12 features: 4096 evaluations).
- kernel_shap (Lundberg & Lee 2017): the Shapley kernel's weighted least squares, coalitions
  drawn from the kernel's distribution (size k with p(k) ~ (n - 1) / (k (n - k)), then a
  uniform subset of that size; `paired` adds each coalition's complement) so that every
  draw weighs 1, with the end points as exact constraints (closed form, a KKT system):
      min_phi sum_j (v(z_j) - v(0) - z_j . phi)^2   s.t.   sum_i phi_i = v(1) - v(0).
  With all coalitions and the kernel's weights this is exactly the Shapley values.
- lime (Ribeiro, Singh & Guestrin 2016): coalitions z_j ~ Bernoulli(1/2)^n, weights
  w_j = kernel(x, x_{z_j}, z_j) (default: exp(-d^2 / (2 width^2)), d the cosine distance
  between x and x_{z_j}, as Captum's get_exp_kernel_similarity_function), and a weighted
  linear surrogate v(z) ~ c + z . phi fitted in closed form (weighted least squares, with an
  optional ridge penalty `alpha` on phi); the map is phi.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.common import as_model_function, check_float, explanation_method, score_transform
from xai_jax.attribution.segments import FeatureMask
from xai_jax.checks import check_array, check_optional_int, check_positive_int, is_concrete
from xai_jax.method import method_factory

MAX_EXACT_FEATURES = 12
HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------- shared plumbing


def _baseline(baseline: Any, who: str):
    """A finite scalar, or an array broadcastable to x (checked against x when called)."""
    if hasattr(baseline, "shape") and np.ndim(baseline) > 0:
        b = check_array(baseline, "baseline")
        if not bool(np.isfinite(np.asarray(b)).all()):
            raise ValueError(f"{who}: baseline contains NaN or inf values")
        return jnp.asarray(b)
    return check_float(baseline, "baseline")


def _broadcast_baseline(b, x: jax.Array) -> jax.Array:
    if isinstance(b, float):
        return jnp.full_like(x, b)
    try:
        return jnp.broadcast_to(b, x.shape).astype(x.dtype)
    except ValueError as e:
        raise ValueError(f"baseline of shape {tuple(b.shape)} does not broadcast to x's shape {tuple(x.shape)}") from e


def _run(one: Callable, rows, chunk_size: int | None):
    """one(row) for every row of the pytree `rows`, vmapped, or chunk_size rows at a time."""
    n = jax.tree.leaves(rows)[0].shape[0]
    if chunk_size is None or chunk_size >= n:
        return jax.vmap(one)(rows)
    return jax.lax.map(one, rows, batch_size=chunk_size)


class _Game:
    """v(z) for one input: the coalition game every method of the family plays."""

    def __init__(self, f, x, target, base, labels, n, score_fn, chunk_size):
        self.f, self.x, self.target, self.base, self.labels, self.n = f, x, target, base, labels, n
        self.s, self.chunk_size = score_fn, chunk_size

    def perturbed(self, z: jax.Array) -> jax.Array:
        keep = jnp.take(z.astype(bool), self.labels, mode="fill", fill_value=True)
        return jnp.where(keep, self.x, self.base)

    def value(self, z: jax.Array) -> jax.Array:
        return self.s(self.f(self.perturbed(z)))[self.target]

    def values(self, zs: jax.Array) -> jax.Array:
        """v of each row of zs (m, n)."""
        return _run(self.value, zs, self.chunk_size)

    def full(self) -> tuple[jax.Array, jax.Array]:
        """(v(1) = F(x)_target, whether F(x) is finite)."""
        logits = self.f(self.x)
        return self.s(logits)[self.target], jnp.isfinite(logits).all()

    def empty(self) -> jax.Array:
        """v(0): x with every feature replaced."""
        return self.value(jnp.zeros(self.n, bool))

    def to_input(self, phi: jax.Array) -> jax.Array:
        """One value per feature (n,) -> a map shaped like x (labels outside [0, n): 0)."""
        return jnp.take(phi, self.labels, mode="fill", fill_value=0.0).astype(self.x.dtype)


def _family(f, feature_mask, n_features, baseline, score, chunk_size, channel_axis, who):
    f = as_model_function(f)
    mask = FeatureMask(feature_mask, n_features, channel_axis, who)
    base = _baseline(baseline, who)
    s = score_transform(score)
    chunk_size = check_optional_int(chunk_size, "chunk_size")

    def game(x, target) -> _Game:
        labels, n = mask.labels(x)
        return _Game(f, x, target, _broadcast_baseline(base, x), labels, n, s, chunk_size)

    return f, game


# ----------------------------------------------------------------------------- feature ablation


@method_factory()
def feature_ablation(f: Callable[[jax.Array], jax.Array], *, feature_mask: Any = None, n_features: int | None = None,
                     baseline: Any = 0.0, score: str = "logit", chunk_size: int | None = None,
                     channel_axis: int = -1, precision: str | None = None):
    """Returns ablation(x, target) -> map shaped like x: phi_i = v(x) - v(x with feature i
    replaced by the baseline), as Captum's FeatureAblation (module docstring).

    feature_mask, n_features: the features (xai_jax.attribution.segments; None: every element).
    baseline: a finite number or an array broadcastable to x. score: "logit" (default),
    "softmax" or "log_softmax". chunk_size: evaluations per vmapped batch (None: all at once).
    channel_axis: the axis a spatial feature mask broadcasts along.
    """
    f, game = _family(f, feature_mask, n_features, baseline, score, chunk_size, channel_axis, "feature_ablation")

    def ablation(x, target):
        g = game(x, target)
        rows = np.concatenate([~np.eye(g.n, dtype=bool), np.ones((1, g.n), bool)])  # every feature but i; x
        logits = _run(lambda z: g.f(g.perturbed(z)), jnp.asarray(rows), g.chunk_size)  # x in the same batch
        v = jax.vmap(g.s)(logits)[:, target]
        return g.to_input(v[-1] - v[:-1]), jnp.isfinite(logits[-1]).all()

    return explanation_method(ablation, f, name="feature_ablation", reports_scores=True, precision=precision)


# ----------------------------------------------------------------------------- feature permutation


def _references(references, who: str) -> jax.Array:
    refs = check_array(references, "references")
    if refs.ndim < 2 or refs.shape[0] < 1:
        raise ValueError(f"{who}: references must be a batch (M >= 1, *x.shape), got shape {tuple(refs.shape)}")
    if not bool(np.isfinite(np.asarray(refs)).all()):
        raise ValueError(f"{who}: references contains NaN or inf values")
    return jnp.asarray(refs)


@method_factory()
def feature_permutation(f: Callable[[jax.Array], jax.Array], *, references, n_samples: int = 4,
                        feature_mask: Any = None, n_features: int | None = None, score: str = "logit",
                        chunk_size: int | None = None, channel_axis: int = -1, precision: str | None = None):
    """Returns perm(x, target, key) -> map shaped like x: permutation importance of each
    feature for ONE input,

        phi_i = v(x) - (1/S) sum_s F(x with feature i's elements taken from row r_{i,s})_target,

    r_{i,s} ~ uniform over the rows of `references` (M, *x.shape), S = n_samples, independent
    per feature. With references = the batch being explained, this is Captum's
    FeaturePermutation in expectation (Captum permutes feature i across the batch: row b
    takes it from row pi_i(b), a draw without replacement that excludes the identity as a
    whole); feature_permutation_batch computes Captum's version itself.
    """
    f = as_model_function(f)
    refs = _references(references, "feature_permutation")
    n_samples = check_positive_int(n_samples, "n_samples")
    mask = FeatureMask(feature_mask, n_features, channel_axis, "feature_permutation")
    s = score_transform(score)
    chunk_size = check_optional_int(chunk_size, "chunk_size")

    def perm(x, target, key):
        if tuple(refs.shape[1:]) != tuple(x.shape):
            raise ValueError(f"references rows have shape {tuple(refs.shape[1:])}, expected x's shape {tuple(x.shape)}")
        labels, n = mask.labels(x)
        donors = jax.random.randint(key, (n * n_samples,), 0, refs.shape[0])
        features = jnp.repeat(jnp.arange(n), n_samples)

        def one(pair):
            i, r = pair
            return s(f(jnp.where(labels == i, refs[r].astype(x.dtype), x)))[target]

        scores = _run(one, (features, donors), chunk_size).reshape(n, n_samples).mean(1)
        logits = f(x)
        phi = s(logits)[target] - scores
        return jnp.take(phi, labels, mode="fill", fill_value=0.0).astype(x.dtype), jnp.isfinite(logits).all()

    return explanation_method(perm, f, keyed=True, name="feature_permutation", reports_scores=True,
                              precision=precision)


def batch_permutations(key: jax.Array, n_features: int, batch: int) -> jax.Array:
    """(n_features, batch) int32: a random permutation of the batch per feature, never the
    identity when batch > 1 (Captum's _permute_feature redraws it; here a non-identity
    permutation is drawn directly: a random one composed with a random non-zero shift would
    not be uniform, so an identity draw is replaced by its reverse)."""
    perms = jax.vmap(lambda k: jax.random.permutation(k, batch))(jax.random.split(key, n_features))
    identity = (perms == jnp.arange(batch)).all(1, keepdims=True)
    return jnp.where(identity, perms[:, ::-1], perms).astype(jnp.int32)


def feature_permutation_batch(f: Callable[[jax.Array], jax.Array], xs, targets=None, *, key: jax.Array | None = None,
                              permutations=None, feature_mask: Any = None, n_features: int | None = None,
                              score: str = "logit", chunk_size: int | None = None,
                              channel_axis: int = -1) -> jax.Array:
    """Captum's FeaturePermutation on a batch xs (B >= 2, ...): for each feature i a permutation
    pi_i of the batch, and

        phi[b, feature i] = F(x_b)_{t_b} - F(x_b with feature i taken from x_{pi_i(b)})_{t_b}.

    targets: (B,) ints, or None for the predicted classes. permutations: (n_features, B) ints
    (e.g. the ones Captum drew), or None to draw them from `key` (batch_permutations). The
    feature mask is the same for every row (an array, or a function evaluated on xs[0]).
    n_features * B evaluations, vmapped over the batch, chunk_size features at a time.
    Returns (B, *x.shape) attributions. Under jit, values (NaN in xs, target ranges) are
    not checked.
    """
    f = as_model_function(f)
    xs = jnp.asarray(check_array(xs, "xs"))
    if xs.ndim < 2 or xs.shape[0] < 2:
        raise ValueError(f"feature_permutation_batch permutes across a batch: xs must be (B >= 2, ...), got shape "
                         f"{tuple(xs.shape)}")
    if is_concrete(xs) and not bool(np.isfinite(np.asarray(xs)).all()):
        raise ValueError("xs contains NaN or inf values")
    s = score_transform(score)
    chunk_size = check_optional_int(chunk_size, "chunk_size")
    labels, n = FeatureMask(feature_mask, n_features, channel_axis, "feature_permutation_batch").labels(xs[0])
    logits = jax.vmap(f)(xs)
    if targets is None:
        targets = jnp.argmax(logits, -1)
    targets = jnp.asarray(targets)
    if targets.shape != (xs.shape[0],) or not jnp.issubdtype(targets.dtype, jnp.integer):
        raise ValueError(f"targets must be (B,) = ({xs.shape[0]},) integer class indices, got {targets.dtype} "
                         f"{tuple(targets.shape)}")
    if is_concrete(targets) and (targets.min() < 0 or targets.max() >= logits.shape[-1]):
        raise ValueError(f"targets must lie in [0, {logits.shape[-1]}), got values in "
                         f"[{int(targets.min())}, {int(targets.max())}]")
    if permutations is None:
        if key is None:
            raise TypeError("feature_permutation_batch needs key= (a jax.random key) or permutations=")
        permutations = batch_permutations(key, n, xs.shape[0])
    permutations = jnp.asarray(permutations)
    if permutations.shape != (n, xs.shape[0]) or not jnp.issubdtype(permutations.dtype, jnp.integer):
        raise ValueError(f"permutations must be (n_features, B) = ({n}, {xs.shape[0]}) integers, got "
                         f"{permutations.dtype} {tuple(permutations.shape)}")
    return _permutation_batch(f, s, xs, targets, permutations, labels, n, chunk_size)


def _permutation_batch(f, s, xs, targets, permutations, labels, n, chunk_size):
    @jax.jit
    def run(xs, targets, permutations, labels):
        pick = jax.vmap(lambda z, t: s(z)[t])
        full = pick(jax.vmap(f)(xs), targets)

        def feature(i_perm):
            i, perm = i_perm
            moved = jnp.where(labels == i, xs[perm], xs)
            return pick(jax.vmap(f)(moved), targets)

        scores = _run(feature, (jnp.arange(n), permutations), chunk_size)  # (n, B)
        phi = (full[None] - scores).T  # (B, n)
        return jax.vmap(lambda p: jnp.take(p, labels, mode="fill", fill_value=0.0))(phi).astype(xs.dtype)

    return run(xs, targets, permutations, labels)


# ----------------------------------------------------------------------------- Shapley sampling


def sample_permutations(key: jax.Array, n_samples: int, n_features: int) -> jax.Array:
    """(n_samples, n_features) int32 random orders of the features (shapley_sampling's draws)."""
    return jax.vmap(lambda k: jax.random.permutation(k, n_features))(jax.random.split(key, n_samples)).astype(
        jnp.int32)


@method_factory()
def shapley_sampling(f: Callable[[jax.Array], jax.Array], *, n_samples: int = 25, feature_mask: Any = None,
                     n_features: int | None = None, baseline: Any = 0.0, score: str = "logit",
                     chunk_size: int | None = None, channel_axis: int = -1, precision: str | None = None):
    """Returns sv(x, target, key) -> map shaped like x: Shapley value sampling (Castro et al.
    2009; Strumbelj & Kononenko 2010) over n_samples random feature orders drawn from the key
    (sample_permutations(key, n_samples, n)); each order adds the features one by one, from
    the baseline to x, and credits each with the change of v (module docstring). Captum's
    ShapleyValueSampling with the same orders gives the same values. S (n - 1) + 2
    evaluations (the empty and full coalitions are shared by all orders).
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    f, game = _family(f, feature_mask, n_features, baseline, score, chunk_size, channel_axis, "shapley_sampling")

    def sv(x, target, key):
        g = game(x, target)
        n = g.n
        perms = sample_permutations(key, n_samples, n)                      # (S, n)
        rank = jnp.argsort(perms, axis=1)                                   # rank[s, i]: position of feature i
        k = jnp.arange(1, n)                                                # prefixes of 1 .. n-1 features
        prefixes = rank[:, None, :] < k[None, :, None]                      # (S, n-1, n)
        empty, (full, finite) = g.empty(), g.full()
        inner = g.values(prefixes.reshape(-1, n)).reshape(n_samples, n - 1) if n > 1 else \
            jnp.zeros((n_samples, 0), x.dtype)
        v = jnp.concatenate([jnp.full((n_samples, 1), empty), inner, jnp.full((n_samples, 1), full)], axis=1)
        gains = v[:, 1:] - v[:, :-1]                                        # gains[s, j]: feature perms[s, j]
        phi = jnp.zeros(n, v.dtype).at[perms.reshape(-1)].add(gains.reshape(-1)) / n_samples
        return g.to_input(phi), finite

    return explanation_method(sv, f, keyed=True, name="shapley_sampling", reports_scores=True, precision=precision)


# ----------------------------------------------------------------------------- exact Shapley values


def all_coalitions(n: int) -> np.ndarray:
    """(2^n, n) bool: coalition c holds feature i when bit i of c is set."""
    return (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1 == 1


def shapley_weights(n: int) -> np.ndarray:
    """(n, 2^n) float64 W with phi = W @ v(all_coalitions(n)) the exact Shapley values."""
    z = all_coalitions(n)
    size = z.sum(1)
    fact = [math.factorial(k) for k in range(n + 1)]
    with_i = np.array([fact[s - 1] * fact[n - s] if s > 0 else 0 for s in size], np.float64) / fact[n]
    without_i = np.array([fact[s] * fact[n - s - 1] if s < n else 0 for s in size], np.float64) / fact[n]
    return np.where(z.T, with_i[None, :], -without_i[None, :])


@method_factory()
def shapley_values(f: Callable[[jax.Array], jax.Array], *, feature_mask: Any = None, n_features: int | None = None,
                   baseline: Any = 0.0, score: str = "logit", chunk_size: int | None = None,
                   channel_axis: int = -1, precision: str | None = None):
    """Returns shap(x, target) -> map shaped like x: the exact Shapley values (Shapley 1953)
    of the n features, from v on all 2^n coalitions (module docstring); n <= 12 (a
    ValueError above: use shapley_sampling or kernel_shap). Captum's ShapleyValues computes
    the same values from all n! orders.
    """
    f, game = _family(f, feature_mask, n_features, baseline, score, chunk_size, channel_axis, "shapley_values")
    weights: dict[int, np.ndarray] = {}

    def shap(x, target):
        g = game(x, target)
        if g.n > MAX_EXACT_FEATURES:
            raise ValueError(f"shapley_values evaluates all 2^n coalitions, so it takes at most {MAX_EXACT_FEATURES} "
                             f"features; this feature mask gives {g.n} (use larger patches, or shapley_sampling / "
                             f"kernel_shap)")
        if g.n not in weights:
            weights[g.n] = shapley_weights(g.n)
        v = g.values(jnp.asarray(all_coalitions(g.n)))  # the last coalition is x itself
        finite = jnp.isfinite(g.f(x)).all()
        return g.to_input(jnp.dot(jnp.asarray(weights[g.n], v.dtype), v, precision=HIGHEST)), finite

    return explanation_method(shap, f, name="shapley_values", reports_scores=True, precision=precision)


# ----------------------------------------------------------------------------- KernelSHAP


def sample_kernel_coalitions(key: jax.Array, n_samples: int, n_features: int, paired: bool = True) -> jax.Array:
    """(n_samples, n_features) bool coalitions from the Shapley kernel's distribution: size k in
    [1, n-1] with p(k) ~ (n - 1) / (k (n - k)), then a uniform subset of that size (Captum's
    and Lundberg & Lee's sampling). paired: the second half holds the complements of the
    first (an odd n_samples leaves its last draw unpaired). n_features >= 2."""
    k_size, k_subset = jax.random.split(key)
    sizes = np.arange(1, n_features)
    p = (n_features - 1) / (sizes * (n_features - sizes))
    m = (n_samples + 1) // 2 if paired else n_samples
    k = jax.random.choice(k_size, jnp.asarray(sizes), (m,), p=jnp.asarray(p / p.sum(), jnp.float32))
    ranks = jnp.argsort(jnp.argsort(jax.random.uniform(k_subset, (m, n_features)), axis=1), axis=1)
    z = ranks < k[:, None]
    if paired:
        z = jnp.concatenate([z, ~z], axis=0)[:n_samples]
    return z


def constrained_least_squares(z: jax.Array, y: jax.Array, total: jax.Array, w: jax.Array | None = None) -> jax.Array:
    """argmin_phi sum_j w_j (y_j - z_j . phi)^2 subject to sum phi = total, from the KKT system
    [[Z'WZ, 1], [1', 0]] [phi, lam] = [Z'Wy, total], W normalised to sum 1 (least-norm
    solution when singular)."""
    z = z.astype(y.dtype)
    w = jnp.ones(z.shape[0], y.dtype) if w is None else w
    zw = z * (w / w.sum())[:, None]  # normalised weights keep Z'WZ of order 1 beside the constraint row
    n = z.shape[1]
    a = jnp.dot(zw.T, z, precision=HIGHEST)
    kkt = jnp.block([[a, jnp.ones((n, 1), y.dtype)], [jnp.ones((1, n), y.dtype), jnp.zeros((1, 1), y.dtype)]])

    def solve(r, t):
        return jnp.linalg.lstsq(kkt, jnp.concatenate([jnp.dot(zw.T, r, precision=HIGHEST), t[None]]))[0][:n]

    phi = solve(y, total)
    # one step of iterative refinement on the residuals: float32 normal equations lose ~1e-4
    return phi + solve(y - jnp.dot(z, phi, precision=HIGHEST), total - phi.sum())


@method_factory()
def kernel_shap(f: Callable[[jax.Array], jax.Array], *, n_samples: int = 200, feature_mask: Any = None,
                n_features: int | None = None, baseline: Any = 0.0, paired: bool = True, score: str = "logit",
                chunk_size: int | None = None, channel_axis: int = -1, precision: str | None = None):
    """Returns ks(x, target, key) -> map shaped like x: KernelSHAP (Lundberg & Lee 2017) from
    n_samples coalitions drawn from the key (sample_kernel_coalitions), fitted in closed form
    with efficiency as an exact constraint (module docstring): sum phi = v(x) - v(baseline).
    n_samples + 2 evaluations. Captum's KernelShap fits the same regression with the end
    points weighted 10^6 instead of constrained (agreement to about 1e-5 on the same draws).
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    if not isinstance(paired, bool):
        raise TypeError(f"paired must be True or False, got {type(paired).__name__} {paired!r}")
    f, game = _family(f, feature_mask, n_features, baseline, score, chunk_size, channel_axis, "kernel_shap")

    def ks(x, target, key):
        g = game(x, target)
        empty, (full, finite) = g.empty(), g.full()
        if g.n == 1:
            return g.to_input((full - empty)[None]), finite
        z = sample_kernel_coalitions(key, n_samples, g.n, paired)
        v = g.values(z)
        return g.to_input(constrained_least_squares(z, v - empty, full - empty)), finite

    return explanation_method(ks, f, keyed=True, name="kernel_shap", reports_scores=True, precision=precision)


# ----------------------------------------------------------------------------- LIME


def lime_kernel(distance: str = "cosine", width: float = 1.0) -> Callable:
    """kernel(x, x_perturbed, z) -> exp(-d^2 / (2 width^2)), d the cosine distance
    (1 - cos(x, x_perturbed)) or the Euclidean distance between the flattened inputs: Captum's
    get_exp_kernel_similarity_function(distance, width)."""
    if distance not in ("cosine", "euclidean"):
        raise ValueError(f"distance must be 'cosine' or 'euclidean', got {distance!r}")
    width = check_float(width, "width", low=0.0, low_open=True)

    def kernel(x, x_perturbed, z):
        a, b = x.reshape(-1), x_perturbed.reshape(-1)
        if distance == "cosine":
            # torch's CosineSimilarity: a.b / max(|a| |b|, 1e-8)
            d = 1.0 - jnp.dot(a, b, precision=HIGHEST) / jnp.maximum(jnp.linalg.norm(a) * jnp.linalg.norm(b), 1e-8)
        else:
            d = jnp.linalg.norm(a - b)
        return jnp.exp(-(d**2) / (2.0 * width**2))

    kernel.__name__ = f"lime_kernel({distance!r}, {width:g})"
    return kernel


def sample_lime_coalitions(key: jax.Array, n_samples: int, n_features: int) -> jax.Array:
    """(n_samples, n_features) bool coalitions, each feature kept with probability 1/2 (LIME's
    and Captum's default draws)."""
    return jax.random.bernoulli(key, 0.5, (n_samples, n_features))


def weighted_linear_fit(z: jax.Array, y: jax.Array, w: jax.Array, alpha: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """(intercept, coefficients) of argmin_{c, phi} sum_j w_j (y_j - c - z_j . phi)^2 + alpha |phi|^2:
    least squares on sqrt(w)-scaled rows (least-norm solution when rank-deficient, as
    scikit-learn's LinearRegression); with alpha > 0, the ridge normal equations."""
    a = jnp.concatenate([jnp.ones((z.shape[0], 1), y.dtype), z.astype(y.dtype)], axis=1)
    if alpha == 0.0:
        r = jnp.sqrt(w)
        beta = jnp.linalg.lstsq(a * r[:, None], y * r)[0]
    else:
        penalty = jnp.diag(jnp.concatenate([jnp.zeros(1, y.dtype), jnp.full(z.shape[1], alpha, y.dtype)]))
        beta = jnp.linalg.solve(jnp.dot((a * w[:, None]).T, a, precision=HIGHEST) + penalty,
                                jnp.dot((a * w[:, None]).T, y, precision=HIGHEST))
    return beta[0], beta[1:]


@method_factory()
def lime(f: Callable[[jax.Array], jax.Array], *, n_samples: int = 200, feature_mask: Any = None,
         n_features: int | None = None, baseline: Any = 0.0, kernel: Callable | None = None, alpha: float = 0.0,
         score: str = "logit", chunk_size: int | None = None, channel_axis: int = -1,
         precision: str | None = None):
    """Returns lime_fn(x, target, key) -> map shaped like x: the coefficients of LIME's
    weighted linear surrogate (Ribeiro et al. 2016; module docstring) on n_samples coalitions
    drawn from the key (sample_lime_coalitions).

    kernel: (x, x_perturbed, z) -> similarity weight >= 0, traceable; None: lime_kernel()
      (exp kernel of width 1 on the cosine distance, Captum's default similarity).
    alpha: ridge penalty on the coefficients (0: ordinary weighted least squares, Captum's
      SkLearnLinearRegression; Captum's default surrogate is a Lasso, not offered here).
    n_samples evaluations.
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    alpha = check_float(alpha, "alpha", low=0.0)
    if kernel is None:
        kernel = lime_kernel()
    elif not callable(kernel):
        raise TypeError(f"kernel must be a function (x, x_perturbed, z) -> weight, got {type(kernel).__name__}")
    f, game = _family(f, feature_mask, n_features, baseline, score, chunk_size, channel_axis, "lime")
    s = score_transform(score)

    def lime_fn(x, target, key):
        g = game(x, target)
        z = sample_lime_coalitions(key, n_samples, g.n)

        def one(zj):
            xz = g.perturbed(zj)
            return s(f(xz))[target], kernel(x, xz, zj).astype(x.dtype)

        v, w = _run(one, z, g.chunk_size)
        return g.to_input(weighted_linear_fit(z, v, w, alpha)[1])

    return explanation_method(lime_fn, f, keyed=True, name="lime", precision=precision)


__all__ = [
    "all_coalitions", "batch_permutations", "constrained_least_squares", "feature_ablation", "feature_permutation",
    "feature_permutation_batch", "kernel_shap", "lime", "lime_kernel", "sample_kernel_coalitions",
    "sample_lime_coalitions", "sample_permutations", "shapley_sampling", "shapley_values", "shapley_weights",
    "weighted_linear_fit",
]
