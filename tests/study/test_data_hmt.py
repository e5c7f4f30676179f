import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import HMT_SAMPLE, need
from xai_jax.study.data.hmt import FOLDERS, load_cached, load_folder, load_tfds, load_zip, stratified_split

SUBDIR = "Kather_texture_2016_image_tiles_5000"


def make_tiles(root: Path, per_class: int = 2, size: int = 150) -> dict[str, tuple[int, np.ndarray]]:
    """The Kather layout: SUBDIR/01_TUMOR/*.tif ... with a distinct colour per class."""
    rng = np.random.default_rng(0)
    made = {}
    for c, folder in enumerate(FOLDERS):
        d = root / SUBDIR / folder
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            img[..., c % 3] = 30 * c
            name = f"{c}_{i}.tif"
            Image.fromarray(img).save(d / name)
            made[f"{SUBDIR}/{folder}/{name}"] = (c, img)
    return made


def zip_folder(root: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(root.rglob("*")):
            zf.write(f, f.relative_to(root))
    return path


def test_zip_and_folder_readers_agree_and_resize(tmp_path):
    made = make_tiles(tmp_path / "tiles", per_class=2, size=40)
    z = zip_folder(tmp_path / "tiles", tmp_path / "k.zip")
    a = load_zip(z, size=32)
    b = load_folder(tmp_path / "tiles", size=32)
    assert a.x.shape == (16, 32, 32, 3) and a.x.dtype == np.float32
    assert 0.0 <= a.x.min() and a.x.max() <= 1.0
    np.testing.assert_array_equal(a.y, np.repeat(np.arange(8), 2))
    np.testing.assert_allclose(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    native = load_zip(z, size=40)  # no resize: exact pixels / 255
    first = sorted(made)[0]
    np.testing.assert_allclose(native.x[0], made[first][1] / 255.0, atol=1e-6)


def test_label_in_name_png_rgba(tmp_path):
    rng = np.random.default_rng(1)
    for i, c in enumerate([0, 3, 7]):
        Image.fromarray(rng.integers(0, 256, (10, 12, 4), dtype=np.uint8), "RGBA").save(
            tmp_path / f"image_{i}_label_{c}.png")
    d = load_folder(tmp_path, size=16)
    assert d.x.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(d.y, [0, 3, 7])


def test_shared_sample_counts():
    d = load_folder(need(HMT_SAMPLE), size=224)
    assert d.x.shape == (100, 224, 224, 3)
    np.testing.assert_array_equal(np.bincount(d.y), [18, 8, 13, 12, 12, 10, 18, 9])


def test_bad_data_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no PNG/TIFF/JPEG images.*Download Kather"):
        load_folder(empty)
    with pytest.raises(FileNotFoundError, match="Download Kather_texture_2016_image_tiles_5000.zip"):
        load_folder(tmp_path / "missing")
    bad = tmp_path / "bad"
    (bad / "01_TUMOR").mkdir(parents=True)
    (bad / "01_TUMOR" / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="broken.tif.*corrupt"):
        load_folder(bad)
    mis = tmp_path / "mis"
    mis.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(mis / "image_0_label_9.png")
    with pytest.raises(ValueError, match="image_0_label_9.png.*mislabelled: label 9"):
        load_folder(mis)
    nolabel = tmp_path / "nolabel"
    nolabel.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(nolabel / "tile.png")
    with pytest.raises(ValueError, match="tile.png.*has no label"):
        load_folder(nolabel)
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as zf:
        zf.writestr("a.tif", b"x")
    with pytest.raises(ValueError, match="flat.zip.*wrong layout"):
        load_zip(flat)
    notzip = tmp_path / "not.zip"
    notzip.write_bytes(b"plain text")
    with pytest.raises(ValueError, match="not.zip.*not a readable zip"):
        load_zip(notzip)


def test_cache_is_written_whole_or_not_at_all(tmp_path):
    make_tiles(tmp_path / "tiles", per_class=1, size=20)
    cache = tmp_path / "cache"
    first = load_cached(tmp_path / "tiles", size=16, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    again = load_cached(tmp_path / "tiles", size=16, cache_dir=cache)
    np.testing.assert_array_equal(first.x, again.x)
    (tmp_path / "tiles2" / "01_TUMOR").mkdir(parents=True)
    (tmp_path / "tiles2" / "01_TUMOR" / "x.tif").write_bytes(b"corrupt")
    cache2 = tmp_path / "cache2"
    with pytest.raises(ValueError, match="x.tif"):
        load_cached(tmp_path / "tiles2", size=16, cache_dir=cache2)
    assert list(cache2.iterdir()) == []


def test_stratified_split_deterministic_and_proportional():
    y = np.repeat(np.arange(8), 625)
    tr, te = stratified_split(y, 0.1, seed=3)
    tr2, te2 = stratified_split(y, 0.1, seed=3)
    np.testing.assert_array_equal(te, te2)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(y)
    np.testing.assert_array_equal(np.bincount(y[te]), [62] * 8)  # round(62.5) -> 62 per class
    assert not np.array_equal(te, stratified_split(y, 0.1, seed=4)[1])


def test_tfds_path_from_a_local_zip(tmp_path):
    pytest.importorskip("tensorflow", reason="the tfds path needs the optional extra (pip install -e .[tfds])")
    made = make_tiles(tmp_path / "tiles", per_class=2, size=150)
    z = zip_folder(tmp_path / "tiles", tmp_path / "Kather_texture_2016_image_tiles_5000.zip")
    with pytest.raises(FileNotFoundError, match="no prepared colorectal_histology"):
        load_tfds(tmp_path / "tfds_empty", size=150)
    via_tfds = load_tfds(tmp_path / "tfds", size=150, zip_path=z)
    direct = load_zip(z, size=150)
    assert len(via_tfds.y) == len(made) == 16
    order = np.argsort([Path(f).name for f in direct.files])
    np.testing.assert_array_equal(via_tfds.y, direct.y[order])
    np.testing.assert_allclose(via_tfds.x, direct.x[order], atol=1e-6)
    again = load_tfds(tmp_path / "tfds", size=150)  # prepared: no zip needed now
    np.testing.assert_array_equal(again.y, via_tfds.y)


def test_stratified_split_puts_every_class_in_both_splits():
    """n_test per class is clipped to [1, n_c - 1], so a class of 2 lands in both splits at any fraction."""
    y = np.array([0, 0, 1, 1, 1, 2, 2])
    for fraction in (0.01, 0.5, 0.99):
        tr, te = stratified_split(y, fraction, seed=1)
        assert set(y[tr].tolist()) == set(y[te].tolist()) == {0, 1, 2}, fraction
        assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(y)
    np.testing.assert_array_equal(stratified_split(np.asarray(y, np.uint8), 0.5, np.int64(1))[1],
                                  stratified_split(y, 0.5, 1)[1])


def test_labels_from_folder_and_name_may_agree(tmp_path):
    (tmp_path / "02_STROMA").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "02_STROMA" / "x_label_1_label_1.png")
    np.testing.assert_array_equal(load_folder(tmp_path, size=8).y, [1])


LAYOUT_PROBLEMS = [  # (id, make(root): the problem, words both readers' errors hold)
    ("misspelt class folder", lambda root: (root / SUBDIR / "01_TUMOR").rename(root / SUBDIR / "01_TUMOUR"),
     ["has no label: its folder '01_TUMOUR' is not one of the class folders (misspelt?)", "01_TUMOR ... 08_EMPTY"]),
    ("loose image", lambda root: Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / SUBDIR / "loose.tif"),
     ["loose.tif' has no label (a loose image, outside the class folders)"]),
    ("no class folders", lambda root: [(d.rename(root / SUBDIR / f"x{i}")) for i, d in
                                       enumerate(sorted((root / SUBDIR).iterdir()))],
     ["is in the wrong layout: expected class folders 01_TUMOR", "found 16 images in none of them"]),
]


@pytest.mark.parametrize("make, words", [p[1:] for p in LAYOUT_PROBLEMS], ids=[p[0] for p in LAYOUT_PROBLEMS])
def test_folder_and_zip_readers_reject_the_same_layouts(tmp_path, make, words):
    """Issue 21: load_zip used to drop an image in a misspelt class folder, or a loose one,
    that load_folder rejects; both now say the same thing."""
    make_tiles(tmp_path / "tiles", per_class=2, size=40)
    make(tmp_path / "tiles")
    z = zip_folder(tmp_path / "tiles", tmp_path / "k.zip")
    for read, source in ((load_folder, tmp_path / "tiles"), (load_zip, z)):
        with pytest.raises(ValueError) as info:
            read(source, size=16)
        for w in words:
            assert w in str(info.value), (read.__name__, str(info.value))
