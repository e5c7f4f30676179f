import jax
import numpy as np
import pytest

from xai_jax.study.data.augment import histology_augment, random_circular_shift
from xai_jax.study.models import mnist1d_cnn
from xai_jax.study.train import (
    TrainConfig,
    create_state,
    evaluate,
    fit,
    predict_logits,
    restore_checkpoint,
    save_checkpoint,
)

CFG = TrainConfig(steps=300, batch_size=64, learning_rate=1e-2, warmup_steps=20, chunk=50)


def test_short_training_beats_chance_by_far(mnist1d):
    model = mnist1d_cnn("study")
    state, hist = fit(model, mnist1d.x_train, mnist1d.y_train, CFG, num_classes=10,
                      augment=random_circular_shift, progress=False)
    acc = evaluate(model, state.params, mnist1d.x_test, mnist1d.y_test, (40, 1))["accuracy"]
    assert acc > 0.5, acc  # chance is 0.1
    assert hist["loss"][-1] < hist["loss"][0]


def test_same_seed_same_params_and_resume_equals_uninterrupted(mnist1d, tmp_path):
    model = mnist1d_cnn("study")
    cfg = TrainConfig(steps=60, batch_size=64, warmup_steps=5, chunk=20)
    x, y = mnist1d.x_train[:1000], mnist1d.y_train[:1000]
    full, _ = fit(model, x, y, cfg, num_classes=10, augment=random_circular_shift, progress=False)
    again, _ = fit(model, x, y, cfg, num_classes=10, augment=random_circular_shift, progress=False)
    part, _ = fit(model, x, y, cfg, num_classes=10, augment=random_circular_shift,
                  ckpt_dir=tmp_path, ckpt_every=20, stop_after=40, progress=False)
    assert int(part.step) == 40
    resumed, _ = fit(model, x, y, cfg, num_classes=10, augment=random_circular_shift,
                     ckpt_dir=tmp_path, ckpt_every=20, progress=False)
    assert int(resumed.step) == 60
    for a, b, c in zip(jax.tree.leaves(full.params), jax.tree.leaves(again.params),
                       jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=1e-6)


def test_checkpoint_round_trip(tmp_path):
    model = mnist1d_cnn("study")
    state = create_state(model, (40, 1), TrainConfig(seed=1))
    save_checkpoint(tmp_path, state)
    template = create_state(model, (40, 1), TrainConfig(seed=2))
    restored = restore_checkpoint(tmp_path, template)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(restored.params)):
        np.testing.assert_array_equal(a, b)


def test_missing_and_corrupt_checkpoints(tmp_path):
    model = mnist1d_cnn("study")
    state = create_state(model, (40, 1), TrainConfig())
    with pytest.raises(FileNotFoundError, match="ckpt_dir"):
        restore_checkpoint(tmp_path / "none", state)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        restore_checkpoint(tmp_path / "empty", state)
    save_checkpoint(tmp_path / "c", state)
    wide = create_state(mnist1d_cnn("wide"), (40, 1), TrainConfig())
    with pytest.raises(ValueError, match="corrupt or does not match"):
        restore_checkpoint(tmp_path / "c", wide)
    for f in (tmp_path / "c").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        restore_checkpoint(tmp_path / "c", state)


def test_model_helpers_reject_bad_inputs(mnist1d):
    model = mnist1d_cnn("study")
    state = create_state(model, (40, 1), TrainConfig())
    with pytest.raises(ValueError, match=r"x must have shape \(N, 40, 1\), got \(10, 40\)"):
        evaluate(model, state.params, mnist1d.x_test[:10, :, 0], mnist1d.y_test[:10], (40, 1))
    with pytest.raises(TypeError, match="float dtype"):
        evaluate(model, state.params, mnist1d.x_test[:10].astype(str), mnist1d.y_test[:10], (40, 1))
    with pytest.raises(ValueError, match="y must be integer"):
        evaluate(model, state.params, mnist1d.x_test[:10], mnist1d.y_test[:9], (40, 1))
    with pytest.raises(ValueError, match="x_train must have shape"):
        fit(model, mnist1d.x_train[:, :, 0], mnist1d.y_train, CFG, num_classes=10)
    with pytest.raises(ValueError, match=r"x_train must have shape \(N, 40, 1\), got \(4000, 40, 2\)"):
        fit(model, np.repeat(mnist1d.x_train, 2, -1), mnist1d.y_train, CFG, num_classes=10, input_shape=(40, 1))
    with pytest.raises(ValueError, match="labels must lie"):
        fit(model, mnist1d.x_train, mnist1d.y_train + 5, CFG, num_classes=10)


def test_augmentations_preserve_content():
    key = jax.random.key(0)
    x = jax.random.normal(key, (8, 40, 1))
    shifted = random_circular_shift(key, x)
    np.testing.assert_allclose(np.sort(np.asarray(shifted), 1), np.sort(np.asarray(x), 1))
    tiles = jax.random.uniform(key, (4, 16, 16, 3))
    out = histology_augment(key, tiles, jitter=0.0)
    np.testing.assert_allclose(np.sort(np.asarray(out).ravel()), np.sort(np.asarray(tiles).ravel()), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(histology_augment(key, tiles)), np.asarray(histology_augment(key, tiles)))


def test_resume_replaces_a_corrupt_newer_checkpoint_and_refuses_stale_saves(tmp_path):
    """fit resumes past a corrupt step 40 from step 20 (warning), its next save replaces step 40;
    a finished run re-run saves nothing; save_checkpoint refuses a step older than one in the dir."""
    model = mnist1d_cnn("study")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(128, 40, 1)).astype(np.float32), rng.integers(0, 10, 128)
    cfg = TrainConfig(steps=40, batch_size=32, warmup_steps=0, chunk=20)
    fit(model, x, y, cfg, num_classes=10, ckpt_dir=tmp_path, ckpt_every=20, progress=False)
    for f in (tmp_path / "40").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="step 40 .* corrupt.* step 20"):
        state, _ = fit(model, x, y, cfg, num_classes=10, ckpt_dir=tmp_path, ckpt_every=20, progress=False)
    assert int(state.step) == 40
    again, hist = fit(model, x, y, cfg, num_classes=10, ckpt_dir=tmp_path, progress=False)  # nothing to train
    assert hist["step"] == [] and int(again.step) == 40
    restored = restore_checkpoint(tmp_path, create_state(model, (40, 1), cfg))  # no warning: 40 is valid again
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(restored.params)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"already holds checkpoint step\(s\) \[20, 40\] >= the step 0"):
        save_checkpoint(tmp_path, create_state(model, (40, 1), cfg))


def test_fit_takes_the_model_output_size_and_predict_takes_lists():
    """num_classes equal to the model's output trains; predict_logits accepts a nested list of floats."""
    model = mnist1d_cnn("study", num_classes=3)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 40, 1)).astype(np.float32), rng.integers(0, 3, 16)
    cfg = TrainConfig(steps=2, batch_size=8, warmup_steps=0, chunk=1)
    state, _ = fit(model, x, y, cfg, num_classes=3, input_shape=[40, 1], progress=False)
    logits = predict_logits(model, state.params, x[:2].tolist())
    np.testing.assert_allclose(logits, predict_logits(model, state.params, x[:2]), rtol=1e-6)
    assert logits.shape == (2, 3)


def test_fit_refuses_a_batchnorm_model_clearly():
    import flax.linen as nn

    from xai_jax.study.train import TrainConfig, create_state

    class BN(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.BatchNorm(use_running_average=not train)(nn.Conv(4, (3,))(x))
            return nn.Dense(3)(x.mean(1))

    with pytest.raises(ValueError, match=r"fit trains models whose only variables are params.*\['batch_stats'\]"):
        create_state(BN(), (8, 1), TrainConfig())


# ----------------------------------------------------------------------------- runs, records and the lock
# (issue 21, class 2: state carried across runs)

def _tiny_run(**changes):
    """(model, x, y, cfg) of a 2-step run on 32 tiny inputs, with `changes` applied."""
    from tests.models_small import Tiny1D

    rng = np.random.default_rng(0)
    run = {"model": Tiny1D(), "x": rng.normal(size=(32, 8, 1)).astype(np.float32), "y": rng.integers(0, 4, 32),
           "cfg": TrainConfig(steps=2, batch_size=16, warmup_steps=0, chunk=1)}
    for name, change in changes.items():
        run[name] = change(run[name])
    return run


def _fit_tiny(ckpt_dir, run, **kwargs):
    return fit(run["model"], run["x"], run["y"], run["cfg"], num_classes=4, ckpt_dir=ckpt_dir, progress=False,
               **kwargs)


def _cfg(**fields):
    import dataclasses
    return lambda cfg: dataclasses.replace(cfg, **fields)


OTHER_RUNS = [  # (what differs, change, the words the error names)
    ("batch size", {"cfg": _cfg(batch_size=8)}, r"TrainConfig\.batch_size: 16 there, 8 here"),
    ("learning rate", {"cfg": _cfg(learning_rate=0.1)}, r"TrainConfig\.learning_rate: 0\.003 there, 0\.1 here"),
    ("seed", {"cfg": _cfg(seed=3)}, r"TrainConfig\.seed: 0 there, 3 here"),
    ("steps (the schedule)", {"cfg": _cfg(steps=3)}, r"TrainConfig\.steps: 2 there, 3 here"),
    ("data values", {"x": lambda x: x + 1}, r"x_train \(its values\)"),
    ("labels", {"y": lambda y: (y + 1) % 4}, r"y_train \(its values\)"),
    ("data size", {"x": lambda x: x[:16], "y": lambda y: y[:16]}, r"data\.x_train\.shape: \[32, 8, 1\] there"),
    ("model fields", {"model": lambda m: m.clone(features=5)}, r"model\.features: '3' there, '5' here"),
]


@pytest.mark.parametrize("what, changes, named", OTHER_RUNS, ids=[r[0] for r in OTHER_RUNS])
def test_resuming_another_run_names_what_differs(tmp_path, what, changes, named):
    from xai_jax.study.train import RunMismatchError

    _fit_tiny(tmp_path, _tiny_run())
    with pytest.raises(RunMismatchError, match=named):
        _fit_tiny(tmp_path, _tiny_run(**changes))


def test_on_mismatch_restart_resume_and_resume_false(tmp_path):
    from xai_jax.study.train import RUN_RECORD

    first, _ = _fit_tiny(tmp_path, _tiny_run())
    other = _tiny_run(cfg=_cfg(learning_rate=0.1))
    fresh, _ = fit(other["model"], other["x"], other["y"], other["cfg"], num_classes=4, progress=False)
    with pytest.warns(UserWarning, match=r"deleted checkpoint steps \[2\] of another run.*learning_rate"):
        restarted, hist = _fit_tiny(tmp_path, other, on_mismatch="restart")
    assert hist["step"] == [1, 2]  # trained afresh: the same params as a run without checkpoints
    for a, b in zip(jax.tree.leaves(restarted.params), jax.tree.leaves(fresh.params)):
        np.testing.assert_array_equal(a, b)
    assert '"learning_rate": 0.1' in (tmp_path / RUN_RECORD).read_text()
    with pytest.warns(UserWarning, match="resuming checkpoints of another run"):
        resumed, hist = _fit_tiny(tmp_path, _tiny_run(), on_mismatch="resume")
    assert hist["step"] == []  # nothing left to train: the lr=0.1 params, as asked
    np.testing.assert_array_equal(jax.tree.leaves(resumed.params)[0], jax.tree.leaves(restarted.params)[0])
    with pytest.warns(UserWarning, match=r"deleted checkpoint steps \[2\].*resume=False"):
        _fit_tiny(tmp_path, _tiny_run(cfg=_cfg(seed=1)), resume=False)
    with pytest.raises(ValueError, match="on_mismatch must be one of"):
        _fit_tiny(tmp_path, _tiny_run(), on_mismatch="ignore")
    del first


def test_unrecorded_checkpoints_resume_with_a_warning(tmp_path):
    from xai_jax.study.train import RUN_RECORD

    run = _tiny_run()
    _fit_tiny(tmp_path, run)
    (tmp_path / RUN_RECORD).unlink()  # as saved by save_checkpoint or an older version
    with pytest.warns(UserWarning, match="without a run record"):
        state, hist = _fit_tiny(tmp_path, run)
    assert hist["step"] == [] and int(state.step) == 2 and (tmp_path / RUN_RECORD).exists()


def test_a_second_fit_on_one_ckpt_dir_names_the_holder(tmp_path):
    """A live holder (another process, here a sleeper holding the lock) is named; once it is
    killed, its lock is stale and replaced with a warning."""
    import json
    import signal
    import socket
    import subprocess
    import sys

    from xai_jax.study.train import LOCK_FILE, CheckpointLockedError

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.mkdir(exist_ok=True)
        (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                      "since": "now"}))
        with pytest.raises(CheckpointLockedError, match=rf"in use by another fit: process {holder.pid} on host"):
            _fit_tiny(tmp_path, _tiny_run())
        assert not list(tmp_path.glob("[0-9]*"))  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with pytest.warns(UserWarning, match=rf"removed the stale lock .* process {holder.pid}"):
        state, _ = _fit_tiny(tmp_path, _tiny_run())
    assert int(state.step) == 2 and not (tmp_path / LOCK_FILE).exists()  # released at the end
    with pytest.raises(ValueError, match="learning_rate"):  # released on an error too
        _fit_tiny(tmp_path, _tiny_run(cfg=_cfg(learning_rate=0.1)))
    assert not (tmp_path / LOCK_FILE).exists()


def test_restoring_another_model_is_checked_before_orbax_reads(tmp_path, capfd):
    """Shapes are compared from the checkpoint's metadata first: a restore that failed part-way
    used to flood stderr with "Event loop is closed" tracebacks from tensorstore's callbacks."""
    from xai_jax.study.models.mnist1d_cnn import MNIST1DCNN

    save_checkpoint(tmp_path, create_state(MNIST1DCNN(), (40, 1), TrainConfig()))
    other = create_state(MNIST1DCNN(features=(64, 64, 64)), (40, 1), TrainConfig())
    with pytest.raises(ValueError, match=r"another model's state: params/conv1d/bias: \(25,\) in the "
                                         r"checkpoint, \(64,\) for this model"):
        restore_checkpoint(tmp_path, other)
    assert "Event loop is closed" not in capfd.readouterr().err


def test_the_quick_job_keeps_its_checkpoints_apart():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("mnist1d_job", root / "experiments" / "mnist1d_job.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert job.checkpoint_dir(Path("c"), "study", True) != job.checkpoint_dir(Path("c"), "study", False)
