"""Run a suite of methods over a data set and measure each with every metric.

This is the library side of the experiments: `method_suite` names the methods with their
settings for a model, `explain_all` computes and times their maps, `measure_all` applies
every metric, with bootstrap confidence intervals and a per-class breakdown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_jax import registry
from xai_jax.adapters.base import Model
from xai_jax.attribution import grad_cam, integrated_gradients, model_fn
from xai_jax.attribution.perturbation import rise
from xai_jax.batching import run_in_batches
from xai_jax.checks import check_batch, check_callable, check_int, num_outputs
from xai_jax.evaluate import Results
from xai_jax.explain import explain
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


DEFAULT_METHODS = tuple(registry.names("default"))
MORE_METHODS = tuple(n for n in registry.names("all", registry.Context(ndim=2, references=np.zeros(1)))
                     if n not in DEFAULT_METHODS)
IMAGE_ONLY = tuple(n for n, s in registry.REGISTRY.items() if s.image_only)
_REDUCE = {True: _channel_sum, False: _channel_abs_sum}


def _as_model(model: Any, params: Any) -> Any:
    """A linen module with a parameter set as an adapted model; any other model as it is."""
    return model if params is None else Model(model, params)


def method_suite(model: Any, params: Any = None, *, ndim: int, study: bool = False,
                 rise_masks: int | None = None, light: bool = False, image_size: int = 224,
                 methods: str | Sequence[str] = "default",
                 references: np.ndarray | None = None) -> dict[str, SuiteEntry]:
    """The methods compared: xai_jax.registry's methods with its settings for 1-D signals
    (ndim=1) or images (ndim=2), as SuiteEntries (build(params) -> Method).

    model: a flax.linen module (each entry is then built per parameter set, entry.build(params))
    or any model the adapters take (xai_jax.Model for linen with batch_stats, NNX, Equinox with
    State, Haiku): then pass params=None to explain_all and sanity_all.

    methods: "default" (registry.names("default")), "all" (every registered method that
    applies: image-only methods on images, Expected Gradients with `references`) or a list of
    names. rise_masks overrides RISE's mask count. light=True trades accuracy for speed on
    images (see xai_jax.registry).
    study=True adds the study's own variants: Grad-CAM of the softmax score, and its faulty
    IG (tf-explain: 11 equally weighted nodes including both ends, softmax score, no
    (x - baseline) factor, |.| summed over channels).
    """
    del params  # methods are built per parameter set (see SuiteEntry.build)
    ctx = registry.Context(ndim=ndim, size=image_size if ndim == 2 else 40, light=light and ndim == 2,
                           references=references)
    available = registry.names("all", registry.Context(ndim=ndim, references=np.zeros(1)))
    if methods == "default":
        chosen = DEFAULT_METHODS
    elif methods == "all":
        chosen = tuple(registry.names("all", ctx))
    elif isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
        raise ValueError(f"methods must be 'default', 'all' or a list of method names, got {methods!r}")
    else:
        unknown = [m for m in methods if m not in available]
        if unknown:
            raise ValueError(f"unknown methods {unknown} for {'images' if ndim == 2 else '1-D signals'}; "
                             f"choose from {list(available)}")
        if "Expected Gradients" in methods and references is None:
            raise ValueError("Expected Gradients needs references= (baseline inputs, e.g. training samples)")
        chosen = tuple(methods)

    def entry(name: str) -> SuiteEntry:
        spec = registry.REGISTRY[name]
        build = spec.build
        if name == "RISE" and rise_masks is not None:
            grid = 7 if ndim == 2 else 8
            build = lambda m, c: rise(model_fn(m), n_masks=rise_masks, grid=min(grid, c.size),  # noqa: E731
                                      chunk_size=100 if ndim == 2 else 500)
        signed = spec.signed and spec.reduce == "sum"  # IG, gradient x input, occlusion, ...: negative evidence
        return SuiteEntry(name, lambda p, b=build: b(_as_model(model, p), ctx), keyed=spec.keyed,
                          batch_size=spec.batch(ctx), signed=signed, host=spec.host,
                          reduce=_channel_sum if spec.reduce == "sum" else _channel_abs_sum)

    suite = {name: entry(name) for name in chosen}
    if study:
        suite["Study Grad-CAM (softmax)"] = SuiteEntry(
            "Study Grad-CAM (softmax)", lambda p: grad_cam(_as_model(model, p), score="softmax"))
        suite["Study IG (faulty)"] = SuiteEntry(
            "Study IG (faulty)",
            lambda p: integrated_gradients(model_fn(_as_model(model, p)), steps=11, rule="linspace_mean",
                                           score="softmax", multiply_by_inputs=False),
            reduce=_channel_abs_sum, batch_size=4 if ndim == 2 else 100)
    return suite


def explain_all(suite: dict[str, SuiteEntry], params: Any, xs: np.ndarray, targets: np.ndarray, *,
                key: jax.Array, progress: bool = False) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Maps (N, *spatial) per method and milliseconds per input (compile excluded):
    xai_jax.explain over the suite's Methods, input-shaped maps reduced by each entry's rule."""
    specs = {name: registry.MethodSpec(name, name, lambda m, c, e=e: e.build(params), "suite", "",
                                       batch_size=(e.batch_size, e.batch_size), host=e.host, keyed=e.keyed)
             for name, e in suite.items()}
    ex = explain(_identity, xs, specs, np.asarray(targets), key=key, progress=progress)
    maps = {name: (ex[name] if ex.is_spatial[name] or np.ndim(ex[name]) == np.ndim(xs) - 1 else e.reduce(ex[name]))
            for name, e in suite.items()}
    return maps, ex.ms_per_input


def _identity(x):  # explain_all's targets are given: the model is never called
    return x


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
        curves[name] = {"fractions": dl["fractions"], "deletion": dl["deletion_curve"],  # (N, P) per input
                        "insertion": dl["insertion_curve"]}
    summary = {name: {metric: bootstrap_ci(v, seed=seed) for metric, v in values.items()}
               for name, values in per_input.items()}
    classes = np.unique(ys)
    per_class = {name: {metric: {int(c): float(v[ys == c].mean()) for c in classes}
                        for metric, v in values.items()} for name, values in per_input.items()}
    lower = ("drop", "deletion_auc", "completeness_error")
    results = Results.from_scores({(name, metric, metric): v for name, values in per_input.items()
                                   for metric, v in values.items()},
                                  {metric: not metric.startswith(lower) for values in per_input.values()
                                   for metric in values})
    return {"per_input": per_input, "summary": summary, "per_class": per_class, "curves": curves,
            "shares": shares, "signed": sorted(signed & set(maps)), "results": results}


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

