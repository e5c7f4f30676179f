"""xai_jax.viz: rendered pixels checked against what the figure must show."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import xai_jax.viz as viz  # noqa: E402

H = W = 12
YY, XX = np.mgrid[:H, :W]
BUMP = np.exp(-((YY - 3) ** 2 + (XX - 8) ** 2) / 4.0)  # hottest at row 3, column 8


def rgb_image(seed=0):
    return np.random.default_rng(seed).uniform(-3, 5, (H, W, 3))


def pixels(fig):
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0


def pixel(fig, buf, ax, x, y):
    """The rendered colour at data coordinates (x, y) of ax (imshow: x = column, y = row)."""
    px, py = ax.transData.transform((x, y))
    return buf[int(buf.shape[0] - py), int(px)]


def close(a, b, tol=2.5 / 255):
    return np.abs(np.asarray(a)[:3] - np.asarray(b)[:3]).max() <= tol


@pytest.mark.parametrize("sign", ["positive", "absolute_value", "all"])
def test_hottest_pixel_takes_the_colour_maps_top_colour(sign, tmp_path):
    fig = viz.image(rgb_image(), 3.0 * BUMP, method="heat_map", sign=sign, colorbar=False)
    buf, ax = pixels(fig), fig.axes[0]
    top = plt.get_cmap(viz.CMAPS[sign])(1.0)
    assert close(pixel(fig, buf, ax, 8, 3), top)
    assert not close(pixel(fig, buf, ax, 0, 11), top)  # far from the bump: not saturated
    fig.savefig(tmp_path / "hot.png")
    png = plt.imread(tmp_path / "hot.png")[..., :3]
    hot = np.abs(png - np.asarray(top[:3])).max(-1) < 3 / 255
    rows, cols = np.nonzero(hot)  # the saturated pixels of the PNG sit in the bump's cell
    assert hot.any() and np.ptp(rows) < png.shape[0] / 3 and np.ptp(cols) < png.shape[1] / 3
    plt.close(fig)


def test_outlier_percentile_saturates_the_top_values_and_vmax_overrides():
    m = np.zeros((H, W))
    m[2, 2], m[5, 5] = 100.0, 10.0
    sm = viz.image(rgb_image(), m, method="heat_map", sign="positive", outlier_perc=0, colorbar=False)
    # the value 10 holds 9% of the total 110: with outlier_perc = 91 it becomes the limit
    clipped = viz.image(rgb_image(), m, method="heat_map", sign="positive", outlier_perc=91, colorbar=False)
    fixed = viz.image(rgb_image(), m, method="heat_map", sign="positive", vmax=10.0, colorbar=False)
    assert [f.axes[0].images[-1].norm.vmax for f in (sm, clipped, fixed)] == [100.0, 10.0, 10.0]
    # Captum's rule, written independently: the first sorted |value| whose cumulative sum reaches (100 - p)%
    v = np.random.default_rng(1).normal(size=500)
    s = np.sort(np.abs(v))
    for p in (0, 2, 30):
        assert viz._limit(v, p) == s[np.where(np.cumsum(s) >= np.cumsum(s)[-1] * (100 - p) / 100)[0][0]]
    plt.close("all")


@pytest.mark.parametrize("shape,channel_axis", [((H, W, 1), -1), ((H, W), -1), ((1, H, W), 0)])
@pytest.mark.parametrize("method", ["original_image", "blended_heat_map"])
def test_a_grayscale_input_is_drawn_gray(shape, channel_axis, method):
    img = np.random.default_rng(2).uniform(-1, 1, (H, W)).reshape(shape)
    fig = viz.image(img, BUMP, method=method, alpha=0.0, channel_axis=channel_axis, colorbar=False)
    buf = pixels(fig)
    vals = np.array([pixel(fig, buf, fig.axes[0], c, r) for r in range(H) for c in range(W)])
    assert np.abs(vals - vals.mean(1, keepdims=True)).max() <= 1 / 255  # R == G == B
    scaled = (img.reshape(H, W) - img.min()) / np.ptp(img)
    np.testing.assert_allclose(vals[:, 0], scaled.ravel(), atol=2 / 255)  # min-max scaled, gray levels kept
    plt.close(fig)


def test_an_rgb_input_in_any_range_is_min_max_scaled_not_clipped():
    img = rgb_image()
    img[0, 0], img[-1, -1] = -3.0, 5.0
    fig = viz.image(img, method="original_image")
    buf = pixels(fig)
    for r, c in [(0, 0), (-1, -1), (4, 7), (9, 2)]:
        np.testing.assert_allclose(pixel(fig, buf, fig.axes[0], c % W, r % H), (img[r, c] + 3) / 8, atol=2 / 255)
    plt.close(fig)


def test_the_diverging_scale_is_centred_at_zero_with_a_neutral_colour():
    m = np.where(XX < 4, -1.0, np.where(XX < 8, 0.0, 4.0))  # asymmetric: -1, 0, +4
    fig = viz.image(rgb_image(), m, method="heat_map", sign="all", outlier_perc=0)
    buf, ax = pixels(fig), fig.axes[0]
    middle = plt.get_cmap("RdBu_r")(0.5)
    zero = pixel(fig, buf, ax, 5, 6)
    assert close(zero, middle) and np.ptp(zero) < 0.05  # neutral: about gray-white
    assert close(pixel(fig, buf, ax, 10, 6), plt.get_cmap("RdBu_r")(1.0))
    assert close(pixel(fig, buf, ax, 1, 6), plt.get_cmap("RdBu_r")(0.5 - 0.5 / 4))  # -1 on a +-4 scale
    assert fig.axes[0].images[-1].norm.vmin == -4.0 and len(fig.axes) == 2  # and a colour bar
    plt.close(fig)


def test_a_signal_line_stays_visible_where_the_map_is_zero():
    t = np.arange(40)
    x = np.sin(t / 5.0) * 3 + 10  # any range
    a = np.where(t < 20, 0.0, np.sin(t / 3.0))
    fig = viz.signal(x, a, sign="all", support=t < 5, colorbar=False)
    buf, ax = pixels(fig), fig.axes[0]
    for i in (3, 8, 12):  # zero map: the dark line, not the (white) middle of the colour map
        assert pixel(fig, buf, ax, i, x[i]).max() < 0.45
    ymin = ax.get_ylim()[0]  # the heat strip under the signal: the map's colours
    top = np.argmax(a)
    assert close(pixel(fig, buf, ax, top, ymin + 0.02 * np.ptp(ax.get_ylim())), plt.get_cmap("RdBu_r")(1.0))
    plt.close(fig)


def test_channels_first_renders_the_same_as_channels_last():
    img, amap = rgb_image(), np.random.default_rng(3).normal(size=(H, W, 3))
    last = pixels(viz.image(img, amap, sign="all"))
    first = pixels(viz.image(np.moveaxis(img, -1, 0), np.moveaxis(amap, -1, 0), sign="all", channel_axis=0))
    np.testing.assert_array_equal(first, last)
    xs = np.stack([img, -img])
    maps = {"a": np.stack([amap, amap ** 2]), "cam": np.random.default_rng(4).random((2, 3, 3))}
    g_last = pixels(viz.grid(xs, maps, labels=[0, 1], predictions=[0, 2]))
    g_first = pixels(viz.grid(np.moveaxis(xs, -1, 1), {"a": np.moveaxis(maps["a"], -1, 1), "cam": maps["cam"]},
                              channel_axis=1, labels=[0, 1], predictions=[0, 2]))
    np.testing.assert_array_equal(g_first, g_last)
    sig = np.random.default_rng(5).normal(size=(30, 2))
    np.testing.assert_array_equal(pixels(viz.signal(sig.T, sig.T, channel_axis=0)), pixels(viz.signal(sig, sig)))
    plt.close("all")


def test_input_shaped_maps_are_reduced_by_the_documented_rule_and_cams_resized():
    amap = np.random.default_rng(6).normal(size=(H, W, 3))
    for sign, want in [("all", amap.sum(-1)), ("positive", np.maximum(amap.sum(-1), 0)),
                       ("negative", np.maximum(-amap.sum(-1), 0)), ("absolute_value", np.abs(amap).sum(-1))]:
        fig = viz.image(rgb_image(), amap, method="heat_map", sign=sign)
        np.testing.assert_allclose(fig.axes[0].images[-1].get_array(), want)
    import jax

    cam = np.random.default_rng(7).random((3, 4))
    want = np.asarray(jax.image.resize(cam, (H, W), "linear"))  # bilinear, half-pixel centres
    fig = viz.image(rgb_image(), cam, method="heat_map", sign="all")
    np.testing.assert_allclose(fig.axes[0].images[-1].get_array(), want, atol=1e-6)
    plt.close("all")


def test_grid_colour_scales_per_column_row_or_cell_and_row_titles(tmp_path):
    xs = np.stack([rgb_image(0), rgb_image(1)])
    maps = {"a": np.stack([BUMP, 10 * BUMP]), "b": np.stack([2 * BUMP, BUMP])}

    def vmax(fig, scale):
        axes = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
        return np.array([[axes[3 * i + 1 + j].images[-1].norm.vmax for j in range(2)] for i in range(2)])

    col = viz.grid(xs, maps, scale="column", outlier_perc=0, labels=[1, 2], predictions=[1, 0],
                   class_names=["cat", "dog", "eel"], path=tmp_path / "g.png")
    np.testing.assert_allclose(vmax(col, "column"), [[10, 2], [10, 2]], rtol=1e-6)
    np.testing.assert_allclose(vmax(viz.grid(xs, maps, scale="row", outlier_perc=0), "row"), [[2, 2], [10, 10]],
                               rtol=1e-6)
    np.testing.assert_allclose(vmax(viz.grid(xs, maps, scale="cell", outlier_perc=0), "cell"), [[1, 2], [10, 1]],
                               rtol=1e-6)
    assert [ax.get_ylabel() for ax in col.axes[:6:3]] == ["true dog, pred dog", "true eel, pred cat"]
    assert (tmp_path / "g.png").stat().st_size > 1000
    fig = viz.image(rgb_image(), BUMP, title="IG", target=1, prediction=2, score=0.8766, class_names="abc")
    assert fig.axes[0].get_title() == "IG, target b, pred c, score 0.877"
    plt.close("all")


def test_cam_on_image_matches_show_cam_on_image():
    img = np.random.default_rng(8).uniform(0, 1, (H, W, 3))
    img[0, 0], img[1, 1] = 0.0, 1.0
    cam = np.random.default_rng(9).random((H, W))
    heat = plt.get_cmap("jet")((cam - cam.min()) / np.ptp(cam))[..., :3]
    want = 0.3 * heat + 0.7 * img
    out = viz.cam_on_image(img, cam, image_weight=0.7)
    np.testing.assert_allclose(out, want / want.max(), atol=1e-6)
    gray = viz.cam_on_image(img[..., :1] * 4 - 2, cam[::3, ::3])  # (H, W, 1) in any range, a 4x4 cam
    assert gray.shape == (H, W, 3) and 0 <= gray.min() and gray.max() == 1.0


def test_plot_wrappers_draw_grayscale_and_channels_first():
    from xai_jax import plot

    xs = np.random.default_rng(10).uniform(-2, 2, (2, 1, H, W))  # channels-first gray, outside [0, 1]
    fig = plot.images_grid(xs, {"m": np.stack([BUMP, BUMP])}, channel_axis=1, labels=["a", "b"])
    buf = pixels(fig)
    vals = np.array([pixel(fig, buf, fig.axes[0], c, r) for r in range(H) for c in range(W)])
    assert np.abs(vals - vals.mean(1, keepdims=True)).max() <= 1 / 255  # gray, not viridis
    assert len(fig.axes) == 5  # input, map, and the column's colour bar... per row: 2 x 2 + 1
    plot.signals_grid(np.zeros((2, 40, 1)), {"m": np.ones((2, 40))}, labels=["x", "y"])
    plt.close("all")


def test_spatial_map_takes_channel_axis_and_rejects_channels_first_by_default():
    import jax.numpy as jnp

    import xai_jax

    a = jnp.arange(16 * 28 * 28, dtype=jnp.float32).reshape(16, 1, 28, 28)
    np.testing.assert_array_equal(xai_jax.spatial_map(a, channel_axis=1), a[:, 0])
    with pytest.raises(ValueError, match="channels-first; pass channel_axis"):
        xai_jax.spatial_map(a)
    assert xai_jax.spatial_map(jnp.ones((4, 28, 28, 3))).shape == (4, 28, 28)
    with pytest.raises(ValueError, match="channel_axis=4 is out of range"):
        xai_jax.spatial_map(a, channel_axis=4)


IMG, MAP = rgb_image(), BUMP
BAD = [
    (lambda: viz.image(IMG, np.zeros((1, H, W, 3))), "attribution must be .* got shape \\(1, 12, 12, 3\\)"),
    (lambda: viz.image(IMG, MAP, channel_axis=3), "channel_axis=3 is out of range"),
    (lambda: viz.image(IMG, MAP, sign="abs"), "sign must be one of"),
    (lambda: viz.image(IMG, MAP, method="overlay"), "method must be one of"),
    (lambda: viz.image(np.zeros((3, H, W)), MAP), "has 12 entries; expected 1 .* channel_axis=0"),
    (lambda: viz.image(np.zeros((H, W, 5)), MAP), "image: the channel axis .* has 5 entries"),
    (lambda: viz.image(np.zeros((2, H, W, 3)), MAP), "image must be \\(H, W\\)"),
    (lambda: viz.image(np.full((H, W), np.nan), MAP), "image contains NaN"),
    (lambda: viz.image(IMG, MAP, method="masked_image", sign="all"), "needs a non-negative map"),
    (lambda: viz.image(IMG), "attribution is required"),
    (lambda: viz.image(IMG, MAP, alpha=1.5), "alpha must be a number in \\[0, 1\\]"),
    (lambda: viz.image(IMG, MAP, outlier_perc=-1), "outlier_perc must be"),
    (lambda: viz.image(IMG, MAP, vmax=-1.0), "vmax must be"),
    (lambda: viz.image(IMG, "hot"), "attribution must be a numeric array"),
    (lambda: viz.signal(np.zeros((2, 3, 40)), np.zeros(40)), "signal must be \\(L,\\)"),
    (lambda: viz.signal(np.zeros(40), np.zeros((40, 2))), "attribution must be \\(L,\\)"),
    (lambda: viz.signal(np.zeros(40), np.zeros(40), support=np.zeros(39)), "support must have one entry"),
    (lambda: viz.cam_on_image(IMG, MAP, image_weight=2), "image_weight must be"),
    (lambda: viz.grid(IMG[None], {"m": np.zeros((2, H, W))}), "maps\\['m'\\] must hold one map per input \\(1\\)"),
    (lambda: viz.grid(IMG[None], {}), "maps must be a non-empty mapping"),
    (lambda: viz.grid(np.zeros((2, 1, H, W)), {"m": np.zeros((2, H, W))}),
     "inputs\\[0\\]: the channel axis .* has 12 entries.* channel_axis=1 for a \\(N, C, H, W\\) batch"),
    (lambda: viz.grid(IMG[None], {"m": MAP[None]}, kind="video"), "kind must be one of"),
    (lambda: viz.grid(IMG[None], {"m": MAP[None]}, scale="global"), "scale must be one of"),
    (lambda: viz.grid(IMG[None], {"m": MAP[None]}, channel_axis=0), "channel_axis=0 is the batch axis"),
    (lambda: viz.grid(IMG[None], {"m": MAP[None], "n": MAP[None]}, sign={"m": "all"}, scale="row"),
     "scale='row' .* one sign"),
    (lambda: viz.grid(np.zeros((2, 3, 4, 5, 6)), {"m": np.zeros((2, 4, 5))}), "inputs must be"),
]


@pytest.mark.parametrize("call,match", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_inputs_name_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
    plt.close("all")

