"""MNIST-1D (Greydanus 2020), generated offline, with ground-truth digit supports.

The signals come from the `mnist1d` package's own generator (`make_dataset`) with its
default arguments (seed 42: 4,000 train / 1,000 test signals of 40 samples). Nothing is
downloaded.

Ground truth. The generator pads a 12-sample template with p zeros, stretches it to 72
samples, scales it, rolls it by k, fills everything that is exactly zero (the padding)
with correlated noise, adds iid noise and a linear shear, and resamples to 40 samples.
Alongside it we replay the same steps with the same random draws (same seed, same order
of `np.random` calls) on an indicator of the generator's own "digit" region
(`new_x != 0` after the roll, which is what the generator uses to decide where noise
goes) and resample that indicator to 40 samples. Two supports follow from it
(`load_mnist1d(support=...)`):
- "majority" (default): positions where more than half of the resampled indicator comes
  from the template (> 0.5);
- "any": positions with any template contribution (> 0), a superset of "majority" (larger
  by one or two edge positions in 2,195 of the 5,000 default signals).
The replay is checked against the package's signals sample by sample, so the draws cannot
drift.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_CACHE = Path(__file__).resolve().parents[3] / "data"


@dataclass(frozen=True)
class MNIST1D:
    """x_*: (N, 40, 1) float32; y_*: (N,) int32; support_*: (N, 40) bool (digit support of
    the kind `load_mnist1d(support=...)` chose)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    support_train: np.ndarray
    support_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return 10


def _args(seed: int, num_samples: int, train_split: float):
    from mnist1d.data import get_dataset_args

    args = get_dataset_args()
    args.seed = int(seed)
    args.num_samples = int(num_samples)
    args.train_split = float(train_split)
    return args


SUPPORTS = ("majority", "any")
CACHE_FORMAT = 2  # 2: both support kinds stored; older caches are rebuilt


def _replay_supports(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replays mnist1d.make_dataset's random draws; returns (signals pre-normalisation,
    "majority" supports, "any" supports)."""
    from mnist1d.data import get_templates
    from mnist1d.transform import corr_noise_like, iid_noise_like, interpolate, shear
    from mnist1d.utils import set_seed

    templates = get_templates()
    set_seed(args.seed)
    xs, masks, anys = [], [], []
    per_class = args.num_samples // len(templates["y"])
    long_len = args.template_len + args.padding[-1]
    for label in range(len(templates["y"])):
        for _ in range(per_class):
            x = templates["x"][label] + 1e-8  # the generator's eps
            low, high = args.padding
            p = low + int(np.random.rand() * (high - low + 1))
            x = np.concatenate([x, np.zeros(p)])
            x = interpolate(x, long_len)
            x = x * (1 + args.scale_coeff * (np.random.rand() - 0.5))
            k = np.random.choice(args.max_translation)
            x = np.concatenate([x[-k:], x[:-k]])
            region = x != 0
            x = region * x + (1 - region) * corr_noise_like(x, args.corr_noise_scale)
            x = x + iid_noise_like(x, args.iid_noise_scale)
            x = shear(x, args.shear_scale)
            xs.append(interpolate(x, args.final_seq_length))
            share = interpolate(region.astype(np.float64), args.final_seq_length)
            masks.append(share > 0.5)
            anys.append(share > 0.0)
    perm = np.random.permutation(len(xs))
    return np.stack(xs)[perm], np.stack(masks)[perm], np.stack(anys)[perm]


def _generate(seed: int, num_samples: int, train_split: float) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset

    args = _args(seed, num_samples, train_split)
    data = make_dataset(args)
    raw, support, support_any = _replay_supports(args)
    raw = (raw - raw.mean()) / raw.std()
    x_all = np.concatenate([data["x"], data["x_test"]])
    if not np.allclose(raw, x_all, atol=1e-6):
        raise RuntimeError(
            "the ground-truth replay drifted from mnist1d.make_dataset; the installed mnist1d "
            "version differs from the pinned one (requirements.txt)"
        )
    split = len(data["y"])
    return {
        "x_train": data["x"][..., None].astype(np.float32),
        "y_train": data["y"].astype(np.int32),
        "x_test": data["x_test"][..., None].astype(np.float32),
        "y_test": data["y_test"].astype(np.int32),
        "support_train": support[:split],
        "support_test": support[split:],
        "support_any_train": support_any[:split],
        "support_any_test": support_any[split:],
    }


def _prepare_cache_dir(cache_dir: str | os.PathLike) -> Path:
    path = Path(cache_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cache_dir {str(path)!r} cannot be created: {e}") from e
    if not os.access(path, os.W_OK):
        raise ValueError(f"cache_dir {str(path)!r} is not writable")
    return path


def _generator_version() -> str:
    from importlib.metadata import version

    return version("mnist1d")


def _validate_args(seed, num_samples, train_split) -> tuple[int, int, float, int]:
    """Checks the generator arguments; returns (seed, num_samples, train_split, n_train)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must lie in [0, 2**32) (numpy's seed range), got {seed!r}")
    if not isinstance(num_samples, (int, np.integer)) or isinstance(num_samples, bool):
        raise TypeError(f"num_samples must be an int, got {type(num_samples).__name__} {num_samples!r}")
    if num_samples < 10 or num_samples % 10:
        # the generator makes num_samples // 10 signals per class and silently drops the rest
        raise ValueError(f"num_samples must be a multiple of 10 (one share per class) and >= 10, got {num_samples!r}")
    if not isinstance(train_split, (float, int, np.floating, np.integer)) or isinstance(train_split, bool):
        raise TypeError(f"train_split must be a float, got {type(train_split).__name__} {train_split!r}")
    if not (np.isfinite(train_split) and 0.0 < train_split < 1.0):
        raise ValueError(f"train_split must be finite and lie in (0, 1), got {train_split!r}")
    seed, num_samples, train_split = int(seed), int(num_samples), float(train_split)
    n_train = int(num_samples * train_split)  # exactly as mnist1d.make_dataset splits
    if not 0 < n_train < num_samples:
        raise ValueError(f"train_split {train_split!r} with num_samples {num_samples} leaves an empty split "
                         f"(n_train={n_train}, n_test={num_samples - n_train}); expected both >= 1")
    return seed, num_samples, train_split, n_train


def _cache_problem(z, seed: int, num_samples: int, train_split: float, n_train: int) -> str | None:
    """Why the opened cache `z` cannot stand for these arguments, or None when it can."""
    names = set(z.files)
    stored = {"seed": seed, "num_samples": num_samples, "train_split": train_split, "version": _generator_version(),
              "format": CACHE_FORMAT}
    for key, want in stored.items():
        if f"arg_{key}" not in names:
            return f"it does not record the generator's {key} (an old cache)"
        got = z[f"arg_{key}"].item()
        if got != want:
            return f"it was made with {key}={got!r}, expected {want!r}"
    n_test = num_samples - n_train
    shapes = {"x_train": ((n_train, 40, 1), np.float32), "x_test": ((n_test, 40, 1), np.float32),
              "y_train": ((n_train,), np.int32), "y_test": ((n_test,), np.int32),
              "support_train": ((n_train, 40), np.bool_), "support_test": ((n_test, 40), np.bool_),
              "support_any_train": ((n_train, 40), np.bool_), "support_any_test": ((n_test, 40), np.bool_)}
    for key, (shape, dtype) in shapes.items():
        if key not in names:
            return f"it has no array {key!r}"
        a = z[key]
        if a.shape != shape or a.dtype != dtype:
            return f"{key} is {a.dtype}{list(a.shape)}, expected {np.dtype(dtype)}{list(shape)}"
    x = np.concatenate([z["x_train"], z["x_test"]])
    if not np.isfinite(x).all():
        return "the signals hold NaN or inf"
    if abs(x.mean()) > 1e-3 or abs(x.std() - 1) > 1e-3:  # the generator standardises the whole set
        return f"the signals have mean {x.mean():.3g} and std {x.std():.3g}, expected 0 and 1"
    y = np.concatenate([z["y_train"], z["y_test"]])
    if y.min() < 0 or y.max() >= 10:
        return f"labels span {y.min()}..{y.max()}, expected 0..9"
    if (z["support_train"] & ~z["support_any_train"]).any() or (z["support_test"] & ~z["support_any_test"]).any():
        return "the 'any' supports do not contain the 'majority' ones"
    return None


def _pick(arrays: dict, support: str) -> MNIST1D:
    fields = {k: arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    prefix = "support_any_" if support == "any" else "support_"
    return MNIST1D(**fields, support_train=arrays[prefix + "train"], support_test=arrays[prefix + "test"])


def load_mnist1d(
    seed: int = 42,
    num_samples: int = 5000,
    train_split: float = 0.8,
    cache_dir: str | os.PathLike | None = DEFAULT_CACHE,
    regenerate: bool = False,
    support: str = "majority",
) -> MNIST1D:
    """Loads (generating and caching on first use) MNIST-1D.

    seed (int in [0, 2**32)) / num_samples (multiple of 10) / train_split (in (0, 1)): the
    generator's arguments (defaults: the package's, i.e. the study's data set); the train
    set holds int(num_samples * train_split) signals, as in mnist1d. cache_dir=None disables
    the cache. The cache records these arguments and the mnist1d version; a cache that is
    unreadable, made otherwise, or whose arrays have the wrong shape, dtype, values or labels
    is regenerated with a warning saying why. Same seed, same data.
    support: "majority" (default; > half of a position comes from the digit's template) or
    "any" (any template contribution); see the module docstring.
    """
    seed, num_samples, train_split, n_train = _validate_args(seed, num_samples, train_split)
    if not isinstance(support, str) or support not in SUPPORTS:
        raise ValueError(f"support must be one of {SUPPORTS}, got {support!r}")
    if cache_dir is None:
        return _pick(_generate(seed, num_samples, train_split), support)
    path = _prepare_cache_dir(cache_dir)
    file = path / f"mnist1d_seed{seed}_n{num_samples}_split{train_split!r}.npz"
    if file.is_dir():
        raise ValueError(f"the cache file's path {str(file)!r} is a directory; remove it or pass another cache_dir")
    if file.exists() and not regenerate:
        try:
            with np.load(file) as z:
                problem = _cache_problem(z, seed, num_samples, train_split, n_train)
                if problem is None:
                    return _pick({k: z[k] for k in z.files}, support)
        except Exception as e:  # corrupt cache: say so, then rebuild it
            problem = f"unreadable ({type(e).__name__}: {e})"
        warnings.warn(f"[mnist1d] cache file {file} is stale: {problem}; regenerating", stacklevel=2)
    arrays = _generate(seed, num_samples, train_split)
    meta = {"arg_seed": seed, "arg_num_samples": num_samples, "arg_train_split": train_split,
            "arg_version": _generator_version(), "arg_format": CACHE_FORMAT}
    # Write atomically so that an interrupted run never leaves half a cache file.
    fd, tmp = tempfile.mkstemp(dir=path, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays, **{k: np.asarray(v) for k, v in meta.items()})
        os.replace(tmp, file)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return _pick(arrays, support)
