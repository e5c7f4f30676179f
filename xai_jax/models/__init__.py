from xai_jax.models.keras_import import load_keras_h5
from xai_jax.models.mnist1d_cnn import MNIST1DCNN, mnist1d_cnn
from xai_jax.models.vgg7 import VGG, vgg7

__all__ = ["MNIST1DCNN", "VGG", "load_keras_h5", "mnist1d_cnn", "vgg7"]
