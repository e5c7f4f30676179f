"""Figures: signals and images with their attributions, curves, sanity checks.

Signed maps use a diverging colour map centred on 0 (red positive, blue negative);
non-negative maps a sequential one. Every function returns the matplotlib Figure and
saves it when given a path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

VIZ_EXTRA = 'pip install "xai_jax[viz]"'


def _pyplot():
    """matplotlib.pyplot, imported on first use so that the library runs without matplotlib.

    Selects the non-interactive Agg backend unless pyplot was already imported by the caller
    (figures are saved to files, never shown)."""
    import sys

    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(f"xai_jax.plot needs matplotlib: {VIZ_EXTRA}") from e
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike | None):
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        _pyplot().close(fig)
    return fig


def _norm(m: np.ndarray):
    _pyplot()
    from matplotlib.colors import Normalize, TwoSlopeNorm

    if (m < 0).any() and (m > 0).any():
        lim = np.abs(m).max()
        return TwoSlopeNorm(0.0, -lim, lim), "RdBu_r"
    lo, hi = float(m.min()), float(m.max())
    return Normalize(lo, hi if hi > lo else lo + 1e-12), "viridis" if (m >= 0).all() else "Blues_r"


def signal_with_attribution(ax, signal: np.ndarray, attribution: np.ndarray, *,
                            support: np.ndarray | None = None, title: str | None = None) -> None:
    """Draws a 1-D signal (length,) as a line coloured by its attribution, with a heat strip
    under it and the ground-truth support shaded."""
    signal = np.asarray(signal).reshape(-1)
    attribution = np.asarray(attribution).reshape(-1)
    t = np.arange(signal.size)
    norm, cmap = _norm(attribution)
    pts = np.stack([t, signal], 1)
    segs = np.stack([pts[:-1], pts[1:]], 1)
    from matplotlib.collections import LineCollection

    lc = LineCollection(segs, cmap=cmap, norm=norm, linewidths=2.5)
    lc.set_array((attribution[:-1] + attribution[1:]) / 2)
    ax.add_collection(lc)
    lo, hi = signal.min(), signal.max()
    pad = 0.15 * (hi - lo + 1e-6)
    strip_lo, strip_hi = lo - 4 * pad, lo - 1.5 * pad
    ax.imshow(attribution[None], aspect="auto", cmap=cmap, norm=norm,
              extent=(-0.5, signal.size - 0.5, strip_lo, strip_hi))
    if support is not None:
        s = np.asarray(support).reshape(-1)
        for i in np.flatnonzero(s):
            ax.axvspan(i - 0.5, i + 0.5, color="0.85", zorder=0, lw=0)
    ax.set_xlim(-0.5, signal.size - 0.5)
    ax.set_ylim(strip_lo, hi + pad)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def signals_grid(xs: np.ndarray, maps: Mapping[str, np.ndarray], *, supports: np.ndarray | None = None,
                 labels: Sequence[str] | None = None, path=None):
    """Rows: inputs; columns: methods side by side. xs (N, length[, 1]); maps name -> (N, length)."""
    plt = _pyplot()
    names = list(maps)
    n = len(xs)
    fig, axes = plt.subplots(n, len(names), figsize=(2.1 * len(names), 1.2 * n + 0.4), squeeze=False)
    for i in range(n):
        for j, name in enumerate(names):
            signal_with_attribution(axes[i, j], xs[i], maps[name][i],
                                    support=None if supports is None else supports[i],
                                    title=name if i == 0 else None)
        if labels is not None:
            axes[i, 0].set_ylabel(labels[i], fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def image_with_heatmap(ax, image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.5,
                       title: str | None = None) -> None:
    """An RGB image (H, W, 3) in [0, 1] with a heatmap (H, W) overlaid."""
    ax.imshow(np.clip(image, 0, 1))
    norm, cmap = _norm(np.asarray(heatmap))
    ax.imshow(heatmap, cmap="jet" if cmap == "viridis" else cmap, norm=norm, alpha=alpha)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def images_grid(xs: np.ndarray, maps: Mapping[str, np.ndarray], *, labels: Sequence[str] | None = None,
                path=None):
    """Rows: images; first column the image, then one overlay per method."""
    plt = _pyplot()
    names = list(maps)
    n = len(xs)
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(1.7 * (len(names) + 1), 1.8 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(np.clip(xs[i], 0, 1))
        axes[i, 0].set_xticks([])
        axes[i, 0].set_yticks([])
        if labels is not None:
            axes[i, 0].set_ylabel(labels[i], fontsize=8)
        if i == 0:
            axes[i, 0].set_title("input", fontsize=8)
        for j, name in enumerate(names):
            image_with_heatmap(axes[i, j + 1], xs[i], maps[name][i], title=name if i == 0 else None)
    fig.tight_layout()
    return _save(fig, path)


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
