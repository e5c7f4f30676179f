"""Run a suite of methods over a data set and measure each with every metric.

This is the library side of the experiments: `method_suite` names the methods with their
settings for a model, `explain_all` computes and times their maps, `measure_all` applies
every metric, with bootstrap confidence intervals and a per-class breakdown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax.attribution import (
    ablation_cam,
    attribute,
    blur_ig,
    eigen_cam,
    expected_gradients,
    grad_cam,
    grad_cam_element_wise,
    grad_cam_plus_plus,
    gradient_x_input,
    guided_ig,
    hires_cam,
    integrated_gradients,
    layer_cam,
    model_fn,
    saliency,
    smoothgrad,
    xgrad_cam,
    xrai,
)
from xai_jax.attribution.feature_masks import score_cam, sise
from xai_jax.attribution.perturbation import occlusion, rise
from xai_jax.batching import run_in_batches
from xai_jax.checks import check_batch, check_callable, check_int, num_outputs
from xai_jax.metrics import (
    bootstrap_ci,
    cascading_randomisation,
    deletion_insertion,
    drop_increase,
    localisation_auroc,
    pointing_game,
    relevance_mass,
)


@dataclass
class SuiteEntry:
    """A named attribution method: build(params) -> fn(x, t[, key]); reduce(maps) -> spatial maps."""

    name: str
    build: Callable[[Any], Callable]
    keyed: bool = False
    reduce: Callable[[np.ndarray], np.ndarray] = field(default=lambda a: a)
    batch_size: int = 100
    signed: bool = False  # maps carry negative evidence: localisation is reported signed and absolute
    host: bool = False  # runs on the host per input (XRAI's segmentation), not under jit/vmap


def _channel_sum(a):
    return a.sum(-1)


def _channel_abs_sum(a):
    return np.abs(a).sum(-1)


DEFAULT_METHODS = ("Grad-CAM", "Grad-CAM++", "Integrated Gradients", "Saliency", "Gradient x Input", "SmoothGrad",
                   "RISE", "Score-CAM", "SISE", "Occlusion")
MORE_METHODS = ("HiResCAM", "XGrad-CAM", "LayerCAM", "Grad-CAM (element-wise)", "EigenCAM", "AblationCAM",
                "Guided IG", "Expected Gradients", "Blur IG", "XRAI")
IMAGE_ONLY = ("Blur IG", "XRAI")


def method_suite(model: Any, params: Any = None, *, ndim: int, study: bool = False,
                 rise_masks: int | None = None, light: bool = False, image_size: int = 224,
                 methods: str | Sequence[str] = "default",
                 references: np.ndarray | None = None) -> dict[str, SuiteEntry]:
    """The methods compared, with settings suited to 1-D signals (ndim=1) or images (ndim=2).

    model: a flax.linen module (each entry is then built per parameter set, entry.build(params))
    or any model the adapters take (xai_jax.Model for linen with batch_stats, NNX, Equinox with
    State, Haiku): then pass params=None to explain_all and sanity_all.

    methods: "default" (DEFAULT_METHODS: the study's methods and the classic ones), "all"
    (adds MORE_METHODS: the rest of the CAM family, Guided IG, Expected Gradients and, for
    images only, Blur IG and XRAI) or a list of names. Expected Gradients draws its baselines
    from `references` (e.g. training inputs) and is left out when none are given.
    light=True trades accuracy for speed on images (CPU runs): IG 32 steps, SmoothGrad 16
    samples, RISE 500 masks, occlusion windows of a quarter of the image (stride half that);
    otherwise windows of 1/14 of the image (16 pixels at 224); Guided IG 50 steps (else 200),
    Expected Gradients 16 samples (else 64), Blur IG 32 steps (else 100).
    study=True adds the study's own variants: Grad-CAM of the softmax score, and its faulty
    IG (tf-explain: 11 equally weighted nodes including both ends, softmax score, no
    (x - baseline) factor, |.| summed over channels).
    """
    del params  # methods are built per parameter set (see SuiteEntry.build)
    image = ndim == 2
    available = DEFAULT_METHODS + tuple(m for m in MORE_METHODS if image or m not in IMAGE_ONLY)
    if methods == "default":
        chosen = DEFAULT_METHODS
    elif methods == "all":
        chosen = tuple(m for m in available if m != "Expected Gradients" or references is not None)
    elif isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
        raise ValueError(f"methods must be 'default', 'all' or a list of method names, got {methods!r}")
    else:
        unknown = [m for m in methods if m not in available]
        if unknown:
            raise ValueError(f"unknown methods {unknown} for {'images' if image else '1-D signals'}; "
                             f"choose from {list(available)}")
        if "Expected Gradients" in methods and references is None:
            raise ValueError("Expected Gradients needs references= (baseline inputs, e.g. training samples)")
        chosen = tuple(methods)
    f = lambda p: model_fn(model, p)  # noqa: E731
    n_rise = rise_masks or (8000 if image else 2000)
    light = light and image
    if light and rise_masks is None:
        n_rise = 500
    ig_steps, sg_samples = (32, 16) if light else (64, 32)
    side = max(1, image_size // (4 if light else 14))  # 56 / 16 pixels at 224
    window, stride = (side, side), (max(1, side // 2),) * 2
    cam_batch = 16 if image else 100
    builders = {
        "Grad-CAM": lambda: SuiteEntry("Grad-CAM", lambda p: grad_cam(model, p), batch_size=100),
        "Grad-CAM++": lambda: SuiteEntry("Grad-CAM++", lambda p: grad_cam_plus_plus(model, p), batch_size=100),
        "Integrated Gradients": lambda: SuiteEntry(
            "Integrated Gradients",
            lambda p: integrated_gradients(f(p), steps=ig_steps, rule="trapezoid",
                                           chunk_size=32 if image and not light else None),
            reduce=_channel_sum, batch_size=(1 if light else 4) if image else 100, signed=True),
        "Saliency": lambda: SuiteEntry("Saliency", lambda p: saliency(f(p)), reduce=_channel_abs_sum),
        "Gradient x Input": lambda: SuiteEntry("Gradient x Input", lambda p: gradient_x_input(f(p)),
                                           reduce=_channel_sum, signed=True),
        "SmoothGrad": lambda: SuiteEntry("SmoothGrad", lambda p: smoothgrad(saliency(f(p)), n_samples=sg_samples,
                                                                        sigma=0.15),
                                     keyed=True, reduce=_channel_abs_sum, batch_size=2 if image else 100),
        "RISE": lambda: SuiteEntry("RISE", lambda p: rise(f(p), n_masks=n_rise, grid=7 if image else 8,
                                                     chunk_size=100 if image else 500),
                               keyed=True, batch_size=1 if image else 20),
        "Score-CAM": lambda: SuiteEntry("Score-CAM", lambda p: score_cam(model, p, chunk_size=32 if image else None),
                                    batch_size=2 if image else 100),
        "SISE": lambda: SuiteEntry("SISE", lambda p: sise(model, p, chunk_size=32 if image else None),
                               batch_size=1 if image else 50),
        "Occlusion": lambda: SuiteEntry("Occlusion", lambda p: occlusion(f(p), window=window if image else 4,
                                                                    stride=stride if image else 1,
                                                                    chunk_size=64 if image else None),
                                    batch_size=4 if image else 100, signed=True),
        "HiResCAM": lambda: SuiteEntry("HiResCAM", lambda p: hires_cam(model, p), batch_size=cam_batch),
        "XGrad-CAM": lambda: SuiteEntry("XGrad-CAM", lambda p: xgrad_cam(model, p), batch_size=cam_batch),
        "LayerCAM": lambda: SuiteEntry("LayerCAM", lambda p: layer_cam(model, p), batch_size=cam_batch),
        "Grad-CAM (element-wise)": lambda: SuiteEntry("Grad-CAM (element-wise)",
                                                  lambda p: grad_cam_element_wise(model, p), batch_size=cam_batch),
        "EigenCAM": lambda: SuiteEntry("EigenCAM", lambda p: eigen_cam(model, p), batch_size=cam_batch),
        "AblationCAM": lambda: SuiteEntry("AblationCAM",
                                          lambda p: ablation_cam(model, p, chunk_size=16 if image else None),
                                          batch_size=2 if image else 100),
        "Guided IG": lambda: SuiteEntry("Guided IG", lambda p: guided_ig(f(p), steps=50 if light else 200),
                                    reduce=_channel_sum, batch_size=2 if image else 100, signed=True),
        "Expected Gradients": lambda: SuiteEntry(
            "Expected Gradients",
            lambda p: expected_gradients(f(p), baselines=references, n_samples=16 if light else 64,
                                         chunk_size=16 if image else None),
            keyed=True, reduce=_channel_sum, batch_size=2 if image else 100, signed=True),
        "Blur IG": lambda: SuiteEntry("Blur IG", lambda p: blur_ig(f(p), steps=32 if light else 100, chunk_size=16),
                                  reduce=_channel_sum, batch_size=1, signed=True),
        "XRAI": lambda: SuiteEntry("XRAI", lambda p: xrai(integrated_gradients(f(p), steps=ig_steps)), host=True),
    }
    suite = {name: builders[name]() for name in chosen}
    if study:
        suite["Study Grad-CAM (softmax)"] = SuiteEntry(
            "Study Grad-CAM (softmax)", lambda p: grad_cam(model, p, score="softmax"))
        suite["Study IG (faulty)"] = SuiteEntry(
            "Study IG (faulty)",
            lambda p: integrated_gradients(f(p), steps=11, rule="linspace_mean", score="softmax",
                                           multiply_by_inputs=False),
            reduce=_channel_abs_sum, batch_size=4 if image else 100)
    return suite


def explain_all(suite: dict[str, SuiteEntry], params: Any, xs: np.ndarray, targets: np.ndarray, *,
                key: jax.Array, progress: bool = False) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Maps (N, *spatial) per method and milliseconds per input (compile excluded: one batch
    is run first to compile, then the whole set is timed)."""
    maps, ms = {}, {}
    for name, m in suite.items():
        fn = m.build(params)
        if m.host:  # per input on the host (XRAI): first input compiles its jitted parts
            fn(xs[0], targets[0])
            t0 = time.perf_counter()
            out = np.stack([np.asarray(fn(x, t)) for x, t in zip(xs, targets)])
            ms[name] = 1e3 * (time.perf_counter() - t0) / len(xs)
            maps[name] = m.reduce(out)
            continue
        k = key if m.keyed else None
        bs = min(m.batch_size, len(xs))
        attribute(fn, xs[:bs], targets[:bs], batch_size=bs, key=k, progress=False)  # compile
        t0 = time.perf_counter()
        out = attribute(fn, xs, targets, batch_size=bs, key=k, progress=progress)
        ms[name] = 1e3 * (time.perf_counter() - t0) / len(xs)
        maps[name] = m.reduce(out)
    return maps, ms


LOCALISATION = ("pointing_game", "relevance_mass", "relevance_mass_min", "auroc")


def _localisation(mp: np.ndarray, supports: np.ndarray, suffix: str = "") -> dict[str, np.ndarray]:
    return {"pointing_game" + suffix: pointing_game(mp, supports),
            "relevance_mass" + suffix: relevance_mass(mp, supports),
            "relevance_mass_min" + suffix: relevance_mass(mp, supports, shift="min"),
            "auroc" + suffix: localisation_auroc(mp, supports)}


def measure_all(f: Callable, xs: np.ndarray, ys: np.ndarray, maps: dict[str, np.ndarray], *,
                k: float, supports: np.ndarray | None = None, supports_any: np.ndarray | None = None,
                signed: Iterable[str] = (), conventions: Sequence[str] = ("precise",),
                deletion_step: int | None = None, blur: str = "rise", blur_sigma: float = 5.0,
                completeness: dict[str, np.ndarray] | None = None, tie_draws: int = 64,
                seed: int = 0, batch_size: int = 50) -> dict[str, Any]:
    """Every metric for every method: per-input values, means with bootstrap 95% CIs and a
    per-class breakdown. Drop/increase and deletion/insertion use the predicted class.

    deletion_step: deletion/insertion's step (positions per curve point); None: its default
      of 100 points per curve (metrics.deletion_insertion).
    conventions: drop/increase conventions computed; "precise" gives "drop"/"increase",
      "study" gives "drop_study"/"increase_study" (see metrics.drop_increase).
    signed: names of methods whose maps are signed; their localisation metrics use |map|
      (a position's relevance is its magnitude; the sign is its direction) and the signed
      map's values are reported beside them with the suffix "_signed".
    supports_any: the looser "any template contribution" supports; localisation under them
      is reported with the suffix "_any".
    Also returns, per method, the share of inputs with ties at the top-k cut and in the
    deletion ordering, and the share of inputs whose float32 softmax saturates ("shares").
    """
    signed = set(signed)
    per_input: dict[str, dict[str, np.ndarray]] = {}
    curves: dict[str, dict[str, np.ndarray]] = {}
    shares: dict[str, dict[str, float]] = {}
    key = jax.random.key(seed)
    for name, mp in maps.items():
        values: dict[str, np.ndarray] = {}
        for convention in conventions:
            di = drop_increase(f, xs, mp, k=k, batch_size=batch_size, convention=convention, tie_draws=tie_draws,
                               key=key)
            tag = "" if convention == "precise" else f"_{convention}"
            values["drop" + tag], values["increase" + tag] = di["drop"], di["increase"]
            shares.setdefault(name, {})[f"saturated{tag}"] = di["saturated_share"]
            shares[name][f"tie_topk{tag}"] = di["tie_share"]
        dl = deletion_insertion(f, xs, mp, step=deletion_step, blur=blur, blur_sigma=blur_sigma,
                                batch_size=batch_size, tie_draws=tie_draws, key=key)
        values.update(deletion_auc=dl["deletion_auc"], insertion_auc=dl["insertion_auc"])
        shares[name]["tie_ordering"] = dl["tie_share"]
        if supports is not None:
            ranked = np.abs(mp) if name in signed else mp
            values.update(_localisation(ranked, supports))
            if name in signed:
                values.update(_localisation(mp, supports, "_signed"))
            if supports_any is not None:
                values.update(_localisation(ranked, supports_any, "_any"))
        if completeness is not None and name in completeness:
            values["completeness_error"] = completeness[name]
        per_input[name] = values
        curves[name] = {"fractions": dl["fractions"], "deletion": dl["deletion_curve"].mean(0),
                        "insertion": dl["insertion_curve"].mean(0)}
    summary = {name: {metric: bootstrap_ci(v, seed=seed) for metric, v in values.items()}
               for name, values in per_input.items()}
    classes = np.unique(ys)
    per_class = {name: {metric: {int(c): float(v[ys == c].mean()) for c in classes}
                        for metric, v in values.items()} for name, values in per_input.items()}
    return {"per_input": per_input, "summary": summary, "per_class": per_class, "curves": curves,
            "shares": shares, "signed": sorted(signed & set(maps))}


def sanity_all(suite: dict[str, SuiteEntry], model: Any, params: Any, xs: np.ndarray, targets: np.ndarray,
               *, key: jax.Array) -> dict[str, dict[str, float]]:
    """Cascading model randomisation (Adebayo et al. 2018) for every method of the suite
    (host methods, i.e. XRAI, are left out: the check runs each method under jit/vmap).
    params=None: model is any adapted model (xai_jax.Model, NNX, Equinox), whose methods are
    rebound to each randomised copy."""
    out = {}
    for name, m in suite.items():
        if m.host:
            continue
        common = dict(key=key, method_key=key if m.keyed else None, batch_size=min(m.batch_size, len(xs)),
                      reduce=m.reduce)
        if params is None:
            out[name] = cascading_randomisation(model, xs, m.build(None), targets, **common)
        else:
            out[name] = cascading_randomisation(m.build, model, params, xs, targets, **common)
    return out


def predictions(f: Callable, xs: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Predicted classes of f over xs (jitted, vmapped, fixed-size padded batches)."""
    xs = check_batch(xs, "xs", who="predictions")
    check_int(batch_size, "batch_size", 1)
    num_outputs(check_callable(f, "f"), tuple(xs.shape[1:]), xs.dtype)  # f maps one x to a score vector
    fn = jax.jit(lambda x: (lambda z: (z.argmax(-1), jnp.isfinite(z).all(-1)))(jax.vmap(f)(x)))
    preds, finite = run_in_batches(fn, (np.asarray(xs),), min(batch_size, len(xs)))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"the model f returned NaN or inf scores for inputs {bad[:5].tolist()}"
                         f"{' ...' if bad.size > 5 else ''}: no class can be predicted")
    return preds

