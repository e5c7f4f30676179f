"""Bad input to training gets a clear error (or a defined result), never a silent wrong one.

One table, CASES: each row is pytest.param(make_call, expected, id=...). make_call(tmp_path)
builds the bad input and returns a zero-argument callable. expected is either
(ExceptionType, [substrings the message must contain]) or a checker(call, tmp_path) that
runs the call and asserts on its defined result.
"""

import re
import warnings

import jax
import numpy as np
import pytest

from xai_jax.distributed import data_mesh
from xai_jax.study.models import mnist1d_cnn
from xai_jax.study.train import (
    NonFiniteLossError,
    TrainConfig,
    create_state,
    evaluate,
    fit,
    latest_step,
    predict_logits,
    restore_checkpoint,
    save_checkpoint,
)

MODEL = mnist1d_cnn("study")
SMALL = TrainConfig(steps=4, batch_size=32, warmup_steps=0, chunk=2)


def data(n=256, seed=0):
    """n random inputs (n, 40, 1) float32 and labels in [0, 10)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 40, 1)).astype(np.float32), rng.integers(0, 10, n)


def with_bad(x, idx, value):
    x = x.copy()
    x[idx, 5, 0] = value
    return x


def fit_call(x=None, y=None, cfg=SMALL, **kw):
    """make_call for fit on (x, y) (default: random data), num_classes=10 unless given."""
    def make(tmp_path):
        xs, ys = data()
        kw.setdefault("num_classes", 10)
        return lambda: fit(MODEL, xs if x is None else x, ys if y is None else y, cfg, progress=False, **kw)
    return make


def params(seed=0):
    return create_state(MODEL, (40, 1), TrainConfig(seed=seed)).params


def nan_params():
    """params(0) with one NaN bias in the dense layer (every logit of class 0 NaN)."""
    p = params()
    p["dense"]["bias"] = p["dense"]["bias"].at[0].set(np.nan)
    return p


def state(seed=0):
    return create_state(MODEL, (40, 1), TrainConfig(seed=seed))


def a_file(tmp_path):
    f = tmp_path / "not_a_dir"
    f.write_text("x")
    return f


def two_checkpoints_latest_corrupt(tmp_path, corrupt_all=False):
    """Saves steps 20 (seed 1) and 40 (seed 2) under tmp_path/ck, then garbles step 40 (and 20 if
    corrupt_all) by truncating every file to half its size. Returns (ckpt_dir, step-20 params)."""
    ck = tmp_path / "ck"
    s20 = create_state(MODEL, (40, 1), TrainConfig(seed=1)).replace(step=20)
    save_checkpoint(ck, s20)
    save_checkpoint(ck, create_state(MODEL, (40, 1), TrainConfig(seed=2)).replace(step=40))
    for step in ("40", "20") if corrupt_all else ("40",):
        for f in (ck / step).rglob("*"):
            if f.is_file():
                f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return ck, s20.params


def assert_same_tree(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)


# ----------------------------------------------------------------------------- checkers


def diverging_fit(tmp_path):
    """learning_rate 1e8 (warm-up from 0 over 10 steps), a checkpoint every step."""
    x, y = data()
    cfg = TrainConfig(steps=40, batch_size=32, learning_rate=1e8, warmup_steps=10, chunk=8)
    return lambda: fit(MODEL, x, y, cfg, num_classes=10, ckpt_dir=tmp_path / "ck", ckpt_every=1, progress=False)


def check_diverging_fit(call, tmp_path):
    """NonFiniteLossError names the step (the loss, or the state save_checkpoint refused: Adam's second moment
    overflows before the loss does); the newest checkpoint predates it, restores without warning, is finite."""
    pattern = r"training (loss became (nan|inf|-inf) at|parameters or optimiser state became non-finite by) step (\d+)"
    with pytest.raises(NonFiniteLossError, match=pattern) as info:
        call()
    bad_step = int(re.search(pattern, str(info.value)).group(3))
    kept = latest_step(tmp_path / "ck")
    assert kept is not None and 1 <= kept < bad_step, (kept, bad_step)
    assert f"last checkpoint, step {kept}" in str(info.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = restore_checkpoint(tmp_path / "ck", create_state(MODEL, (40, 1), SMALL))
    assert int(state.step) == kept
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves((state.params, state.opt_state)))


def resume_past_corrupt_latest(tmp_path):
    ck, _ = two_checkpoints_latest_corrupt(tmp_path)
    x, y = data()
    cfg = TrainConfig(steps=40, batch_size=32, warmup_steps=0, chunk=20)
    return lambda: fit(MODEL, x, y, cfg, num_classes=10, ckpt_dir=ck, stop_after=20, progress=False)


def check_resume_past_corrupt_latest(call, tmp_path):
    """fit warns naming corrupt step 40 and valid step 20, and resumes from step 20's params."""
    with pytest.warns(UserWarning, match=r"checkpoint step 40 .* corrupt.*restored the newest valid step 20"):
        state, _ = call()
    assert int(state.step) == 20
    assert_same_tree(state.params, params(seed=1))  # step 20 was saved from seed 1, step 40 from seed 2


def check_nan_state_not_saved(call, tmp_path):
    """save_checkpoint refuses a state with NaN params (a ValueError naming the state) and writes nothing."""
    with pytest.raises(ValueError, match=r"state \(step 0\) holds NaN or inf values in \['params'\]\['dense'\]"):
        call()
    assert latest_step(tmp_path / "ck") is None


def ckpt_file_before_training(tmp_path):
    """fit with ckpt_dir a file; the augment records whether training started (it is traced by the first step)."""
    traced = []

    def augment(key, x):
        traced.append(True)
        return x

    x, y = data()
    call = lambda: fit(MODEL, x, y, SMALL, num_classes=10, augment=augment,  # noqa: E731
                       ckpt_dir=a_file(tmp_path), progress=False)
    return call, traced


def check_ckpt_file_before_training(made, tmp_path):
    call, traced = made
    with pytest.raises(ValueError, match="ckpt_dir .* is a file, not a directory"):
        call()
    assert traced == [], "fit trained before checking ckpt_dir"


def check_numpy_int_mesh(call, tmp_path):
    mesh = call()
    assert mesh.axis_names == ("data",) and mesh.devices.size == 1


def check_empty_logits(call, tmp_path):
    """predict_logits on N = 0 returns an empty (0, 10) float32 array."""
    out = call()
    assert out.shape == (0, 10) and out.dtype == np.float32, (out.shape, out.dtype)


# ----------------------------------------------------------------------------- the table

CASES = [
    # 1. TrainConfig checks itself
    pytest.param(lambda p: lambda: TrainConfig(steps=-5), (ValueError, ["TrainConfig.steps", ">= 1", "-5"]),
                 id="config-steps-negative"),
    pytest.param(lambda p: lambda: TrainConfig(batch_size=0), (ValueError, ["TrainConfig.batch_size", "got 0"]),
                 id="config-batch-size-zero"),
    pytest.param(lambda p: lambda: TrainConfig(chunk=0), (ValueError, ["TrainConfig.chunk", ">= 1"]),
                 id="config-chunk-zero"),
    pytest.param(lambda p: lambda: TrainConfig(warmup_steps=True), (TypeError, ["TrainConfig.warmup_steps", "bool"]),
                 id="config-warmup-bool"),
    pytest.param(lambda p: lambda: TrainConfig(learning_rate=float("nan")),
                 (ValueError, ["TrainConfig.learning_rate", "finite", "nan"]), id="config-lr-nan"),
    pytest.param(lambda p: lambda: TrainConfig(learning_rate=0.0), (ValueError, ["TrainConfig.learning_rate", "> 0"]),
                 id="config-lr-zero"),
    pytest.param(lambda p: lambda: TrainConfig(weight_decay=-1e-4),
                 (ValueError, ["TrainConfig.weight_decay", ">= 0", "-0.0001"]), id="config-weight-decay-negative"),
    pytest.param(lambda p: lambda: TrainConfig(label_smoothing=1.0),
                 (ValueError, ["TrainConfig.label_smoothing", "[0, 1)", "1.0"]), id="config-label-smoothing-one"),
    pytest.param(lambda p: lambda: TrainConfig(seed=-1), (ValueError, ["TrainConfig.seed", ">= 0", "-1"]),
                 id="config-seed-negative"),
    pytest.param(lambda p: lambda: TrainConfig(seed=1.5), (TypeError, ["TrainConfig.seed", "float"]),
                 id="config-seed-float"),
    # 2. fit's inputs and arguments
    pytest.param(fit_call(x=with_bad(data()[0], 7, np.nan)), (ValueError, ["x_train", "finite", "[7]"]),
                 id="fit-x-nan"),
    pytest.param(fit_call(x=with_bad(with_bad(data()[0], 3, np.inf), 100, -np.inf)),
                 (ValueError, ["x_train", "2 of 256", "[3, 100]"]), id="fit-x-inf"),
    pytest.param(fit_call(x=np.zeros((0, 40, 1), np.float32), y=np.zeros(0, int)),
                 (ValueError, ["fit needs at least one input", "x_train", "(0, 40, 1)"]), id="fit-no-inputs"),
    pytest.param(fit_call(y=np.where(np.arange(256) == 5, 10, data()[1])),
                 (ValueError, ["y_train", "[0, 10)", "got 10 at input 5"]), id="fit-label-out-of-range"),
    pytest.param(fit_call(y=data()[1].astype(np.float32)), (ValueError, ["y_train", "integer labels", "float32"]),
                 id="fit-labels-float"),
    pytest.param(fit_call(num_classes=1), (ValueError, ["num_classes", ">= 2", "got 1"]), id="fit-num-classes-one"),
    pytest.param(fit_call(ckpt_every=0), (ValueError, ["ckpt_every", ">= 1", "got 0"]), id="fit-ckpt-every-zero"),
    pytest.param(fit_call(stop_after=-1), (ValueError, ["stop_after", ">= 0", "got -1"]), id="fit-stop-after-negative"),
    pytest.param(fit_call(cfg={"steps": 4}), (TypeError, ["cfg", "TrainConfig", "dict"]), id="fit-cfg-not-config"),
    # 3. divergence stops training; the last checkpoint stays finite and restorable
    pytest.param(diverging_fit, check_diverging_fit, id="fit-loss-diverges"),
    # 4. evaluate / predict_logits
    pytest.param(lambda p: lambda: evaluate(MODEL, params(), with_bad(data(8)[0], 2, np.nan), data(8)[1], (40, 1)),
                 (ValueError, ["x must be finite", "1 of 8", "[2]"]), id="evaluate-x-nan"),
    pytest.param(lambda p: lambda: evaluate(MODEL, params(), np.zeros((0, 40, 1)), np.zeros(0, int), (40, 1)),
                 (ValueError, ["evaluate needs at least one input", "(0, 40, 1)"]), id="evaluate-no-inputs"),
    pytest.param(lambda p: lambda: evaluate(MODEL, params(), data(8)[0], np.full(8, -1), (40, 1)),
                 (ValueError, ["y labels must lie in [0, 10)", "got -1 at input 0"]), id="evaluate-label-negative"),
    pytest.param(lambda p: lambda: predict_logits(MODEL, params(), np.zeros((0, 40, 1))), check_empty_logits,
                 id="predict-logits-no-inputs"),
    pytest.param(lambda p: lambda: evaluate(MODEL, nan_params(), data(8)[0], data(8)[1], (40, 1)),
                 (ValueError, ["NaN or inf logits", "inputs [0, 1, 2, 3, 4, ...]", "params hold NaN"]),
                 id="evaluate-nan-logits"),
    pytest.param(lambda p: lambda: evaluate(MODEL, None, data(8)[0], data(8)[1], (40, 1)),
                 (TypeError, ["params", "NoneType"]), id="evaluate-params-none"),
    pytest.param(lambda p: lambda: evaluate(MODEL, params(), np.zeros((4, 41, 1)), np.zeros(4, int), (41, 1)),
                 (ValueError, ["params do not fit", "x", "(41, 1)", "(1000, 10)", "expected (1025, 10)"]),
                 id="evaluate-x-other-input-shape"),
    pytest.param(lambda p: lambda: predict_logits(MODEL, None, data(4)[0]), (TypeError, ["params", "NoneType"]),
                 id="predict-logits-params-none"),
    pytest.param(lambda p: lambda: predict_logits(MODEL, params(), np.zeros((4, 41, 1))),
                 (ValueError, ["params", "x", "(41, 1)", "expected (1025, 10)"]), id="predict-logits-x-wrong-shape"),
    pytest.param(lambda p: lambda: predict_logits(MODEL, params(), np.zeros((4, 40))),
                 (ValueError, ["x", "(40,)", "(batch, length, channels)"]), id="predict-logits-x-wrong-rank"),
    pytest.param(lambda p: lambda: predict_logits(MODEL, params(), [["a"] * 40] * 2), (TypeError, ["x", "<U1"]),
                 id="predict-logits-strings"),
    pytest.param(lambda p: lambda: predict_logits(MODEL, params(), [[[0.0]] * 40, [[0.0]] * 39]),
                 (TypeError, ["x", "ragged list"]), id="predict-logits-ragged"),
    # 5. corrupt checkpoints: fall back to the newest valid step; raise only when none is valid
    pytest.param(resume_past_corrupt_latest, check_resume_past_corrupt_latest, id="resume-corrupt-latest"),
    pytest.param(lambda p: (lambda ck: lambda: restore_checkpoint(ck, create_state(MODEL, (40, 1), SMALL), step=40))(
                     two_checkpoints_latest_corrupt(p)[0]),
                 (ValueError, ["checkpoint 40", "corrupt"]), id="restore-explicit-corrupt-step"),
    pytest.param(lambda p: (lambda ck: lambda: restore_checkpoint(ck, create_state(MODEL, (40, 1), SMALL)))(
                     two_checkpoints_latest_corrupt(p, corrupt_all=True)[0]),
                 (ValueError, ["checkpoint 40", "corrupt", "older steps [20]"]), id="restore-all-corrupt"),
    # 6. checkpoint arguments: a non-finite state is never saved; kinds are checked
    pytest.param(lambda p: lambda: save_checkpoint(p / "ck", state().replace(params=nan_params())),
                 check_nan_state_not_saved, id="save-nan-params"),
    pytest.param(lambda p: (save_checkpoint(p, state().replace(step=5)),
                            lambda: restore_checkpoint(p, state(), step=5.0))[1],
                 (TypeError, ["step", "int", "float 5.0"]), id="restore-step-float"),
    pytest.param(lambda p: (save_checkpoint(p, state().replace(step=5)),
                            lambda: restore_checkpoint(p, state(), step="5"))[1],
                 (TypeError, ["step", "int", "str '5'"]), id="restore-step-str"),
    pytest.param(lambda p: lambda: restore_checkpoint(a_file(p), state()),
                 (ValueError, ["ckpt_dir", "not_a_dir", "is a file, not a directory"]), id="restore-ckpt-dir-file"),
    pytest.param(lambda p: (save_checkpoint(p, state()), lambda: restore_checkpoint(p, None))[1],
                 (TypeError, ["state must be a TrainState", "NoneType"]), id="restore-state-none"),
    pytest.param(lambda p: lambda: save_checkpoint(p, state().params),
                 (TypeError, ["state must be a TrainState (from create_state)", "dict"]), id="save-params-not-state"),
    pytest.param(lambda p: lambda: save_checkpoint(None, state()), (TypeError, ["ckpt_dir", "NoneType"]),
                 id="save-ckpt-dir-none"),
    # 7. fit's model and arguments, checked before training
    pytest.param(fit_call(y=data()[1] % 5, num_classes=5),
                 (ValueError, ["num_classes is 5", "returns 10 class scores"]), id="fit-num-classes-not-model-output"),
    pytest.param(lambda p: lambda: fit("cnn", *data(), SMALL, num_classes=10, progress=False),
                 (TypeError, ["model", "flax.linen Module", "str 'cnn'"]), id="fit-model-str"),
    pytest.param(fit_call(augment="shift"), (TypeError, ["augment", "str 'shift'"]), id="fit-augment-not-callable"),
    pytest.param(fit_call(input_shape="40"), (TypeError, ["input_shape", "tuple of positive ints", "str '40'"]),
                 id="fit-input-shape-str"),
    pytest.param(fit_call(input_shape=(40, 0)), (ValueError, ["input_shape[1]", ">= 1", "got 0"]),
                 id="fit-input-shape-zero"),
    pytest.param(fit_call(mesh="cpu"), (TypeError, ["mesh", "jax.sharding.Mesh", "str"]), id="fit-mesh-str"),
    pytest.param(ckpt_file_before_training, check_ckpt_file_before_training, id="fit-ckpt-dir-file"),
    # 8. data_mesh: None, a device count or a non-empty sequence of jax devices
    pytest.param(lambda p: lambda: data_mesh([]), (ValueError, ["devices", "at least one", "empty"]),
                 id="data-mesh-empty"),
    pytest.param(lambda p: lambda: data_mesh(True), (TypeError, ["devices", "bool True"]), id="data-mesh-bool"),
    pytest.param(lambda p: lambda: data_mesh(2.0), (TypeError, ["devices", "float 2.0"]), id="data-mesh-float"),
    pytest.param(lambda p: lambda: data_mesh("cpu"), (TypeError, ["devices", "str 'cpu'"]), id="data-mesh-str"),
    pytest.param(lambda p: lambda: data_mesh(np.int64(1)), check_numpy_int_mesh, id="data-mesh-numpy-int"),
]


@pytest.mark.parametrize("make_call, expected", CASES)
def test_bad_input(make_call, expected, tmp_path):
    """Each row: the documented error with a message naming the argument, or the defined result."""
    call = make_call(tmp_path)
    if callable(expected):
        expected(call, tmp_path)
        return
    exc_type, parts = expected
    with pytest.raises(exc_type) as info:
        call()
    for part in parts:
        assert part in str(info.value), (part, str(info.value))
