from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SEED = SHARED / "seed"
HMT_SAMPLE = SHARED / "data" / "hmt-sample"


def need(path: Path):
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared sits beside the checkout in CI and sessions)")
    return path


@pytest.fixture(scope="session")
def mnist1d():
    from xai_jax.study.data.mnist1d import load_mnist1d

    return load_mnist1d()


@pytest.fixture(scope="session")
def study_mnist1d(mnist1d):
    """The study's Keras MNIST-1D weights in our Flax model: (model, params)."""
    from xai_jax.study.models import load_keras_h5, mnist1d_cnn

    model = mnist1d_cnn("study")
    return model, load_keras_h5(need(SEED / "MNIST1D.h5"), model, (40, 1))
