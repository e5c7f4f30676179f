"""xai_jax: visual explanation methods for CNNs as composable JAX transforms."""

from xai_jax import metrics  # noqa: E402  (xai_jax.metrics.mprt, ...)
from xai_jax.attribution import (
    RULES,
    Model,
    PropagationError,
    Split,
    ablation_cam,
    attribute,
    blur_ig,
    completeness_delta,
    deconvnet,
    deeplift,
    deeplift_shap,
    eigen_cam,
    expected_gradients,
    felzenszwalb_segments,
    grad_cam,
    grad_cam_element_wise,
    grad_cam_plus_plus,
    gradient_x_input,
    guided_backprop,
    guided_grad_cam,
    guided_ig,
    hires_cam,
    integrated_gradients,
    layer_cam,
    list_layers,
    lrp,
    lrp_rules,
    model_fn,
    occlusion,
    quadrature,
    rise,
    saliency,
    score_cam,
    sise,
    smoothgrad,
    spatial_map,
    xgrad_cam,
    xrai,
    xrai_regions,
)
from xai_jax.evaluate import Results, evaluate  # noqa: E402
from xai_jax.explain import Explanations, explain  # noqa: E402
from xai_jax.method import Method  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "Method", "RULES", "Model", "Split", "metrics", "explain", "evaluate", "Explanations", "Results",
    "attribute", "completeness_delta", "expected_gradients", "grad_cam", "grad_cam_plus_plus",
    "gradient_x_input", "integrated_gradients", "list_layers", "model_fn", "quadrature",
    "occlusion", "rise", "saliency", "score_cam", "sise", "smoothgrad", "spatial_map",
    "ablation_cam", "blur_ig", "eigen_cam", "felzenszwalb_segments", "guided_ig", "xrai", "xrai_regions",
    "grad_cam_element_wise", "hires_cam", "layer_cam", "xgrad_cam",
    "PropagationError", "deconvnet", "deeplift", "deeplift_shap", "guided_backprop", "guided_grad_cam", "lrp",
    "lrp_rules",
]
