import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import HMT_SAMPLE, SEED, need
from xai_jax.study.models import MNIST1DCNN, load_keras_h5, mnist1d_cnn, vgg7


def test_study_weights_score_877_of_1000(mnist1d, study_mnist1d):
    model, params = study_mnist1d
    logits = model.apply({"params": params}, jnp.asarray(mnist1d.x_test))
    assert int((np.asarray(logits).argmax(1) == mnist1d.y_test).sum()) == 877


def test_hmt_weights_score_77_of_100():
    from xai_jax.study.data.hmt import load_folder

    tiles = load_folder(need(HMT_SAMPLE), size=224)
    model = vgg7("study")
    params = load_keras_h5(need(SEED / "HMT.h5"), model, (224, 224, 3))
    logits = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, tiles.x)
    assert int((np.asarray(logits).argmax(1) == tiles.y).sum()) == 77


def test_mismatched_h5_names_layer_and_shapes():
    with pytest.raises(ValueError, match=r"'conv1d'.*\(25,\).*\(64,\)"):
        load_keras_h5(need(SEED / "MNIST1D.h5"), MNIST1DCNN((64, 25, 25), (5, 3, 3)), (40, 1))
    with pytest.raises(ValueError, match="missing in file"):
        load_keras_h5(need(SEED / "MNIST1D.h5"), vgg7("study"), (224, 224, 3))


def test_corrupt_or_missing_h5(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="bad.h5"):
        load_keras_h5(bad, mnist1d_cnn(), (40, 1))
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        load_keras_h5(tmp_path / "nope.h5", mnist1d_cnn(), (40, 1))


def test_wrong_size_h5_dense(tmp_path):
    import h5py

    path = tmp_path / "short.h5"
    with h5py.File(need(SEED / "MNIST1D.h5"), "r") as src, h5py.File(path, "w") as dst:
        src.copy("model_weights", dst)
        del dst["model_weights/dense/dense/kernel:0"]
        dst["model_weights/dense/dense/kernel:0"] = np.zeros((999, 10), np.float32)
    with pytest.raises(ValueError, match=r"'dense'.*\(999, 10\).*\(1000, 10\)"):
        load_keras_h5(path, mnist1d_cnn(), (40, 1))


def test_unknown_preset():
    with pytest.raises(ValueError, match="preset"):
        mnist1d_cnn("huge")
    with pytest.raises(ValueError, match="preset"):
        vgg7("vgg16")


def test_modules_check_their_fields_and_input_rank():
    with pytest.raises(ValueError, match="features and kernels must be equally long"):
        MNIST1DCNN((64, 25), (5, 3, 3))
    with pytest.raises(ValueError, match=r"kernels\[1\] must be >= 1, got 0"):
        MNIST1DCNN((25, 25), (5, 0))
    with pytest.raises(TypeError, match="blocks must be a non-empty sequence"):
        vgg7().clone(blocks=())
    with pytest.raises(ValueError, match=r"num_classes must be >= 2, got 1"):
        vgg7(num_classes=1)
    with pytest.raises(ValueError, match=r"takes x of shape \(batch, length, channels\), got shape \(1, 40\)"):
        mnist1d_cnn().init(jax.random.key(0), jnp.zeros((1, 40)))
    assert mnist1d_cnn(num_classes=np.int64(3)).num_classes == 3
