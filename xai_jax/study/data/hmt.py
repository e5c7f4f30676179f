"""HMT: Kather et al. 2016 colorectal histology tiles (tfds name `colorectal_histology`).

Cite: Kather JN et al., "Multi-class texture analysis in colorectal cancer histology",
Scientific Reports 6, 27988 (2016); data: Zenodo record 53169 (CC BY 4.0).

Readers (none downloads anything):
- `load_zip(path)`: the original `Kather_texture_2016_image_tiles_5000.zip` (class folders
  01_TUMOR ... 08_EMPTY of 150x150 .tif), read with PIL; no TensorFlow needed.
- `load_folder(path)`: the same class folders unpacked, or flat files whose names hold the
  label (`..._label_<c>.png`), PNG or TIFF, RGB or RGBA, 8- or 16-bit, any size.
- `load_tfds(data_dir)`: an already-prepared tensorflow-datasets data dir (optional extra).
Every reader resizes to `size` x `size` (bilinear), scales to [0, 1] float32 (8-bit / 255,
16-bit / 65535), skips macOS debris (`__MACOSX/`, `._name`) and returns labels in the tfds
order below. `stratified_split` makes a deterministic split by seed.

Bad input raises TypeError/ValueError naming the argument or the file: a path that is not a
str/PathLike, a zip passed as a folder or a folder as a zip, a corrupt image or zip member, an
image over PIL's decompression-bomb limit, a file whose folder and name give different labels.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xai_jax.checks import check_float, check_int

CLASSES = ("tumor", "stroma", "complex", "lympho", "debris", "mucosa", "adipose", "empty")
FOLDERS = tuple(f"{i + 1:02d}_{c.upper()}" for i, c in enumerate(CLASSES))
ZIP_NAME = "Kather_texture_2016_image_tiles_5000.zip"
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
HOW_TO_GET = (
    f"Download {ZIP_NAME} from Zenodo record 53169 (https://zenodo.org/record/53169) on a "
    f"machine with internet access and pass its path (or put it in data/hmt/{ZIP_NAME})."
)
_CACHE_FORMAT = 2  # bump when the decoding changes, so that old cache files are not reused
_LABEL_IN_NAME = re.compile(r"label_(\d+)")


@dataclass(frozen=True)
class HMTData:
    """x: (N, size, size, 3) float32 in [0, 1]; y: (N,) int32; files: source of each tile."""

    x: np.ndarray
    y: np.ndarray
    files: tuple[str, ...]


def _bits(im) -> int | None:
    """Bits per sample of a decoded PIL image: 8, 16, or None for anything else (32-bit, float)."""
    from PIL import ImageMode

    if ImageMode.getmode(im.mode).typestr[-2:] in ("u1", "b1"):
        return 8
    if im.mode.startswith("I;16") and im.mode[4:] in ("", "B", "L", "N"):
        return 16
    if im.mode == "I":  # older Pillow opens 16-bit grayscale PNG/TIFF as 32-bit "I"
        tiff_bits = getattr(im, "tag_v2", {}).get(258)
        if im.format == "PNG" or tiff_bits in (16, (16,)):
            return 16
    return None


def _decode(data: bytes | Path, name: str, size: int) -> np.ndarray:
    """(size, size, 3) float32 in [0, 1]: 8-bit images / 255, 16-bit ones / 65535 (grayscale
    replicated to three channels); bilinear resize (16-bit: in float, per channel)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            im.load()
            mode, bits = im.mode, _bits(im)
            if bits == 8:
                rgb = im.convert("RGB")
                if rgb.size != (size, size):
                    rgb = rgb.resize((size, size), Image.BILINEAR)
                return np.asarray(rgb, np.float32) / 255.0
            if bits == 16:
                gray = Image.fromarray(np.asarray(im, np.float32) / 65535.0)  # mode "F"
                if gray.size != (size, size):
                    gray = gray.resize((size, size), Image.BILINEAR)
                return np.repeat(np.asarray(gray, np.float32)[..., None], 3, axis=-1)
    except Image.DecompressionBombError as e:
        raise ValueError(f"image {name!r} is too large to decode safely (over PIL's decompression-bomb limit, "
                         f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}): {e}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"image {name!r} is corrupt or not an image: {e}") from e
    raise ValueError(f"image {name!r} has PIL mode {mode!r}, which has no defined [0, 1] scale; "
                     f"expected 8-bit (L, LA, P, RGB, RGBA) or 16-bit grayscale (I;16) PNG/TIFF/JPEG")


def _skipped(rel: str) -> bool:
    """macOS archive debris: anything under __MACOSX/ and AppleDouble `._name` files."""
    parts = Path(rel).parts
    return "__MACOSX" in parts or parts[-1].startswith("._")


def _label_from_path(rel: str, name: str) -> int | None:
    """Label from a class folder (01_TUMOR ...) or a `label_<c>` file name; None if neither.
    ValueError naming the file (`name`) when these give more than one label."""
    parts = Path(rel).parts
    found = [(FOLDERS.index(p.upper()), f"folder {p}") for p in parts[:-1] if p.upper() in FOLDERS]
    found += [(int(c), f"name 'label_{c}'") for c in _LABEL_IN_NAME.findall(parts[-1])]
    if len({c for c, _ in found}) > 1:
        raise ValueError(f"file {name!r} has conflicting labels: {', '.join(f'{c} ({src})' for c, src in found)}; "
                         f"expected one label, from its class folder or from its name")
    return found[0][0] if found else None


def _check_label(label: int | None, name: str, rel: str | None = None) -> int:
    if label is None:
        folders = Path(rel if rel is not None else name).parts[:-1]
        near = [f for f in folders if re.match(r"^\d\d_", f)]  # a class folder's form, another name
        why = (f": its folder {near[-1]!r} is not one of the class folders (misspelt?)" if near
               else " (a loose image, outside the class folders)")
        raise ValueError(
            f"file {name!r} has no label{why}: put it in a class folder {FOLDERS[0]} ... {FOLDERS[-1]} "
            f"or name it '..._label_<c>.png' with c in 0..{len(CLASSES) - 1}"
        )
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"file {name!r} is mislabelled: label {label} not in 0..{len(CLASSES) - 1}")
    return label


def _validate_size(size: Any) -> int:
    """An int >= 8 (TypeError for other kinds, e.g. 8.0)."""
    return check_int(size, "size", 8)


def _check_path(path: Any, name: str = "path") -> Path:
    """A str or os.PathLike, as a Path (TypeError naming `name` otherwise)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__} {path!r:.80}")
    return Path(path)


def _folder_images(root: Path) -> list[Path]:
    """The image files under `root`, sorted, without macOS debris (see _skipped)."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not _skipped(str(p.relative_to(root))))


def load_folder(path: str | os.PathLike, size: int = 224) -> HMTData:
    """Reads every image under `path` (class folders or `label_<c>` names), sorted by path;
    skips macOS debris (`__MACOSX/`, `._name`). FileNotFoundError if path is missing; ValueError
    if it is a file (use load_zip for the zip) or any image is unlabelled, mislabelled or corrupt."""
    size = _validate_size(size)
    root = _check_path(path)
    if root.exists() and not root.is_dir():
        raise ValueError(f"path {str(root)!r} is a file, not a folder of tiles; for the Kather zip use load_zip "
                         f"(or load_cached)")
    if not root.is_dir():
        raise FileNotFoundError(f"path {str(root)!r} is not a folder. {HOW_TO_GET}")
    files = _folder_images(root)
    if not files:
        raise ValueError(f"path {str(root)!r} holds no PNG/TIFF/JPEG images. {HOW_TO_GET}")
    labels = _labels([(str(p.relative_to(root)), str(p)) for p in files], f"folder {str(root)!r}")
    x = np.stack([_decode(p, str(p), size) for p in files])
    return HMTData(x, np.asarray(labels, np.int32), tuple(map(str, files)))


def load_zip(path: str | os.PathLike, size: int = 224) -> HMTData:
    """Reads the Kather 2016 zip (class folders of .tif inside) without unpacking it; skips
    macOS debris (`__MACOSX/`, `._name`). FileNotFoundError if path is missing; ValueError if
    it is a folder (use load_folder), not a zip, or a member is corrupt (naming the member),
    and, as load_folder, if any image is unlabelled (a misspelt class folder, a loose image)
    or mislabelled."""
    size = _validate_size(size)
    path = _check_path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder, not a zip; for unpacked tiles use load_folder "
                         f"(or load_cached)")
    if not path.is_file():
        raise FileNotFoundError(f"path {str(path)!r} does not exist. {HOW_TO_GET}")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ValueError(f"zip {str(path)!r} is not a readable zip archive: {e}") from e
    with zf:
        names = sorted(n for n in zf.namelist() if Path(n).suffix.lower() in IMAGE_SUFFIXES and not _skipped(n))
        if not names:
            raise ValueError(f"zip {str(path)!r} holds no PNG/TIFF/JPEG images. {HOW_TO_GET}")
        labels = _labels([(n, f"{path}:{n}") for n in names], f"zip {str(path)!r}")
        x = np.stack([_decode(_read_member(zf, path, n), f"{path}:{n}", size) for n in names])
    return HMTData(x, np.asarray(labels, np.int32), tuple(names))


def _labels(images: list[tuple[str, str]], where: str) -> list[int]:
    """The label of every (relative path, display name); both readers use it, so a folder and
    the zip of it are read alike. No image labelled: the wrong layout; otherwise every image
    must have a label (an unlabelled one, e.g. in a misspelt class folder, is a ValueError
    naming it, never silently dropped)."""
    found = [_label_from_path(rel, name) for rel, name in images]
    if all(c is None for c in found):
        raise ValueError(f"{where} is in the wrong layout: expected class folders {', '.join(FOLDERS)} holding the "
                         f"tiles (or '..._label_<c>' file names), found {len(images)} images in none of them "
                         f"(file {images[0][1]!r} has no label)")
    return [_check_label(c, name, rel) for (rel, name), c in zip(images, found)]


def _read_member(zf: zipfile.ZipFile, path: Path, member: str) -> bytes:
    """The bytes of one zip member; ValueError naming the zip and the member when it is damaged."""
    try:
        return zf.read(member)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
        raise ValueError(f"zip {str(path)!r} member {member!r} is corrupt or unreadable "
                         f"({type(e).__name__}: {e})") from e


def _local_builder(zip_path: str | os.PathLike | None, data_dir: str | os.PathLike):
    """tfds's colorectal_histology builder, whose split generator extracts a local zip
    instead of downloading one (tfds's own download path is never reached)."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.image_classification.colorectal_histology import ColorectalHistology

    class LocalColorectalHistology(ColorectalHistology, skip_registration=True):
        name = "colorectal_histology"

        def _split_generators(self, dl_manager):
            if zip_path is None:
                raise FileNotFoundError(f"data_dir {str(data_dir)!r} holds no prepared colorectal_histology "
                                        f"and no zip_path was given. {HOW_TO_GET}")
            folder = dl_manager.extract(str(zip_path))
            return [tfds.core.SplitGenerator(name=tfds.Split.TRAIN, gen_kwargs={"root_dir": folder})]

    return LocalColorectalHistology(data_dir=str(data_dir))


def load_tfds(data_dir: str | os.PathLike, size: int = 224, zip_path: str | os.PathLike | None = None,
              split: str = "train") -> HMTData:
    """HMT through tensorflow-datasets' `colorectal_histology` (needs the `tfds` extra).

    Reads an already-prepared tfds data dir, or prepares one from the user's downloaded
    `zip_path` (tfds's manual route: extraction and generation run locally, with
    TensorFlow). Never downloads: without prepared data and without a zip it says what
    to fetch instead of letting tfds try the network (which retries for minutes offline).
    """
    size = _validate_size(size)
    _check_path(data_dir, "data_dir")
    if zip_path is not None:
        _check_path(zip_path, "zip_path")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError("load_tfds needs the optional extra: pip install -e .[tfds]") from e
    builder = _local_builder(zip_path, data_dir)
    if not builder.is_prepared():
        if zip_path is None:
            raise FileNotFoundError(f"data_dir {str(data_dir)!r} holds no prepared colorectal_histology. "
                                    f"{HOW_TO_GET}")
        if not Path(zip_path).is_file():
            raise FileNotFoundError(f"zip_path {str(zip_path)!r} does not exist. {HOW_TO_GET}")
        try:
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
        except Exception as e:
            raise ValueError(f"zip {str(zip_path)!r} could not be prepared by tfds (expected the Kather layout "
                             f"{FOLDERS[0]} ... {FOLDERS[-1]} inside {Path(ZIP_NAME).stem}/): "
                             f"{type(e).__name__}: {str(e)[:300]}") from e
    ds = tfds.as_numpy(builder.as_dataset(split=split))
    xs, ys, names = [], [], []
    for ex in ds:
        name = ex["filename"].decode() if isinstance(ex["filename"], bytes) else str(ex["filename"])
        xs.append(_decode(_png_bytes(ex["image"]), f"{data_dir}:{name}", size))
        ys.append(int(ex["label"]))
        names.append(name)
    order = np.argsort(names, kind="stable")
    return HMTData(np.stack(xs)[order], np.asarray(ys, np.int32)[order], tuple(np.asarray(names)[order]))


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _content_key(source: Path) -> str:
    """Short sha256 of what `source` holds: resolved path plus, for a folder, every image's
    relative path, size and mtime; for a file, its size and mtime."""
    if not source.exists():
        raise FileNotFoundError(f"source {str(source)!r} does not exist. {HOW_TO_GET}")
    root = source.resolve()
    entries = [root] if root.is_file() else _folder_images(root)
    h = hashlib.sha256(f"{_CACHE_FORMAT}\n{root}\n".encode())
    for p in entries:
        st = p.stat()
        h.update(f"{p.relative_to(root) if p != root else ''}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _read_cache(file: Path, size: int) -> HMTData:
    """The cached tiles; ValueError when the file's arrays are not what load_* returns."""
    with np.load(file) as z:
        x, y, files = z["x"], z["y"], tuple(str(f) for f in z["files"])
    n = len(y)
    if x.shape != (n, size, size, 3) or x.dtype != np.float32 or y.dtype != np.int32 or len(files) != n:
        raise ValueError(f"arrays x {x.dtype}{list(x.shape)}, y {y.dtype}{list(y.shape)}, {len(files)} files; "
                         f"expected x float32[n, {size}, {size}, 3], y int32[n], n files")
    if n == 0 or not (np.isfinite(x).all() and 0 <= x.min() and x.max() <= 1) or y.min() < 0 or y.max() >= 8:
        raise ValueError("tile values outside [0, 1] or labels outside 0..7")
    return HMTData(x, y, files)


def load_cached(source: str | os.PathLike, size: int = 224, cache_dir: str | os.PathLike | None = None) -> HMTData:
    """load_folder for a folder (whatever its name, `x.zip` too), load_zip for a file; cached
    as .npz under cache_dir (atomic).

    The cache file name holds a hash of the source's content (see _content_key) and `size`,
    so another folder of the same name, or one that gained, lost or changed tiles, is read
    afresh. A cache file that cannot be read or holds wrong arrays is rebuilt, with a warning;
    a directory in the cache file's place is a ValueError naming it.
    """
    size = _validate_size(size)
    source = _check_path(source, "source")
    is_zip = source.is_file() or (not source.exists() and source.suffix.lower() == ".zip")
    reader = load_zip if is_zip else load_folder  # by kind: a folder named x.zip is a folder
    if cache_dir is None:
        return reader(source, size)
    cache = _check_path(cache_dir, "cache_dir")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cache_dir {str(cache)!r} cannot be created: {e}") from e
    file = cache / f"hmt_{source.stem}_{_content_key(source)}_{size}.npz"
    if file.is_dir():
        raise ValueError(f"the cache file's path {str(file)!r} is a directory; remove it or pass another cache_dir")
    if file.exists():
        try:
            return _read_cache(file, size)
        except Exception as e:  # corrupt or foreign cache file: say so, then rebuild it
            warnings.warn(f"[hmt] cache file {file} unreadable ({type(e).__name__}: {e}); rebuilding", stacklevel=2)
    data = reader(source, size)  # any error is raised before anything is written
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, x=data.x, y=data.y, files=np.asarray(data.files))
        os.replace(tmp, file)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return data


def stratified_split(y: Any, test_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with each class split in the same proportion; same seed, same split.

    y: 1-D integer labels, non-empty, every class with at least 2 members (one in each split);
    each class puts round(n_c * test_fraction) of its n_c members in test, clipped to [1, n_c - 1].
    test_fraction: finite, in (0, 1); seed: int >= 0. TypeError/ValueError naming the argument
    (and the classes with too few members) otherwise.
    """
    if y is None or isinstance(y, (str, bytes)):
        raise TypeError(f"y must be 1-D integer labels, got {type(y).__name__}")
    try:
        y = np.asarray(y)
    except (ValueError, TypeError) as e:
        raise TypeError(f"y must be 1-D integer labels, got a ragged {type(y).__name__}: {e}") from e
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D integer labels (N,), got shape {y.shape}")
    if y.size == 0:
        raise ValueError("y must hold at least one label, got an empty array")
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must be integer labels, got dtype {y.dtype}")
    test_fraction = check_float(test_fraction, "test_fraction", low=0.0, high=1.0, low_open=True, high_open=True)
    seed = check_int(seed, "seed", 0)
    classes, counts = np.unique(y, return_counts=True)
    few = classes[counts < 2]
    if few.size:
        raise ValueError(f"y: class{'es' if few.size > 1 else ''} {few.tolist()} ha{'ve' if few.size > 1 else 's'} "
                         f"fewer than 2 members; a class with one tile cannot be in both the train and the test split")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in classes:
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = min(len(idx) - 1, max(1, int(round(len(idx) * test_fraction))))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
