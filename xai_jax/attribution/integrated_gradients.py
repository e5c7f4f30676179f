"""Integrated Gradients (Sundararajan, Taly & Yan, ICML 2017, "Axiomatic Attribution for
Deep Networks").

    IG_i(x) = (x_i - b_i) * integral_0^1  dF(b + a (x - b)) / dx_i  da

with F the score of the target class and b the baseline. The integral is a quadrature
sum_k w_k g(a_k) over `steps` gradient evaluations; the rules on [0, 1] (n = steps):

    riemann_left    a_k = k/n,          k = 0..n-1,  w_k = 1/n
    riemann_right   a_k = k/n,          k = 1..n,    w_k = 1/n
    riemann_middle  a_k = (k + 1/2)/n,  k = 0..n-1,  w_k = 1/n
    trapezoid       a_k = k/(n-1),      k = 0..n-1,  w_k = 1/(n-1), halved at both ends (n >= 2)
    gauss_legendre  a_k = (t_k + 1)/2,  w_k = v_k/2, (t_k, v_k) the n-point Gauss-Legendre
                    nodes and weights on [-1, 1]; exact for polynomials of degree 2n - 1.
                    n <= GAUSS_LEGENDRE_MAX_STEPS = 32768 (legendre_nodes: O(n) memory).

    linspace_mean   a_k = k/(n-1),      k = 0..n-1,  w_k = 1/n  (NOT in RULES: biased)

The last averages a linspace that includes both ends with equal weights, as tf-explain
and PAIR saliency do: it over-weights the two end points by (n-1)/(2n) each relative to
the trapezoid rule, so it is exact only for constant gradients. It exists to reproduce
the study's IG (tf-explain, n_steps=10 -> 11 nodes); do not use it otherwise.

Completeness: sum_i IG_i(x) = F(x) - F(b) up to the quadrature error; `return_delta=True`
returns that error per input (see `completeness_delta`).

Error-controlled IG (`steps="auto"`): along the path, h(a) = (x - b) . grad F(b + a (x - b))
integrates exactly to F(x) - F(b), and on every sub-interval [a, c] exactly to F(c) - F(a).
So the trapezoid rule's error on each sub-interval is known exactly, not estimated:
e_[a,c] = (c - a)/2 (h(a) + h(c)) - (F(c) - F(a)), from the value and gradient at its two
nodes, and the completeness error of the composite rule is exactly sum e. Adaptive
bisection (QUADPACK's global strategy, with exact local errors in place of Gauss-Kronrod
estimates) starts from `AUTO_INITIAL` uniform nodes and, in rounds, bisects the
`AUTO_PER_ROUND` sub-intervals of largest |e| until |sum e| <= max(tol |F(x) - F(b)|, atol)
or max_steps nodes are used. The attributions are the composite trapezoid rule on the
final nodes, so |sum_i IG_i - (F(x) - F(b))| meets that bound (up to float32 rounding of the
sums) for every input that converged: the same per-input criterion by which a uniform rule
is judged. Nodes go where the path crosses ReLU kinks, where the uniform rule's error is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution.common import (
    as_model_function,
    check_chunk_size,
    check_positive_int,
    check_target,
    check_x,
    compensated_add,
    explanation_method,
    output_size,
    pairwise_sum,
    resolve_chunk,
    score_transform,
)
from xai_jax.attribution.loop_convs import loop_friendly
from xai_jax.checks import (
    check_array,
    check_callable,
    check_choice,
    check_float,
    check_int,
    is_concrete,
)
from xai_jax.method import method_factory

RULES = ("riemann_left", "riemann_right", "riemann_middle", "trapezoid", "gauss_legendre")
GAUSS_LEGENDRE_MAX_STEPS = 2**15  # see _quadrature: float32 nodes coincide long before; O(n^2) time
AUTO_INITIAL = 16  # uniform nodes of steps="auto" before any refinement (0 and 1 included)
AUTO_PER_ROUND = 8  # sub-intervals bisected per refinement round (default of chunk_size in "auto")
AUTO_DEFAULTS = {"tol": 1e-2, "atol": 1e-6, "max_steps": 1024}
Baseline = float | jax.Array | np.ndarray | Callable[[jax.Array], jax.Array]


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) of a rule with `steps` nodes on [0, 1]; the weights sum to 1."""
    return _quadrature(check_choice(rule, "rule", (*RULES, "linspace_mean")), check_positive_int(steps, "steps"))


@lru_cache(maxsize=64)
def _quadrature(rule: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    if rule == "riemann_left":
        a, w = np.arange(n) / n, np.full(n, 1.0 / n)
    elif rule == "riemann_right":
        a, w = np.arange(1, n + 1) / n, np.full(n, 1.0 / n)
    elif rule == "riemann_middle":
        a, w = (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)
    elif rule == "trapezoid":
        if n < 2:
            raise ValueError(f"rule 'trapezoid' needs steps >= 2, got {n}")
        a = np.linspace(0.0, 1.0, n)
        w = np.full(n, 1.0 / (n - 1))
        w[[0, -1]] *= 0.5
    elif rule == "linspace_mean":
        if n < 2:
            raise ValueError(f"rule 'linspace_mean' needs steps >= 2, got {n}")
        a, w = np.linspace(0.0, 1.0, n), np.full(n, 1.0 / n)
    elif rule == "gauss_legendre":
        if n > GAUSS_LEGENDRE_MAX_STEPS:
            raise ValueError(f"rule 'gauss_legendre' takes steps <= {GAUSS_LEGENDRE_MAX_STEPS}, got {n}: in float32 "
                             f"its nodes next to alpha = 1 already coincide beyond a few thousand steps (their "
                             f"spacing ~1.4/steps^2 is below float32's 6e-8 there), and computing them costs "
                             f"O(steps^2) time; use rule='trapezoid' or 'riemann_middle' for more steps")
        t, v = legendre_nodes(n)
        a, w = (t + 1.0) / 2.0, v / 2.0
    else:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    return a.astype(np.float32), w.astype(np.float32)


def legendre_nodes(n: int, max_iter: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The n-point Gauss-Legendre nodes (descending) and weights on [-1, 1], float64, in O(n)
    memory (NumPy's leggauss builds an n x n companion matrix: 6.5 GB and minutes at n = 20,000).

    Newton's method on P_n from Tricomi's asymptotic guesses (Abramowitz & Stegun 22.16.6,
    with the n^-4 term; Hale & Townsend 2013 give the error bounds),
    x_k ~ (1 - (n-1)/(8 n^3) - (39 - 28/sin^2 theta_k)/(384 n^4)) cos theta_k,
    theta_k = pi (4k - 1)/(4n + 2), k = 1..ceil(n/2); P_n and P_{n-1} by the three-term recurrence
    j P_j = (2j - 1) x P_{j-1} - (j - 1) P_{j-2}, vectorised over the nodes (O(n^2) time: 2 s at
    n = 20,000); P_n'(x) = n (x P_n - P_{n-1}) / (x^2 - 1); weights 2 / ((1 - x^2) P_n'(x)^2).
    The other half of the nodes by symmetry. Two or three Newton steps reach float64 precision."""
    half = (n + 1) // 2
    theta = np.pi * (4 * np.arange(1, half + 1) - 1) / (4 * n + 2)
    x = (1 - (n - 1) / (8.0 * n**3) - (39 - 28 / np.sin(theta) ** 2) / (384.0 * n**4)) * np.cos(theta)

    def legendre(x):  # (P_n(x), P_n'(x))
        prev, cur = np.ones_like(x), x.copy()
        for j in range(2, n + 1):
            prev, cur = cur, ((2 * j - 1) * x * cur - (j - 1) * prev) / j
        if n == 1:
            prev = np.ones_like(x)
        return cur, n * (x * cur - prev) / (x * x - 1)

    for _ in range(max_iter):
        p, dp = legendre(x)
        step = p / dp
        x = x - step
        if np.abs(step).max() < 1e-15:
            break
    _, dp = legendre(x)
    w = 2 / ((1 - x * x) * dp * dp)
    if n % 2:  # the middle node is 0 exactly
        x[-1] = 0.0
    mirror = slice(None, half - 1) if n % 2 else slice(None)
    return np.concatenate([x, -x[mirror][::-1]]), np.concatenate([w, w[mirror][::-1]])


def check_baseline(baseline: Baseline, name: str = "baseline") -> Baseline:
    """At construction: a callable, or a finite real scalar / array (kept as float32 NumPy)."""
    if callable(baseline):
        return baseline
    if isinstance(baseline, (str, bytes, bool, np.bool_)) or baseline is None:
        raise TypeError(f"{name} must be a number, an array shaped like x or a callable x -> baseline, "
                        f"got {type(baseline).__name__} {baseline!r}")
    if not is_concrete(baseline):
        return baseline
    b = np.asarray(baseline)
    if not (np.issubdtype(b.dtype, np.floating) or np.issubdtype(b.dtype, np.integer)) or b.dtype == bool:
        raise TypeError(f"{name} must be numeric, got an array of dtype {b.dtype}")
    if not np.isfinite(b).all():
        raise ValueError(f"{name} contains NaN or inf values (shape {b.shape}); a baseline must be finite")
    return b.astype(np.float32)


def resolve_baseline(baseline: Baseline, x: jax.Array, name: str = "baseline") -> jax.Array:
    """The baseline for x: a scalar, an array shaped like x, or a callable x -> baseline
    (whose output is checked: numeric, scalar or x's shape, finite when concrete)."""
    if callable(baseline):
        b = baseline(x)
        if not hasattr(b, "shape") and not isinstance(b, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}(x) must return a number or an array shaped like x, got {type(b).__name__}")
        b = jnp.asarray(b)
        if not (jnp.issubdtype(b.dtype, jnp.floating) or jnp.issubdtype(b.dtype, jnp.integer)) or b.dtype == bool:
            raise TypeError(f"{name}(x) must return a numeric array, got dtype {b.dtype}")
        if is_concrete(b) and not bool(np.isfinite(np.asarray(b)).all()):
            raise ValueError(f"{name}(x) returned NaN or inf values; a baseline must be finite")
        what = f"{name}(x) returned"
    else:
        b = check_baseline(baseline, name)
        what = f"{name} has"
    b = jnp.asarray(b, x.dtype)
    if b.ndim == 0:
        return x * 0.0 + b  # not a constant: XLA would otherwise constant-fold f(baseline)
    if b.shape != x.shape:
        raise ValueError(f"{what} shape {tuple(b.shape)}, expected a scalar or x's shape {tuple(x.shape)}")
    return b


def check_baseline_scores(f: Callable, b: jax.Array, x: jax.Array, who: str) -> jax.Array:
    """Whether the model's scores at the baseline b are finite (a traced bool). A path method
    starts at b, so a model that is undefined there (e.g. one that standardises its input,
    (x - mean) / std, is 0/0 at a constant baseline) has no path integral: called eagerly this
    raises a ValueError naming the baseline; under jit the caller returns a NaN map."""
    ok = jnp.isfinite(f(b + 0.0 * x)).all()  # tied to x: XLA would constant-fold the model at a constant b
    # (a model that is NaN at x too is the caller's broken-model error, not the baseline's)
    if is_concrete(ok) and not bool(ok) and bool(jnp.isfinite(f(x)).all()):
        raise ValueError(f"{who}: the model's scores at the baseline are NaN or inf (baseline of shape "
                         f"{tuple(b.shape)}, values in [{float(b.min()):g}, {float(b.max()):g}]), so the path from "
                         f"the baseline to x is undefined at its start; choose a baseline the model is defined at "
                         f"(e.g. a non-constant one such as a blurred x or a training mean, for a model that "
                         f"standardises its input)")
    return ok


def completeness_delta(f: Callable, attributions: jax.Array, x: jax.Array, target, baseline: Baseline = 0.0,
                       score: str = "logit") -> jax.Array:
    """sum(attributions) - (F(x) - F(baseline)) for one input; F the target's score."""
    s = score_transform(score)
    x = check_x(x)
    target = check_target(target, output_size(check_callable(f, "f"), x))
    attributions = check_array(attributions, "attributions")
    if attributions.shape != x.shape:
        raise ValueError(f"attributions must have x's shape {tuple(x.shape)}, got {tuple(attributions.shape)}")
    b = resolve_baseline(baseline, x)
    return attributions.sum() - (s(f(x))[target] - s(f(b))[target])


def adaptive_path_integral(value_and_grad_at: Callable, x: jax.Array, b: jax.Array, *, tol: float, atol: float,
                           max_steps: int, initial: int = AUTO_INITIAL, per_round: int = AUTO_PER_ROUND,
                           in_loop: Callable | None = None):
    """(integral of grad F along the path, completeness bound, gradient evaluations) for one input by
    adaptive bisection (see the module docstring). value_and_grad_at(alpha) -> (F, grad) at
    b + alpha (x - b). Fixed shapes (jit/vmap): the nodes live in max_steps slots (values,
    gradients, and each node's right neighbour as an index, -1 for none); every round
    evaluates `per_round` new nodes in one vmap inside a lax.while_loop. Memory: max_steps
    gradients, i.e. max_steps * x.size floats per input. Under vmap the loop runs until the
    slowest lane converges; converged lanes keep their state (their extra rounds are
    computed and discarded). in_loop: the same function as evaluated inside the loop
    (default value_and_grad_at; the IG factory passes its loop_friendly form)."""
    in_loop = value_and_grad_at if in_loop is None else in_loop
    m = max_steps
    d = x - b
    axes = tuple(range(1, x.ndim + 1))
    a0 = jnp.linspace(0.0, 1.0, initial, dtype=x.dtype)
    f0, g0 = jax.vmap(value_and_grad_at)(a0)
    slots = jnp.arange(m)
    alpha = jnp.zeros(m, x.dtype).at[:initial].set(a0)
    fv = jnp.zeros(m, f0.dtype).at[:initial].set(f0)
    h = jnp.zeros(m, x.dtype).at[:initial].set((g0 * d).sum(axes))
    grads = jnp.zeros((m, *x.shape), g0.dtype).at[:initial].set(g0)
    nxt = jnp.where(slots < initial - 1, slots + 1, -1)
    bound = jnp.maximum(tol * jnp.abs(f0[-1] - f0[0]), atol)

    def errors(alpha, fv, h, nxt):
        """Signed trapezoid error of each sub-interval (slot p: [alpha_p, alpha_next(p)]), lengths."""
        has = nxt >= 0
        j = jnp.where(has, nxt, 0)
        length = jnp.where(has, alpha[j] - alpha, 0.0)
        e = jnp.where(has, length / 2 * (h + h[j]) - (fv[j] - fv), 0.0)
        return e, length

    def cond(state):
        alpha, fv, h, grads, nxt, n = state
        e, _ = errors(alpha, fv, h, nxt)
        return (jnp.abs(e.sum()) > bound) & (n + per_round <= m)  # NaN errors stop it (NaN map out)

    def body(state):
        alpha, fv, h, grads, nxt, n = state
        e, length = errors(alpha, fv, h, nxt)
        worst, idx = jax.lax.top_k(jnp.abs(e), per_round)
        split = worst > 0
        mid = alpha[idx] + length[idx] / 2
        fm, gm = jax.vmap(in_loop)(mid)
        new = n + jnp.arange(per_round)  # a slot per evaluated node; unsplit ones stay unlinked (weight 0)
        alpha = alpha.at[new].set(mid)
        fv = fv.at[new].set(fm)
        h = h.at[new].set((gm * d).sum(axes))
        grads = grads.at[new].set(gm)
        nxt = nxt.at[new].set(jnp.where(split, nxt[idx], -1))
        nxt = nxt.at[idx].set(jnp.where(split, new, nxt[idx]))
        return alpha, fv, h, grads, nxt, n + per_round

    state = (alpha, fv, h, grads, nxt, jnp.int32(initial))
    alpha, fv, h, grads, nxt, n = jax.lax.while_loop(cond, body, state)
    _, length = errors(alpha, fv, h, nxt)
    left = jnp.zeros(m + 1, length.dtype).at[jnp.where(nxt >= 0, nxt, m)].add(length)[:m]
    weights = (length + left) / 2  # composite trapezoid weight of each linked node; 0 for unlinked slots
    return pairwise_sum(grads, weights), bound, n


def _check_auto(steps, rule, tol, atol, max_steps, chunk_size):
    """The checked (tol, atol, max_steps, per_round) of steps="auto"; None when steps is an int
    (then tol/atol/max_steps must not be given)."""
    if steps != "auto":
        given = [name for name, v in (("tol", tol), ("atol", atol), ("max_steps", max_steps)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply only with steps='auto' (error-controlled IG), got "
                             f"steps={steps!r}")
        return None
    if rule is not None:
        raise ValueError(f"rule does not apply with steps='auto' (it chooses its own nodes), got rule={rule!r}")
    tol = check_float(AUTO_DEFAULTS["tol"] if tol is None else tol, "tol", low=0.0, low_open=True)
    atol = check_float(AUTO_DEFAULTS["atol"] if atol is None else atol, "atol", low=0.0)
    max_steps = check_int(AUTO_DEFAULTS["max_steps"] if max_steps is None else max_steps, "max_steps",
                          AUTO_INITIAL + 1)
    per_round = AUTO_PER_ROUND if chunk_size in (None, "auto") else chunk_size
    if per_round > max_steps - AUTO_INITIAL:
        raise ValueError(f"chunk_size={per_round} (nodes per refinement round) leaves no room in max_steps="
                         f"{max_steps} after the {AUTO_INITIAL} initial nodes")
    return tol, atol, max_steps, per_round


@method_factory()
def integrated_gradients(
    f: Callable[[jax.Array], jax.Array],
    *,
    steps: int | str = 64,
    rule: str | None = None,
    tol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = None,
    baseline: Baseline = 0.0,
    chunk_size: int | str | None = "auto",
    score: str = "logit",
    return_delta: bool = False,
    multiply_by_inputs: bool = True,
    precision: str | None = None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Returns ig(x, target) -> attributions shaped like x.

    f: one unbatched x -> class scores (logits). Batch with jax.vmap(ig) or xai_jax.attribute.
    steps: gradient evaluations; rule: one of RULES (see the module docstring), default
      "trapezoid".
    steps="auto": error-controlled IG (module docstring): for every input that does not hit
      max_steps, |sum IG - (F(x) - F(b))| <= max(tol |F(x) - F(b)|, atol). Defaults tol=1e-2,
      atol=1e-6, max_steps=1024 (nodes, >= 17); `rule` does not apply; chunk_size is the
      number of sub-intervals bisected per round (default, "auto" or None: 8). return_delta=True lets callers
      spot the inputs that hit max_steps (their |delta| exceeds the bound);
      method.steps_used(x, target) gives the gradient evaluations. Under vmap every lane runs
      until the slowest lane of the batch converges (a lax.while_loop), so moderate batches
      (attribute's default 64) waste less than one huge one. Memory: max_steps gradients per
      input. On XLA:CPU the model is evaluated inside the loop with its convolutions as
      matrix products (attribution.loop_convs), which avoids a 3x slowdown there.
    baseline: scalar, array shaped like x, or callable x -> baseline.
    chunk_size: evaluate the alphas chunk_size at a time (lax.scan), so peak memory does not
      grow with steps; None evaluates all alphas in one vmap; "auto" (default): all in one
      vmap when steps * x.size <= PASS_ELEMENTS["gradient"] (2**21), else chunks of
      2**21 // x.size alphas (13 at 224 x 224 x 3; attribution.common.resolve_chunk).
      The sums over alphas are pairwise within a chunk and compensated across chunks, so
      their float32 rounding does not grow with steps. (On XLA:CPU a convolution
      inside a loop body runs ~3x slower than outside it, so the scan evaluates the model
      with its convolutions as matrix products there: see attribution.loop_convs.)
    score: "logit" (default), "softmax" or "log_softmax" of f's output is differentiated.
    return_delta: return (attributions, completeness delta) instead.
    multiply_by_inputs: False returns the averaged path gradient without the (x - b) factor
      (the study's faulty variant; not an attribution that satisfies completeness).
    precision: None (JAX's default) or "default" / "high" / "highest", applied with
      jax.default_matmul_precision while the method is traced (see explanation_method).
    """
    f = as_model_function(f)
    if isinstance(steps, str) and steps != "auto":
        raise ValueError(f"steps must be a positive int or 'auto', got {steps!r}")
    chunk_size = check_chunk_size(chunk_size)
    auto = _check_auto(steps, rule, tol, atol, max_steps, chunk_size)
    if auto is None:
        steps = check_positive_int(steps, "steps")
        alphas, weights = quadrature("trapezoid" if rule is None else rule, steps)
    s = score_transform(score)
    baseline = check_baseline(baseline)

    looped = loop_friendly(f)  # the model as evaluated inside loops (XLA:CPU: convolutions as matmuls)

    def adaptive(x, b, target):
        tol_, atol_, max_steps_, per_round = auto

        def at(model):
            return lambda a: jax.value_and_grad(lambda z: s(model(z))[target])(b + a * (x - b))

        return adaptive_path_integral(at(f), x, b, tol=tol_, atol=atol_, max_steps=max_steps_, per_round=per_round,
                                      in_loop=at(looped))

    def adaptive_sum(x, b, target):
        return adaptive(x, b, target)[0]

    def path_gradient_sum(x, b, target):
        # sums over the nodes do not degrade with steps: pairwise within a vmapped batch of nodes,
        # Kahan-compensated across the scan's chunks (a float32 dot over 100,000 nodes lost 4e-4)
        def weighted_grads(alphas_c, weights_c, x, b, model=f):
            grad_at = lambda a: jax.grad(lambda z: s(model(z))[target])(b + a * (x - b))  # noqa: E731
            return pairwise_sum(jax.vmap(grad_at)(alphas_c), weights_c)

        chunk = resolve_chunk(chunk_size, steps, x.size)
        if chunk is None:
            return weighted_grads(jnp.asarray(alphas), jnp.asarray(weights), x, b)
        n_chunks = -(-steps // chunk)
        pad = n_chunks * chunk - steps  # padded nodes get weight 0
        a = np.pad(alphas, (0, pad)).reshape(n_chunks, chunk)
        w = np.pad(weights, (0, pad)).reshape(n_chunks, chunk)
        (total, _), _ = jax.lax.scan(
            lambda st, aw: (compensated_add(st, weighted_grads(aw[0], aw[1], x, b, looped)), None),
            (jnp.zeros_like(x), jnp.zeros_like(x)), (jnp.asarray(a), jnp.asarray(w)))
        return total

    def ig(x, target):
        b = resolve_baseline(baseline, x)
        defined = check_baseline_scores(f, b, x, "integrated_gradients")
        avg = path_gradient_sum(x, b, target) if auto is None else adaptive_sum(x, b, target)
        attributions = (x - b) * avg if multiply_by_inputs else avg
        # a traced baseline cannot be checked, nor the model at it: NaN out, never a finite map
        attributions = jnp.where(jnp.isfinite(b).all() & defined, attributions, jnp.nan)
        if return_delta:
            delta = attributions.sum() - (s(f(x))[target] - s(f(b))[target])
            return attributions, delta
        return attributions

    method = explanation_method(ig, f, name="integrated_gradients", precision=precision)
    extras = {"settings": {"steps": steps, "rule": rule, "baseline": baseline, "score": score}}
    if auto is not None:
        def steps_used(x, target):
            """Gradient evaluations steps='auto' uses for (x, target); jit/vmap-able."""
            return adaptive(x, resolve_baseline(baseline, x), target)[2]

        extras["steps_used"] = steps_used
    return method.replace(returns_delta=bool(return_delta), extras=extras)
