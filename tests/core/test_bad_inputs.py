"""Bad input to the attribution methods, `attribute`, the metrics and the experiment flags:
a clear error naming the argument, or a defined result (NaN maps under jit), never a
silent wrong one (such as another class's map).

Each row of CASES is pytest.param(make_call, expected, id=...): make_call(tmp_path) builds
the bad input and returns a zero-argument callable; expected is (ExceptionType, [substrings
of the message]) or a checker(result, tmp_path) that asserts the defined result.
"""

import contextlib
import functools
import importlib.util
import io
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.metrics import (
    bootstrap_ci,
    cascading_randomisation,
    completeness_errors,
    deletion_insertion,
    drop_increase,
    gaussian_blur,
    localisation_auroc,
    pointing_game,
    relevance_mass,
)
from xai_jax.study.models import mnist1d_cnn
from xai_jax.study.suite import predictions

ROOT = Path(__file__).resolve().parents[2]
N = 4  # inputs per batch: small and fast
KEY = jax.random.key(0)


@functools.cache
def cnn():
    """(model, params, f) of the study's MNIST-1D CNN (10 classes), randomly initialised."""
    model = mnist1d_cnn("study")
    params = model.init(jax.random.key(0), jnp.zeros((1, 40, 1)))["params"]
    return model, params, xj.model_fn(model, params)


def f():
    return cnn()[2]


def data(n=N, seed=0):
    """n random inputs (n, 40, 1) float32."""
    return np.random.default_rng(seed).normal(size=(n, 40, 1)).astype(np.float32)


def with_bad(x, idx, value):
    x = x.copy()
    x[idx, 5, 0] = value
    return x


def maps(n=N, seed=1, bad=None):
    """n random saliency maps (n, 40); a NaN in map `bad` if given."""
    m = np.random.default_rng(seed).random((n, 40)).astype(np.float32)
    if bad is not None:
        m[bad, 7] = np.nan
    return m


def support(n=N):
    s = np.zeros((n, 40), bool)
    s[:, 10:20] = True
    return s


def nan_logits(x):
    """A 10-class model whose first logit is NaN for every finite input."""
    return jnp.concatenate([jnp.full(1, jnp.nan), jnp.full(9, x.sum())])


@functools.cache
def broken():
    """(model, params, f) of the CNN with a NaN bias on class 0's logit: every score is NaN
    after the softmax, and the logit of class 0 is NaN for every input."""
    model, params, _ = cnn()
    pn = {k: dict(v) for k, v in params.items()}
    pn["dense"]["bias"] = params["dense"]["bias"].at[0].set(jnp.nan)
    return model, pn, xj.model_fn(model, pn)


BROKEN = {
    "saliency": lambda: xj.saliency(broken()[2]),
    "integrated_gradients": lambda: xj.integrated_gradients(broken()[2], steps=8),
    "grad_cam": lambda: xj.grad_cam(broken()[0], broken()[1]),
    "sise": lambda: xj.sise(broken()[0], broken()[1]),
}


def broken_jit(name):
    run = lambda: jax.jit(jax.vmap(BROKEN[name]()))(jnp.asarray(data(2)), jnp.zeros(2, jnp.int32))  # noqa: E731
    return lambda p: lambda: np.asarray(run())


def completeness_softmax_gap(result, tmp_path):
    """"gap" is F(x) - F(0) of the differentiated score (softmax here), not of the logit."""
    _, _, f_ = cnn()
    xs = data()
    sm = lambda v: np.asarray(jax.nn.softmax(f_(jnp.asarray(v))))  # noqa: E731
    with jax.default_matmul_precision("highest"):  # on GPUs the default (TF32) would round both sides apart
        want = np.array([sm(x)[t] - sm(np.zeros_like(x))[t] for x, t in zip(xs, np.arange(N))])
    np.testing.assert_allclose(result["gap"], want, rtol=1e-4, atol=1e-7)


def completeness_softmax(p):
    def call():
        with jax.default_matmul_precision("highest"):
            return completeness_errors(f(), XS, np.arange(N), steps=8, score="softmax")

    return call


def targets(*values):
    """N targets: `values` first, zeros after."""
    t = np.zeros(N, int)
    t[: len(values)] = values
    return t


# ----------------------------------------------------------------------------- methods

BUILDERS = {
    "integrated_gradients": lambda m, p, f: xj.integrated_gradients(f, steps=8),
    "saliency": lambda m, p, f: xj.saliency(f),
    "gradient_x_input": lambda m, p, f: xj.gradient_x_input(f),
    "smoothgrad": lambda m, p, f: xj.smoothgrad(xj.saliency(f), n_samples=4),
    "grad_cam": lambda m, p, f: xj.grad_cam(m, p),
    "grad_cam_plus_plus": lambda m, p, f: xj.grad_cam_plus_plus(m, p),
    "score_cam": lambda m, p, f: xj.score_cam(m, p),
    "sise": lambda m, p, f: xj.sise(m, p),
    "rise": lambda m, p, f: xj.rise(f, n_masks=16, grid=8, chunk_size=8),
    "occlusion": lambda m, p, f: xj.occlusion(f, window=5),
}
KEYED = {"smoothgrad", "rise"}
MAP_SHAPE = {"integrated_gradients": (40, 1), "saliency": (40, 1), "gradient_x_input": (40, 1),
             "smoothgrad": (40, 1)}  # the others: x's spatial shape (40,)


@functools.cache
def method(name):
    """The method `name` for the CNN, built once (so compiled programs are reused)."""
    return BUILDERS[name](*cnn())


def key_args(name):
    return (KEY,) if name in KEYED else ()


def eager(name, x, target):
    """make_call: method(x, target[, key]) called eagerly."""
    return lambda p: lambda: method(name)(x, target, *key_args(name))


def jit_vmap_pair(name):
    """make_call: jit(vmap(method)) on inputs 0, 1 with targets [0, 10] and [0, 9] (one compile)."""

    def make(tmp_path):
        m = method(name)
        xs = data(2)
        if name in KEYED:
            fn = jax.jit(jax.vmap(m, in_axes=(0, 0, None)))
            run = lambda t: np.asarray(fn(xs, jnp.asarray(t, jnp.int32), KEY))  # noqa: E731
        else:
            fn = jax.jit(jax.vmap(m))
            run = lambda t: np.asarray(fn(xs, jnp.asarray(t, jnp.int32)))  # noqa: E731
        return lambda: (run([0, 10]), run([0, 9]))

    return make


def check_pair(name):
    def check(result, tmp_path):
        bad, good = result
        shape = (2, *MAP_SHAPE.get(name, (40,)))
        assert bad.shape == shape and good.shape == shape, (bad.shape, good.shape)
        assert np.isnan(bad[1]).all(), f"{name}: target 10 under jit gave {bad[1][:5]} (not all NaN)"
        assert not np.allclose(np.nan_to_num(bad[1]), good[1]), f"{name}: target 10 gave class 9's map"
        assert np.isfinite(bad[0]).all() and np.isfinite(good).all()
        np.testing.assert_allclose(bad[0], good[0], rtol=1e-5, atol=1e-6)  # row 0 is class 0's map
        assert np.abs(good).sum() > 0, f"{name}: all-zero maps prove nothing"

    return check


def jit_nan(name, value=np.nan):
    """make_call: jax.jit(method)(x with one non-finite value, 0[, key])."""
    x = with_bad(data(1), 0, value)[0]
    return lambda p: lambda: np.asarray(jax.jit(method(name))(x, 0, *key_args(name)))


def all_nan(shape):
    def check(result, tmp_path):
        assert result.shape == shape, result.shape
        assert np.isnan(result).all(), result

    return check


def attribute_call(name, xs, ts, **kw):
    if name in KEYED:
        kw.setdefault("key", KEY)
    return lambda p: lambda: xj.attribute(method(name), xs, ts, progress=False, **kw)


# ----------------------------------------------------------------------------- user methods


def double(x, t):
    return x * 2


def check_doubled(result, tmp_path):
    np.testing.assert_allclose(result, data() * 2, rtol=1e-6)


def with_num_classes(c):
    def m(x, t):
        return x * t

    m.num_classes = c
    return m


def check_times_target(result, tmp_path):
    np.testing.assert_allclose(result, data() * np.arange(N)[:, None, None], rtol=1e-6)


# ----------------------------------------------------------------------------- baselines


def nan_for_positive_sum(x):
    """A baseline that is NaN for inputs whose values sum to > 0, zero otherwise."""
    return jnp.where(x.sum() > 0, jnp.nan, 0.0) * jnp.ones_like(x)


POSITIVE_SUM = np.flatnonzero(data().reshape(N, -1).sum(1) > 0).tolist()
assert 0 < len(POSITIVE_SUM) < N, POSITIVE_SUM  # some inputs, not all: the error must name exactly those


def ig_with(baseline):
    return xj.integrated_gradients(f(), steps=8, baseline=baseline)


# ----------------------------------------------------------------------------- metrics


def predicted():
    return np.asarray(jax.vmap(f())(jnp.asarray(data()))).argmax(1)


def metric_none_matches_predicted(metric, fields, **kw):
    """make_call: (metric with targets=None, metric with the predicted classes passed)."""
    return lambda p: lambda: (metric(f(), data(), maps(), targets=None, **kw),
                              metric(f(), data(), maps(), targets=predicted(), **kw), fields)


def check_same_as_predicted(result, tmp_path):
    none, explicit, fields = result
    for k in fields:
        assert np.isfinite(none[k]).all(), k
        np.testing.assert_allclose(none[k], explicit[k], rtol=1e-5, err_msg=k)
    assert none[fields[0]].shape[0] == N
    assert (predicted() != 0).any()  # else None read as class 0 would pass unnoticed


def saliency_maker(params):
    return xj.saliency(xj.model_fn(cnn()[0], params))


def cascade(xs, ts):
    return lambda p: lambda: cascading_randomisation(saliency_maker, cnn()[0], cnn()[1], xs, ts, key=KEY,
                                                     reduce=lambda m: m.sum(-1))


def check_empty(shape):
    def check(result, tmp_path):
        assert isinstance(result, np.ndarray) and result.shape == shape, (type(result), result.shape)
        assert result.dtype == np.float32, result.dtype

    return check


def check_empty_delta(result, tmp_path):
    attributions, delta = result
    assert attributions.shape == (0, 40, 1) and delta.shape == (0,), (attributions.shape, delta.shape)


def check_legacy_key_same(result, tmp_path):
    legacy, typed = result
    assert legacy.shape == (N, 40, 1) and np.isfinite(legacy).all()
    np.testing.assert_allclose(legacy, typed, rtol=1e-6)


# ----------------------------------------------------------------------------- experiment flags


def job(*flags):
    """experiments/mnist1d_job.py's argument parsing, run in-process: a bad flag ends it with
    argparse's exit code 2 and a message on stderr before any work starts."""
    def make(tmp_path):
        def run():
            spec = importlib.util.spec_from_file_location("mnist1d_job", ROOT / "experiments" / "mnist1d_job.py")
            script = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(script)
            argv = ["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                    "--ckpt-dir", str(tmp_path / "ck"), *flags]
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr):
                try:
                    script.parse_args(argv)
                    code = 0
                except SystemExit as e:
                    code = e.code
            return types.SimpleNamespace(returncode=code, stderr=stderr.getvalue())

        return run

    return make


def exits_2(*parts):
    def check(result, tmp_path):
        assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
        for part in parts:
            assert part in result.stderr, (part, result.stderr[-2000:])
        assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()  # nothing ran

    return check


def check_doubled_sensitivity(result, tmp_path):
    """e(x) = 2x: SENS = max_s |d_s| / |x| with d_s ~ U[-0.02, 0.02]^40, below 0.02 * sqrt(40) / |x|."""
    sens = np.asarray(result["sensitivity"])
    bound = 0.02 * np.sqrt(40) / np.linalg.norm(data().reshape(N, -1), axis=1)
    assert sens.shape == (N,) and (sens > 0).all() and (sens <= bound).all(), (sens, bound)


def batchnorm_params_only():
    """(module, params) of a linen model with BatchNorm, without its batch_stats."""
    import flax.linen as nn

    class BN(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Conv(4, (3,))(x)))
            return nn.Dense(3)(x.mean(1))

    variables = BN().init(jax.random.key(0), jnp.zeros((1, 40, 1)))
    return BN(), variables["params"]


def nnx_in_train_mode():
    """f(x) of an NNX model with BatchNorm, left in training mode."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv, self.bn = nnx.Conv(1, 4, (3,), rngs=rngs), nnx.BatchNorm(4, rngs=rngs)
            self.dense = nnx.Linear(4, 10, rngs=rngs)

        def __call__(self, x):
            return self.dense(nnx.relu(self.bn(self.conv(x))).mean(-2))

    net = Net(nnx.Rngs(0))
    net.train()
    return lambda x: net(x[None])[0]


# ----------------------------------------------------------------------------- the table

X0 = data(1)[0]
XS = data()
XS_NAN = with_bad(XS, 2, np.nan)
X_NAN = XS_NAN[2]
EMPTY_X = np.zeros((0, 40, 1), np.float32)
EMPTY_T = np.zeros(0, int)

CASES = [
    # 1. out-of-range targets: attribute checks the batch; each method checks eagerly, NaN under jit
    pytest.param(attribute_call("integrated_gradients", XS, np.full(N, 10)),
                 (ValueError, ["targets", "[0, 10)", "10 classes", "got 10"]), id="attribute-targets-10"),
    pytest.param(attribute_call("integrated_gradients", XS, targets(0, 3, -1)),
                 (ValueError, ["targets", ">= 0", "got -1"]), id="attribute-targets-negative"),
    pytest.param(attribute_call("rise", XS, targets(11)), (ValueError, ["targets", "[0, 10)", "got 11"]),
                 id="attribute-keyed-targets-11"),
    pytest.param(attribute_call("saliency", XS, np.zeros(N, np.float32)), (TypeError, ["targets", "float32"]),
                 id="attribute-targets-float"),
    pytest.param(attribute_call("saliency", XS, np.zeros(N + 1, int)), (ValueError, ["targets", f"({N},)"]),
                 id="attribute-targets-wrong-length"),
    *[pytest.param(eager(name, X0, 10), (ValueError, ["target 10", "out of range", "10 classes"]),
                   id=f"{name}-eager-target-10") for name in BUILDERS],
    pytest.param(eager("saliency", X0, -1), (ValueError, ["target -1", "out of range"]),
                 id="saliency-eager-target-negative"),
    pytest.param(eager("saliency", X0, 1.0), (TypeError, ["target", "float"]), id="saliency-eager-target-float"),
    pytest.param(eager("saliency", X0, np.array([1, 2])), (ValueError, ["target", "scalar", "(2,)"]),
                 id="saliency-eager-target-vector"),
    *[pytest.param(jit_vmap_pair(name), check_pair(name), id=f"{name}-jit-vmap-target-10-nan")
      for name in BUILDERS],
    # 2. a user-written method: num_classes is needed to range-check targets
    pytest.param(lambda p: lambda: xj.attribute(lambda x, t: x * 2, XS, targets(1, 2)),
                 (TypeError, ["num_classes", "attribute(..., num_classes=C)"]), id="user-method-no-num-classes"),
    pytest.param(lambda p: lambda: xj.attribute(double, XS, targets(1, 2), num_classes=10, progress=False),
                 check_doubled, id="user-method-num-classes-works"),
    pytest.param(lambda p: lambda: xj.attribute(double, XS, targets(1, 10), num_classes=10),
                 (ValueError, ["targets", "[0, 10)", "got 10"]), id="user-method-target-10"),
    pytest.param(lambda p: lambda: xj.attribute(double, XS, targets(1, 2), num_classes=0),
                 (ValueError, ["num_classes", ">= 1", "got 0"]), id="user-method-num-classes-0"),
    pytest.param(lambda p: lambda: xj.attribute(with_num_classes(4), XS, np.arange(N), progress=False),
                 check_times_target, id="user-method-carries-num-classes"),
    pytest.param(lambda p: lambda: xj.attribute(with_num_classes(3), XS, np.arange(N)),
                 (ValueError, ["targets", "[0, 3)", "got 3"]), id="user-method-carried-num-classes-range"),
    pytest.param(attribute_call("integrated_gradients", XS, targets(1, 2), num_classes=3),
                 (ValueError, ["num_classes=3", "contradicts", "10 classes"]), id="num-classes-contradicts-model"),
    pytest.param(attribute_call("grad_cam", XS, targets(1, 2), num_classes=11),
                 (ValueError, ["num_classes=11", "10 classes"]), id="num-classes-contradicts-grad-cam"),
    # 3. metrics range-check targets against f's classes; None means the predicted class
    pytest.param(lambda p: lambda: drop_increase(f(), XS, maps(), targets=targets(0, 10)),
                 (ValueError, ["targets", "[0, 10)", "got 10"]), id="drop-increase-target-10"),
    pytest.param(lambda p: lambda: drop_increase(f(), XS, maps(), targets=targets(0, -5)),
                 (ValueError, ["targets", ">= 0", "-5", "targets=None"]), id="drop-increase-target-negative"),
    pytest.param(metric_none_matches_predicted(drop_increase, ("drop", "increase")), check_same_as_predicted,
                 id="drop-increase-targets-none"),
    pytest.param(lambda p: lambda: deletion_insertion(f(), XS, maps(), targets=targets(10)),
                 (ValueError, ["targets", "[0, 10)", "got 10"]), id="deletion-insertion-target-10"),
    pytest.param(lambda p: lambda: deletion_insertion(f(), XS, maps(), targets=targets(-5)),
                 (ValueError, ["targets", ">= 0", "-5"]), id="deletion-insertion-target-negative"),
    pytest.param(metric_none_matches_predicted(deletion_insertion, ("deletion_curve", "insertion_curve"),
                                               step=4),
                 check_same_as_predicted, id="deletion-insertion-targets-none"),
    pytest.param(lambda p: lambda: completeness_errors(f(), XS, targets(0, 0, 10), steps=4),
                 (ValueError, ["targets", "[0, 10)", "got 10"]), id="completeness-target-10"),
    pytest.param(lambda p: lambda: completeness_errors(f(), XS, targets(0, -5), steps=4),
                 (ValueError, ["targets", ">= 0", "-5"]), id="completeness-target-negative"),
    pytest.param(lambda p: lambda: completeness_errors(f(), XS, None, steps=4),
                 (TypeError, ["targets", "integer class indices"]), id="completeness-targets-none-required"),
    pytest.param(cascade(XS, targets(10)), (ValueError, ["targets", "[0, 10)", "got 10"]),
                 id="cascading-target-10"),
    pytest.param(cascade(XS, targets(-5)), (ValueError, ["targets", ">= 0", "-5"]), id="cascading-target-negative"),
    # 4. non-finite inputs: NaN maps under jit, ValueError naming x eagerly
    *[pytest.param(jit_nan(name), all_nan(MAP_SHAPE.get(name, (40,))), id=f"{name}-jit-nan-x")
      for name in ("sise", "smoothgrad", "integrated_gradients", "grad_cam", "rise")],
    pytest.param(jit_nan("integrated_gradients", np.inf), all_nan((40, 1)), id="integrated_gradients-jit-inf-x"),
    *[pytest.param(eager(name, X_NAN, 0), (ValueError, ["x contains NaN", "(40, 1)"]), id=f"{name}-eager-nan-x")
      for name in ("sise", "smoothgrad", "integrated_gradients", "grad_cam", "rise", "occlusion")],
    pytest.param(eager("saliency", np.zeros((40, 1), np.int32), 0), (TypeError, ["x", "float dtype", "int32"]),
                 id="saliency-eager-int-x"),
    pytest.param(attribute_call("saliency", XS_NAN, targets()), (ValueError, ["xs contains NaN", "[2]", f"of {N}"]),
                 id="attribute-nan-xs"),
    pytest.param(cascade(XS_NAN, targets()), (ValueError, ["xs contains NaN", "[2]"]), id="cascading-nan-xs"),
    pytest.param(lambda p: lambda: completeness_errors(f(), XS_NAN, targets(), steps=4),
                 (ValueError, ["xs contains NaN", "[2]"]), id="completeness-nan-xs"),
    # 5. baselines
    pytest.param(lambda p: lambda: ig_with(float("nan")), (ValueError, ["baseline", "NaN", "finite"]),
                 id="ig-baseline-nan"),
    pytest.param(lambda p: lambda: ig_with(np.full((40, 1), np.inf)), (ValueError, ["baseline", "NaN or inf"]),
                 id="ig-baseline-array-inf"),
    pytest.param(lambda p: lambda: ig_with("zeros"), (TypeError, ["baseline", "str", "'zeros'"]),
                 id="ig-baseline-str"),
    pytest.param(lambda p: lambda: ig_with(None), (TypeError, ["baseline", "NoneType"]), id="ig-baseline-none"),
    pytest.param(lambda p: lambda: ig_with(np.zeros((39, 1)))(X0, 0),
                 (ValueError, ["baseline has shape (39, 1)", "(40, 1)"]), id="ig-baseline-wrong-shape"),
    pytest.param(lambda p: lambda: ig_with(lambda x: x * jnp.nan)(X0, 0),
                 (ValueError, ["baseline(x) returned NaN"]), id="ig-callable-baseline-nan-eager"),
    pytest.param(lambda p: lambda: ig_with(lambda x: x[:20])(X0, 0),
                 (ValueError, ["baseline(x) returned shape (20, 1)", "(40, 1)"]),
                 id="ig-callable-baseline-wrong-shape"),
    pytest.param(lambda p: lambda: np.asarray(jax.jit(ig_with(lambda x: x * jnp.nan))(X0, 0)), all_nan((40, 1)),
                 id="ig-callable-baseline-nan-jit"),
    pytest.param(lambda p: lambda: xj.attribute(ig_with(lambda x: x * jnp.nan), XS, targets()),
                 (ValueError, ["baseline(x) returned NaN", str(list(range(N)))]),  # the eager call's words
                 id="ig-callable-baseline-nan-attribute"),
    pytest.param(lambda p: lambda: xj.attribute(ig_with(nan_for_positive_sum), XS, targets()),
                 (ValueError, ["baseline(x) returned NaN", f"inputs {POSITIVE_SUM}"]),
                 id="ig-callable-baseline-nan-some-inputs"),
    pytest.param(lambda p: lambda: xj.occlusion(f(), window=5, baseline=float("nan")),
                 (ValueError, ["baseline", "finite", "nan"]), id="occlusion-baseline-nan"),
    pytest.param(lambda p: lambda: xj.rise(f(), fill=float("nan")), (ValueError, ["fill", "finite", "nan"]),
                 id="rise-fill-nan"),
    pytest.param(lambda p: lambda: xj.score_cam(*cnn()[:2], baseline="x"), (TypeError, ["baseline", "str", "'x'"]),
                 id="score-cam-baseline-str"),
    pytest.param(lambda p: lambda: xj.score_cam(*cnn()[:2], baseline=float("inf")),
                 (ValueError, ["baseline", "finite"]), id="score-cam-baseline-inf"),
    # 6. NaN saliency maps in the metrics
    pytest.param(lambda p: lambda: pointing_game(maps(bad=1), support()),
                 (ValueError, ["saliency contains NaN", "[1]"]), id="pointing-game-nan-map"),
    pytest.param(lambda p: lambda: relevance_mass(maps(bad=3), support()),
                 (ValueError, ["saliency contains NaN", "[3]"]), id="relevance-mass-nan-map"),
    pytest.param(lambda p: lambda: localisation_auroc(maps(bad=0), support()),
                 (ValueError, ["saliency contains NaN", "[0]"]), id="localisation-auroc-nan-map"),
    pytest.param(lambda p: lambda: drop_increase(f(), XS, maps(bad=2)),
                 (ValueError, ["saliency contains NaN", "[2]"]), id="drop-increase-nan-map"),
    pytest.param(lambda p: lambda: deletion_insertion(f(), XS, maps(bad=1)),
                 (ValueError, ["saliency contains NaN", "[1]"]), id="deletion-insertion-nan-map"),
    pytest.param(lambda p: lambda: drop_increase(f(), XS, maps()[:, :39]),
                 (ValueError, ["saliency must have shape (4, 40)", "(4, 39)"]), id="drop-increase-map-wrong-shape"),
    # 7. degenerate parameters
    pytest.param(lambda p: lambda: deletion_insertion(f(), XS, maps(), blur_sigma=0),
                 (ValueError, ["blur_sigma", "> 0", "got 0"]), id="deletion-insertion-blur-sigma-0"),
    pytest.param(lambda p: lambda: deletion_insertion(f(), XS, maps(), step=41),
                 (ValueError, ["step 41", "40 spatial positions"]), id="deletion-insertion-step-too-large"),
    pytest.param(lambda p: lambda: drop_increase(f(), XS, maps(), k=0.001),
                 (ValueError, ["k=0.001", "0 of the 40", "k >= 0.025"]), id="drop-increase-k-too-small"),
    pytest.param(lambda p: lambda: drop_increase(f(), XS, maps(), k=0.0),
                 (ValueError, ["k", "(0, 1]", "got 0"]), id="drop-increase-k-zero"),
    pytest.param(lambda p: lambda: gaussian_blur(jnp.asarray(X0), 0), (ValueError, ["sigma", "> 0", "got 0"]),
                 id="gaussian-blur-sigma-0"),
    pytest.param(lambda p: lambda: gaussian_blur(jnp.asarray(X0), float("nan")), (ValueError, ["sigma", "finite"]),
                 id="gaussian-blur-sigma-nan"),
    # 8. N = 0: attribute returns an empty array; every metric raises
    pytest.param(attribute_call("integrated_gradients", EMPTY_X, EMPTY_T), check_empty((0, 40, 1)),
                 id="attribute-ig-no-inputs"),
    pytest.param(attribute_call("grad_cam", EMPTY_X, EMPTY_T), check_empty((0, 40)), id="attribute-grad-cam-no-inputs"),
    pytest.param(attribute_call("rise", EMPTY_X, EMPTY_T), check_empty((0, 40)), id="attribute-rise-no-inputs"),
    pytest.param(lambda p: lambda: xj.attribute(xj.integrated_gradients(f(), steps=4, return_delta=True),
                                                EMPTY_X, EMPTY_T),
                 check_empty_delta, id="attribute-ig-delta-no-inputs"),
    pytest.param(attribute_call("saliency", EMPTY_X, np.zeros(1, int)), (ValueError, ["targets", "(0,)"]),
                 id="attribute-no-inputs-targets-mismatch"),
    pytest.param(lambda p: lambda: drop_increase(f(), EMPTY_X, np.zeros((0, 40))),
                 (ValueError, ["drop_increase needs at least one input", "(0, 40, 1)"]), id="drop-increase-no-inputs"),
    pytest.param(lambda p: lambda: deletion_insertion(f(), EMPTY_X, np.zeros((0, 40))),
                 (ValueError, ["deletion_insertion needs at least one input"]), id="deletion-insertion-no-inputs"),
    pytest.param(lambda p: lambda: completeness_errors(f(), EMPTY_X, EMPTY_T),
                 (ValueError, ["completeness_errors needs at least one input"]), id="completeness-no-inputs"),
    pytest.param(cascade(EMPTY_X, EMPTY_T), (ValueError, ["mprt needs at least one input"]),  # an alias of mprt
                 id="cascading-no-inputs"),
    pytest.param(lambda p: lambda: pointing_game(np.zeros((0, 40)), np.zeros((0, 40), bool)),
                 (ValueError, ["pointing_game needs at least one input"]), id="pointing-game-no-inputs"),
    pytest.param(lambda p: lambda: relevance_mass(np.zeros((0, 40)), np.zeros((0, 40), bool)),
                 (ValueError, ["relevance_mass needs at least one input"]), id="relevance-mass-no-inputs"),
    pytest.param(lambda p: lambda: localisation_auroc(np.zeros((0, 40)), np.zeros((0, 40), bool)),
                 (ValueError, ["localisation_auroc needs at least one input"]), id="localisation-auroc-no-inputs"),
    pytest.param(lambda p: lambda: bootstrap_ci([]), (ValueError, ["at least one value"]), id="bootstrap-ci-empty"),
    pytest.param(lambda p: lambda: bootstrap_ci(np.zeros(0)), (ValueError, ["at least one value"]),
                 id="bootstrap-ci-empty-array"),
    # 9. keys
    pytest.param(lambda p: lambda: xj.rise(f(), n_masks=10)(X0, 0, None),
                 (TypeError, ["key", "jax.random key", "NoneType"]), id="rise-key-none"),
    pytest.param(lambda p: lambda: xj.rise(f(), n_masks=10)(X0, 0, 0), (TypeError, ["jax.random key", "int"]),
                 id="rise-key-int"),
    pytest.param(lambda p: lambda: method("rise")(X0, 0), (TypeError, ["rise takes (x, target, key)"]),
                 id="rise-no-key"),
    pytest.param(lambda p: lambda: method("rise")(X0, 0, jax.random.split(KEY, 2)),
                 (ValueError, ["single jax.random key", "(2,)"]), id="rise-key-array"),
    pytest.param(attribute_call("smoothgrad", XS, targets(), key=0), (TypeError, ["key", "jax.random key", "int"]),
                 id="attribute-key-int"),
    pytest.param(lambda p: lambda: xj.attribute(method("smoothgrad"), XS, targets()),
                 (TypeError, ["takes a key", "key=jax.random.key(0)"]), id="attribute-keyed-without-key"),
    pytest.param(lambda p: lambda: xj.attribute(method("rise"), XS, targets()),
                 (TypeError, ["takes a key", "key="]), id="attribute-rise-without-key"),
    pytest.param(attribute_call("saliency", XS, targets(), key=KEY), (TypeError, ["key=", "takes no key"]),
                 id="attribute-key-to-unkeyed"),
    pytest.param(lambda p: lambda: method("saliency")(X0, 0, KEY),
                 (TypeError, ["saliency takes (x, target)", "1 extra"]), id="saliency-eager-extra-key"),
    pytest.param(lambda p: lambda: xj.smoothgrad(method("rise")), (TypeError, ["unkeyed", "takes a key"]),
                 id="smoothgrad-of-keyed-method"),
    pytest.param(lambda p: lambda: (xj.attribute(method("smoothgrad"), XS, targets(), key=jax.random.PRNGKey(0)),
                                    xj.attribute(method("smoothgrad"), XS, targets(), key=jax.random.key(0))),
                 check_legacy_key_same, id="attribute-legacy-key-same-as-typed"),
    # 10. occlusion window and stride
    pytest.param(lambda p: lambda: xj.occlusion(f(), window=2.5), (TypeError, ["window", "float", "2.5"]),
                 id="occlusion-window-float"),
    pytest.param(lambda p: lambda: xj.occlusion(f(), window=4, stride=0), (ValueError, ["stride", ">= 1", "got 0"]),
                 id="occlusion-stride-0"),
    pytest.param(lambda p: lambda: xj.occlusion(f(), window=(2, 2.5)), (TypeError, ["window", "float", "2.5"]),
                 id="occlusion-window-tuple-float"),
    pytest.param(lambda p: lambda: xj.occlusion(f(), window=()), (ValueError, ["window", "non-empty"]),
                 id="occlusion-window-empty"),
    pytest.param(lambda p: lambda: xj.occlusion(f(), window=True), (TypeError, ["window", "bool"]),
                 id="occlusion-window-bool"),
    pytest.param(lambda p: lambda: xj.occlusion(f(), window=41)(X0, 0), (ValueError, ["window (41,)", "(40,)"]),
                 id="occlusion-window-too-large"),
    pytest.param(lambda p: lambda: xj.occlusion(f(), window=(2, 2))(X0, 0), (ValueError, ["window", "1 entries"]),
                 id="occlusion-window-wrong-rank"),
    # 11. experiment flags fail at argument parsing (exit code 2, the flag named)
    pytest.param(job("--n-explain", "-5"), exits_2("--n-explain", "must be >= 1, got -5"), id="job-n-explain-negative"),
    pytest.param(job("--n-explain", "0"), exits_2("--n-explain", "must be >= 1, got 0"), id="job-n-explain-zero"),
    pytest.param(job("--seed", "-1"), exits_2("--seed", ">= 0, got -1"), id="job-seed-negative"),
    pytest.param(job("--n-sanity", "x"), exits_2("--n-sanity", "'x'"), id="job-n-sanity-not-int"),
    # 12. a model that returns NaN logits on finite inputs (e.g. NaN weights): XLA:CPU's max ignores
    # NaN, so a plain softmax would turn it into finite probabilities; every path reports it instead
    pytest.param(lambda p: lambda: drop_increase(nan_logits, XS, maps()),
                 (ValueError, ["drop_increase", "NaN or inf scores", "[0, 1, 2, 3]"]), id="drop-nan-logits"),
    pytest.param(lambda p: lambda: deletion_insertion(nan_logits, XS, maps()),
                 (ValueError, ["deletion_insertion", "NaN or inf scores"]), id="deletion-nan-logits"),
    pytest.param(lambda p: lambda: xj.attribute(xj.rise(nan_logits, n_masks=20, grid=4), XS, targets(), key=KEY),
                 (ValueError, ["NaN or inf scores", "[0, 1, 2, 3]"]), id="attribute-rise-nan-logits"),
    pytest.param(lambda p: lambda: jax.jit(xj.rise(nan_logits, n_masks=20, grid=4))(X0, 1, KEY),
                 lambda r, p: np.testing.assert_array_equal(np.isnan(np.asarray(r)), True), id="jit-rise-nan-logits"),
    # 13. a broken model (NaN logit) under gradient and CAM methods: attribute and eager calls raise, jit gives NaN
    *[pytest.param(lambda p, n=name: lambda: xj.attribute(BROKEN[n](), XS, targets(), progress=False),
                   (ValueError, ["NaN or inf", "[0, 1, 2, 3]"]), id=f"attribute-{name}-broken-model")
      for name in BROKEN],
    *[pytest.param(lambda p, n=name: lambda: BROKEN[n]()(X0, 1), (ValueError, ["NaN or inf"]),
                   id=f"eager-{name}-broken-model") for name in BROKEN],
    *[pytest.param(broken_jit(name), lambda r, p: np.testing.assert_array_equal(np.isnan(r), True),
                   id=f"jit-{name}-broken-model") for name in BROKEN],
    pytest.param(lambda p: lambda: predictions(broken()[2], XS),
                 (ValueError, ["NaN or inf scores", "[0, 1, 2, 3]"]), id="predictions-broken-model"),
    pytest.param(lambda p: lambda: predictions(lambda x: cnn()[0].apply({"params": cnn()[1]}, x[None]), XS),
                 (ValueError, ["vector of class scores", "(1, 10)"]), id="predictions-batched-output"),
    # 14. helpers and arguments found by the audit
    pytest.param(completeness_softmax, completeness_softmax_gap, id="completeness-gap-uses-score"),
    pytest.param(lambda p: lambda: xj.metrics.spearman_rows(maps(bad=1), maps()), (ValueError, ["a", "NaN", "[1]"]),
                 id="spearman-nan"),
    pytest.param(lambda p: lambda: xj.metrics.spearman_rows(maps()[0], maps()[1]), (ValueError, ["(N, D...)"]),
                 id="spearman-1d"),
    pytest.param(lambda p: lambda: gaussian_blur(jnp.zeros((40, 1)), 2.0, "rise", taps=4),
                 (ValueError, ["taps", "odd"]), id="blur-even-taps"),
    pytest.param(lambda p: lambda: gaussian_blur(jnp.zeros(40), 2.0), (ValueError, ["x", "(40,)"]), id="blur-1d-x"),
    pytest.param(lambda p: lambda: xj.metrics.top_k_mask(jnp.array([np.nan, 0.1, 0.2, 0.3]), 0.25),
                 (ValueError, ["saliency", "NaN"]), id="topk-nan"),
    pytest.param(lambda p: lambda: xj.metrics.top_k_mask(jnp.zeros(0), 0.5), (ValueError, ["saliency", "empty"]),
                 id="topk-empty"),
    pytest.param(lambda p: lambda: xj.completeness_delta(f(), jnp.ones((39, 1)), X0, 0),
                 (ValueError, ["attributions", "(40, 1)", "(39, 1)"]), id="completeness-delta-shape"),
    pytest.param(lambda p: lambda: bootstrap_ci(None), (TypeError, ["values", "NoneType"]), id="bootstrap-none"),
    pytest.param(lambda p: lambda: bootstrap_ci(np.array([1 + 5j, 2 + 5j])), (TypeError, ["values", "complex"]),
                 id="bootstrap-complex"),
    pytest.param(lambda p: lambda: xj.smoothgrad(xj.integrated_gradients(f(), steps=4, return_delta=True)),
                 (TypeError, ["return_delta"]), id="smoothgrad-of-delta-ig"),
    pytest.param(lambda p: lambda: xj.saliency(None), (TypeError, ["f", "NoneType"]), id="saliency-f-none"),
    pytest.param(lambda p: lambda: xj.integrated_gradients(cnn()[0]), (TypeError, ["f", "model_fn"]),
                 id="ig-f-module"),
    pytest.param(lambda p: lambda: xj.occlusion(f(), window=4, baseline=1e300), (ValueError, ["baseline", "float32"]),
                 id="occlusion-baseline-overflows"),
    pytest.param(lambda p: lambda: drop_increase(f(), XS, maps(), fill=1e300), (ValueError, ["fill", "float32"]),
                 id="drop-fill-overflows"),
    pytest.param(attribute_call("saliency", XS, targets(), mesh="cpu"), (TypeError, ["mesh", "str"]),
                 id="attribute-mesh-str"),
    pytest.param(lambda p: lambda: drop_increase(f(), XS, maps(), mesh="cpu"), (TypeError, ["mesh"]),
                 id="drop-mesh-str"),
    pytest.param(lambda p: lambda: xj.attribute(method("saliency"), [XS[0], XS[0][:20]], [0, 1]),
                 (TypeError, ["xs", "equally shaped"]), id="attribute-ragged"),
    pytest.param(lambda p: lambda: xj.quadrature("trapezoid", [4]), (TypeError, ["steps", "list"]),
                 id="quadrature-steps-list"),
    # units and ranges a user can confuse: a clear error, never a silent result
    pytest.param(lambda p: lambda: xj.metrics.road(f(), XS, maps(), targets=np.zeros(N, int), percentages=[0.1, 0.5]),
                 (ValueError, ["percentages are in percent", "Multiply by 100"]), id="road-fractions"),
    pytest.param(lambda p: lambda: xj.occlusion(f(), window=2, stride=5)(X0, 0),
                 (ValueError, ["stride (5,) is larger than window (2,)", "allow_gaps=True"]), id="occlusion-gaps"),
    pytest.param(lambda p: lambda: xj.metrics.drop_increase(f(), XS, maps(), np.zeros(N, int), score="logit"),
                 (ValueError, ["score='logit' applies to convention='study' only"]), id="drop-score-precise"),
    pytest.param(lambda p: lambda: xj.metrics.sparseness(np.ones((40, 1))),
                 (ValueError, ["holds 1 value", "maps[None]"]), id="sparseness-unbatched"),
    pytest.param(lambda p: lambda: xj.occlusion(f(), window=2, stride=5, allow_gaps="yes"),
                 (TypeError, ["allow_gaps must be True or False"]), id="occlusion-allow-gaps-type"),
    # issue 21: a model where a method is expected, a model's state or mode, the argument to name
    pytest.param(lambda p: lambda: xj.smoothgrad(cnn()[0]),
                 (TypeError, ["smoothgrad: method must be an attribution method", "linen module MNIST1DCNN",
                              "xai_jax.saliency(model"]), id="smoothgrad-of-a-module"),
    pytest.param(lambda p: lambda: xj.smoothgrad(xj.Model(cnn()[0], {"params": cnn()[1]})),
                 (TypeError, ["smoothgrad: method must be", "the model Model"]), id="smoothgrad-of-a-model"),
    pytest.param(lambda p: lambda: xj.smoothgrad(f()),
                 (TypeError, ["function of 1 positional argument", "a model f(x)?"]), id="smoothgrad-of-f"),
    pytest.param(lambda p: lambda: xj.xrai(cnn()[0]), (TypeError, ["xrai: method must be", "linen module"]),
                 id="xrai-of-a-module"),
    pytest.param(lambda p: lambda: xj.attribute(cnn()[0], XS, targets()),
                 (TypeError, ["attribute: method must be", "linen module"]), id="attribute-of-a-module"),
    pytest.param(lambda p: lambda: xj.grad_cam(*batchnorm_params_only())(X0, 0),
                 (ValueError, ["variable collection that its variables lack", "batch_stats",
                               "xai_jax.Model(module, variables)"]), id="grad-cam-batchnorm-params-only"),
    pytest.param(lambda p: lambda: xj.attribute(xj.saliency(nnx_in_train_mode()), XS, targets()),
                 (ValueError, ["updates its own state", "module.eval()"]), id="nnx-train-mode-as-f"),
    pytest.param(lambda p: lambda: xj.metrics.max_sensitivity(double, XS, targets(), key=KEY),
                 (TypeError, ["num_classes is required", "max_sensitivity(..., num_classes=C)"]),
                 id="max-sensitivity-user-method-no-model"),
    pytest.param(lambda p: lambda: xj.metrics.max_sensitivity(f(), XS, double, targets(), key=KEY, n_perturb_samples=2),
                 check_doubled_sensitivity, id="max-sensitivity-user-method-model-given"),
]


@pytest.mark.parametrize("make_call, expected", CASES)
def test_bad_input(tmp_path, make_call, expected):
    """Each row: the documented error with a message naming the argument, or the defined result."""
    call = make_call(tmp_path)
    if isinstance(expected, tuple):
        exc, parts = expected
        with pytest.raises(exc) as info:
            call()
        for part in parts:
            assert part in str(info.value), f"{part!r} not in {str(info.value)!r}"
    else:
        expected(call(), tmp_path)
