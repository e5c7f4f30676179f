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
