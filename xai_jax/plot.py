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


def _mean_band(c: Mapping, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    """(mean, lo, hi, n): from per-input curves (N, P) the mean and its normal-approximation 95%
    CI (mean +- 1.96 sd / sqrt(N)); from a mean (P,) with `which`_lo / `which`_hi, those."""
    v = np.asarray(c[which], dtype=np.float64)
    if v.ndim == 2:
        mean = v.mean(0)
        half = 1.96 * v.std(0, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.zeros_like(mean)
        return mean, mean - half, mean + half, len(v)
    if v.ndim != 1:
        raise ValueError(f"curves[...][{which!r}] must be (N, P) per-input curves or a mean (P,), got {v.shape}")
    lo, hi = c.get(f"{which}_lo", v), c.get(f"{which}_hi", v)
    return v, np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64), None


def deletion_insertion_curves(curves: Mapping[str, Mapping[str, np.ndarray]], path=None):
    """Deletion and insertion curves, one panel each: per method the mean over inputs with its
    95% CI as a band, the legend below the panels. curves: name -> {"fractions" (P,),
    "deletion" and "insertion": per-input curves (N, P), or means (P,) with optional
    "deletion_lo"/"deletion_hi"/"insertion_lo"/"insertion_hi" (P,) bounds}."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    colours = plt.get_cmap("tab10").colors
    n = None
    for i, (name, c) in enumerate(curves.items()):
        style = dict(color=colours[i % 10], ls=("-", "--", ":")[i // 10 % 3], lw=1.4)
        for ax, which in zip(axes, ("deletion", "insertion")):
            mean, lo, hi, n = _mean_band(c, which)
            ax.plot(c["fractions"], mean, label=name if which == "deletion" else None, **style)
            ax.fill_between(c["fractions"], lo, hi, color=style["color"], alpha=0.13, lw=0)
    ci = f"mean and 95% CI over {n} inputs" if n else "mean and 95% CI"
    axes[0].set_title(f"deletion (lower is better); {ci}", fontsize=9)
    axes[1].set_title(f"insertion (higher is better); {ci}", fontsize=9)
    for ax in axes:
        ax.set_xlabel("fraction of positions removed / inserted")
        ax.set_ylabel("class probability")
        ax.grid(alpha=0.3, lw=0.5)
    fig.legend(loc="outside lower center", ncol=min(5, max(1, len(curves))), fontsize=7.5, frameon=False)
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
                metrics: Mapping[str, tuple[str, str]], *, groups: Mapping[str, Sequence[str]] | None = None,
                note: str = "", path=None):
    """Method x metric grid: colour = rank within the column (by each metric's better
    direction), scaled per column from best (green) to worst (red) among the methods that the
    column ranks (a signed-map column with 3 methods spans the whole scale; a column with one
    method is drawn neutral); text = the mean.
    groups: title -> metric keys, framed and titled column groups (e.g. the ranking metrics,
    then the variants); `note` is printed below the figure, under the rotated labels."""
    import textwrap

    plt = _pyplot()
    methods = list(summary)
    groups = dict(groups) if groups else {"": list(metrics)}
    ordered = [(g, m) for g, keys in groups.items() for m in keys
               if m in metrics and any(m in summary[name] for name in methods)]
    cols = [m for _, m in ordered]
    values = np.full((len(methods), len(cols)), np.nan)
    for i, name in enumerate(methods):
        for j, m in enumerate(cols):
            if m in summary[name]:
                values[i, j] = summary[name][m][0]
    scaled = np.full_like(values, np.nan)  # 0 = best, 1 = worst of the column's methods
    for j, m in enumerate(cols):
        ok = ~np.isnan(values[:, j])
        v = values[ok, j] if metrics[m][1] == "lower" else -values[ok, j]
        ranks = rankdata(v, method="min")  # equal means share a rank: no order bias
        scaled[ok, j] = (ranks - 1) / (ok.sum() - 1) if ok.sum() > 1 else 0.5  # one method: nothing to rank
    fig, ax = plt.subplots(figsize=(1.6 + 0.62 * len(cols), 1.3 + 0.34 * len(methods)))
    im = ax.imshow(np.ma.masked_invalid(scaled), cmap="RdYlGn_r", aspect="auto", vmin=0, vmax=1)
    for i in range(len(methods)):
        for j in range(len(cols)):
            if not np.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6.5)
    ax.set_xticks(range(len(cols)), [f"{metrics[m][0]} ({metrics[m][1][0]})" for m in cols], rotation=40,
                  ha="right", fontsize=7, rotation_mode="anchor")
    ax.set_yticks(range(len(methods)), methods, fontsize=7.5)
    start = 0
    for g in groups:
        width = sum(1 for gg, _ in ordered if gg == g)
        if width == 0:
            continue
        if start:
            ax.axvline(start - 0.5, color="k", lw=2)
        if g:
            ax.text(start - 0.5 + width / 2, -0.65, g, ha="center", va="bottom", fontsize=7.5, weight="bold")
        start += width
    cb = fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01, ticks=[0, 1])
    cb.ax.set_yticklabels(["best", "worst"], fontsize=7)
    ax.set_title("rank per metric, within each column ((h)igher / (l)ower is better)", fontsize=8.5,
                 pad=16 if any(groups) else 6)
    if note:
        fig.canvas.draw()  # the note goes below everything drawn, the rotated labels included
        box = ax.get_tightbbox(fig.canvas.get_renderer()).transformed(fig.transFigure.inverted())
        fig.text(box.x0, box.y0 - 0.03, textwrap.fill(note, width=int(fig.get_figwidth() * 15)), fontsize=6.5,
                 va="top", ha="left")
    return _save(fig, path)  # saved with bbox_inches="tight"
