"""Training: TrainState, a pure jitted train step, evaluation, fit with orbax checkpoints.

Determinism: every random draw derives from one seed. The batch of step s is slice s of a
per-epoch permutation drawn from fold_in(data_key, epoch), and step s's augmentation and
dropout keys are fold_in(aug_key, s), so a run resumed from a checkpoint at step s takes
exactly the batches and keys the uninterrupted run would have taken.

Speed: steps run in jitted `lax.scan` chunks over device-resident data (no Python per
step); the progress bar and checkpoints advance per chunk.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from tqdm.auto import tqdm

from xai_jax.batches import run_in_batches

Augment = Callable[[jax.Array, jax.Array], jax.Array]  # (key, x batch) -> x batch


class TrainState(train_state.TrainState):
    """flax TrainState (step, apply_fn, params, tx, opt_state)."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 6000
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    label_smoothing: float = 0.0
    seed: int = 0
    chunk: int = 200  # steps per jitted scan call (and per progress / checkpoint tick)


def check_inputs(x, input_shape: tuple[int, ...], name: str = "x") -> np.ndarray:
    """Validates a batch (N, *input_shape) of float inputs; returns it as float32 NumPy."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{name} must have a float dtype, got {x.dtype}")
    if tuple(x.shape[1:]) != tuple(input_shape) or x.ndim != len(input_shape) + 1:
        raise ValueError(
            f"{name} must have shape (N, {', '.join(map(str, input_shape))}), got {tuple(x.shape)}"
        )
    return np.asarray(x, np.float32)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW with linear warm-up and cosine decay to zero."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, min(cfg.warmup_steps, max(cfg.steps - 1, 1)), max(cfg.steps, 2)
    )
    return optax.adamw(schedule, weight_decay=cfg.weight_decay)


def create_state(
    model: nn.Module, input_shape: tuple[int, ...], cfg: TrainConfig
) -> TrainState:
    params = model.init(jax.random.key(cfg.seed), jnp.zeros((1, *input_shape), jnp.float32))
    return TrainState.create(apply_fn=model.apply, params=params["params"], tx=make_optimizer(cfg))


def loss_fn(params, apply_fn, x, y, num_classes: int, label_smoothing: float):
    logits = apply_fn({"params": params}, x)
    labels = optax.smooth_labels(jax.nn.one_hot(y, num_classes), label_smoothing)
    loss = optax.softmax_cross_entropy(logits, labels).mean()
    return loss, (logits.argmax(-1) == y).mean()


def train_step(state: TrainState, x: jax.Array, y: jax.Array, *, num_classes: int,
               label_smoothing: float = 0.0) -> tuple[TrainState, dict]:
    """One optimisation step on a batch; pure, so it jits, scans and shards."""
    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.apply_fn, x, y, num_classes, label_smoothing
    )
    return state.apply_gradients(grads=grads), {"loss": loss, "accuracy": acc}


def epoch_permutation(data_key: jax.Array, epoch: int, n: int) -> jax.Array:
    """The order in which epoch `epoch` visits the n training inputs."""
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), n)


def make_step(cfg: TrainConfig, num_classes: int, augment: Augment | None):
    """A jitted step (state, x_all, y_all, perm, pos, aug_key) -> (state, metrics).

    The batch is perm[pos * batch_size:(pos + 1) * batch_size], gathered on device.
    (A Python loop of jitted steps: on XLA:CPU a lax.scan over conv steps ran 8x slower.)
    """

    @jax.jit
    def step(state, x_all, y_all, perm, pos, aug_key):
        idx = jax.lax.dynamic_slice_in_dim(perm, pos * cfg.batch_size, cfg.batch_size)
        x, y = x_all[idx], y_all[idx]
        if augment is not None:
            x = augment(jax.random.fold_in(aug_key, state.step), x)
        return train_step(state, x, y, num_classes=num_classes, label_smoothing=cfg.label_smoothing)

    return step


def predict_logits(model: nn.Module, params, x, batch_size: int = 500) -> np.ndarray:
    """Logits for a batch x (N, ...) in fixed-size jitted batches (the last one padded)."""
    x = np.asarray(x, np.float32)
    return run_in_batches(lambda xb: _jitted_apply(model)(params, xb), (x,), min(batch_size, len(x)))


@functools.lru_cache(maxsize=16)
def _jitted_apply(model: nn.Module):
    """One jitted apply per model (linen modules hash by their fields), reused across calls."""
    return jax.jit(lambda p, x: model.apply({"params": p}, x))


def evaluate(model: nn.Module, params, x, y, input_shape: tuple[int, ...]) -> dict:
    """Accuracy and mean cross-entropy on (x, y); x: (N, *input_shape)."""
    x = check_inputs(x, input_shape)
    y = np.asarray(y)
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be integer labels of shape ({x.shape[0]},), got {y.dtype} {y.shape}")
    logits = predict_logits(model, params, x)
    logp = jax.nn.log_softmax(logits)
    return {
        "accuracy": float((logits.argmax(-1) == y).mean()),
        "loss": float(-np.take_along_axis(np.asarray(logp), y[:, None], 1).mean()),
    }


# ----------------------------------------------------------------------------- checkpoints


def _manager(ckpt_dir: str | os.PathLike, max_to_keep: int = 2):
    import orbax.checkpoint as ocp

    path = Path(ckpt_dir).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"ckpt_dir {str(path)!r} cannot be created: {e}") from e
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep))


def save_checkpoint(ckpt_dir: str | os.PathLike, state: TrainState) -> None:
    """Saves the state's params, optimiser state and step under ckpt_dir/<step>."""
    import orbax.checkpoint as ocp

    with _manager(ckpt_dir) as mngr:
        mngr.save(int(state.step), args=ocp.args.StandardSave(_savable(state)))
        mngr.wait_until_finished()


def _savable(state: TrainState) -> dict:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def restore_checkpoint(ckpt_dir: str | os.PathLike, state: TrainState, step: int | None = None) -> TrainState:
    """Restores into a template state (from create_state). Clear errors when missing/corrupt."""
    import orbax.checkpoint as ocp

    path = Path(ckpt_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"ckpt_dir {str(path)!r} does not exist")
    with _manager(path) as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"ckpt_dir {str(path)!r} holds no checkpoint")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _savable(state))
        try:
            restored = mngr.restore(step, args=ocp.args.StandardRestore(target))
        except Exception as e:
            raise ValueError(
                f"checkpoint {step} in ckpt_dir {str(path)!r} is corrupt or does not match "
                f"the model: {type(e).__name__}: {str(e)[:300]}"
            ) from e
    return state.replace(step=restored["step"], params=restored["params"],
                         opt_state=restored["opt_state"])


def latest_step(ckpt_dir: str | os.PathLike) -> int | None:
    if not Path(ckpt_dir).is_dir():
        return None
    with _manager(ckpt_dir) as mngr:
        return mngr.latest_step()


# ----------------------------------------------------------------------------- fit


def fit(
    model: nn.Module,
    x_train,
    y_train,
    cfg: TrainConfig = TrainConfig(),
    *,
    num_classes: int,
    augment: Augment | None = None,
    ckpt_dir: str | os.PathLike | None = None,
    ckpt_every: int | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
    mesh=None,
    input_shape: tuple[int, ...] | None = None,
) -> tuple[TrainState, dict]:
    """Trains `model` on (x_train, y_train); returns (state, history).

    ckpt_dir: save every `ckpt_every` steps (default: at the end) and, with resume=True,
    continue from the latest checkpoint found there. stop_after: stop once the step count
    reaches it (simulates an interruption; the schedule still targets cfg.steps).
    mesh: a jax.sharding.Mesh with a "data" axis to shard the batch across its devices.
    input_shape: one unbatched input's shape (checked); default: x_train's, which must then
    have a channel axis, (N, length, C) or (N, H, W, C).
    history: {"step", "loss", "accuracy"} per chunk and "train_seconds".
    """
    if input_shape is None:
        if np.ndim(x_train) < 3:
            raise ValueError(f"x_train must have shape (N, length, channels) or (N, H, W, channels), "
                             f"got {tuple(np.shape(x_train))}")
        input_shape = tuple(np.shape(x_train)[1:])
    x_train = check_inputs(x_train, input_shape, "x_train")
    y_train = np.asarray(y_train)
    if y_train.shape != (x_train.shape[0],) or not np.issubdtype(y_train.dtype, np.integer):
        raise ValueError(f"y_train must be integer labels of shape ({x_train.shape[0]},), "
                         f"got {y_train.dtype} {y_train.shape}")
    if cfg.batch_size > x_train.shape[0]:
        raise ValueError(f"cfg.batch_size {cfg.batch_size} exceeds the {x_train.shape[0]} training inputs")
    if y_train.min() < 0 or y_train.max() >= num_classes:
        raise ValueError(f"y_train labels must lie in [0, {num_classes}), got [{y_train.min()}, {y_train.max()}]")
    state = create_state(model, input_shape, cfg)
    if ckpt_dir is not None and resume and latest_step(ckpt_dir) is not None:
        state = restore_checkpoint(ckpt_dir, state)
    data_key, aug_key = jax.random.split(jax.random.key(cfg.seed + 1))
    x_dev, y_dev = jnp.asarray(x_train), jnp.asarray(y_train, jnp.int32)
    if mesh is not None:
        from xai_jax.distributed import data_parallel_step, shard_batch_arrays

        step_fn = data_parallel_step(cfg, num_classes, augment, mesh)
        state, x_dev, y_dev = shard_batch_arrays(mesh, state, x_dev, y_dev)
    else:
        step_fn = make_step(cfg, num_classes, augment)
    per_epoch = x_train.shape[0] // cfg.batch_size
    end = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    history = {"step": [], "loss": [], "accuracy": []}
    step = int(state.step)
    t0 = time.perf_counter()
    bar = tqdm(total=end, initial=step, disable=not progress, desc="train", unit="step")
    perm_epoch, perm, window = -1, None, []
    while step < end:
        epoch, pos = divmod(step, per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = epoch_permutation(data_key, epoch, x_train.shape[0]), epoch
        state, metrics = step_fn(state, x_dev, y_dev, perm, pos, aug_key)
        window.append(metrics)
        step += 1
        if step % cfg.chunk == 0 or step == end:  # sync with the device once per chunk only
            history["step"].append(step)
            history["loss"].append(float(np.mean([float(m["loss"]) for m in window])))
            history["accuracy"].append(float(np.mean([float(m["accuracy"]) for m in window])))
            bar.update(len(window))
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", acc=f"{history['accuracy'][-1]:.3f}")
            window = []
        if ckpt_dir is not None and ckpt_every and step % ckpt_every == 0:
            save_checkpoint(ckpt_dir, state)
    bar.close()
    jax.block_until_ready(state.params)
    history["train_seconds"] = time.perf_counter() - t0
    if ckpt_dir is not None and (not ckpt_every or step % ckpt_every):
        save_checkpoint(ckpt_dir, state)
    return state, history
