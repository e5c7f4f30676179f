"""xai_jax: visual explanation methods for CNNs as composable JAX transforms."""

from xai_jax.attribution import (
    RULES,
    attribute,
    completeness_delta,
    grad_cam,
    grad_cam_plus_plus,
    gradient_x_input,
    integrated_gradients,
    list_layers,
    model_fn,
    occlusion,
    quadrature,
    rise,
    saliency,
    score_cam,
    sise,
    smoothgrad,
    spatial_map,
)

__version__ = "0.1.0"
__all__ = [
    "RULES", "attribute", "completeness_delta", "grad_cam", "grad_cam_plus_plus",
    "gradient_x_input", "integrated_gradients", "list_layers", "model_fn", "quadrature",
    "occlusion", "rise", "saliency", "score_cam", "sise", "smoothgrad", "spatial_map",
]
