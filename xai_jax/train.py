"""Training: TrainState, a pure jitted train step, evaluation, fit with orbax checkpoints.

Determinism: every random draw derives from one seed. The batch of step s is slice s of a
per-epoch permutation drawn from fold_in(data_key, epoch), and step s's augmentation and
dropout keys are fold_in(aug_key, s), so a run resumed from a checkpoint at step s takes
exactly the batches and keys the uninterrupted run would have taken.

Speed: steps run as jitted calls over device-resident data; the host syncs with the device
once per `cfg.chunk` steps (progress bar, loss check) and at checkpoints.

Bad input fails early with a ValueError/TypeError naming the argument, what it got and what
was expected: TrainConfig checks itself; fit and evaluate reject empty or non-finite inputs
and out-of-range labels. A loss or parameters that turn non-finite during training stop fit
with NonFiniteLossError naming the step, and a non-finite state is never checkpointed.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import time
import warnings
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


class NonFiniteLossError(ValueError):
    """Training diverged: the loss (or the parameters) became NaN or inf at a named step."""


def _check_int(name: str, value, minimum: int, *, none_ok: bool = False) -> None:
    """TypeError unless value is an int (not a bool; None too if none_ok); ValueError if < minimum."""
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int{' or None' if none_ok else ''} >= {minimum}, "
                        f"got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")


def _check_float(name: str, value, ok: Callable[[float], bool], expected: str) -> None:
    """TypeError unless value is a real number (not a bool); ValueError unless finite and ok(value)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; checked on construction (ValueError/TypeError naming the field)."""

    steps: int = 6000
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    label_smoothing: float = 0.0
    seed: int = 0
    chunk: int = 200  # steps per host sync (progress bar and loss check)

    def __post_init__(self):
        for name, minimum in (("steps", 1), ("batch_size", 1), ("chunk", 1), ("warmup_steps", 0), ("seed", 0)):
            _check_int(f"TrainConfig.{name}", getattr(self, name), minimum)
        _check_float("TrainConfig.learning_rate", self.learning_rate, lambda v: v > 0, "a finite float > 0")
        _check_float("TrainConfig.weight_decay", self.weight_decay, lambda v: v >= 0, "a finite float >= 0")
        _check_float("TrainConfig.label_smoothing", self.label_smoothing, lambda v: 0 <= v < 1,
                     "a float in [0, 1)")


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


def _indices(idx: np.ndarray, k: int = 5) -> str:
    """The first k indices of idx as '[i, j, ...]'."""
    return "[" + ", ".join(map(str, idx[:k].tolist())) + (", ..." if len(idx) > k else "") + "]"


def _check_nonempty_finite(x: np.ndarray, name: str, caller: str) -> None:
    """ValueError if x (N, ...) holds no input, or any NaN/inf (naming the first bad inputs)."""
    if x.shape[0] == 0:
        raise ValueError(f"{caller} needs at least one input, got {name} of shape {tuple(x.shape)}")
    bad = np.flatnonzero(~np.isfinite(x.reshape(x.shape[0], -1)).all(1))
    if bad.size:
        raise ValueError(f"{name} must be finite: {bad.size} of {x.shape[0]} inputs hold NaN or inf, "
                         f"first at indices {_indices(bad)}")


def _check_labels(y, n: int, num_classes: int, name: str) -> np.ndarray:
    """y as integer labels (n,) in [0, num_classes); ValueError naming the first bad inputs."""
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be integer labels of shape ({n},), got {y.dtype} {y.shape}")
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise ValueError(f"{name} labels must lie in [0, {num_classes}), got {y[bad[0]]} at input {bad[0]} "
                         f"({bad.size} bad, first at indices {_indices(bad)}; labels span [{y.min()}, {y.max()}])")
    return y


@jax.jit
def _all_finite(tree) -> jax.Array:
    """True iff every leaf of the pytree is finite (one reduction on device)."""
    return jnp.all(jnp.stack([jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(tree)]))


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
    """Logits for a batch x (N, ...) in fixed-size jitted batches (the last one padded).

    N = 0 returns an empty (0, num_classes) array (num_classes from the model's output shape).
    """
    _check_int("batch_size", batch_size, 1)
    x = np.asarray(x, np.float32)
    if x.ndim == 0:
        raise ValueError(f"x must be a batch (N, ...), got a scalar {x!r}")
    if len(x) == 0:
        out = _output_shape(model, params, x.shape[1:])
        return np.zeros((0, *out.shape[1:]), out.dtype)
    return run_in_batches(lambda xb: _jitted_apply(model)(params, xb), (x,), min(batch_size, len(x)))


def _output_shape(model: nn.Module, params, input_shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    """The model's output shape and dtype for a batch of one (traced, nothing computed)."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    return jax.eval_shape(lambda p, xb: model.apply({"params": p}, xb), params, x)


@functools.lru_cache(maxsize=16)
def _jitted_apply(model: nn.Module):
    """One jitted apply per model (linen modules hash by their fields), reused across calls."""
    return jax.jit(lambda p, x: model.apply({"params": p}, x))


def evaluate(model: nn.Module, params, x, y, input_shape: tuple[int, ...]) -> dict:
    """Accuracy and mean cross-entropy on (x, y); x: (N, *input_shape), N >= 1 and finite;
    y: integer labels in [0, num_classes). ValueError otherwise (naming x or y)."""
    x = check_inputs(x, input_shape)
    _check_nonempty_finite(x, "x", "evaluate")
    y = _check_labels(y, x.shape[0], _output_shape(model, params, input_shape).shape[-1], "y")
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


def save_checkpoint(ckpt_dir: str | os.PathLike, state: TrainState, *, replace_newer: bool = False) -> None:
    """Saves the state's params, optimiser state and step under ckpt_dir/<step>.

    The step must be newer than every checkpoint in ckpt_dir (ValueError otherwise: orbax
    would skip the save silently), unless replace_newer=True, which first deletes those.
    """
    import orbax.checkpoint as ocp

    step = int(state.step)
    with _manager(ckpt_dir) as mngr:
        newer = [s for s in mngr.all_steps() if s >= step]
        if newer and not replace_newer:
            raise ValueError(f"ckpt_dir {str(ckpt_dir)!r} already holds checkpoint step(s) {sorted(newer)} >= "
                             f"the step {step} being saved; pass replace_newer=True to replace them")
        for s in newer:
            mngr.delete(s)
        if not mngr.save(step, args=ocp.args.StandardSave(_savable(state))):
            raise ValueError(f"orbax declined to save step {step} in ckpt_dir {str(ckpt_dir)!r}")
        mngr.wait_until_finished()


def _savable(state: TrainState) -> dict:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def restore_checkpoint(ckpt_dir: str | os.PathLike, state: TrainState, step: int | None = None) -> TrainState:
    """Restores into a template state (from create_state).

    step=None: the newest step that restores; a corrupt newer step is skipped with a warning
    naming it and the step used. ValueError if no step restores (corrupt, or another model),
    or if an explicit `step` does; FileNotFoundError if ckpt_dir or the step is missing.
    """
    import orbax.checkpoint as ocp

    path = Path(ckpt_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"ckpt_dir {str(path)!r} does not exist")
    with _manager(path) as mngr:
        available = sorted(mngr.all_steps(), reverse=True)
        if not available:
            raise FileNotFoundError(f"ckpt_dir {str(path)!r} holds no checkpoint")
        if step is not None and step not in available:
            raise FileNotFoundError(f"ckpt_dir {str(path)!r} holds no checkpoint step {step} "
                                    f"(steps: {sorted(available)})")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _savable(state))
        failed: list[tuple[int, Exception]] = []
        for s in [step] if step is not None else available:
            try:
                restored = mngr.restore(s, args=ocp.args.StandardRestore(target))
                break
            except Exception as e:  # orbax/tensorstore raise many types for a damaged checkpoint
                failed.append((s, e))
        else:
            s, e = failed[0]
            older = f" (so do older steps {[f for f, _ in failed[1:]]})" if len(failed) > 1 else ""
            raise ValueError(
                f"checkpoint {s} in ckpt_dir {str(path)!r} is corrupt or does not match "
                f"the model{older}: {type(e).__name__}: {str(e)[:300]}"
            ) from e
    if failed:
        bad, many = ", ".join(str(f) for f, _ in failed), len(failed) > 1
        warnings.warn(f"checkpoint step{'s' * many} {bad} in ckpt_dir {str(path)!r} "
                      f"{'are' if many else 'is'} corrupt or {'do' if many else 'does'} not match the model "
                      f"({type(failed[0][1]).__name__}); restored the newest valid step {s} instead", stacklevel=2)
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

    x_train: N >= 1 finite inputs; y_train: integer labels in [0, num_classes), num_classes >= 2.
    ckpt_dir: save every `ckpt_every` (>= 1) steps (default: at the end) and, with resume=True,
    continue from the newest valid checkpoint found there (a corrupt newer one is skipped with
    a warning, and deleted by the next save; with resume=False, the first save deletes any
    checkpoint at the same or a later step). stop_after (>= 0): stop once the step count
    reaches it (simulates an interruption; the schedule still targets cfg.steps).
    mesh: a jax.sharding.Mesh with a "data" axis to shard the batch across its devices.
    input_shape: one unbatched input's shape (checked); default: x_train's, which must then
    have a channel axis, (N, length, C) or (N, H, W, C).
    history: {"step", "loss", "accuracy"} per chunk and "train_seconds".
    Raises NonFiniteLossError (a ValueError) naming the step if the loss or the parameters
    turn NaN/inf; checked at every host sync (once per cfg.chunk steps) and before every
    checkpoint, so the last checkpoint in ckpt_dir is always finite.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    _check_int("num_classes", num_classes, 2)
    _check_int("ckpt_every", ckpt_every, 1, none_ok=True)
    _check_int("stop_after", stop_after, 0, none_ok=True)
    if input_shape is None:
        if np.ndim(x_train) < 3:
            raise ValueError(f"x_train must have shape (N, length, channels) or (N, H, W, channels), "
                             f"got {tuple(np.shape(x_train))}")
        input_shape = tuple(np.shape(x_train)[1:])
    x_train = check_inputs(x_train, input_shape, "x_train")
    _check_nonempty_finite(x_train, "x_train", "fit")
    y_train = _check_labels(y_train, x_train.shape[0], num_classes, "y_train")
    if cfg.batch_size > x_train.shape[0]:
        raise ValueError(f"cfg.batch_size {cfg.batch_size} exceeds the {x_train.shape[0]} training inputs")
    state = create_state(model, input_shape, cfg)
    saved = None  # the step of the newest checkpoint known good (restored or saved by this run)
    if ckpt_dir is not None and resume and latest_step(ckpt_dir) is not None:
        state = restore_checkpoint(ckpt_dir, state)
        saved = int(state.step)
    data_key, aug_key = jax.random.split(jax.random.key(cfg.seed + 1))
    x_dev, y_dev = jnp.asarray(x_train), jnp.asarray(y_train, jnp.int32)
    if mesh is not None:
        from xai_jax.distributed import data_parallel_step, shard_batch_arrays

        step_fn = data_parallel_step(cfg, num_classes, augment, mesh)
        state, x_dev, y_dev = shard_batch_arrays(mesh, state, x_dev, y_dev)
    else:
        step_fn = make_step(cfg, num_classes, augment)

    def diverged(what: str) -> NonFiniteLossError:
        where = (f"the last checkpoint, step {saved} in ckpt_dir {str(ckpt_dir)!r}, is finite"
                 if saved is not None else "no checkpoint was saved")
        return NonFiniteLossError(f"{what}; lower cfg.learning_rate ({cfg.learning_rate}) or raise "
                                  f"cfg.warmup_steps ({cfg.warmup_steps}), or check the data; {where}")

    def check_window(window: list[dict], last: int) -> np.ndarray:
        """Host copy of the window's losses (steps last-len+1..last); raises at the first non-finite."""
        losses = np.asarray(jax.device_get([m["loss"] for m in window]), np.float64)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            raise diverged(f"training loss became {losses[bad[0]]} at step {last - len(window) + 1 + bad[0]}")
        return losses

    def save(state: TrainState) -> int:
        """Saves a finite state (params checked by one jitted reduction), replacing newer/corrupt steps."""
        if not bool(_all_finite(state.params)):
            raise diverged(f"training parameters became non-finite by step {int(state.step)} (the loss was finite)")
        save_checkpoint(ckpt_dir, state, replace_newer=True)
        return int(state.step)

    per_epoch = x_train.shape[0] // cfg.batch_size
    end = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    history = {"step": [], "loss": [], "accuracy": []}
    step = int(state.step)
    t0 = time.perf_counter()
    bar = tqdm(total=end, initial=step, disable=not progress, desc="train", unit="step")
    perm_epoch, perm, window = -1, None, []
    try:
        while step < end:
            epoch, pos = divmod(step, per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = epoch_permutation(data_key, epoch, x_train.shape[0]), epoch
            state, metrics = step_fn(state, x_dev, y_dev, perm, pos, aug_key)
            window.append(metrics)
            step += 1
            save_now = ckpt_dir is not None and ckpt_every is not None and step % ckpt_every == 0
            if save_now:
                check_window(window, step)  # never checkpoint past a non-finite loss
            if step % cfg.chunk == 0 or step == end:  # sync with the device once per chunk only
                losses = check_window(window, step)
                history["step"].append(step)
                history["loss"].append(float(losses.mean()))
                history["accuracy"].append(float(np.mean(jax.device_get([m["accuracy"] for m in window]))))
                bar.update(len(window))
                bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", acc=f"{history['accuracy'][-1]:.3f}")
                window = []
            if save_now:
                saved = save(state)
    finally:
        bar.close()
    jax.block_until_ready(state.params)
    history["train_seconds"] = time.perf_counter() - t0
    if ckpt_dir is not None and saved != step:
        saved = save(state)
    elif not bool(_all_finite(state.params)):
        raise diverged(f"training parameters became non-finite by step {step} (the loss was finite)")
    return state, history
