"""Metrics, one module per family, behind one signature (xai_jax.metrics.signature):

    metric(model, xs, explanation, targets=None, *, key=None, batch_size=None,
           precision="highest", channel_axis=None, mesh=None, **options) -> MetricResult

Model truth: drop_increase, deletion_insertion (faithfulness); pixel_flipping,
region_perturbation, road (perturbation_curves); faithfulness_correlation; robustness:
infidelity, max_sensitivity; randomisation: mprt, smooth_mprt, efficient_mprt, random_logit
(cascading_randomisation an alias of mprt); IG completeness. Ground truth, metric(explanation,
support): pointing_game, relevance_mass, localisation_auroc. Complexity, metric(explanation):
sparseness, complexity. Every result is a MetricResult (a Mapping of the metric's keys, plus
.scores, .mean, .ci and .higher_is_better). Similarity functions: xai_jax.metrics.similarity.
"""

from xai_jax.metrics import completeness as _completeness
from xai_jax.metrics import complexity as _complexity_module
from xai_jax.metrics import faithfulness as _faithfulness
from xai_jax.metrics import faithfulness_correlation as _fc
from xai_jax.metrics import localisation as _localisation
from xai_jax.metrics import perturbation_curves as _curves
from xai_jax.metrics import robustness as _robustness
from xai_jax.metrics.faithfulness import complement_log_odds, gaussian_blur, rise_blur_kernel, top_k_mask
from xai_jax.metrics.perturbation_curves import noisy_linear_imputation
from xai_jax.metrics.randomisation import efficient_mprt, mprt, random_logit, smooth_mprt
from xai_jax.metrics.result import MetricResult
from xai_jax.metrics.robustness import gaussian_perturbation
from xai_jax.metrics.sanity import cascading_randomisation, spearman_rows
from xai_jax.metrics.signature import ground_truth, unified
from xai_jax.metrics.similarity import map_similarity
from xai_jax.metrics.stats import bootstrap_ci

_ALL = ("batch_size", "precision", "channel_axis")


def _curve_points(o, size):
    from xai_jax.metrics.faithfulness import curve_counts
    return 2 * len(curve_counts(size, o.get("n_points"), o.get("step")))


def _regions(o, size):
    import math
    return (o.get("regions_evaluation") or math.ceil(size / o.get("patch_size", 8))) + 1


def _sensitivity(o, size):  # perturbed copies x a gradient's cost (~3 forwards)
    return o.get("n_perturb_samples", 10) * 3


drop_increase = unified(_faithfulness.drop_increase, name="drop_increase", scores=lambda v: {
    "drop": v["drop"], "increase": v["increase"]}, higher_is_better={"drop": False, "increase": True},
    keyed=True, accepts=(*_ALL, "mesh"), evaluations=lambda o, size: 2)
deletion_insertion = unified(_faithfulness.deletion_insertion, name="deletion_insertion", scores=lambda v: {
    "deletion_auc": v["deletion_auc"], "insertion_auc": v["insertion_auc"]},
    higher_is_better={"deletion_auc": False, "insertion_auc": True}, keyed=True, accepts=(*_ALL, "mesh"),
    evaluations=_curve_points)
pixel_flipping = unified(_curves.pixel_flipping, name="pixel_flipping", scores="auc", higher_is_better=False,
                         keyed=True, accepts=_ALL,
                         evaluations=lambda o, size: -(-size // o.get("features_in_step", 1)) + 1)
region_perturbation = unified(
    _curves.region_perturbation, name="region_perturbation", scores="aopc",
    # AOPC: the mean drop; MoRF: a faithful map drops the score fast (higher), LeRF: slowly (lower)
    higher_is_better=lambda o: o.get("order", "morf") == "morf", keyed=True, accepts=_ALL, evaluations=_regions)
road = unified(_curves.road, name="road", scores=lambda v: v["curves"].mean(1),
               higher_is_better=lambda o: o.get("order", "morf") != "morf", keyed=True, accepts=_ALL,
               evaluations=lambda o, size: len(o.get("percentages", range(50))) + 1)
faithfulness_correlation = unified(_fc.faithfulness_correlation, name="faithfulness_correlation",
                                   scores="correlation", higher_is_better=True, keyed=True,
                                   accepts=("batch_size", "precision", "channel_axis"),
                                   evaluations=lambda o, size: o.get("n_runs", 100) + 1)
infidelity = unified(_robustness.infidelity, name="infidelity", scores="infidelity", higher_is_better=False,
                     keyed=True, spatial=False, explanation_arg="attributions", accepts=_ALL,
                     renames={"normalise": "normalize"},
                     evaluations=lambda o, size: o.get("n_perturb_samples", 10) + 1)


def _max_sensitivity_impl(f, xs, method, targets=None, **kwargs):
    from xai_jax.method import Method
    if f is not None and getattr(method, "model_fn", None) is None and getattr(method, "num_classes", None) is None:
        # a user-written method of the model the metric was given: that model's classes range-check targets
        method = method.replace(model=f) if isinstance(method, Method) else Method.wrap(method, model=f)
    return _robustness.max_sensitivity(method, xs, targets, **kwargs)


def _completeness_impl(f, xs, method, targets=None, **kwargs):
    """IG completeness of an integrated_gradients Method's settings, or the former keyword settings."""
    from xai_jax.method import Method
    if isinstance(method, Method) and method.name == "integrated_gradients":
        kwargs = {**method.extras.get("settings", {}), **kwargs}
    return _completeness.completeness_errors(f, xs, targets, **kwargs)


max_sensitivity = unified(_max_sensitivity_impl, name="max_sensitivity", scores="sensitivity",
                          higher_is_better=False, explanation="method", keyed=True,
                          accepts=("batch_size", "precision"), explanation_arg="method", evaluations=_sensitivity)
max_sensitivity.__doc__ = _robustness.max_sensitivity.__doc__
completeness = unified(_completeness_impl, name="completeness", scores=lambda v: abs(v["delta"]),
                       higher_is_better=False, explanation="method", accepts=("batch_size",))
completeness.__doc__ = _completeness.completeness_errors.__doc__
completeness_errors = _completeness.completeness_errors  # the former call (f, xs, targets, *, steps, ...)

pointing_game = ground_truth(_localisation.pointing_game, name="pointing_game")
relevance_mass = ground_truth(_localisation.relevance_mass, name="relevance_mass")
localisation_auroc = ground_truth(_localisation.localisation_auroc, name="localisation_auroc")
sparseness = ground_truth(_complexity_module.sparseness, name="sparseness")
complexity = ground_truth(_complexity_module.complexity, name="complexity", higher_is_better=False)

__all__ = [
    "MetricResult", "bootstrap_ci", "cascading_randomisation", "complement_log_odds", "completeness",
    "completeness_errors", "complexity", "deletion_insertion", "drop_increase", "efficient_mprt",
    "faithfulness_correlation", "gaussian_blur", "gaussian_perturbation", "infidelity", "localisation_auroc",
    "map_similarity", "max_sensitivity", "mprt", "noisy_linear_imputation", "pixel_flipping", "pointing_game",
    "random_logit", "region_perturbation", "relevance_mass", "rise_blur_kernel", "road", "smooth_mprt",
    "sparseness", "spearman_rows", "top_k_mask",
]
