"""Property-based checks (hypothesis) of the method contract: a result of the documented shape,
batch-size and input-order invariance, NaN in never a finite map out. `make test` runs a few
examples; `make fuzz` runs many (HYPOTHESIS_PROFILE=fuzz)."""

from __future__ import annotations

import functools
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import xai_jax as xj  # noqa: E402
import xai_jax.metrics as M  # noqa: E402
from tests.models_small import Tiny2D  # noqa: E402

settings.register_profile("quick", max_examples=8, deadline=None, derandomize=True)
settings.register_profile("fuzz", max_examples=50, deadline=None)  # x 40 methods and 19 metrics: CI time
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

W = jnp.asarray(np.random.default_rng(0).normal(size=(8, 2, 3)).astype(np.float32))
F = lambda x: jnp.tanh(jnp.einsum("lc,lck->k", x, W))  # noqa: E731
METHODS = {"saliency": xj.saliency(F), "ig": xj.integrated_gradients(F, steps=8),
           "gxi": xj.gradient_x_input(F), "occlusion": xj.occlusion(F, window=2)}
SHAPES = {"saliency": (8, 2), "ig": (8, 2), "gxi": (8, 2), "occlusion": (8,)}

inputs = st.integers(1, 6).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-3, 3, width=32), min_size=n * 16, max_size=n * 16),
    st.lists(st.integers(0, 2), min_size=n, max_size=n)))


def batch(values, targets):
    xs = np.asarray(values, np.float32).reshape(len(targets), 8, 2)
    return xs, np.asarray(targets, np.int32)


@pytest.mark.parametrize("name", sorted(METHODS))
@given(data=inputs, seed=st.integers(0, 2**16))
def test_shape_batch_size_and_order_invariance(name, data, seed):
    xs, ts = batch(*data)
    method = METHODS[name]
    full = xj.attribute(method, xs, ts)
    assert full.shape == (len(xs), *SHAPES[name]) and np.isfinite(full).all()
    one_by_one = xj.attribute(method, xs, ts, batch_size=1)
    np.testing.assert_allclose(one_by_one, full, rtol=1e-5, atol=1e-6)
    perm = np.random.default_rng(seed).permutation(len(xs))
    np.testing.assert_allclose(xj.attribute(method, xs[perm], ts[perm]), full[perm], rtol=1e-5, atol=1e-6)
    # targets=None: the predicted class, the same as passing it (where the top two scores are apart: a
    # near-tie may be resolved either way by programs compiled differently)
    scores = np.sort(np.asarray(jax.vmap(F)(jnp.asarray(xs))), 1)
    clear = scores[:, -1] - scores[:, -2] > 1e-3
    predicted = np.asarray(jax.vmap(F)(jnp.asarray(xs))).argmax(1)
    np.testing.assert_allclose(xj.attribute(method, xs)[clear], xj.attribute(method, xs, predicted)[clear],
                               rtol=1e-6)


@pytest.mark.parametrize("name", sorted(METHODS))
@given(data=inputs, where=st.integers(0, 15))
def test_nan_in_is_never_a_finite_map_out(name, data, where):
    xs, ts = batch(*data)
    xs[0].reshape(-1)[where] = np.nan
    method = METHODS[name]
    with pytest.raises(ValueError, match="NaN or inf"):
        xj.attribute(method, xs, ts)
    traced = np.asarray(jax.jit(jax.vmap(method))(jnp.asarray(xs), jnp.asarray(ts)))
    assert np.isnan(traced[0]).all()  # inside the caller's jit: NaN out, never a finite map


@given(data=inputs)
def test_metric_results_have_one_score_per_input(data):
    xs, ts = batch(*data)
    r = xj.metrics.drop_increase(F, xs, METHODS["saliency"], ts, k=0.5)
    assert set(r.scores) == {"drop", "increase"}
    for v in r.scores.values():
        assert v.shape == (len(xs),) and np.isfinite(v).all()
    lo, hi = r.ci["drop"]
    assert (np.isnan(lo) and len(xs) < 2) or lo <= r.mean["drop"] + 1e-12 <= hi + 2e-12


# ----------------------------------------------------------------------------- the registry
# Every public method factory and every metric is listed here, with small settings: the
# properties below run over all of them (`make fuzz`), and test_the_registry_covers_the_public_surface
# fails when a public method or metric is added without a row.

IMAGE = (6, 6, 2)  # one small image: every method (the CAMs included) takes it
CLASSES = 3


@functools.cache
def model():
    module = Tiny2D(classes=CLASSES)
    variables = module.init(jax.random.key(0), jnp.zeros((1, *IMAGE)))
    return xj.Model(module, variables)


SEGMENTS = np.stack([np.arange(36).reshape(6, 6) // 12 == i for i in range(3)])  # xrai without Felzenszwalb
REFERENCES = np.random.default_rng(5).normal(size=(4, *IMAGE)).astype(np.float32)

# name -> (build(model) -> Method, eager only: the method runs on the host and is not jit-able)
METHOD_REGISTRY = {
    "saliency": (lambda m: xj.saliency(m), False),
    "gradient_x_input": (lambda m: xj.gradient_x_input(m), False),
    "integrated_gradients": (lambda m: xj.integrated_gradients(m, steps=4), False),
    "smoothgrad": (lambda m: xj.smoothgrad(xj.saliency(m), n_samples=2), False),
    "expected_gradients": (lambda m: xj.expected_gradients(m, baselines=REFERENCES, n_samples=2), False),
    "blur_ig": (lambda m: xj.blur_ig(m, steps=4, max_sigma=2.0), False),
    "guided_ig": (lambda m: xj.guided_ig(m, steps=4), False),
    "occlusion": (lambda m: xj.occlusion(m, window=2), False),
    "rise": (lambda m: xj.rise(m, n_masks=8, grid=2, chunk_size=4), False),
    "xrai": (lambda m: xj.xrai(xj.saliency(m), segments=SEGMENTS), True),
    "grad_cam": (lambda m: xj.grad_cam(m), False),
    "grad_cam_plus_plus": (lambda m: xj.grad_cam_plus_plus(m), False),
    "grad_cam_element_wise": (lambda m: xj.grad_cam_element_wise(m), False),
    "hires_cam": (lambda m: xj.hires_cam(m), False),
    "layer_cam": (lambda m: xj.layer_cam(m), False),
    "xgrad_cam": (lambda m: xj.xgrad_cam(m), False),
    "eigen_cam": (lambda m: xj.eigen_cam(m), False),
    "ablation_cam": (lambda m: xj.ablation_cam(m), False),
    "score_cam": (lambda m: xj.score_cam(m), False),
    "sise": (lambda m: xj.sise(m), False),
    "guided_backprop": (lambda m: xj.guided_backprop(m), False),
    "deconvnet": (lambda m: xj.deconvnet(m), False),
    "guided_grad_cam": (lambda m: xj.guided_grad_cam(m), False),
    "deeplift": (lambda m: xj.deeplift(m), False),
    "deeplift_shap": (lambda m: xj.deeplift_shap(m, baselines=REFERENCES[:2]), False),
    "lrp": (lambda m: xj.lrp(m, composite="EpsilonPlus"), False),
    "feature_ablation": (lambda m: xj.feature_ablation(m, feature_mask=xj.patches(3)), False),
    "feature_permutation": (lambda m: xj.feature_permutation(m, references=REFERENCES, feature_mask=xj.patches(3)),
                            False),
    "shapley_sampling": (lambda m: xj.shapley_sampling(m, n_samples=2, feature_mask=xj.patches(3)), False),
    "shapley_values": (lambda m: xj.shapley_values(m, feature_mask=xj.patches(3)), False),
    "kernel_shap": (lambda m: xj.kernel_shap(m, n_samples=8, feature_mask=xj.patches(3)), False),
    "lime": (lambda m: xj.lime(m, n_samples=8, feature_mask=xj.patches(3)), False),
    "layer_activation": (lambda m: xj.layer_activation(m, upsample=True), False),
    "layer_gradient_x_activation": (lambda m: xj.layer_gradient_x_activation(m, upsample=True), False),
    "layer_integrated_gradients": (lambda m: xj.layer_integrated_gradients(m, upsample=True, steps=4), False),
    "layer_conductance": (lambda m: xj.layer_conductance(m, upsample=True, steps=4), False),
    "neuron_gradient": (lambda m: xj.neuron_gradient(m, neuron=lambda a: a.max()), False),
    "neuron_integrated_gradients": (lambda m: xj.neuron_integrated_gradients(m, neuron=lambda a: a.max(), steps=4),
                                    False),
}
NOT_METHODS = {"Method", "RULES", "Model", "Split", "metrics", "attribute", "completeness_delta", "list_layers",
               "model_fn", "quadrature", "spatial_map", "felzenszwalb_segments", "xrai_regions",
               "explain", "evaluate", "Explanations", "Results", "PropagationError", "lrp_rules",
               "feature_permutation_batch", "lime_kernel", "patch_mask", "patches", "superpixel_mask", "superpixels"}


def _maps(xs, ts):
    return np.abs(xj.attribute(xj.saliency(model()), xs, ts)).sum(-1)


# name -> (call(model, xs, maps, targets, key, batch_size) -> MetricResult, keyed per input index)
METRIC_REGISTRY = {
    "drop_increase": (lambda m, xs, a, t, k, b: M.drop_increase(m, xs, a, t, key=k, batch_size=b), False),
    "deletion_insertion": (lambda m, xs, a, t, k, b: M.deletion_insertion(m, xs, a, t, key=k, batch_size=b,
                                                                          step=9), False),
    "pixel_flipping": (lambda m, xs, a, t, k, b: M.pixel_flipping(m, xs, a, t, key=k, batch_size=b,
                                                                  features_in_step=9), False),
    "region_perturbation": (lambda m, xs, a, t, k, b: M.region_perturbation(m, xs, a, t, key=k, batch_size=b,
                                                                            patch_size=3), False),
    "road": (lambda m, xs, a, t, k, b: M.road(m, xs, a, t, key=k, batch_size=b, percentages=[20, 60]), False),
    "faithfulness_correlation": (lambda m, xs, a, t, k, b: M.faithfulness_correlation(
        m, xs, a, t, key=k, batch_size=b, n_runs=4, subset_size=6), True),
    "infidelity": (lambda m, xs, a, t, k, b: M.infidelity(m, xs, np.repeat(a[..., None], 2, -1), t, key=k,
                                                          batch_size=b, n_perturb_samples=3,
                                                          perturb_fn=M.gaussian_perturbation(0.1)), True),
    "max_sensitivity": (lambda m, xs, a, t, k, b: M.max_sensitivity(m, xs, xj.saliency(m), t, key=k, batch_size=b,
                                                                    n_perturb_samples=2), True),
    "completeness": (lambda m, xs, a, t, k, b: M.completeness(m, xs, xj.integrated_gradients(m, steps=4), t,
                                                              batch_size=b), False),
    "random_logit": (lambda m, xs, a, t, k, b: M.random_logit(m, xs, xj.saliency(m), t, key=k, batch_size=b), True),
    "mprt": (lambda m, xs, a, t, k, b: M.mprt(m, xs, xj.saliency(m), t, key=k, batch_size=b), False),
    "cascading_randomisation": (lambda m, xs, a, t, k, b: M.mprt(m, xs, xj.saliency(m), t, key=k, batch_size=b),
                                False),  # an alias of mprt (its former call form takes make_method)
    "smooth_mprt": (lambda m, xs, a, t, k, b: M.smooth_mprt(m, xs, xj.saliency(m), t, key=k, batch_size=b,
                                                            n_noisy=2), True),
    "efficient_mprt": (lambda m, xs, a, t, k, b: M.efficient_mprt(m, xs, xj.saliency(m), t, key=k, batch_size=b,
                                                                  n_bins=8), False),
    "pointing_game": (lambda m, xs, a, t, k, b: M.pointing_game(a, a > np.median(a)), False),
    "relevance_mass": (lambda m, xs, a, t, k, b: M.relevance_mass(a, a > np.median(a)), False),
    "localisation_auroc": (lambda m, xs, a, t, k, b: M.localisation_auroc(a, a > np.median(a)), False),
    "sparseness": (lambda m, xs, a, t, k, b: M.sparseness(a), False),
    "complexity": (lambda m, xs, a, t, k, b: M.complexity(a), False),
}
METRIC_HELPERS = {"MetricResult", "bootstrap_ci", "complement_log_odds", "completeness_errors", "gaussian_blur",
                  "gaussian_perturbation", "map_similarity", "noisy_linear_imputation", "rise_blur_kernel",
                  "spearman_rows", "top_k_mask"}
GROUND_TRUTH = {"pointing_game", "relevance_mass", "localisation_auroc", "sparseness", "complexity"}


def test_the_registry_covers_the_public_surface():
    """A public method or metric added without a registry row (or a helper listed as one) fails here."""
    assert set(xj.__all__) - NOT_METHODS == set(METHOD_REGISTRY), "add the new method to METHOD_REGISTRY"
    assert set(M.__all__) - METRIC_HELPERS == set(METRIC_REGISTRY), "add the new metric to METRIC_REGISTRY"
    for name, (build, _) in METHOD_REGISTRY.items():  # each row builds the method it names
        assert isinstance(build(model()), xj.Method) and build(model()).name.startswith(name.split("_")[0]), name


ARGUMENTS = ("x", "xs", "target", "targets", "key", "method", "num_classes", "dtype", "inputs", "score", "model")


def _names_an_argument(e: Exception) -> bool:
    text = str(e)
    return any(re.search(rf"(^|[^a-z_]){a}([^a-z_]|$)", text) for a in ARGUMENTS)


VALUES = ("normal", "constant", "tied", "huge", "tiny", "nan", "inf")
DTYPES = ("float32", "float64", "bfloat16", "int32")


@st.composite
def batches(draw, dtypes=DTYPES, values=VALUES):
    """(xs, targets, what): a batch of 1-4 images of drawn dtype and values, and targets
    that are valid, None, out of range or negative."""
    n = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    kind = draw(st.sampled_from(values))
    dtype = draw(st.sampled_from(dtypes))
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, *IMAGE))
    if kind == "constant":
        xs = np.full_like(xs, rng.normal())
    elif kind == "tied":
        xs = np.round(xs)
    elif kind == "huge":
        xs = xs * 1e30
    elif kind == "tiny":
        xs = xs * 1e-30
    elif kind in ("nan", "inf"):
        xs.reshape(-1)[draw(st.integers(0, xs.size - 1))] = np.nan if kind == "nan" else np.inf
    xs = xs.astype(jnp.bfloat16 if dtype == "bfloat16" else dtype)
    target_kind = draw(st.sampled_from(("valid", "valid", "none", "out_of_range", "negative")))
    ts = {"valid": rng.integers(0, CLASSES, n), "none": None, "out_of_range": np.full(n, CLASSES),
          "negative": np.full(n, -1)}[target_kind]
    return xs, ts, (kind, dtype, target_kind)


def _key_for(name):
    return {"key": jax.random.key(3)} if getattr(METHOD_REGISTRY[name][0](model()), "keyed", False) else {}


@pytest.mark.fuzz
@pytest.mark.parametrize("name", sorted(METHOD_REGISTRY))
@given(data=batches())
def test_every_method_errors_clearly_or_returns_the_documented_result(name, data):
    """A ValueError/TypeError naming an argument, or maps of the documented shape and a float
    dtype; never a finite map for NaN/inf inputs, never a silent result for bad targets."""
    xs, ts, (kind, dtype, target_kind) = data
    method = METHOD_REGISTRY[name][0](model())
    try:
        if METHOD_REGISTRY[name][1]:  # eager only
            out = np.stack([method(x, t) for x, t in zip(xs, ts if ts is not None else [None] * len(xs))])
        else:
            out = xj.attribute(method, xs, ts, **_key_for(name))
    except (ValueError, TypeError) as e:
        assert _names_an_argument(e), f"{name}: {type(e).__name__} names no argument: {e}"
        return
    assert kind not in ("nan", "inf"), f"{name}: a finite map for {kind} input"
    assert target_kind in ("valid", "none"), f"{name}: a result for {target_kind} targets"
    assert dtype != "int32" or True  # integer inputs may be promoted; their maps are then checked below
    shape = IMAGE if method.output == "input" else IMAGE[:-1]
    assert out.shape == (len(xs), *shape), (name, out.shape)
    assert np.issubdtype(out.dtype, np.floating) or out.dtype == jnp.bfloat16, (name, out.dtype)
    assert np.isfinite(np.asarray(out, np.float64)).all(), name


# Found by fuzzing, not fixed: the methods that run the model on many perturbed copies of each
# input (a vmap inside attribute's vmap) differ by an ulp or so between batch sizes >= 2 (e.g.
# ablation_cam 4.8e-7 of max |map| 2.5 between batch sizes 2 and 4): XLA:CPU blocks the
# convolution over inputs x copies differently for each batch size. They hold within 1e-6 of
# max |map|; making them bitwise needs a per-input loop (lax.map) inside attribute's program.
# Their maps are differences of two model scores, so a batch of one may differ by more than
# 1e-6 of max |map| (occlusion: 1.2e-6, fuzzing seed 0): they are held to 1e-5.
NOT_BITWISE = {"ablation_cam", "guided_ig", "occlusion", "rise", "score_cam", "sise", "feature_ablation",
               "feature_permutation", "shapley_sampling", "shapley_values", "kernel_shap", "lime"}


@pytest.mark.fuzz
@pytest.mark.parametrize("name", sorted(n for n in METHOD_REGISTRY if not METHOD_REGISTRY[n][1]))
@given(data=batches(dtypes=("float32",), values=("normal", "tied", "constant")), seed=st.integers(0, 2**16))
def test_every_method_is_batch_size_and_order_invariant(name, data, seed):
    """Bitwise equal for batch sizes >= 2, within 1e-6 of max |map| for a batch of one (XLA:CPU
    rounds it differently); permuting inputs permutes maps (deterministic methods); keyed
    methods give input i the key fold_in(key, i) whatever the batch."""
    xs, ts, _ = data
    if ts is None or (ts < 0).any() or (ts >= CLASSES).any():
        ts = np.arange(len(xs)) % CLASSES
    method = METHOD_REGISTRY[name][0](model())
    kw = _key_for(name)
    full = xj.attribute(method, xs, ts, batch_size=len(xs), **kw)
    scale = max(float(np.abs(full).max()), 1e-30)
    for b in range(1, len(xs)):
        got = xj.attribute(method, xs, ts, batch_size=b, **kw)
        if b >= 2 and name not in NOT_BITWISE:
            np.testing.assert_array_equal(got, full, err_msg=f"{name}: batch_size={b}")
        else:  # the forward-batched methods: a difference of two model scores, 1e-5 of max |map|
            tol = 1e-5 if name in NOT_BITWISE else 1e-6
            np.testing.assert_allclose(got, full, atol=tol * scale, rtol=0, err_msg=f"{name}: batch_size={b}")
    if kw:  # per-index keys: input i's map is the eager call's with fold_in(key, i)
        i = len(xs) - 1
        one = np.asarray(method(jnp.asarray(xs[i]), int(ts[i]), jax.random.fold_in(kw["key"], i)))
        np.testing.assert_allclose(full[i], one, atol=1e-5 * scale, rtol=1e-5)
    else:
        perm = np.random.default_rng(seed).permutation(len(xs))
        np.testing.assert_allclose(xj.attribute(method, xs[perm], ts[perm], batch_size=len(xs)), full[perm],
                                   atol=(1e-5 if name in NOT_BITWISE else 1e-6) * scale, rtol=0,
                                   err_msg=f"{name}: permuted inputs")


@pytest.mark.fuzz
@pytest.mark.parametrize("name", sorted(n for n in METHOD_REGISTRY if not METHOD_REGISTRY[n][1]))
@given(data=batches(dtypes=("float32",), values=("nan", "inf")))
def test_every_method_maps_nan_to_nan_under_jit(name, data):
    xs, _, _ = data
    ts = np.arange(len(xs)) % CLASSES
    method = METHOD_REGISTRY[name][0](model())
    bad = ~np.isfinite(xs.reshape(len(xs), -1)).all(1)
    args = (jax.random.split(jax.random.key(0), len(xs)),) if method.keyed else ()
    traced = np.asarray(jax.jit(jax.vmap(method))(jnp.asarray(xs), jnp.asarray(ts), *args))
    assert np.isnan(traced[bad]).all(), f"{name}: a finite map for a non-finite input under jit"


@pytest.mark.fuzz
@pytest.mark.parametrize("name", sorted(METRIC_REGISTRY))
@given(data=batches(dtypes=("float32",), values=("normal", "tied", "constant", "nan")))
def test_every_metric_scores_each_input_or_errors_clearly(name, data):
    """One score per input (ground-truth metrics: per map), or a ValueError/TypeError naming
    an argument; NaN inputs never give finite scores."""
    xs, ts, (kind, _, target_kind) = data
    maps = np.abs(np.random.default_rng(0).normal(size=xs.shape[:-1])).astype(np.float32)
    call, _ = METRIC_REGISTRY[name]
    try:
        r = call(model(), xs, maps, ts, jax.random.key(1), None)
    except (ValueError, TypeError) as e:
        assert _names_an_argument(e), f"{name}: {type(e).__name__} names no argument: {e}"
        return
    if name not in GROUND_TRUTH:
        assert kind != "nan", f"{name}: a result for NaN inputs"
        assert target_kind in ("valid", "none"), f"{name}: a result for {target_kind} targets"
    scores = r.scores if isinstance(r.scores, dict) else {"score": r.scores}
    for key, v in scores.items():
        v = np.asarray(v)
        assert v.shape[0] == len(xs) or name in ("mprt", "cascading_randomisation", "smooth_mprt"), (name, key, v.shape)


# Found by fuzzing, not fixed (the cause of NOT_BITWISE): metrics that run the model on many
# perturbed copies per input differ by ulps between batch sizes (deletion_insertion 7.5e-9,
# pixel_flipping 1.2e-7, infidelity 2.3e-11, faithfulness_correlation 7.2e-7 absolute); they
# hold within 1e-5 of the largest score, a correlation amplifying the model's rounding.
NOT_BITWISE_METRICS = {"deletion_insertion", "faithfulness_correlation", "infidelity", "pixel_flipping",
                       "region_perturbation", "road", "max_sensitivity", "smooth_mprt",
                       "drop_increase", "completeness"}  # make fuzz: drop 0.00095096 vs 0.00095084 at sizes 2 and 4
# a correlation of 2-4 points amplifies a forward pass's rounding further (make fuzz: 0.6141137 vs 0.6141024)
LOOSER = {"faithfulness_correlation": 1e-4}


@pytest.mark.fuzz
@pytest.mark.parametrize("name", sorted(n for n in METRIC_REGISTRY if n not in GROUND_TRUTH))
@given(data=batches(dtypes=("float32",), values=("normal", "tied")))
def test_every_metric_is_batch_size_invariant(name, data):
    xs, _, _ = data
    ts = np.arange(len(xs)) % CLASSES
    maps = _maps(xs, ts)
    call, _ = METRIC_REGISTRY[name]
    full = call(model(), xs, maps, ts, jax.random.key(1), len(xs))
    for b in range(1, len(xs)):
        got = call(model(), xs, maps, ts, jax.random.key(1), b)
        for key in (full.scores if isinstance(full.scores, dict) else {"": None}):
            a = np.asarray(full.scores[key] if key else full.scores, np.float64)
            g = np.asarray(got.scores[key] if key else got.scores, np.float64)
            scale = max(float(np.nanmax(np.abs(a))) if a.size else 0.0, 1e-30)
            if b >= 2 and name not in NOT_BITWISE_METRICS:
                np.testing.assert_array_equal(g, a, err_msg=f"{name}[{key}]: batch_size={b}")
            else:
                np.testing.assert_allclose(g, a, atol=LOOSER.get(name, 1e-5) * scale, rtol=0,
                                           err_msg=f"{name}[{key}]: batch_size={b}")


# ----------------------------------------------------------------------------- what fuzzing found
# Each failing example the properties above found, kept as an explicit row of the default run.

def _bfloat16_batch():
    return np.random.default_rng(0).normal(size=(2, *IMAGE)).astype(jnp.bfloat16)


FOUND = [
    # ablation_cam on bfloat16 inputs crashed in JAX's transpose rules (mixed bf16 activations and
    # float32 cotangents): half-precision inputs are now computed in float32 (checks.check_x)
    pytest.param(lambda: xj.attribute(METHOD_REGISTRY["ablation_cam"][0](model()), _bfloat16_batch(), np.array([0, 1])),
                 lambda out: out.dtype == np.float32 and out.shape == (2, 6, 6) and np.isfinite(out).all(),
                 id="ablation_cam-bfloat16"),
]


@pytest.mark.parametrize("call, holds", FOUND)
def test_what_fuzzing_found(call, holds):
    assert holds(call())
