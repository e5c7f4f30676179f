"""The methods `explain` knows by name, with settings that suit the data.

Each entry (`MethodSpec`) builds a `Method` for a model and a `Context` (1-D signals or
images, their size, whether a light CPU setting is asked for, reference inputs). Names are
accepted as the display name ("Integrated Gradients") or the factory's name
("integrated_gradients"). Methods added to the library register here, so that
`explain(..., methods="all")` and the property tests cover them automatically:

    register(MethodSpec("My Method", "my_method", lambda model, ctx: my_method(model_fn(model)),
                        family="gradient", paper="Author et al. 2024"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from xai_jax.method import Method


@dataclasses.dataclass(frozen=True)
class Context:
    """What the settings depend on.

    ndim: spatial dimensions of one input (1: signals (L, C); 2: images (H, W, C)).
    size: the largest spatial side (e.g. 40 samples, 224 pixels).
    light: trade accuracy for speed on images (fewer steps, samples and masks; CPU runs).
    references: (M, ...) inputs to draw baselines from (Expected Gradients), or None.
    """

    ndim: int = 2
    size: int = 224
    light: bool = False
    references: np.ndarray | None = None

    @property
    def image(self) -> bool:
        return self.ndim >= 2


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """A named method: build(model, ctx) -> Method.

    family: "gradient", "path", "cam", "perturbation", "propagation", "shapley", "layer", ...
    paper: the reference, one line.
    default: in explain's "default" set.
    layer: needs a layer of the model (a CAM): left out of "default"/"all" for a model
      without one (a plain function, or no convolution), with a note.
    needs_references: needs Context.references (left out of "all" without them).
    image_only: only for images (ndim 2).
    host: runs per input on the host (not under jit/vmap), e.g. XRAI's segmentation.
    batch_size: inputs per compiled call for (signals, images).
    keyed, signed: as the Method's fields. reduce: how input-shaped maps become one value per
      position (Explanations.spatial): "sum" over channels (signed evidence) or "abs_sum"
      (magnitude: saliency and SmoothGrad, as displayed by Simonyan et al. and Smilkov et al.).
    """

    name: str
    key: str
    build: Callable[[Any, Context], Method]
    family: str
    paper: str
    default: bool = False
    layer: bool = False
    needs_references: bool = False
    image_only: bool = False
    host: bool = False
    batch_size: tuple[int, int] = (100, 16)
    all: bool = True  # in explain's "all" set
    keyed: bool = False  # its Method takes a key (as Method.keyed; declared so that suites know before building)
    signed: bool = True  # its maps carry negative evidence (as Method.signed)
    reduce: str = "sum"  # input-shaped maps to one value per position: "sum" over channels or "abs_sum"

    def batch(self, ctx: Context) -> int:
        return self.batch_size[1 if ctx.image else 0]


REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Adds a method to the registry (replacing one of the same name)."""
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"register takes a MethodSpec, got {type(spec).__name__}")
    for other in list(REGISTRY.values()):
        if other.key == spec.key and other.name != spec.name:
            raise ValueError(f"method key {spec.key!r} is already registered as {other.name!r}")
    REGISTRY[spec.name] = spec
    return spec


def lookup(name: str) -> MethodSpec:
    """The spec of a method by display name or factory name (case and separators ignored)."""
    if not isinstance(name, str):
        raise TypeError(f"a method name must be a str, got {type(name).__name__}")
    for spec in REGISTRY.values():
        if name in (spec.name, spec.key):
            return spec
    norm = lambda s: "".join(ch for ch in s.lower() if ch.isalnum() or ch == "+")  # noqa: E731
    for spec in REGISTRY.values():
        if norm(name) in (norm(spec.name), norm(spec.key)):
            return spec
    raise ValueError(f"unknown method {name!r}; choose from {sorted(REGISTRY)} (or their factory names "
                     f"{sorted(s.key for s in REGISTRY.values())}), or pass a Method")


def names(which: str = "all", ctx: Context | None = None) -> list[str]:
    """The display names of the "default" or "all" set for a context (layer methods included)."""
    ctx = ctx or Context()
    out = []
    for spec in REGISTRY.values():
        if which == "default" and not spec.default:
            continue
        if which == "all" and not spec.all:
            continue
        if spec.image_only and not ctx.image:
            continue
        if spec.needs_references and ctx.references is None:
            continue
        out.append(spec.name)
    return out


def _builtin() -> None:
    from xai_jax import attribution as A
    from xai_jax.attribution.common import model_fn

    f = model_fn

    def ig(model, ctx):
        steps = 32 if ctx.light and ctx.image else 64
        return A.integrated_gradients(f(model), steps=steps, rule="trapezoid",
                                      chunk_size=32 if ctx.image and not ctx.light else None)

    def occlusion(model, ctx):
        if not ctx.image:
            return A.occlusion(f(model), window=4, stride=1)
        side = max(1, ctx.size // (4 if ctx.light else 14))
        return A.occlusion(f(model), window=(side, side), stride=(max(1, side // 2),) * 2, chunk_size=64)

    def rise(model, ctx):
        n = (500 if ctx.light else 8000) if ctx.image else 2000
        return A.rise(f(model), n_masks=n, grid=min(7 if ctx.image else 8, ctx.size),
                      chunk_size=100 if ctx.image else 500)

    chunk = lambda ctx, n: n if ctx.image else None  # noqa: E731

    def features(ctx, count: int):
        """A patch mask function giving about count features: 1-D segments or square patches."""
        per_axis = count if not ctx.image else max(1, round(count ** 0.5))
        return A.patches(max(1, -(-ctx.size // per_axis)))

    # the perturbation family: features (segments, patches) and evaluations per input
    def ablation(model, ctx):
        mask = None if not ctx.image else features(ctx, 64 if ctx.light else 196)
        return A.feature_ablation(f(model), feature_mask=mask, chunk_size=chunk(ctx, 64))

    def permutation(model, ctx):
        mask = None if not ctx.image else features(ctx, 64 if ctx.light else 196)
        return A.feature_permutation(f(model), references=ctx.references, n_samples=1 if ctx.image else 4,
                                     feature_mask=mask, chunk_size=chunk(ctx, 64))

    def sampling(model, ctx):
        return A.shapley_sampling(f(model), n_samples=(4 if ctx.light else 8) if ctx.image else 25,
                                  feature_mask=features(ctx, (16 if ctx.light else 64) if ctx.image else 10),
                                  chunk_size=chunk(ctx, 64))

    def exact(model, ctx):
        return A.shapley_values(f(model), feature_mask=features(ctx, 9 if ctx.image else 10),
                                chunk_size=chunk(ctx, 64))

    def surrogate(factory):
        def build(model, ctx):
            n = (128 if ctx.light else 512) if ctx.image else 200
            return factory(f(model), n_samples=n, feature_mask=features(ctx, (16 if ctx.light else 64) if ctx.image
                                                                       else 20), chunk_size=chunk(ctx, 64))
        return build

    def layer(factory, **kw):
        return lambda m, c: factory(m, upsample=True, **kw)
    specs = [
        MethodSpec("Grad-CAM", "grad_cam", lambda m, c: A.grad_cam(m), "cam",
                   "Selvaraju et al. 2017", default=True, layer=True, batch_size=(100, 16), signed=False),
        MethodSpec("Grad-CAM++", "grad_cam_plus_plus", lambda m, c: A.grad_cam_plus_plus(m), "cam",
                   "Chattopadhay et al. 2018", default=True, layer=True, signed=False),
        MethodSpec("Integrated Gradients", "integrated_gradients", ig, "path",
                   "Sundararajan et al. 2017", default=True, batch_size=(100, 4)),
        MethodSpec("Saliency", "saliency", lambda m, c: A.saliency(f(m)), "gradient",
                   "Simonyan et al. 2014", default=True, reduce="abs_sum"),
        MethodSpec("Gradient x Input", "gradient_x_input", lambda m, c: A.gradient_x_input(f(m)), "gradient",
                   "Shrikumar et al. 2016", default=True),
        MethodSpec("SmoothGrad", "smoothgrad",
                   lambda m, c: A.smoothgrad(A.saliency(f(m)), n_samples=16 if c.light and c.image else 32,
                                             sigma=0.15), "gradient",
                   "Smilkov et al. 2017", default=True, batch_size=(100, 2), keyed=True, reduce="abs_sum"),
        MethodSpec("SmoothGrad²", "smoothgrad_sq",
                   lambda m, c: A.smoothgrad(A.saliency(f(m)), n_samples=16 if c.light and c.image else 32,
                                             sigma=0.15, nt_type="smoothgrad_sq"), "gradient",
                   "Hooker et al. 2019", batch_size=(100, 2), keyed=True, signed=False),
        MethodSpec("VarGrad", "vargrad",
                   lambda m, c: A.smoothgrad(A.saliency(f(m)), n_samples=16 if c.light and c.image else 32,
                                             sigma=0.15, nt_type="vargrad"), "gradient",
                   "Adebayo et al. 2018", batch_size=(100, 2), keyed=True, signed=False),
        MethodSpec("RISE", "rise", rise, "perturbation", "Petsiuk et al. 2018", default=True,
                   batch_size=(20, 1), keyed=True, signed=False),
        MethodSpec("Score-CAM", "score_cam", lambda m, c: A.score_cam(m, chunk_size=chunk(c, 32)), "cam",
                   "Wang et al. 2020", default=True, layer=True, batch_size=(100, 2), signed=False),
        MethodSpec("SISE", "sise", lambda m, c: A.sise(m, chunk_size=chunk(c, 32)), "cam",
                   "Sattarzadeh et al. 2021", default=True, layer=True, batch_size=(50, 1), signed=False),
        MethodSpec("Occlusion", "occlusion", occlusion, "perturbation", "Zeiler & Fergus 2014",
                   default=True, batch_size=(100, 4)),
        MethodSpec("HiResCAM", "hires_cam", lambda m, c: A.hires_cam(m), "cam", "Draelos & Carin 2020",
                   layer=True, signed=False),
        MethodSpec("XGrad-CAM", "xgrad_cam", lambda m, c: A.xgrad_cam(m), "cam", "Fu et al. 2020",
                   layer=True, signed=False),
        MethodSpec("LayerCAM", "layer_cam", lambda m, c: A.layer_cam(m), "cam", "Jiang et al. 2021",
                   layer=True, signed=False),
        MethodSpec("Grad-CAM (element-wise)", "grad_cam_element_wise", lambda m, c: A.grad_cam_element_wise(m),
                   "cam", "pytorch-grad-cam's GradCAMElementWise", layer=True, signed=False),
        MethodSpec("EigenCAM", "eigen_cam", lambda m, c: A.eigen_cam(m), "cam", "Muhammad & Yeasin 2020",
                   layer=True, signed=False),
        MethodSpec("AblationCAM", "ablation_cam", lambda m, c: A.ablation_cam(m, chunk_size=chunk(c, 16)), "cam",
                   "Desai & Ramaswamy 2020", layer=True, batch_size=(100, 2), signed=False),
        MethodSpec("Guided IG", "guided_ig",
                   lambda m, c: A.guided_ig(f(m), steps=50 if c.light and c.image else 200), "path",
                   "Kapishnikov et al. 2021", batch_size=(100, 2)),
        MethodSpec("Expected Gradients", "expected_gradients",
                   lambda m, c: A.expected_gradients(f(m), baselines=c.references,
                                                     n_samples=16 if c.light and c.image else 64,
                                                     chunk_size=chunk(c, 16)),
                   "path", "Erion et al. 2021", needs_references=True, batch_size=(100, 2), keyed=True),
        MethodSpec("Blur IG", "blur_ig",
                   lambda m, c: A.blur_ig(f(m), steps=32 if c.light else 100, chunk_size=16), "path",
                   "Xu et al. 2020", image_only=True, batch_size=(1, 1)),
        MethodSpec("Feature Ablation", "feature_ablation", ablation, "perturbation",
                   "Captum's FeatureAblation (Zeiler & Fergus 2014, by feature)", batch_size=(100, 2)),
        MethodSpec("Feature Permutation", "feature_permutation", permutation, "perturbation",
                   "Breiman 2001; Fisher et al. 2019", needs_references=True, batch_size=(100, 2), keyed=True),
        MethodSpec("Shapley Value Sampling", "shapley_sampling", sampling, "shapley",
                   "Castro et al. 2009; Strumbelj & Kononenko 2010", batch_size=(50, 1), keyed=True),
        MethodSpec("Shapley Values", "shapley_values", exact, "shapley", "Shapley 1953 (exact, <= 12 features)",
                   batch_size=(20, 1)),
        MethodSpec("KernelSHAP", "kernel_shap", surrogate(A.kernel_shap), "shapley", "Lundberg & Lee 2017",
                   batch_size=(50, 1), keyed=True),
        MethodSpec("LIME", "lime", surrogate(A.lime), "shapley", "Ribeiro et al. 2016", batch_size=(50, 1), keyed=True),
        MethodSpec("Layer Activation", "layer_activation", layer(A.layer_activation), "layer",
                   "Captum's LayerActivation", layer=True),
        MethodSpec("Layer Gradient x Activation", "layer_gradient_x_activation",
                   layer(A.layer_gradient_x_activation), "layer", "Captum's LayerGradientXActivation", layer=True),
        MethodSpec("Layer Integrated Gradients", "layer_integrated_gradients",
                   lambda m, c: A.layer_integrated_gradients(m, upsample=True, steps=32 if c.light and c.image else 50,
                                                             chunk_size=chunk(c, 16)),
                   "layer", "Sundararajan et al. 2017, at a layer", layer=True, batch_size=(100, 4)),
        MethodSpec("Layer Conductance", "layer_conductance",
                   lambda m, c: A.layer_conductance(m, upsample=True, steps=32 if c.light and c.image else 50,
                                                    chunk_size=chunk(c, 16)),
                   "layer", "Dhamdhere et al. 2019", layer=True, batch_size=(100, 4)),
        MethodSpec("Neuron Gradient", "neuron_gradient",
                   lambda m, c: A.neuron_gradient(m, neuron=lambda a: a.max()), "layer",
                   "Captum's NeuronGradient (here: the layer's most active unit)", layer=True),
        MethodSpec("Neuron Integrated Gradients", "neuron_integrated_gradients",
                   lambda m, c: A.neuron_integrated_gradients(m, neuron=lambda a: a.max(),
                                                              steps=32 if c.light and c.image else 50,
                                                              chunk_size=chunk(c, 16)),
                   "layer", "Sundararajan et al. 2017, of a unit (here: the most active one)", layer=True,
                   batch_size=(100, 4)),
        MethodSpec("XRAI", "xrai",
                   lambda m, c: A.xrai(A.integrated_gradients(f(m), steps=32 if c.light else 64)), "region",
                   "Kapishnikov et al. 2019", image_only=True, host=True, batch_size=(1, 1), signed=False),
        MethodSpec("Guided Backprop", "guided_backprop", lambda m, c: A.guided_backprop(f(m)), "propagation",
                   "Springenberg et al. 2015"),
        MethodSpec("Deconvnet", "deconvnet", lambda m, c: A.deconvnet(f(m)), "propagation", "Zeiler & Fergus 2014"),
        MethodSpec("Guided Grad-CAM", "guided_grad_cam", lambda m, c: A.guided_grad_cam(m), "propagation",
                   "Selvaraju et al. 2017", layer=True),
        MethodSpec("DeepLIFT", "deeplift", lambda m, c: A.deeplift(f(m)), "propagation",
                   "Shrikumar et al. 2017 (Rescale rule)"),
        MethodSpec("DeepLiftShap", "deeplift_shap",  # at most 16 references: one DeepLIFT pass each
                   lambda m, c: A.deeplift_shap(f(m), baselines=np.asarray(c.references)[:16]), "propagation",
                   "Shrikumar et al. 2017; Lundberg & Lee 2017", needs_references=True, batch_size=(100, 2)),
        MethodSpec("LRP", "lrp", lambda m, c: A.lrp(f(m), composite="EpsilonPlus"), "propagation",
                   "Bach et al. 2015; Montavon et al. 2019 (EpsilonPlus)"),
    ]
    for s in specs:
        register(s)


_builtin()
