"""Attribution maps drawn over images and 1-D signals, and grids of methods x inputs.

    import xai_jax.viz as viz
    viz.image(x, saliency_map, sign="all", target=3, prediction=3, path="ig.png")
    viz.grid(xs, {"Grad-CAM": cams, "IG": igs}, labels=ys, predictions=preds, path="grid.png")

Every drawing function returns its matplotlib Figure and saves it when given `path=`
(matplotlib is imported on first use; Agg is selected unless pyplot was imported already).

Rules, the same in every function (Captum's `visualize_image_attr` conventions):
- Inputs: an image (H, W) or 3-D with its channels at `channel_axis` (1 channel: drawn gray,
  3: RGB); a signal (L,) or (L, C). Inputs are shown min-max scaled (values are never clipped).
- Maps of the input's shape are reduced to the spatial shape by summing over the channel axis
  (sum of |a| for sign "absolute_value"); 2-D maps of another size than the image (a 14x14
  CAM on a 224x224 image) are resized bilinearly (half-pixel centres); 1-D maps likewise.
- sign: "all" keeps the signed map on a diverging scale centred at 0 (zero = the colour
  map's neutral middle); "positive" shows max(a, 0), "negative" max(-a, 0) (the magnitude of
  the negative part), "absolute_value" |a|, each on a scale from 0.
- outlier_perc: the scale's limit is the smallest |value| at which the cumulative sum of the
  sorted |values| reaches (100 - outlier_perc)% of their total (Captum's rule); larger values
  saturate the colour map. `vmax=` sets the limit directly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

VIZ_EXTRA = 'pip install "xai_jax[viz]"'
METHODS = ("heat_map", "blended_heat_map", "masked_image", "alpha_scaling", "original_image")
SIGNS = ("positive", "negative", "absolute_value", "all")
SCALES = ("column", "row", "cell")
CMAPS = {"all": "RdBu_r", "positive": "Reds", "negative": "Blues", "absolute_value": "inferno"}
LINE = "0.15"  # a signal's line: dark and neutral, so it stays visible where the map is ~0


def _pyplot():
    """matplotlib.pyplot, imported on first use so that the library runs without matplotlib.
    Selects the non-interactive Agg backend unless the caller imported pyplot already."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(f"xai_jax.viz needs matplotlib: {VIZ_EXTRA}") from e
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | os.PathLike | None):
    """Saves fig to path (when given; then closes it) and returns it."""
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        _pyplot().close(fig)
    return fig


# ---------------------------------------------------------------- checks and preparation
def _choice(value, name: str, choices: tuple) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _number(value, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _array(a, name: str) -> np.ndarray:
    try:
        out = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a numeric array, got {type(a).__name__}") from e
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or inf values (shape {out.shape})")
    return out


def _axis(channel_axis, ndim: int, shape: tuple) -> int:
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)) \
            or not -ndim <= channel_axis < ndim:
        raise ValueError(f"channel_axis={channel_axis!r} is out of range for an input of shape {shape}")
    return int(channel_axis) % ndim


def _rescale(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _image(image, channel_axis: int, name: str = "image") -> np.ndarray:
    """(H, W) gray or (H, W, 3) RGB in [0, 1], min-max scaled over all channels together."""
    x = _array(image, name)
    if x.ndim == 3:
        x = np.moveaxis(x, _axis(channel_axis, 3, x.shape), -1)
        if x.shape[-1] not in (1, 3):
            first = "channel_axis=1 for a (N, C, H, W) batch" if name.startswith("inputs") else "channel_axis=0"
            hint = f" (channels first? pass {first})" if np.shape(image)[0] in (1, 3) else ""
            raise ValueError(f"{name}: the channel axis (channel_axis={channel_axis}) of shape {np.shape(image)} "
                             f"has {x.shape[-1]} entries; expected 1 (grayscale) or 3 (RGB){hint}")
        x = x[..., 0] if x.shape[-1] == 1 else x
    elif x.ndim != 2:
        raise ValueError(f"{name} must be (H, W) or (H, W, C) with channels at channel_axis, got shape {x.shape}")
    return _rescale(x)


def _resize(m: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear interpolation along each axis to `shape` (half-pixel centres, edges clamped)."""
    for axis, n in enumerate(shape):
        src = m.shape[axis]
        if src == n:
            continue
        pos = np.clip((np.arange(n) + 0.5) * src / n - 0.5, 0, src - 1)
        i0 = np.floor(pos).astype(int)
        w = (pos - i0).reshape([n if k == axis else 1 for k in range(m.ndim)])
        m = np.take(m, i0, axis) * (1 - w) + np.take(m, np.minimum(i0 + 1, src - 1), axis) * w
    return m


def _map(attribution, raw_shape: tuple, spatial: tuple, channel_axis: int, sign: str,
         name: str = "attribution") -> np.ndarray:
    """The displayed map of the spatial shape: reduced over channels, resized, sign applied."""
    a = _array(attribution, name)
    if a.shape == raw_shape and a.ndim == len(spatial) + 1:  # shaped like the input: reduce channels
        axis = _axis(channel_axis, a.ndim, raw_shape)
        a = np.abs(a).sum(axis) if sign == "absolute_value" else a.sum(axis)
    elif a.ndim == len(spatial) and min(a.shape) >= 1:
        a = _resize(a, spatial)
    else:
        what = "(H, W) or the image's shape" if len(spatial) == 2 else "(L,) or the signal's shape"
        raise ValueError(f"{name} must be {what} {raw_shape}, got shape {a.shape}")
    return {"all": a, "positive": np.maximum(a, 0), "negative": np.maximum(-a, 0)}.get(sign, np.abs(a))


def _limit(values: np.ndarray, outlier_perc: float) -> float:
    """Captum's threshold: where the cumulative sum of sorted |values| reaches (100 - p)%."""
    v = np.sort(np.abs(values).ravel())
    if v.size == 0 or v[-1] == 0:
        return 1.0
    cum = np.cumsum(v)
    i = np.searchsorted(cum, cum[-1] * (100.0 - outlier_perc) / 100.0)
    return float(v[min(i, v.size - 1)])


def _norm(sign: str, limit: float):
    from matplotlib.colors import Normalize

    return Normalize(-limit, limit) if sign == "all" else Normalize(0.0, limit)


def _title(title, target, prediction, score, class_names) -> str | None:
    def name(c):
        return str(class_names[int(c)]) if class_names is not None else str(int(c))

    parts = [str(title)] if title else []
    parts += [f"target {name(target)}"] if target is not None else []
    parts += [f"pred {name(prediction)}"] if prediction is not None else []
    parts += [f"score {float(score):.3g}"] if score is not None else []
    return ", ".join(parts) or None


def _scalar_mappable(norm, cmap):
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=cmap)


# ---------------------------------------------------------------- drawing on one axis
def _draw_image(ax, img: np.ndarray, m: np.ndarray | None, method: str, norm, cmap, alpha: float) -> None:
    rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, -1)
    if method in ("original_image", "blended_heat_map"):
        if method == "blended_heat_map":  # Captum: the map over the image's gray version
            ax.imshow(rgb.mean(-1), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img, cmap="gray", vmin=0, vmax=1) if img.ndim == 2 else ax.imshow(img)
    if method in ("heat_map", "blended_heat_map"):
        ax.imshow(m, cmap=cmap, norm=norm, alpha=1.0 if method == "heat_map" else alpha)
    elif method in ("masked_image", "alpha_scaling"):
        weight = np.clip(norm(m), 0, 1)[..., None]
        ax.imshow(rgb * weight if method == "masked_image" else np.concatenate([rgb, weight], -1))
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_signal(ax, x: np.ndarray, m: np.ndarray, norm, cmap, support) -> None:
    """x (L, C); m (L,): per channel a thick line coloured by the map under a thin dark line,
    a heat strip below and the support shaded grey."""
    from matplotlib.collections import LineCollection

    t = np.arange(len(x))
    for c in range(x.shape[1]):
        pts = np.stack([t, x[:, c]], 1)
        lc = LineCollection(np.stack([pts[:-1], pts[1:]], 1), cmap=cmap, norm=norm, linewidths=4.5,
                            capstyle="round", zorder=2)
        lc.set_array((m[:-1] + m[1:]) / 2)
        ax.add_collection(lc)
        ax.plot(t, x[:, c], color=LINE, lw=0.9, zorder=3)
    lo, hi = float(x.min()), float(x.max())
    pad = 0.15 * (hi - lo) if hi > lo else 0.5
    strip_lo, strip_hi = lo - 4 * pad, lo - 1.5 * pad
    ax.imshow(m[None], aspect="auto", cmap=cmap, norm=norm, extent=(-0.5, len(x) - 0.5, strip_lo, strip_hi),
              zorder=1)
    for i in np.flatnonzero(support if support is not None else []):
        ax.axvspan(i - 0.5, i + 0.5, color="0.86", zorder=0, lw=0)
    ax.set_xlim(-0.5, len(x) - 0.5)
    ax.set_ylim(strip_lo, hi + pad)
    ax.set_xticks([])
    ax.set_yticks([])


def _signal(signal, channel_axis: int, name: str = "signal") -> np.ndarray:
    x = _array(signal, name)
    if x.ndim == 1:
        return x[:, None]
    if x.ndim == 2:
        return np.moveaxis(x, _axis(channel_axis, 2, x.shape), -1)
    raise ValueError(f"{name} must be (L,) or (L, C) with channels at channel_axis, got shape {x.shape}")


def _support(support, length: int):
    if support is None:
        return None
    s = np.asarray(support).reshape(-1)
    if s.size != length:
        raise ValueError(f"support must have one entry per position ({length}), got shape {np.shape(support)}")
    return s


def _options(sign, outlier_perc, alpha, vmax, cmap):
    _choice(sign, "sign", SIGNS)
    _number(outlier_perc, "outlier_perc", 0, 100)
    _number(alpha, "alpha", 0, 1)
    if vmax is not None:
        _number(vmax, "vmax", 0, np.inf)
    return cmap or CMAPS[sign]


def _figure(ax, size):
    plt = _pyplot()
    if ax is None:
        return plt.subplots(figsize=size, layout="constrained")
    return ax.figure, ax


# ---------------------------------------------------------------- public functions
def image(image, attribution=None, *, method: str = "blended_heat_map", sign: str = "absolute_value",
          channel_axis: int = -1, outlier_perc: float = 2.0, alpha: float = 0.5, cmap: Any = None,
          vmax: float | None = None, colorbar: bool = True, title: str | None = None, target=None,
          prediction=None, score: float | None = None, class_names: Sequence[str] | None = None,
          ax=None, path: str | os.PathLike | None = None):
    """One image with its attribution map (Captum's visualize_image_attr methods):
    "heat_map" (the map alone), "blended_heat_map" (the map at opacity `alpha` over the image's
    gray version), "masked_image" (image x scaled map), "alpha_scaling" (the map as the image's
    opacity), "original_image". image: (H, W) or 3-D with 1 or 3 channels at channel_axis;
    attribution: (H, W), (h, w) (resized) or the image's shape (reduced: see the module doc).
    The title joins `title`, `target`, `prediction` (names from class_names) and `score`.
    Draws into `ax` when given; returns the Figure."""
    plt_cmap = _options(sign, outlier_perc, alpha, vmax, cmap)
    _choice(method, "method", METHODS)
    img = _image(image, channel_axis)
    if attribution is None and method != "original_image":
        raise ValueError(f"attribution is required for method={method!r} (only 'original_image' draws without)")
    if method in ("masked_image", "alpha_scaling") and sign == "all":
        raise ValueError(f"method={method!r} needs a non-negative map: use sign='positive', 'negative' or "
                         "'absolute_value', not 'all'")
    m = None if attribution is None else _map(attribution, np.shape(image), img.shape[:2], channel_axis, sign)
    norm = None if m is None else _norm(sign, vmax if vmax is not None else _limit(m, outlier_perc))
    fig, ax = _figure(ax, (3.4, 3.0))
    _draw_image(ax, img, m, method, norm, plt_cmap, alpha)
    if colorbar and method in ("heat_map", "blended_heat_map"):
        fig.colorbar(_scalar_mappable(norm, plt_cmap), ax=ax, shrink=0.85)
    text = _title(title, target, prediction, score, class_names)
    if text:
        ax.set_title(text, fontsize=9)
    return save(fig, path)


def signal(signal, attribution, *, sign: str = "absolute_value", channel_axis: int = -1, support=None,
           outlier_perc: float = 2.0, cmap: Any = None, vmax: float | None = None, colorbar: bool = True,
           title: str | None = None, target=None, prediction=None, score: float | None = None,
           class_names: Sequence[str] | None = None, ax=None, path: str | os.PathLike | None = None):
    """A 1-D signal (L,) or (L, C) (channels at channel_axis) drawn as dark lines over a thick
    line coloured by the map, with the map as a heat strip below and `support` (L,) (e.g. the
    ground truth) shaded grey. attribution: (L,), (l,) (resized) or the signal's shape (reduced
    over channels). The line stays visible where the map is near zero. Returns the Figure."""
    plt_cmap = _options(sign, outlier_perc, 0.5, vmax, cmap)
    x = _signal(signal, channel_axis)
    m = _map(attribution, np.shape(signal), (len(x),), channel_axis, sign)
    norm = _norm(sign, vmax if vmax is not None else _limit(m, outlier_perc))
    fig, ax = _figure(ax, (5.0, 2.0))
    _draw_signal(ax, x, m, norm, plt_cmap, _support(support, len(x)))
    if colorbar:
        fig.colorbar(_scalar_mappable(norm, plt_cmap), ax=ax, shrink=0.9, pad=0.02)
    text = _title(title, target, prediction, score, class_names)
    if text:
        ax.set_title(text, fontsize=9)
    return save(fig, path)


def cam_on_image(image, cam, *, channel_axis: int = -1, image_weight: float = 0.5, cmap: str = "jet",
                 path: str | os.PathLike | None = None) -> np.ndarray:
    """pytorch-grad-cam's show_cam_on_image: (1 - image_weight) * cmap(cam) + image_weight * image,
    divided by its maximum, as an RGB array (H, W, 3) float in [0, 1] (saved as a PNG when given
    `path`). The image is min-max scaled, the cam (h, w) resized to (H, W) and min-max scaled."""
    plt = _pyplot()
    _number(image_weight, "image_weight", 0, 1)
    img = _image(image, channel_axis)
    rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, -1)
    heat = plt.get_cmap(cmap)(_rescale(_map(cam, np.shape(image), img.shape[:2], channel_axis, "all", "cam")))
    out = (1 - image_weight) * heat[..., :3] + image_weight * rgb
    out = out / out.max() if out.max() > 0 else out
    if path is not None:
        plt.imsave(path, out)
    return out


def _kind(xs: np.ndarray, kind: str, channel_axis: int) -> str:
    _choice(kind, "kind", ("auto", "image", "signal"))
    if kind != "auto":
        return kind
    if xs.ndim in (2, 4):
        return "signal" if xs.ndim == 2 else "image"
    if xs.ndim == 3:  # (N, L, C) with a few channels, else (N, H, W) gray images
        return "signal" if xs.shape[_axis(channel_axis, 3, xs.shape)] <= 4 else "image"
    raise ValueError(f"inputs must be (N, L[, C]) signals or (N, H, W[, C]) images, got shape {xs.shape}")


def _row_title(i: int, labels, predictions, class_names) -> str | None:
    def name(c):
        return str(class_names[int(c)]) if class_names is not None else str(int(c))

    parts = ([] if labels is None else [f"true {name(labels[i])}"]) + \
        ([] if predictions is None else [f"pred {name(predictions[i])}"])
    return ", ".join(parts) or None


def grid(inputs, maps: Mapping[str, Any], *, kind: str = "auto", method: str = "blended_heat_map",
         sign: str | Mapping[str, str] = "absolute_value", scale: str = "column", channel_axis: int = -1,
         outlier_perc: float = 2.0, alpha: float = 0.5, cmap: Any = None, colorbar: bool = True,
         titles: Sequence[str] | None = None, labels=None, predictions=None,
         class_names: Sequence[str] | None = None, supports=None, path: str | os.PathLike | None = None):
    """Methods x inputs: one row per input, one column per method (images get a first column
    with the input). inputs (N, ...) with channels at channel_axis of the batch (channels-first
    images: channel_axis=1); maps: name -> (N, ...) maps, one per input (shapes as in `image`
    and `signal`). kind "auto": 4-D inputs are images, 2-D signals, 3-D signals when the channel
    axis has at most 4 entries, else gray images (N, H, W).
    sign: one for all, or name -> sign. scale: "column" (one colour scale per method, the limit
    taken over all its maps, a colour bar under each column), "row" (one per input over all
    methods, needs one sign; a colour bar right of each row) or "cell" (each map its own).
    Row titles: `titles`, or composed from `labels` (true classes) and `predictions`;
    supports (N, L) are shaded grey behind signals. Returns the Figure."""
    plt = _pyplot()
    xs = _array(inputs, "inputs")
    kind = _kind(xs, kind, channel_axis)
    _choice(scale, "scale", SCALES)
    _choice(method, "method", METHODS)
    if not isinstance(maps, Mapping) or not maps:
        raise ValueError(f"maps must be a non-empty mapping name -> (N, ...) maps, got {type(maps).__name__}")
    if xs.ndim < 2:
        raise ValueError(f"inputs must be a batch (N, ...), got shape {xs.shape}")
    axis = _axis(channel_axis, xs.ndim, xs.shape)
    if axis == 0 and xs.ndim > 2:
        raise ValueError(f"channel_axis={channel_axis} is the batch axis of inputs {xs.shape}")
    item_axis = axis - 1
    n, names = len(xs), list(maps)
    signs = {k: sign.get(k, "absolute_value") if isinstance(sign, Mapping) else sign for k in names}
    cmaps = {k: _options(signs[k], outlier_perc, alpha, None, cmap) for k in names}
    prepared = [_image(x, item_axis, f"inputs[{i}]") if kind == "image" else _signal(x, item_axis, f"inputs[{i}]")
                for i, x in enumerate(xs)]
    spatial = prepared[0].shape[:2] if kind == "image" else (len(prepared[0]),)
    shown = {}
    for k in names:
        a = np.asarray(maps[k])
        if a.ndim < 1 or len(a) != n:
            raise ValueError(f"maps[{k!r}] must hold one map per input ({n}), got shape {a.shape}")
        shown[k] = np.stack([_map(a[i], xs.shape[1:], spatial, item_axis, signs[k], f"maps[{k!r}][{i}]")
                             for i in range(n)])
    if scale == "row" and len({(signs[k], str(cmaps[k])) for k in names}) > 1:
        raise ValueError("scale='row' shares one colour scale across methods: pass one sign for all of them")
    limits = {k: np.full(n, _limit(shown[k], outlier_perc)) if scale == "column"
              else np.array([_limit(m, outlier_perc) for m in shown[k]]) for k in names}
    if scale == "row":
        row = [_limit(np.stack([shown[k][i] for k in names]), outlier_perc) for i in range(n)]
        limits = {k: np.array(row) for k in names}
    first = 1 if kind == "image" else 0
    cell = (1.8, 1.8) if kind == "image" else (2.2, 1.2)
    fig, axes = plt.subplots(n, len(names) + first, squeeze=False, layout="constrained",
                             figsize=(cell[0] * (len(names) + first) + 0.6, cell[1] * n + 0.8))
    row_titles = list(titles) if titles is not None else [_row_title(i, labels, predictions, class_names)
                                                          for i in range(n)]
    if kind == "image":
        axes[0, 0].set_title("input", fontsize=8)
    for i in range(n):
        if kind == "image":
            _draw_image(axes[i, 0], prepared[i], None, "original_image", None, None, 0)
        for j, k in enumerate(names):
            norm = _norm(signs[k], limits[k][i])
            ax = axes[i, j + first]
            if kind == "image":
                _draw_image(ax, prepared[i], shown[k][i], method, norm, cmaps[k], alpha)
            else:
                _draw_signal(ax, prepared[i], shown[k][i], norm, cmaps[k],
                             None if supports is None else _support(supports[i], spatial[0]))
            if colorbar and (kind == "signal" or method in ("heat_map", "blended_heat_map")) and (
                    scale == "cell" or (scale == "column" and i == n - 1) or (scale == "row" and j == len(names) - 1)):
                target = {"cell": ax, "column": axes[:, j + first], "row": axes[i, first:]}[scale]
                cb = fig.colorbar(_scalar_mappable(norm, cmaps[k]), ax=target, shrink=0.8, aspect=14,
                                  location="bottom" if scale == "column" else "right")
                cb.ax.tick_params(labelsize=6)
        if row_titles[i]:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
    for j, k in enumerate(names):
        axes[0, j + first].set_title(k, fontsize=8)
    return save(fig, path)
