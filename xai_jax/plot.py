"""Figures: signals and images with their attributions, curves, sanity checks.

The study's figures (training curves, deletion/insertion curves, sanity checks, the rank
figure); the overlays of maps on signals and images are xai_jax.viz's, kept here under their
old names. Every function returns the matplotlib Figure and saves it when given a path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from xai_jax.viz import VIZ_EXTRA, _pyplot, grid  # noqa: F401  (VIZ_EXTRA: re-exported)
from xai_jax.viz import image as _image
from xai_jax.viz import save as _save
from xai_jax.viz import signal as _signal


def signal_with_attribution(ax, signal: np.ndarray, attribution: np.ndarray, *,
                            support: np.ndarray | None = None, title: str | None = None, **options) -> None:
    """A 1-D signal drawn into ax with its map on a diverging scale centred at 0
    (xai_jax.viz.signal with sign="all"; options go to it)."""
    _signal(signal, attribution, support=support, title=title, ax=ax, **{"sign": "all", "colorbar": False, **options})


def signals_grid(xs: np.ndarray, maps: Mapping[str, np.ndarray], *, supports: np.ndarray | None = None,
                 labels: Sequence[str] | None = None, path=None, **options):
    """Rows: inputs; columns: methods (xai_jax.viz.grid of signals, signed maps centred at 0,
    one colour scale per method). xs (N, length[, 1]); maps name -> (N, length); labels: row titles."""
    return grid(xs, maps, kind="signal", supports=supports, titles=labels, path=path, **{"sign": "all", **options})


def image_with_heatmap(ax, image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.5,
                       title: str | None = None, **options) -> None:
    """An image (H, W[, C]) with its map blended over it (xai_jax.viz.image; options go to it)."""
    _image(image, heatmap, alpha=alpha, title=title, ax=ax, **{"colorbar": False, **options})


def images_grid(xs: np.ndarray, maps: Mapping[str, np.ndarray], *, labels: Sequence[str] | None = None,
                path=None, **options):
    """Rows: images; first column the image, then one overlay per method (xai_jax.viz.grid;
    options such as channel_axis, sign, method, scale go to it)."""
    _pyplot()
    return grid(xs, maps, kind="image", titles=labels, path=path, **options)


def training_curves(histories: Mapping[str, dict], path=None):
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, h in histories.items():
        axes[0].plot(h["step"], h["loss"], label=name)
        axes[1].plot(h["step"], h["accuracy"], label=name)
    axes[0].set_ylabel("train loss")
    axes[1].set_ylabel("train accuracy (batch)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def class_samples(xs: np.ndarray, ys: np.ndarray, *, supports: np.ndarray | None = None, per_class: int = 3,
                  class_names: Sequence[str] | None = None, path=None):
    plt = _pyplot()
    classes = np.unique(ys)
    fig, axes = plt.subplots(per_class, len(classes), figsize=(1.6 * len(classes), 1.1 * per_class), squeeze=False)
    for j, c in enumerate(classes):
        idx = np.flatnonzero(ys == c)[:per_class]
        for i, k in enumerate(idx):
            ax = axes[i, j]
            if supports is not None:
                for p in np.flatnonzero(supports[k]):
                    ax.axvspan(p - 0.5, p + 0.5, color="0.85", lw=0)
            ax.plot(np.asarray(xs[k]).reshape(-1), lw=1.2)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(class_names[c] if class_names else f"class {c}", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def deletion_insertion_curves(curves: Mapping[str, dict], path=None):
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for name, c in curves.items():
        axes[0].plot(c["fractions"], c["deletion"], label=name)
        axes[1].plot(c["fractions"], c["insertion"], label=name)
    axes[0].set_title("deletion (lower is better)", fontsize=9)
    axes[1].set_title("insertion (higher is better)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("fraction of positions removed / inserted")
        ax.set_ylabel("class probability")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def sanity_curves(results: Mapping[str, Mapping[str, float]], path=None):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, r in results.items():
        ax.plot(list(r), list(r.values()), marker="o", label=name)
    ax.set_ylabel("Spearman rho with original map")
    ax.set_xlabel("layers randomised (cascading, top first)")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.legend(fontsize=7)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def rank_figure(summary: Mapping[str, Mapping[str, tuple[float, float, float]]],
                metrics: Mapping[str, tuple[str, str]], *, note: str = "", path=None):
    """Method x metric grid: colour = rank within the column (1 = best, by each metric's
    better direction), text = the mean. Variant columns (signed maps, 'any' supports, the
    study's convention) sit beside the ranking metrics; `note` is printed underneath."""
    plt = _pyplot()
    methods = list(summary)
    cols = [m for m in metrics if any(m in summary[name] for name in methods)]
    values = np.full((len(methods), len(cols)), np.nan)
    for i, name in enumerate(methods):
        for j, m in enumerate(cols):
            if m in summary[name]:
                values[i, j] = summary[name][m][0]
    ranks = np.full_like(values, np.nan)
    for j, m in enumerate(cols):
        ok = ~np.isnan(values[:, j])
        v = values[ok, j] if metrics[m][1] == "lower" else -values[ok, j]
        ranks[ok, j] = rankdata(v, method="min")  # equal means share a rank: no order bias
    fig, ax = plt.subplots(figsize=(1.0 + 0.85 * len(cols), 0.9 + 0.38 * len(methods)))
    ax.imshow(np.ma.masked_invalid(ranks), cmap="RdYlGn_r", aspect="auto", vmin=1, vmax=max(len(methods), 2))
    for i in range(len(methods)):
        for j in range(len(cols)):
            if not np.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6.5)
    ax.set_xticks(range(len(cols)), [f"{metrics[m][0]} ({metrics[m][1][0]})" for m in cols], rotation=40,
                  ha="right", fontsize=7)
    ax.set_yticks(range(len(methods)), methods, fontsize=7.5)
    ax.set_title("rank per metric (green = best; (h)igher / (l)ower is better)", fontsize=8.5)
    if note:
        fig.text(0.01, -0.02, note, fontsize=6.5, wrap=True, va="top")
    return _save(fig, path)  # saved with bbox_inches="tight"
