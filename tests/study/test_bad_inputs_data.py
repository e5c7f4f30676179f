"""Bad input to the data loaders and the Keras import: a clear error or a defined result.

Each row of CASES is (make_call, expected): make_call(tmp_path) builds the bad input and
returns a zero-argument callable; expected is (ExceptionType, [substrings of the message])
or a checker(result, tmp_path) that asserts the defined result.
"""

import functools
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.study.test_data_hmt import make_tiles, zip_folder
from xai_jax.study.data.hmt import load_cached, load_folder, load_zip, stratified_split
from xai_jax.study.data.mnist1d import load_mnist1d
from xai_jax.study.models import load_keras_h5, mnist1d_cnn, vgg7

N = 100  # MNIST-1D signals per test set: small and fast
FIELDS = ("x_train", "y_train", "x_test", "y_test", "support_train", "support_test")


def warns(match: str, fn):
    """fn, asserting that calling it warns with `match` in the message."""

    def call():
        with pytest.warns(UserWarning, match=match):
            return fn()

    return call


# ---------------------------------------------------------------- MNIST-1D

@functools.cache
def fresh(seed: int = 0) -> dict:
    d = load_mnist1d(seed=seed, num_samples=N, cache_dir=None)
    wide = load_mnist1d(seed=seed, num_samples=N, cache_dir=None, support="any")
    return {**{k: getattr(d, k) for k in FIELDS},
            "support_any_train": wide.support_train, "support_any_test": wide.support_test}


def mnist_args(**kw):
    return lambda tmp_path: functools.partial(load_mnist1d, **{"num_samples": N, "cache_dir": None, **kw})


def cache_file(tmp_path: Path, seed: int = 0) -> Path:
    return tmp_path / f"mnist1d_seed{seed}_n{N}_split0.8.npz"


def meta(seed=0, num_samples=N, train_split=0.8):
    from importlib.metadata import version

    from xai_jax.study.data.mnist1d import CACHE_FORMAT

    return {"arg_seed": seed, "arg_num_samples": num_samples, "arg_train_split": train_split,
            "arg_version": version("mnist1d"), "arg_format": CACHE_FORMAT}


def bad_cache(reason: str, **arrays):
    """A cache file for seed 0 holding `arrays` (fresh data and arguments unless overridden)."""

    def make(tmp_path):
        np.savez(cache_file(tmp_path), **{**fresh(), **meta(), **arrays})
        return warns(reason, lambda: load_mnist1d(seed=0, num_samples=N, cache_dir=tmp_path))

    return make


def regenerated(result, tmp_path):
    for k in FIELDS:
        np.testing.assert_array_equal(getattr(result, k), fresh()[k], err_msg=k)
    assert result.x_train.shape == (80, 40, 1) and result.x_train.dtype == np.float32
    with np.load(cache_file(tmp_path)) as z:  # the rewritten cache is fresh and now loads without a warning
        np.testing.assert_array_equal(z["x_train"], fresh()["x_train"])
        assert int(z["arg_seed"]) == 0 and int(z["arg_num_samples"]) == N


def cache_path_is_a_directory(tmp_path):
    cache_file(tmp_path).mkdir()
    return lambda: load_mnist1d(seed=0, num_samples=N, cache_dir=tmp_path)


def old_cache(tmp_path):
    np.savez(cache_file(tmp_path), **fresh(1))  # another seed's data, no stored arguments
    return warns("old cache", lambda: load_mnist1d(seed=0, num_samples=N, cache_dir=tmp_path))


# ---------------------------------------------------------------- HMT tiles

RAMP = (np.arange(24 * 32, dtype=np.int64).reshape(24, 32) * 85 + 7).astype(np.uint16)  # 7 .. 65202


def tile16(fmt: str, array: np.ndarray = RAMP, size: int = 0):
    def make(tmp_path):
        Image.fromarray(array).save(tmp_path / f"ramp_label_2.{fmt}")
        return lambda: load_folder(tmp_path, size=size or array.shape[0])

    return make


def ramp_values(result, tmp_path):
    assert result.x.shape == (1, 24, 24, 3) and list(result.y) == [2]
    want = np.asarray(Image.fromarray(RAMP / np.float32(65535)).resize((24, 24), Image.BILINEAR))
    np.testing.assert_allclose(result.x[0], np.repeat(want[..., None], 3, -1), atol=1e-4)
    assert 0.99 < result.x.max() < 0.9999 and result.x.min() < 0.01  # 8-bit clipping made 99.5% of pixels 1.0


SQUARE = (np.arange(24 * 24, dtype=np.int64).reshape(24, 24) * 113).astype(np.uint16)  # 0 .. 64975


def square_values(result, tmp_path):
    assert result.x.shape == (1, 24, 24, 3)
    np.testing.assert_allclose(result.x[0], np.repeat(SQUARE[..., None] / 65535.0, 3, -1), atol=1e-4)


def constant_resized(result, tmp_path):
    assert result.x.shape == (1, 16, 16, 3)
    np.testing.assert_allclose(result.x, 40000 / 65535.0, atol=1e-4)


def tile_unsupported(array: np.ndarray):
    def make(tmp_path):
        Image.fromarray(array).save(tmp_path / "deep_label_1.tif")
        return lambda: load_folder(tmp_path, size=8)

    return make


def same_name_other_folder(tmp_path):
    make_tiles(tmp_path / "a" / "tiles", per_class=1, size=12)
    load_cached(tmp_path / "a" / "tiles", size=12, cache_dir=tmp_path / "cache")
    make_tiles(tmp_path / "b" / "tiles", per_class=2, size=12)
    return lambda: load_cached(tmp_path / "b" / "tiles", size=12, cache_dir=tmp_path / "cache")


def same_as_folder(folder: str, n: int):
    def check(result, tmp_path):
        direct = load_folder(tmp_path / folder, size=12)
        assert len(result.y) == n
        np.testing.assert_array_equal(result.x, direct.x)
        np.testing.assert_array_equal(result.y, direct.y)
        assert result.files == direct.files

    return check


def folder_gained_tiles(tmp_path):
    make_tiles(tmp_path / "tiles", per_class=1, size=12)
    load_cached(tmp_path / "tiles", size=12, cache_dir=tmp_path / "cache")
    extra = tmp_path / "tiles" / "Kather_texture_2016_image_tiles_5000" / "03_COMPLEX" / "new.tif"
    Image.fromarray(np.full((12, 12, 3), 200, np.uint8)).save(extra)
    return lambda: load_cached(tmp_path / "tiles", size=12, cache_dir=tmp_path / "cache")


def corrupt_hmt_cache(content: bytes | None):
    def make(tmp_path):
        make_tiles(tmp_path / "tiles", per_class=1, size=12)
        load_cached(tmp_path / "tiles", size=12, cache_dir=tmp_path / "cache")
        (file,) = (tmp_path / "cache").glob("*.npz")
        if content is None:  # a readable npz whose arrays are not tiles
            np.savez(file, x=np.zeros(3), y=np.zeros(3), files=np.asarray(["a", "b", "c"]))
        else:
            file.write_bytes(content)
        return warns("rebuilding", lambda: load_cached(tmp_path / "tiles", size=12, cache_dir=tmp_path / "cache"))

    return make


def rebuilt(result, tmp_path):
    same_as_folder("tiles", 8)(result, tmp_path)
    (file,) = (tmp_path / "cache").glob("*.npz")
    with np.load(file) as z:
        np.testing.assert_array_equal(z["x"], result.x)


def macos_zip(tmp_path):
    make_tiles(tmp_path / "tiles", per_class=2, size=12)
    z = zip_folder(tmp_path / "tiles", tmp_path / "mac.zip")
    with zipfile.ZipFile(z, "a") as zf:
        for name in sorted(n for n in zf.namelist() if n.endswith(".tif")):
            head, _, base = name.rpartition("/")
            zf.writestr(f"__MACOSX/{head}/._{base}", b"\x00\x05\x16\x07 resource fork")
            zf.writestr(f"{head}/._{base}", b"\x00\x05\x16\x07 AppleDouble")
    return lambda: load_zip(z, size=12)


def sixteen_clean_tiles(result, tmp_path):
    clean = load_folder(tmp_path / "tiles", size=12)
    assert len(result.y) == 16 and not any("._" in f or "__MACOSX" in f for f in result.files)
    np.testing.assert_array_equal(result.x, clean.x)
    np.testing.assert_array_equal(result.y, clean.y)


def macos_folder(tmp_path):
    make_tiles(tmp_path / "tiles", per_class=2, size=12)
    for f in sorted((tmp_path / "tiles").rglob("*.tif")):
        (f.parent / f"._{f.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
        mac = tmp_path / "tiles" / "__MACOSX" / f.relative_to(tmp_path / "tiles")
        mac.parent.mkdir(parents=True, exist_ok=True)
        mac.write_bytes(b"\x00\x05\x16\x07 resource fork")
    return lambda: load_folder(tmp_path / "tiles", size=12)


def macos_folder_result(result, tmp_path):
    assert len(result.y) == 16 and not any("._" in f or "__MACOSX" in f for f in result.files)
    np.testing.assert_array_equal(result.y, np.repeat(np.arange(8), 2))


def hmt_split(*args):
    return lambda tmp_path: lambda: stratified_split(*args)


def one_tile(tmp_path, folder: str, name: str) -> Path:
    (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / folder / name)
    return tmp_path / folder / name


def labelled_tile(folder: str, name: str):
    def make(tmp_path):
        one_tile(tmp_path, folder, name)
        return lambda: load_folder(tmp_path, size=8)

    return make


def zip_bad_crc(tmp_path):
    """A stored (uncompressed) zip whose one tile has a flipped byte: its CRC check fails."""
    path = tmp_path / "crc.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.write(one_tile(tmp_path, "src", "a.png"), "01_TUMOR/a.png")
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"IDAT") + 6] ^= 0xFF
    path.write_bytes(bytes(raw))
    return lambda: load_zip(path, size=8)


def oversized_tile(tmp_path):
    """A tile over PIL's decompression-bomb limit (lowered to 10 pixels for the call)."""
    one_tile(tmp_path, "big", "huge_label_1.png")

    def call():
        old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, 10
        try:
            return load_folder(tmp_path / "big", size=8)
        finally:
            Image.MAX_IMAGE_PIXELS = old

    return call


def folder_named_zip(tmp_path):
    make_tiles(tmp_path / "tiles.zip", per_class=1, size=12)
    return lambda: load_cached(tmp_path / "tiles.zip", size=12, cache_dir=tmp_path / "cache")


def hmt_cache_path_is_a_directory(tmp_path):
    make_tiles(tmp_path / "tiles", per_class=1, size=12)
    load_cached(tmp_path / "tiles", size=12, cache_dir=tmp_path / "cache")
    (file,) = (tmp_path / "cache").glob("*.npz")
    file.unlink()
    file.mkdir()
    return lambda: load_cached(tmp_path / "tiles", size=12, cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------- Keras import

def keras_h5(layer: str, leaf: str, bad, model=None, input_shape=(40, 1)):
    """A Keras-layout .h5 for mnist1d_cnn() with one `bad` value in layer/leaf (a string: that
    weight stored as strings); load_keras_h5 is called with `model` (default the CNN) and input_shape."""

    def make(tmp_path):
        import h5py
        import jax
        import jax.numpy as jnp

        cnn = mnist1d_cnn()
        shapes = jax.eval_shape(lambda: cnn.init(jax.random.key(0), jnp.zeros((1, 40, 1))))["params"]
        path = tmp_path / "weights.h5"
        with h5py.File(path, "w") as h5:
            for name, leaves in shapes.items():
                for w, spec in leaves.items():
                    value = np.full(spec.shape, 0.01, np.float32)
                    if (name, w) == (layer, leaf):
                        value = value.astype("S8") if isinstance(bad, str) else value
                        value.flat[3] = bad
                    h5[f"model_weights/{name}/{name}/{w}:0"] = value
        return lambda: load_keras_h5(path, cnn if model is None else model, input_shape)

    return make


def finite_weights(params, tmp_path):
    assert params["dense"]["kernel"].shape == (1000, 10)
    assert all(bool(np.all(np.asarray(v) == np.float32(0.01))) for d in params.values() for v in d.values())


CASES = [
    # MNIST-1D arguments
    pytest.param(mnist_args(seed="42"), (TypeError, ["seed", "str", "'42'"]), id="mnist1d-seed-str"),
    pytest.param(mnist_args(seed=True), (TypeError, ["seed", "bool"]), id="mnist1d-seed-bool"),
    pytest.param(mnist_args(seed=-1), (ValueError, ["seed", "-1", "[0, 2**32)"]), id="mnist1d-seed-negative"),
    pytest.param(mnist_args(seed=2**32), (ValueError, ["seed", str(2**32)]), id="mnist1d-seed-too-large"),
    pytest.param(mnist_args(num_samples=105), (ValueError, ["num_samples", "105", "multiple of 10"]),
                 id="mnist1d-num-samples-not-multiple-of-10"),
    pytest.param(mnist_args(num_samples=0), (ValueError, ["num_samples", "0", ">= 10"]), id="mnist1d-num-samples-0"),
    pytest.param(mnist_args(num_samples=100.0), (TypeError, ["num_samples", "float", "100.0"]),
                 id="mnist1d-num-samples-float"),
    pytest.param(mnist_args(train_split=float("nan")), (ValueError, ["train_split", "nan", "(0, 1)"]),
                 id="mnist1d-train-split-nan"),
    pytest.param(mnist_args(train_split=float("inf")), (ValueError, ["train_split", "inf"]),
                 id="mnist1d-train-split-inf"),
    pytest.param(mnist_args(train_split=1.0), (ValueError, ["train_split", "1.0", "(0, 1)"]),
                 id="mnist1d-train-split-1"),
    pytest.param(mnist_args(train_split="0.8"), (TypeError, ["train_split", "str", "'0.8'"]),
                 id="mnist1d-train-split-str"),
    pytest.param(mnist_args(num_samples=10, train_split=0.05), (ValueError, ["train_split", "n_train=0", "empty"]),
                 id="mnist1d-empty-train-split"),
    # MNIST-1D cache: regenerated (with a warning saying why) on any mismatch
    pytest.param(bad_cache("x_train is float64\\[2\\]", x_train=np.zeros(2)), regenerated,
                 id="mnist1d-cache-garbage-arrays"),
    pytest.param(bad_cache("y_train is int32\\[80, 40\\]", y_train=np.zeros((80, 40), np.int32)), regenerated,
                 id="mnist1d-cache-wrong-label-shape"),
    pytest.param(bad_cache("labels span", y_test=np.full(20, 10, np.int32)), regenerated,
                 id="mnist1d-cache-label-out-of-range"),
    pytest.param(bad_cache("NaN", x_test=np.full((20, 40, 1), np.nan, np.float32)), regenerated,
                 id="mnist1d-cache-nan"),
    pytest.param(bad_cache("mean .* std", x_train=np.zeros((80, 40, 1), np.float32)), regenerated,
                 id="mnist1d-cache-not-standardised"),
    pytest.param(bad_cache("support_train is int64", support_train=np.ones((80, 40), np.int64)), regenerated,
                 id="mnist1d-cache-support-dtype"),
    pytest.param(bad_cache("seed=1, expected 0", arg_seed=1), regenerated, id="mnist1d-cache-other-seed"),
    pytest.param(bad_cache("train_split=0.5", arg_train_split=0.5), regenerated, id="mnist1d-cache-other-split"),
    pytest.param(bad_cache("version='0.0.0'", arg_version="0.0.0"), regenerated, id="mnist1d-cache-other-version"),
    pytest.param(old_cache, regenerated, id="mnist1d-cache-without-arguments"),
    pytest.param(cache_path_is_a_directory, (ValueError, ["mnist1d_seed0_n100_split0.8.npz", "is a directory"]),
                 id="mnist1d-cache-path-is-a-directory"),
    # HMT tiles: 16-bit scaled by 65535, unsupported depths rejected
    pytest.param(tile16("png", SQUARE), square_values, id="hmt-16bit-png-ramp"),
    pytest.param(tile16("tif", SQUARE), square_values, id="hmt-16bit-tiff-ramp"),
    pytest.param(tile16("png", RAMP, size=24), ramp_values, id="hmt-16bit-png-resized-in-float"),
    pytest.param(tile16("png", np.full((20, 20), 40000, np.uint16), size=16), constant_resized,
                 id="hmt-16bit-constant-resized"),
    pytest.param(tile_unsupported(np.full((8, 8), 70000, np.int32)), (ValueError, ["deep_label_1.tif", "'I'"]),
                 id="hmt-32bit-int-tile"),
    pytest.param(tile_unsupported(np.full((8, 8), 0.5, np.float32)), (ValueError, ["deep_label_1.tif", "'F'"]),
                 id="hmt-float-tile"),
    # HMT cache: keyed on content, rebuilt when corrupt
    pytest.param(same_name_other_folder, same_as_folder("b/tiles", 16), id="hmt-cache-same-name-other-folder"),
    pytest.param(folder_gained_tiles, same_as_folder("tiles", 9), id="hmt-cache-folder-gained-tiles"),
    pytest.param(corrupt_hmt_cache(b"PK\x03\x04 truncated"), rebuilt, id="hmt-cache-corrupt-file"),
    pytest.param(corrupt_hmt_cache(None), rebuilt, id="hmt-cache-wrong-arrays"),
    # HMT: macOS archive debris skipped
    pytest.param(macos_zip, sixteen_clean_tiles, id="hmt-macos-zip"),
    pytest.param(macos_folder, macos_folder_result, id="hmt-macos-folder"),
    # HMT: stratified_split needs 1-D integer labels, every class in both splits
    pytest.param(hmt_split(np.array([0, 1, 2])), (ValueError, ["y", "classes [0, 1, 2]", "fewer than 2 members"]),
                 id="hmt-split-singleton-classes"),
    pytest.param(hmt_split(np.zeros((4, 2), int)), (ValueError, ["y", "1-D", "(4, 2)"]), id="hmt-split-2d-labels"),
    pytest.param(hmt_split(None), (TypeError, ["y", "NoneType"]), id="hmt-split-labels-none"),
    pytest.param(hmt_split(np.array([0.0, 0.0, np.nan, 1.0, 1.0])), (TypeError, ["y", "integer", "float64"]),
                 id="hmt-split-nan-labels"),
    pytest.param(hmt_split([]), (ValueError, ["y", "at least one label"]), id="hmt-split-empty"),
    pytest.param(hmt_split([0, 0, 1, 1], float("nan")), (ValueError, ["test_fraction", "finite", "nan"]),
                 id="hmt-split-fraction-nan"),
    pytest.param(hmt_split([0, 0, 1, 1], 1.0), (ValueError, ["test_fraction", "(0, 1)"]), id="hmt-split-fraction-1"),
    pytest.param(hmt_split([0, 0, 1, 1], 0.5, -1), (ValueError, ["seed", ">= 0", "-1"]), id="hmt-split-seed-negative"),
    pytest.param(hmt_split([0, 0, 1, 1], 0.5, 1.5), (TypeError, ["seed", "float 1.5"]), id="hmt-split-seed-float"),
    # HMT: one label per file
    pytest.param(labelled_tile(".", "x_label_3_label_5.png"),
                 (ValueError, ["x_label_3_label_5.png", "conflicting labels", "3 (name 'label_3')", "5"]),
                 id="hmt-two-labels-in-name"),
    pytest.param(labelled_tile("02_STROMA", "x_label_0.png"),
                 (ValueError, ["02_STROMA/x_label_0.png", "conflicting labels", "1 (folder 02_STROMA)", "0 (name"]),
                 id="hmt-folder-and-name-disagree"),
    # HMT: damaged files and wrong kinds of path name the file or the argument
    pytest.param(zip_bad_crc, (ValueError, ["crc.zip", "member '01_TUMOR/a.png'", "CRC"]), id="hmt-zip-bad-crc"),
    pytest.param(oversized_tile, (ValueError, ["huge_label_1.png", "decompression-bomb limit"]),
                 id="hmt-decompression-bomb"),
    pytest.param(lambda p: lambda: load_folder(None), (TypeError, ["path must be a path", "NoneType"]),
                 id="hmt-folder-none"),
    pytest.param(lambda p: lambda: load_zip(None), (TypeError, ["path must be a path", "NoneType"]), id="hmt-zip-none"),
    pytest.param(lambda p: lambda: load_zip(p), (ValueError, ["path", "is a folder", "load_folder"]),
                 id="hmt-zip-given-a-folder"),
    pytest.param(folder_named_zip, same_as_folder("tiles.zip", 8), id="hmt-cached-folder-named-zip"),
    pytest.param(lambda p: lambda: load_folder(p, size=8.0), (TypeError, ["size", "float 8.0"]), id="hmt-size-float"),
    pytest.param(hmt_cache_path_is_a_directory, (ValueError, ["cache file's path", ".npz", "is a directory"]),
                 id="hmt-cache-path-is-a-directory"),
    # Keras import: non-finite weights rejected
    pytest.param(keras_h5("dense", "kernel", np.nan), (ValueError, ["weights.h5", "'dense'", "'kernel'", "NaN/inf"]),
                 id="keras-nan-weight"),
    pytest.param(keras_h5("conv1d_1", "bias", -np.inf), (ValueError, ["'conv1d_1'", "'bias'", "non-finite"]),
                 id="keras-inf-weight"),
    pytest.param(keras_h5("dense", "kernel", 0.01), finite_weights, id="keras-finite-weights-load"),
    pytest.param(keras_h5("dense", "bias", "abc"), (ValueError, ["'dense'", "'bias'", "dtype |S8", "not numeric"]),
                 id="keras-string-weight"),
    pytest.param(keras_h5("dense", "kernel", 0.01, model="cnn"), (TypeError, ["model", "Module", "str 'cnn'"]),
                 id="keras-model-str"),
    pytest.param(keras_h5("dense", "kernel", 0.01, input_shape=40), (TypeError, ["input_shape", "int 40"]),
                 id="keras-input-shape-int"),
    pytest.param(lambda p: lambda: load_keras_h5(None, mnist1d_cnn(), (40, 1)),
                 (TypeError, ["path must be", "NoneType"]), id="keras-path-none"),
    # Models: num_classes an int >= 2, preset a known name
    pytest.param(lambda p: lambda: mnist1d_cnn(num_classes=0), (ValueError, ["num_classes", ">= 2", "got 0"]),
                 id="model-num-classes-zero"),
    pytest.param(lambda p: lambda: mnist1d_cnn(num_classes=-1), (ValueError, ["num_classes", "got -1"]),
                 id="model-num-classes-negative"),
    pytest.param(lambda p: lambda: mnist1d_cnn(num_classes="10"), (TypeError, ["num_classes", "str '10'"]),
                 id="model-num-classes-str"),
    pytest.param(lambda p: lambda: mnist1d_cnn(num_classes=2.5), (TypeError, ["num_classes", "float 2.5"]),
                 id="model-num-classes-float"),
    pytest.param(lambda p: lambda: vgg7(num_classes=0), (ValueError, ["num_classes", ">= 2"]),
                 id="vgg7-num-classes-zero"),
    pytest.param(lambda p: lambda: vgg7(["study"]), (TypeError, ["preset", "list ['study']"]), id="vgg7-preset-list"),
]


@pytest.mark.parametrize("make_call, expected", CASES)
def test_bad_input(tmp_path, make_call, expected):
    call = make_call(tmp_path)
    if isinstance(expected, tuple):
        exc, parts = expected
        with pytest.raises(exc) as info:
            call()
        for part in parts:
            assert part in str(info.value), f"{part!r} not in {str(info.value)!r}"
    else:
        expected(call(), tmp_path)
