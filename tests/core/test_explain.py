"""explain() and evaluate(): any model the adapters take, names or Methods, one results table."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
import xai_jax.metrics as M
from tests.adapters import bn_models as B

pytest.importorskip("equinox")
NAMES = ["Grad-CAM", "integrated_gradients", "Saliency"]


@pytest.fixture(scope="module")
def models():
    return B.adapted_models()[0]


def _cl(a, channels_first, spatial):
    return a if not channels_first or spatial else np.moveaxis(a, 1, -1)


@pytest.mark.xdist_group("bn_frameworks")
def test_same_maps_for_every_framework(models):
    xs = B.inputs()
    ref = None
    for name, (model, cf) in models.items():
        x = np.moveaxis(xs, -1, 1) if cf else xs
        ex = xj.explain(model, x, NAMES, progress=False)
        assert list(ex) == ["Grad-CAM", "Integrated Gradients", "Saliency"]
        got = {k: _cl(ex[k], cf, ex.is_spatial[k]) for k in ex}
        assert got["Grad-CAM"].shape == xs.shape[:-1] and got["Saliency"].shape == xs.shape
        if ref is None:
            ref = got, ex.targets
            continue
        np.testing.assert_array_equal(ex.targets, ref[1])
        for k in got:
            np.testing.assert_allclose(got[k], ref[0][k], rtol=1e-4, atol=1e-5 * np.abs(ref[0][k]).max(), err_msg=name)


def test_default_set_leaves_out_the_cams_on_a_model_without_layers():
    w = jax.random.normal(jax.random.key(0), (6, 3))
    f = lambda x: jnp.tanh(x[:, 0] @ w)  # noqa: E731
    xs = np.random.default_rng(0).normal(size=(4, 6, 1)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"left out the layer methods \['Grad-CAM'"):
        ex = xj.explain(f, xs, "default", progress=False)
    assert "Grad-CAM" not in ex and "Grad-CAM" in ex.skipped and "Integrated Gradients" in ex
    with pytest.raises(TypeError, match="plain function"):
        xj.explain(f, xs, ["Grad-CAM"], progress=False)


def _f():
    w = jax.random.normal(jax.random.key(0), (6, 3))
    return lambda x: jnp.tanh(x[:, 0] @ w)


def test_user_methods_names_and_duplicates():
    f = _f()
    xs = np.random.default_rng(0).normal(size=(5, 6, 1)).astype(np.float32)
    ig = xj.integrated_gradients(f, steps=8)
    ex = xj.explain(f, xs, [ig, ig, "saliency"], targets=np.zeros(5, int), progress=False)
    assert list(ex) == ["integrated_gradients", "integrated_gradients (2)", "Saliency"]
    np.testing.assert_array_equal(ex["integrated_gradients"], xj.attribute(ig, xs, np.zeros(5, int)))
    ex = xj.explain(f, xs, {"mine": ig}, progress=False)
    assert list(ex) == ["mine"]
    np.testing.assert_array_equal(ex.targets, np.asarray(jax.vmap(f)(xs)).argmax(1))


def test_keyed_maps_do_not_depend_on_shards(tmp_path):
    f = _f()
    xs = np.random.default_rng(1).normal(size=(7, 6, 1)).astype(np.float32)
    rise = xj.rise(f, n_masks=16, grid=3)
    whole = xj.explain(f, xs, {"rise": rise}, key=jax.random.key(3), progress=False)
    for shard in (2, 7):
        src = [xs[:3], xs[3:]]
        part = xj.explain(f, src, {"rise": rise}, key=jax.random.key(3), out_dir=tmp_path / str(shard),
                          shard_size=shard, progress=False)
        # bitwise for batches of 2 or more; XLA:CPU rounds a batch of one input differently
        np.testing.assert_allclose(part["rise"], whole["rise"], rtol=0, atol=1e-6 * np.abs(whole["rise"]).max())
        np.testing.assert_array_equal(part.targets, whole.targets)
    other = xj.explain(f, xs, {"rise": rise}, key=jax.random.key(4), progress=False)
    assert not np.array_equal(other["rise"], whole["rise"])


def test_progress_names_the_method_and_shows_compilation(capsys):
    f = _f()
    xs = np.random.default_rng(2).normal(size=(12, 6, 1)).astype(np.float32)
    xj.explain(f, xs, {"Tiny IG": xj.integrated_gradients(f, steps=5)}, batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "compiling Tiny IG for (2, 6, 1) ..." in err and "Tiny IG: 100%" in err


@pytest.mark.parametrize("methods, error, match", [
    ("nonsense", ValueError, "unknown method 'nonsense'"),
    ([], ValueError, "methods is empty"),
    (3, TypeError, "methods must be"),
    ([lambda x, t: x], TypeError, "Method.wrap"),
    ([3], TypeError, "a method name or a Method"),
])
def test_bad_methods_are_named(methods, error, match):
    xs = np.zeros((2, 6, 1), np.float32)
    with pytest.raises(error, match=match):
        xj.explain(_f(), xs, methods, progress=False)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(targets="lables"), ValueError, "targets must be None"),
    (dict(targets="labels"), ValueError, "targets='labels' needs a source"),
    (dict(shard_size=0), ValueError, "shard_size"),
    (dict(key=3), TypeError, "key"),
])
def test_bad_explain_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        xj.explain(_f(), np.zeros((2, 6, 1), np.float32), ["saliency"], progress=False, **kwargs)


def test_evaluate_gives_the_metrics_own_scores(tmp_path):
    f = _f()
    xs = np.random.default_rng(3).normal(size=(9, 6, 1)).astype(np.float32)
    ex = xj.explain(f, xs, ["saliency", "gradient_x_input"], progress=False)
    support = np.zeros((9, 6), bool)
    support[:, :2] = True
    res = xj.evaluate(f, xs, ex, support=support, progress=False)
    di = M.drop_increase(f, xs, ex["Saliency"], ex.targets)
    np.testing.assert_array_equal(res.scores[("Saliency", "drop")], di.scores["drop"])
    assert res.mean("Saliency", "drop") == pytest.approx(di.mean["drop"])
    pg = M.pointing_game(np.abs(ex["Gradient x Input"].sum(-1)), support)
    np.testing.assert_array_equal(res.scores[("Gradient x Input", "pointing_game")], pg.scores)
    assert res.higher_is_better("drop") is False and res.higher_is_better("insertion_auc") is True
    assert res.score_names == ["drop", "increase", "deletion_auc", "insertion_auc", "sparseness", "pointing_game",
                               "relevance_mass", "localisation_auroc"]
    md = res.to_markdown()
    assert md.splitlines()[0].startswith("| method | drop ↓ | increase ↑") and "| Saliency | " in md
    res.to_json(tmp_path / "r.json")
    res.to_csv(tmp_path / "r.csv")
    back = xj.Results.load(tmp_path / "r.json")
    assert back == res and back.scores.keys() == res.scores.keys()
    assert xj.Results.load(tmp_path / "r.csv") == res
    pd = pytest.importorskip("pandas")
    assert isinstance(res.to_pandas(), pd.DataFrame) and len(res.to_pandas()) == 16


def test_evaluate_runs_explain_for_method_names_and_takes_options():
    f = _f()
    xs = np.random.default_rng(4).normal(size=(6, 6, 1)).astype(np.float32)
    res = xj.evaluate(f, xs, ["saliency"], metrics=["drop_increase"], options={"drop_increase": {"k": 0.5}},
                      progress=False)
    maps = xj.attribute(xj.saliency(f), xs)
    np.testing.assert_array_equal(res.scores[("Saliency", "drop")], M.drop_increase(f, xs, maps, k=0.5).scores["drop"])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(metrics=["nope"]), ValueError, "unknown metric 'nope'"),
    (dict(metrics=["pointing_game"]), ValueError, "needs the ground truth"),
    (dict(metrics=[]), TypeError, "non-empty list"),
    (dict(options={"drop_increase": 3}), ValueError, "options must map"),
    (dict(targets="labels"), ValueError, "no labels"),
    (dict(support=np.zeros((2, 6), bool)), ValueError, "support has 2 rows for 3 inputs"),
])
def test_bad_evaluate_arguments_are_named(kwargs, error, match):
    xs = np.ones((3, 6, 1), np.float32)
    ex = xj.explain(_f(), xs, ["saliency"], progress=False)
    with pytest.raises(error, match=match):
        xj.evaluate(_f(), xs, ex, progress=False, **kwargs)


def test_results_loader_rejects_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"format": "other"}')
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not an xai_jax results file"):
        xj.Results.load(tmp_path / "x.json")
    with pytest.raises(ValueError, match="expected the columns"):
        xj.Results.load(tmp_path / "x.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "mean" in xj.Results.COLUMNS
