from xai_jax.study.models.keras_import import load_keras_h5
from xai_jax.study.models.mnist1d_cnn import MNIST1DCNN, mnist1d_cnn
from xai_jax.study.models.vgg7 import VGG, vgg7
from xai_jax.study.models.vit1d import ViT1D, patch_grid

__all__ = ["MNIST1DCNN", "VGG", "ViT1D", "load_keras_h5", "mnist1d_cnn", "patch_grid", "vgg7"]
