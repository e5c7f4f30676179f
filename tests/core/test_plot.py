"""xai_jax.plot's study figures: the rank figure and the deletion/insertion curves."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xai_jax.plot import deletion_insertion_curves, rank_figure  # noqa: E402

METRICS = {"drop": ("drop rate", "lower"), "auroc": ("localisation AUROC", "higher"),
           "auroc_signed": ("localisation AUROC, signed map", "higher")}
GROUPS = {"ranking": ["drop", "auroc"], "signed maps": ["auroc_signed"]}


def summary():
    out = {}
    for i, name in enumerate(["A", "B", "C", "D", "E"]):
        s = {"drop": (0.1 * i, 0, 1), "auroc": (0.5 + 0.1 * i, 0, 1)}
        if i < 3:  # three signed methods
            s["auroc_signed"] = (0.9 - 0.1 * i, 0, 1)
        out[name] = s
    return out


def test_rank_colours_are_scaled_per_column_and_the_note_sits_below_the_labels():
    note = "a long explanation of the conventions, " * 8
    fig = rank_figure(summary(), METRICS, groups=GROUPS, note=note)
    ax = fig.axes[0]
    scaled = np.ma.filled(ax.images[0].get_array(), np.nan)
    np.testing.assert_allclose(scaled[:, 0], [0, 0.25, 0.5, 0.75, 1])  # drop: lower is better
    np.testing.assert_allclose(scaled[:, 1], [1, 0.75, 0.5, 0.25, 0])
    np.testing.assert_allclose(scaled[:3, 2], [0, 0.5, 1])  # 3 methods span the whole scale
    assert np.isnan(scaled[3:, 2]).all()
    renderer = fig.canvas.get_renderer()
    labels_bottom = min(t.get_window_extent(renderer).y0 for t in ax.get_xticklabels())
    text = next(t for t in fig.texts if t.get_text().startswith("a long"))
    assert text.get_window_extent(renderer).y1 < labels_bottom  # below the rotated labels, no overlap
    titles = [t for t in ax.texts if t.get_text() in GROUPS]
    assert len(titles) == 2
    plt.close(fig)


def test_deletion_insertion_curves_draw_means_and_95_ci_bands_with_the_legend_outside():
    rng = np.random.default_rng(0)
    fr = np.linspace(0, 1, 11)
    per_input = rng.uniform(0, 1, (30, 11))
    mean = per_input.mean(0)
    half = 1.96 * per_input.std(0, ddof=1) / np.sqrt(30)
    curves = {"per input": {"fractions": fr, "deletion": per_input, "insertion": per_input},
              "bounds": {"fractions": fr, "deletion": mean, "insertion": mean,
                         "deletion_lo": mean - 0.1, "deletion_hi": mean + 0.1}}
    fig = deletion_insertion_curves(curves)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), mean)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose([band.min(), band.max()], [(mean - half).min(), (mean + half).max()], rtol=1e-6)
    band = ax.collections[1].get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose([band.min(), band.max()], [(mean - 0.1).min(), (mean + 0.1).max()], rtol=1e-6)
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    for a in fig.axes:  # the legend covers no panel
        box = a.get_window_extent()
        assert legend.y1 <= box.y0 or legend.x1 <= box.x0 or legend.x0 >= box.x1
    with pytest.raises(ValueError, match="deletion.* must be \\(N, P\\)"):
        deletion_insertion_curves({"x": {"fractions": fr, "deletion": np.zeros((2, 3, 11)), "insertion": mean}})
    plt.close("all")
