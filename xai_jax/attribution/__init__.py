from xai_jax.adapters import Model, Split, list_layers
from xai_jax.attribution.blur_ig import blur_ig
from xai_jax.attribution.common import model_fn, spatial_map
from xai_jax.attribution.deeplift import deeplift, deeplift_shap
from xai_jax.attribution.feature_masks import score_cam, sise
from xai_jax.attribution.grad_cam import (
    ablation_cam,
    eigen_cam,
    grad_cam,
    grad_cam_element_wise,
    grad_cam_plus_plus,
    hires_cam,
    layer_cam,
    xgrad_cam,
)
from xai_jax.attribution.gradients import expected_gradients, gradient_x_input, saliency, smoothgrad
from xai_jax.attribution.guided import deconvnet, guided_backprop, guided_grad_cam
from xai_jax.attribution.guided_ig import guided_ig
from xai_jax.attribution.integrated_gradients import (
    RULES,
    completeness_delta,
    integrated_gradients,
    quadrature,
)
from xai_jax.attribution.layer import (
    layer_activation,
    layer_conductance,
    layer_gradient_x_activation,
    layer_integrated_gradients,
    neuron_gradient,
    neuron_integrated_gradients,
)
from xai_jax.attribution.lrp import lrp, lrp_rules
from xai_jax.attribution.perturbation import occlusion, rise
from xai_jax.attribution.propagation import PropagationError
from xai_jax.attribution.segments import patch_mask, patches, superpixel_mask, superpixels
from xai_jax.attribution.shapley import (
    feature_ablation,
    feature_permutation,
    feature_permutation_batch,
    kernel_shap,
    lime,
    lime_kernel,
    shapley_sampling,
    shapley_values,
)
from xai_jax.attribution.xrai import felzenszwalb_segments, xrai, xrai_regions
from xai_jax.batching import attribute

__all__ = [
    "RULES", "Model", "Split",
    "attribute", "completeness_delta", "expected_gradients", "grad_cam", "grad_cam_plus_plus",
    "gradient_x_input", "integrated_gradients", "list_layers", "model_fn", "quadrature",
    "occlusion", "rise", "saliency", "score_cam", "sise", "smoothgrad", "spatial_map",
    "ablation_cam", "blur_ig", "eigen_cam", "felzenszwalb_segments", "guided_ig", "xrai", "xrai_regions",
    "grad_cam_element_wise", "hires_cam", "layer_cam", "xgrad_cam",
    "PropagationError", "deconvnet", "deeplift", "deeplift_shap", "guided_backprop", "guided_grad_cam", "lrp",
    "lrp_rules",
    "feature_ablation", "feature_permutation", "feature_permutation_batch", "kernel_shap", "lime", "lime_kernel",
    "shapley_sampling", "shapley_values", "patch_mask", "patches", "superpixel_mask", "superpixels",
    "layer_activation", "layer_conductance", "layer_gradient_x_activation", "layer_integrated_gradients",
    "neuron_gradient", "neuron_integrated_gradients",
]
