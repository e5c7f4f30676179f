from xai_jax.attribution.common import list_layers, model_fn, spatial_map
from xai_jax.attribution.feature_masks import score_cam, sise
from xai_jax.attribution.grad_cam import grad_cam, grad_cam_plus_plus
from xai_jax.attribution.gradients import gradient_x_input, saliency, smoothgrad
from xai_jax.attribution.integrated_gradients import (
    RULES,
    completeness_delta,
    integrated_gradients,
    quadrature,
)
from xai_jax.attribution.perturbation import occlusion, rise
from xai_jax.batching import attribute

__all__ = [
    "RULES", "attribute", "completeness_delta", "grad_cam", "grad_cam_plus_plus",
    "gradient_x_input", "integrated_gradients", "list_layers", "model_fn", "quadrature",
    "occlusion", "rise", "saliency", "score_cam", "sise", "smoothgrad", "spatial_map",
]
